r"""Frames from combinatorial designs: Hadamard matrices, Steiner ETFs, packings of triples and
DeVore's frames.

* :func:`hadamard`: Hadamard matrices ``H H^T = n I`` of the orders Sylvester's doubling and
  Paley's two constructions reach (every multiple of 4 up to 88, and most beyond).
* :func:`steiner_etf`: the equiangular tight frames of Fickus, Mixon & Tremain (2012, "Steiner
  equiangular tight frames", Linear Algebra Appl. 436): a Steiner system ``2-(v, k, 1)`` with
  ``b`` blocks, ``r = (v - 1)/(k - 1)`` through each point, and a Hadamard matrix of order
  ``r + 1`` give ``v (r + 1)`` unit vectors in ``R^b`` with coherence ``1/r``, the Welch bound.
  Two infinite families: all pairs of ``v`` points (``k = 2``: ``(v^2, v(v-1)/2)``, ``mu =
  1/(v-1)``, ``v`` a Hadamard order; ``v = 4`` is the Clebsch ETF ``(16, 6)``, ``v = 32`` gives
  ``(1024, 496)`` at ``1/31``), and the lines of the projective space PG(k-1, 2) (``v = 2^k -
  1``, triples: ``(v 2^{k-1}, v (2^{k-1} - 1)/3)``, ``mu = 1/(2^{k-1} - 1)``; ``k = 3`` is the
  Fano plane and the 28 lines of ``R^7``).
* :func:`triple_packing_frame`: the same construction with points and blocks exchanged, on a
  packing of triples (any two share at most one point; Steiner triple systems by Bose's and
  Skolem's constructions, less a point or two): ``4 b`` unit vectors in ``R^v`` at coherence
  exactly ``1/3``, ``b ~ v^2/6`` (32 lines in ``R^8``, 48 in ``R^9``, 104 in ``R^13``).
* :func:`devore_frame`: DeVore (2007, "Deterministic constructions of compressed sensing
  matrices", J. Complexity 23): the graphs ``{(x, f(x))}`` of the polynomials of degree
  ``<= r`` over GF(q) as 0/1 vectors in ``R^{q^2}``: ``q^{r+1}`` vectors with coherence
  ``r/q`` (two distinct polynomials agree on at most ``r`` points).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ._finite_fields import field_tables, jacobsthal_matrix, prime_power
from ._validation import check_choice, check_dtype, check_int

__all__ = [
    "affine_plane_frame",
    "affine_plane_frame_size",
    "devore_frame",
    "hadamard",
    "hadamard_order",
    "steiner_etf",
    "steiner_etf_size",
    "triple_packing",
    "triple_packing_frame",
    "triple_packing_size",
]


@lru_cache(maxsize=4096)
def _recipe(n: int) -> tuple | None:
    """How :func:`hadamard` builds order ``n``: ``("one",)``, ``("paley1", q)``, ``("paley2",
    q)`` or ``("double", n/2)``; ``None`` if none of them reaches ``n``."""
    if n == 1:
        return ("one",)
    if n == 2:
        return ("double", 1)
    if n % 4:
        return None
    pm = prime_power(n - 1)
    if pm is not None and (n - 1) % 4 == 3:
        return ("paley1", n - 1)
    pm = prime_power(n // 2 - 1)
    if pm is not None and (n // 2 - 1) % 4 == 1:
        return ("paley2", n // 2 - 1)
    if _recipe(n // 2) is not None:
        return ("double", n // 2)
    return None


def hadamard_order(n: int) -> bool:
    """Whether :func:`hadamard` can build a Hadamard matrix of order ``n``.

    Orders ``1, 2`` and the multiples of 4 reached by Sylvester doubling ``[[H, H], [H, -H]]``
    (Sylvester 1867) of Paley's matrices: type I of order ``q + 1`` for a prime power ``q = 3
    (mod 4)``, type II of order ``2 (q + 1)`` for ``q = 1 (mod 4)`` (Paley 1933). The smallest
    multiple of 4 not reached is 92.
    """
    n = check_int("n", n, minimum=1)
    return _recipe(n) is not None


def _hadamard_np(n: int) -> np.ndarray:
    recipe = _recipe(n)
    if recipe is None:
        raise ValueError(
            f"no Hadamard matrix of order n={n} from Sylvester doubling or Paley I/II "
            "(allowed: 1, 2 and most multiples of 4; the first one missing is 92)"
        )
    kind = recipe[0]
    if kind == "one":
        return np.ones((1, 1), dtype=np.int64)
    if kind == "double":
        h = _hadamard_np(recipe[1])
        return np.block([[h, h], [h, -h]])
    q = recipe[1]
    jac = jacobsthal_matrix(q)
    if kind == "paley1":  # H = I + S, S = [[0, 1^T], [-1, Q]] skew with S S^T = q I
        s = np.zeros((q + 1, q + 1), dtype=np.int64)
        s[0, 1:] = 1
        s[1:, 0] = -1
        s[1:, 1:] = jac
        return np.eye(q + 1, dtype=np.int64) + s
    conf = np.zeros((q + 1, q + 1), dtype=np.int64)  # symmetric conference matrix, C^2 = q I
    conf[0, 1:] = 1
    conf[1:, 0] = 1
    conf[1:, 1:] = jac
    one = np.array([[1, 1], [1, -1]])
    two = np.array([[1, -1], [-1, -1]])
    return np.kron(conf, one) + np.kron(np.eye(q + 1, dtype=np.int64), two)


def hadamard(n: int, *, normalized: bool = True, dtype=None, device=None) -> torch.Tensor:
    """A Hadamard matrix of order ``n``: entries ±1 and ``H H^T = n I``.

    Parameters
    ----------
    n
        An order for which :func:`hadamard_order` is true.
    normalized
        Scale rows and columns by ±1 so that the first row and column are all ones (the
        remaining ``n - 1`` columns of the rows are then a regular simplex: pairwise inner
        products ``-1``).

    Returns
    -------
    torch.Tensor
        ``(n, n)``, float64 unless ``dtype`` says otherwise; ``H / sqrt(n)`` is orthogonal.

    Raises
    ------
    ValueError
        If no construction here reaches ``n`` (the message says which orders are allowed).
    """
    n = check_int("n", n, minimum=1)
    h = _hadamard_np(n)
    if normalized:
        h = h * h[:, :1]
        h = h * h[:1, :]
    if not np.array_equal(h @ h.T, n * np.eye(n, dtype=np.int64)):  # pragma: no cover
        raise RuntimeError(f"internal error: Hadamard construction of order {n} failed")
    return torch.as_tensor(h, dtype=dtype or torch.float64, device=device)


# ---------------------------------------------------------------------------------------------
# Steiner ETFs


def _steiner_system(v: int, design: str) -> tuple[np.ndarray, int]:
    """``(inc, b)``: ``inc[p]`` lists the ``r`` blocks through point ``p`` (``(v, r)``), ``b``
    the number of blocks."""
    if design == "pairs":  # all pairs {i < j}: block index of pair (i, j)
        i, j = np.triu_indices(v, 1)
        index = np.full((v, v), -1, dtype=np.int64)
        index[i, j] = np.arange(len(i))
        index[j, i] = index[i, j]
        inc = index[~np.eye(v, dtype=bool)].reshape(v, v - 1)
        return inc, len(i)
    # lines {x, y, x ^ y} of PG(k-1, 2): points are the non-zero vectors 1 .. v of GF(2)^k
    pts = np.arange(1, v + 1)
    x, y = np.meshgrid(pts, pts, indexing="ij")
    z = x ^ y
    keep = (x < y) & (y < z)
    lines = np.stack([x[keep], y[keep], z[keep]], axis=1)  # (b, 3), sorted triples
    b = len(lines)
    owner = lines.ravel() - 1  # point of each (line, slot)
    order = np.argsort(owner, kind="stable")
    inc = (np.repeat(np.arange(b), 3)[order]).reshape(v, -1)
    return inc, b


def steiner_etf_size(v: int, design: str = "pairs") -> tuple[int, int, float] | None:
    """``(N, d, mu)`` of :func:`steiner_etf` ``(v, design)``, or ``None`` when it does not
    exist (no Hadamard matrix of order ``r + 1`` here, or ``v`` not ``2^k - 1`` for
    ``"triples"``). Computed without building anything."""
    v = check_int("v", v, minimum=1)
    design = check_choice("design", design, ("pairs", "triples"))
    if design == "pairs":
        if v < 4 or not hadamard_order(v):
            return None
        return v * v, v * (v - 1) // 2, 1.0 / (v - 1)
    if v < 7 or (v + 1) & v:
        return None
    r = (v - 1) // 2
    return v * (r + 1), v * r // 3, 1.0 / r


def steiner_etf(
    v: int, design: str = "pairs", num: int | None = None, *, dtype=None, device=None
) -> torch.Tensor:
    """The Steiner equiangular tight frame of a design on ``v`` points (Fickus, Mixon &
    Tremain 2012).

    For each point ``p`` take the ``r`` blocks through it and the ``r + 1`` rows of a
    normalised Hadamard matrix of order ``r + 1`` without its all-ones column (a flat simplex:
    inner products ``-1``); put them, scaled by ``1/sqrt(r)``, on the coordinates of those
    blocks. Vectors of one point have inner product ``-1/r``; two points share exactly one
    block, where the entries are ``±1/sqrt(r)``, so the inner product is ``±1/r``. The frame is
    tight, and ``1/r`` is the Welch bound.

    Parameters
    ----------
    v
        ``design="pairs"``: a Hadamard order ``>= 4`` (:func:`hadamard_order`); the design is all
        pairs of ``v`` points, ``r = v - 1``: ``(v^2, v (v - 1)/2)``, ``mu = 1/(v - 1)``.
        ``design="triples"``: ``v = 2^k - 1 >= 7``, the lines of PG(k-1, 2), ``r = (v - 1)/2``:
        ``(v (r + 1), v r / 3)``, ``mu = 1/r``.
    design
        ``"pairs"`` or ``"triples"``.
    num
        Only the first ``num`` rows (default all ``N``); built in ``O(num b)``. Any two rows
        have the same ``|<v, w>| = 1/r``, so every subset keeps the coherence.

    Returns
    -------
    torch.Tensor
        ``(num, b)`` unit rows, ``v`` groups of ``r + 1`` consecutive rows (one per point).

    Raises
    ------
    ValueError
        If the design or its Hadamard matrix is not available for ``v``.
    """
    size = steiner_etf_size(v, design)
    if size is None:
        allowed = (
            "a Hadamard order >= 4 (4, 8, 12, 16, 20, ...)" if design == "pairs" else "2^k - 1 >= 7"
        )
        raise ValueError(f"steiner_etf(design={design!r}) needs v to be {allowed}, got v={v}")
    num = size[0] if num is None else check_int("num", num, minimum=1, maximum=size[0])
    inc, b = _steiner_system(v, design)
    return _flat_simplices(inc, b, num, check_dtype("dtype", dtype), device)


def _flat_simplices(groups: np.ndarray, width: int, num: int, dtype, device) -> torch.Tensor:
    """The first ``num`` rows of ``g (k + 1)`` unit vectors in ``R^width``: for each row of
    ``groups`` (``(g, k)`` distinct coordinates), the ``k + 1`` rows of a normalised Hadamard
    matrix of order ``k + 1`` without its all-ones column, scaled by ``1/sqrt(k)``, on those
    ``k`` coordinates. Rows of one group have inner product ``-1/k``; rows of two groups that
    share ``s`` coordinates have ``|<v, w>| <= s/k``."""
    k = groups.shape[1]
    count = -(-num // (k + 1))
    flat = hadamard(k + 1, dtype=dtype, device=device)[:, 1:] / math.sqrt(k)  # (k + 1, k)
    out = torch.zeros(count, k + 1, width, dtype=dtype, device=device)
    cols = torch.as_tensor(groups[:count].astype(np.int64), device=out.device)
    cols = cols[:, None, :].expand(-1, k + 1, k)
    out.scatter_(2, cols, flat[None].expand(count, k + 1, k))
    return out.reshape(count * (k + 1), width)[:num]


# ---------------------------------------------------------------------------------------------
# packings of triples and their frames


def _steiner_triple_system(v: int) -> np.ndarray:
    """A Steiner triple system on ``v = 1, 3 (mod 6)`` points: ``(v (v - 1)/6, 3)`` triples
    covering every pair exactly once. Bose's construction for ``v = 6n + 3`` and Skolem's for
    ``v = 6n + 1`` (Lindner & Rodger, "Design Theory", 2nd ed. 2008, Sections 1.2-1.3), from a
    commutative quasigroup on ``Z_m``: point ``(x, i)`` of ``Z_m x Z_3`` is ``x + m i``."""
    if v == 1:
        return np.zeros((0, 3), dtype=np.int64)
    m = v // 3 if v % 6 == 3 else (v - 1) // 3
    x, y = np.triu_indices(m, 1)
    if v % 6 == 3:  # idempotent: x o y = (x + y)(m + 1)/2 mod m (m odd)
        xy = (x + y) * ((m + 1) // 2) % m
        own = np.arange(m)
    else:  # half-idempotent: x o y = s/2 for s = x + y mod m even, (s - 1)/2 + m/2 for s odd
        half = m // 2
        t = (x + y) % m
        xy = np.where(t % 2 == 0, t // 2, (t - 1) // 2 + half)
        own = np.arange(half)
    blocks = [np.stack([own + m * i for i in range(3)], axis=1)]  # {(x, 0), (x, 1), (x, 2)}
    for i in range(3):  # {(x, i), (y, i), (x o y, i + 1)}, x < y
        blocks.append(np.stack([x + m * i, y + m * i, xy + m * ((i + 1) % 3)], axis=1))
    if v % 6 == 1:  # {inf, (x + m/2, i), (x, i + 1)}, x < m/2; inf is point 3m
        for i in range(3):
            inf = np.full(half, 3 * m)
            blocks.append(np.stack([inf, own + half + m * i, own + m * ((i + 1) % 3)], axis=1))
    return np.sort(np.concatenate(blocks), axis=1)


def triple_packing_size(v: int) -> int:
    """The number of triples of :func:`triple_packing` ``(v)``, computed without building it:
    ``v (v - 1)/6`` for ``v = 1, 3 (mod 6)``, ``v (v - 2)/6`` for ``v = 0, 2``, ``(v - 1)
    (v - 2)/6`` for ``v = 4, 5`` (all mod 6)."""
    v = check_int("v", v, minimum=3)
    rest = v % 6
    if rest in (1, 3):
        return v * (v - 1) // 6
    if rest in (0, 2):
        return v * (v - 2) // 6
    return (v - 1) * (v - 2) // 6


@lru_cache(maxsize=2)
def _triple_packing(v: int) -> np.ndarray:
    rest = v % 6
    if rest in (1, 3):
        blocks = _steiner_triple_system(v)
    elif rest == 4:  # the system on v - 1 points, its first triple {a, b, c} made {a, b, v - 1}
        blocks = _steiner_triple_system(v - 1)
        blocks[0, 2] = v - 1
    else:  # delete the last w - v points of a larger system
        sts = _steiner_triple_system(v + 1 if rest in (0, 2) else v + 2)
        blocks = sts[sts.max(axis=1) < v]
    # first the triples that are the first through one of their points (together they cover
    # every point, so that a prefix of the frame spans R^v early), then the others, in order
    owner = np.full(v, len(blocks), dtype=np.int64)
    np.minimum.at(owner, blocks.ravel(), np.repeat(np.arange(len(blocks)), 3))
    first = np.zeros(len(blocks), dtype=bool)
    first[owner[owner < len(blocks)]] = True  # a point may be on no triple (v = 4)
    order = np.concatenate([np.flatnonzero(first), np.flatnonzero(~first)])
    out = blocks[order].astype(np.int32)
    out.flags.writeable = False
    return out


def triple_packing(v: int) -> np.ndarray:
    """A packing of triples on ``v >= 3`` points: triples of which any two share at most one
    point (a partial Steiner triple system), as a ``(b, 3)`` integer array of sorted points
    ``0 .. v - 1``, ``b`` = :func:`triple_packing_size` ``(v)``.

    For ``v = 1, 3 (mod 6)`` a Steiner triple system (every pair in exactly one triple; Bose's
    construction for ``v = 3``, Skolem's for ``v = 1``); for ``v = 0, 2 (mod 6)`` the system on
    ``v + 1`` points less one point; for ``v = 5 (mod 6)`` the system on ``v + 2`` less two;
    for ``v = 4 (mod 6)`` the system on ``v - 1`` with its first triple ``{a, b, c}`` made
    ``{a, b, v - 1}``. The triples that are the first through one of their points come first
    (they cover every point, so that a prefix of :func:`triple_packing_frame` spans ``R^v``
    early). For ``v = 0, 1, 2, 3 (mod 6)`` and ``v <=
    5`` that is the largest packing there is (Schönheim 1966, Spencer 1968: ``floor(v/3
    floor((v - 1)/2))`` triples, one less for ``v = 5 (mod 6)``); from ``v = 10`` on it is
    ``(v - 4)/6`` triples short of it for ``v = 4 (mod 6)`` and ``(v - 5)/3`` for ``v = 5``.
    """
    return _triple_packing(check_int("v", v, minimum=3)).astype(np.int64)


def triple_packing_frame(
    v: int, num: int | None = None, *, dtype=None, device=None
) -> torch.Tensor:
    """``4 b`` unit vectors in ``R^v`` with coherence exactly ``1/3``: each triple of
    :func:`triple_packing` ``(v)`` carries the four sign patterns ``(1, 1, 1), (1, -1, -1),
    (-1, 1, -1), (-1, -1, 1)`` (a Hadamard matrix of order 4 without its all-ones column),
    scaled by ``1/sqrt(3)``, on its three coordinates.

    Two vectors of one triple have inner product ``-1/3``; two triples share at most one
    point, where the entries are ``±1/sqrt(3)``, so ``|<v, w>|`` is ``1/3`` or ``0``. This is the
    construction of :func:`steiner_etf` with the roles of points and blocks exchanged (Fickus,
    Mixon & Tremain 2012): blocks of size ``k = 3`` and a Hadamard matrix of order ``k + 1``.
    Not equiangular (inner products ``0`` and ``±1/3``), but ``1/3`` with ``N ~ 2 v^2/3`` lines;
    tight where every point is on as many triples (``v = 0 .. 3 (mod 6)``: each triple adds
    ``4/3`` times the identity on its coordinates). For ``v = 8`` it gives the 32 lines of
    ``R^8`` at ``1/3``, the value of Sloane's table for 30 to 32 lines (29 lines there: 2.5e-8
    below it).

    Parameters
    ----------
    v
        The dimension, ``>= 3``. The packing is built whole, ``O(v^2)`` time and memory:
        0.6 s and 213 MB at ``v = 4096``, 26 s and 6 GB at 20000 (the catalog stops at
        :data:`grassmann.catalog.TRIPLE_LIMIT` points).
    num
        Only the first ``num`` rows (default all ``4 b``); any two rows of one triple have
        ``|<v, w>| = 1/3``, so every prefix of at least two rows keeps the coherence ``1/3``.

    Returns
    -------
    torch.Tensor
        ``(num, v)`` unit rows, four consecutive rows per triple.

    Raises
    ------
    ValueError
        If ``v < 3`` or ``num`` is not in ``1 .. 4 b``.
    """
    blocks = _triple_packing(check_int("v", v, minimum=3))
    most = 4 * len(blocks)
    num = most if num is None else check_int("num", num, minimum=1, maximum=most)
    return _flat_simplices(blocks, v, num, check_dtype("dtype", dtype), device)


# ---------------------------------------------------------------------------------------------
# the lines of affine planes


def affine_plane_frame_size(q: int) -> tuple[int, int, float] | None:
    """``(N, d, mu) = (q (q + 1)^2, q^2, 1/q)`` of :func:`affine_plane_frame` ``(q)``, or
    ``None`` when it does not exist here (``q`` not a prime power ``= 3 (mod 4)``, or no
    Hadamard matrix of order ``q + 1`` from :func:`hadamard`). Computed without building."""
    q = check_int("q", q, minimum=2)
    if q % 4 != 3 or prime_power(q) is None or not hadamard_order(q + 1):
        return None
    return q * (q + 1) ** 2, q * q, 1.0 / q


def affine_plane_frame(q: int, num: int | None = None, *, dtype=None, device=None) -> torch.Tensor:
    """``q (q + 1)^2`` unit vectors in ``R^{q^2}`` with coherence exactly ``1/q``, from the
    ``q (q + 1)`` lines of the affine plane AG(2, q).

    The coordinates are the ``q^2`` points ``(x, y)`` of GF(q)^2; each line (``y = m x + c``,
    and ``x = c``) carries the ``q + 1`` rows of a normalised Hadamard matrix of order ``q + 1``
    without its all-ones column, scaled by ``1/sqrt(q)``, on its ``q`` points: the construction
    of :func:`steiner_etf` (Fickus, Mixon & Tremain 2012) with the lines as the blocks that
    carry the vectors. Two vectors of one line have inner product ``-1/q``; two lines meet in
    at most one point, so ``|<v, w>|`` is ``1/q`` or ``0`` (parallel lines). Tight (each line
    adds ``(q + 1)/q`` times the identity on its points, and every point is on ``q + 1`` lines)
    but not equiangular; the Welch bound for these sizes is ``(1/q) sqrt((q^2 + q + 1)/((q +
    1)^2 - 1/q))``, so ``1/q`` is within a factor of about ``1 + 1/(2q)`` of it: 448 vectors in
    ``R^49`` at ``1/7`` (1.058 times the bound), 1584 in ``R^121`` at ``1/11`` (1.040). A
    Hadamard matrix of order ``q + 1`` needs ``q = 3 (mod 4)``.

    Parameters
    ----------
    q
        A prime power ``= 3 (mod 4)`` with a Hadamard matrix of order ``q + 1``
        (:func:`affine_plane_frame_size`): 3, 7, 11, 19, 23, 27, 31, 43, 47, 59, ...
    num
        Only the first ``num`` rows (default all); every prefix of at least two rows keeps the
        coherence ``1/q``. Built in ``O(num q^2)``.

    Returns
    -------
    torch.Tensor
        ``(num, q^2)`` unit rows, ``q + 1`` consecutive rows per line; the lines in parallel
        classes, slope ``m = 0 .. q - 1`` first and the vertical lines last.

    Raises
    ------
    ValueError
        If ``q`` is not such a prime power or ``num`` is not in ``1 .. N``.
    """
    size = affine_plane_frame_size(q)
    if size is None:
        raise ValueError(
            f"affine_plane_frame needs q to be a prime power = 3 (mod 4) with a Hadamard "
            f"matrix of order q + 1 (3, 7, 11, 19, 23, 27, 31, ...), got q={q}"
        )
    num = size[0] if num is None else check_int("num", num, minimum=1, maximum=size[0])
    add, mul = field_tables(q)
    xs = np.arange(q)
    # line (m, c) of slope m: the points (x, m x + c), as x q + y
    slopes = add[mul[:, None, :], xs[None, :, None]]  # (m, c, x) -> m x + c
    sloped = xs[None, None, :] * q + slopes
    vertical = xs[:, None] * q + xs[None, :]  # line x = c: (c, y)
    lines = np.concatenate([sloped.reshape(q * q, q), vertical])
    return _flat_simplices(lines, q * q, num, check_dtype("dtype", dtype), device)


# ---------------------------------------------------------------------------------------------
# DeVore's polynomial frames


def devore_frame(
    q: int, degree: int, num: int | None = None, *, dtype=None, device=None
) -> torch.Tensor:
    """DeVore's frame: the graphs of the polynomials of degree ``<= degree`` over GF(q).

    Vector ``f`` has entries ``1/sqrt(q)`` at the coordinates ``x q + f(x)``, ``x in GF(q)``,
    and 0 elsewhere (``d = q^2``). Two distinct polynomials of degree ``<= r`` agree on at most
    ``r`` points, so ``|<v_f, v_g>| <= r/q`` (DeVore 2007), with equality for ``f - g`` a
    product of ``r`` distinct linear factors.

    Rows are ordered by the coefficients, the constant term fastest: the first ``q^{s+1}``
    rows are the polynomials of degree ``<= s`` and have coherence exactly ``s/q`` (``0`` for
    the ``q`` constants).

    Parameters
    ----------
    q
        A prime power (the field GF(q)); memory ``O(q^2)`` for its tables.
    degree
        ``1 <= degree < q``.
    num
        How many rows (default all ``q^(degree + 1)``).

    Raises
    ------
    ValueError
        If ``q`` is not a prime power, ``degree`` is out of range or ``num`` too large.
    """
    q = check_int("q", q, minimum=2)
    if prime_power(q) is None:
        raise ValueError(f"q must be a prime power, got {q}")
    degree = check_int("degree", degree, minimum=1, maximum=q - 1)
    most = q ** (degree + 1)
    num = most if num is None else check_int("num", num, minimum=1, maximum=most)
    add, mul = field_tables(q)
    idx = np.arange(num, dtype=np.int64)
    coeffs = (idx[:, None] // q ** np.arange(degree + 1)) % q  # (num, degree + 1)
    xs = np.arange(q)
    vals = np.broadcast_to(coeffs[:, degree, None], (num, q))
    for i in range(degree - 1, -1, -1):  # Horner: f(x) = (... c_r x + c_{r-1}) x + ...
        vals = add[mul[vals, xs[None, :]], coeffs[:, i, None]]
    out = torch.zeros(num, q * q, dtype=check_dtype("dtype", dtype), device=device)
    cols = torch.as_tensor(xs[None, :] * q + vals, device=out.device)
    out.scatter_(1, cols, 1.0 / math.sqrt(q))
    return out
