r"""Frames from combinatorial designs: Hadamard matrices, Steiner ETFs and DeVore's frames.

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
    "devore_frame",
    "hadamard",
    "hadamard_order",
    "steiner_etf",
    "steiner_etf_size",
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
    r = inc.shape[1]
    points = -(-num // (r + 1))
    dtype = check_dtype("dtype", dtype)
    flat = hadamard(r + 1, dtype=dtype, device=device)[:, 1:] / math.sqrt(r)  # (r + 1, r)
    out = torch.zeros(points, r + 1, b, dtype=dtype, device=device)
    cols = torch.as_tensor(inc[:points], device=out.device)[:, None, :].expand(-1, r + 1, r)
    out.scatter_(2, cols, flat[None].expand(points, r + 1, r))
    return out.reshape(points * (r + 1), b)[:num]


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
