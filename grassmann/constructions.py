"""Closed-form frames whose coherence meets a lower bound of :mod:`grassmann.bounds`.

Each function returns a tensor ``(num, dim)`` with unit rows, float64 by default (``dtype=`` and
``device=`` select others; the frame is always built in float64 first). When the coherence of a
construction equals the valid lower bound for its size, no optimiser can beat it:
:func:`known_optimal` returns such a frame when one is known.

===================  ==============  ==============================  =============================
construction         sizes           coherence                       meets
===================  ==============  ==============================  =============================
orthonormal          N <= d          0 (lines)                       orthonormal bound
simplex              N = d + 1       -1/d (sphere), 1/d (lines)      simplex / Welch bound
orthoplex            N <= 2 d        0 (sphere; ±e_i)                cross-polytope bound
paley_etf            N = q + 1 = 2d  1/sqrt(N - 1) (lines)           Welch (q prime power = 1 mod 4)
clebsch_etf          (16, 6)         1/3 (lines)                     Welch
johnson_etf          (28, 7)         1/3 (lines)                     Welch
naimark_complement   (N, N - d)      ETF -> ETF                      Welch
icosahedron          (12, 3)         1/sqrt 5 (sphere and 6 lines)   Fejes Tóth / Levenshtein
polygon              (N, 2)          cos(2 pi/N) sphere, cos(pi/N)   Levenshtein / planar
e8_roots             (240, 8)        1/2 (sphere; 120 lines: 1/2)    Levenshtein / Levenstein
root_system          D_n, E_6, E_7   1/2 (sphere and lines)          Levenstein for the lines of
                                                                     D_4, E_6, E_7 (12, 36, 63)
triangular_lines     (C(n,2), n)     1/3 (lines), 4 <= n <= 8        Welch for n = 5, 8
embedded_mubs        d(d+1)/2 < N    1/sqrt(d) (lines), d = 4^k      orthoplex (N = d(d+2)/2:
                     <= d(d+2)/2                                     also Levenstein)
===================  ==============  ==============================  =============================

:func:`grassmann.mubs.real_mubs` and :func:`grassmann.mubs.embedded_mubs` (real mutually unbiased
bases, and their use for any ``N <= d + 4^k 4^k / 2`` in ``R^d``) live in :mod:`grassmann.mubs`,
the sequence families for ``N >> d`` in :mod:`grassmann.sequences`, the design-based frames in
:mod:`grassmann.designs`, and the listing of all of them for a size in :mod:`grassmann.catalog`.
"""

from __future__ import annotations

import itertools
import math
from types import MappingProxyType

import numpy as np
import torch

from ._finite_fields import jacobsthal_matrix, prime_power
from ._validation import check_choice, check_dtype, check_int, check_tensor

__all__ = [
    "clebsch_etf",
    "e8_roots",
    "icosahedron",
    "johnson_etf",
    "known_optimal",
    "naimark_complement",
    "orthonormal",
    "orthoplex",
    "paley_etf",
    "polygon",
    "root_system",
    "root_weight_lines",
    "simplex",
    "six_hundred_cell",
    "triangular_lines",
]


def _bits(k: int) -> np.ndarray:
    """All ``2^k`` words of ``k`` bits, ``(2^k, k)``, least significant bit first."""
    return (np.arange(1 << k)[:, None] >> np.arange(k)) & 1


def _out(x: np.ndarray, dtype: torch.dtype | None, device) -> torch.Tensor:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    dtype = check_dtype("dtype", dtype)
    return torch.as_tensor(x, dtype=torch.float64).to(dtype=dtype, device=device)


def _frame_from_gram(gram: np.ndarray, dim: int) -> np.ndarray:
    """Rows ``F`` (N, dim) with ``F F^T = gram`` for a PSD ``gram`` of rank ``dim``."""
    vals, vecs = np.linalg.eigh(gram)
    rest = vals[:-dim]
    if rest.size and np.abs(rest).max() > 1e-9 * max(1.0, vals[-1]):  # pragma: no cover
        raise RuntimeError("internal error: Gram matrix does not have the expected rank")
    return vecs[:, -dim:] * np.sqrt(vals[-dim:])


def orthonormal(num: int, dim: int, *, dtype=None, device=None) -> torch.Tensor:
    """The first ``num`` standard basis vectors of ``R^dim`` (``num <= dim``): coherence 0."""
    dim = check_int("dim", dim, minimum=1)
    num = check_int("num", num, minimum=1, maximum=dim)
    return _out(np.eye(num, dim), dtype, device)


def simplex(dim: int, *, dtype=None, device=None) -> torch.Tensor:
    """The ``dim + 1`` vertices of the regular simplex in ``R^dim``: all cosines ``-1/dim``.

    Built from the Helmert basis of the complement of the all-ones vector in ``R^{dim+1}``:
    vertex ``i`` is the projection of ``e_i``, so the construction is explicit (no
    eigen-solver) and exact to rounding. As lines its coherence ``1/dim`` is the Welch bound
    for ``N = d + 1``.
    """
    dim = check_int("dim", dim, minimum=1)
    n = dim + 1
    h = np.zeros((n, dim))
    for j in range(1, n):  # column j-1: (1, ..., 1, -j, 0, ...) / sqrt(j (j + 1))
        h[:j, j - 1] = 1.0
        h[j, j - 1] = -float(j)
        h[:, j - 1] /= math.sqrt(j * (j + 1))
    return _out(h, dtype, device)


def orthoplex(num: int, dim: int, *, dtype=None, device=None) -> torch.Tensor:
    """``num <= 2 dim`` vertices of the cross-polytope: ``e_1, ..., e_d, -e_1, -e_2, ...``.

    Sphere mode: the largest inner product is 0 (attains the cross-polytope bound for
    ``d + 2 <= N <= 2 d``). As lines, ``±e_i`` coincide (coherence 1 once ``N > d``).
    """
    dim = check_int("dim", dim, minimum=1)
    num = check_int("num", num, minimum=1, maximum=2 * dim)
    eye = np.eye(dim)
    return _out(np.concatenate([eye, -eye])[:num], dtype, device)


# ---------------------------------------------------------------------------------------------
# Paley conference matrices over GF(q)


def paley_etf(num: int, *, dtype=None, device=None) -> torch.Tensor:
    """Real equiangular tight frame of ``num = 2 d`` vectors in ``R^d`` (Paley).

    For ``q = num - 1`` a prime power with ``q = 1 (mod 4)`` the quadratic character
    ``chi`` of GF(q) gives the symmetric conference matrix ``C = [[0, 1^T], [1, Q]]``,
    ``Q[a, b] = chi(a - b)``, with ``C^2 = q I`` (Paley 1933). ``G = I + C / sqrt(q)`` is then a
    rank-``num/2`` Gram matrix of unit vectors with all ``|<w_i, w_j>| = 1/sqrt(num - 1)``,
    the Welch bound (Strohmer & Heath 2003; Fickus & Mixon, tables of ETFs).
    ``num = 6`` gives the six diagonals of the icosahedron.

    Raises
    ------
    ValueError
        If ``num - 1`` is not a prime power congruent to 1 mod 4.
    """
    num = check_int("num", num, minimum=6)
    q = num - 1
    pm = prime_power(q)
    if pm is None or q % 4 != 1:
        raise ValueError(
            f"paley_etf needs num - 1 to be a prime power = 1 (mod 4), got num={num} "
            "(allowed: 6, 10, 14, 18, 26, 30, 38, 42, 50, ...)"
        )
    conf = np.zeros((num, num), dtype=np.int64)
    conf[0, 1:] = 1
    conf[1:, 0] = 1
    conf[1:, 1:] = jacobsthal_matrix(q)
    if not np.array_equal(conf @ conf, q * np.eye(num, dtype=np.int64)):  # pragma: no cover
        raise RuntimeError("internal error: Paley conference matrix check failed")
    gram = np.eye(num) + conf / math.sqrt(q)
    return _out(_frame_from_gram(gram, num // 2), dtype, device)


def clebsch_etf(*, dtype=None, device=None) -> torch.Tensor:
    """The real ETF of 16 vectors in ``R^6`` (coherence 1/3 = Welch bound).

    Its Seidel matrix is ``S = J - I - 2 A`` for the Clebsch graph ``A`` (vertices GF(2)^4,
    adjacent at Hamming distance 1 or 4; strongly regular (16, 5, 0, 2)); ``S`` has eigenvalues
    5 (x6) and -3 (x10), so ``I + S/3`` is a rank-6 Gram matrix (Lemmens & Seidel 1973).
    """
    bits = _bits(4)
    ham = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    adj = ((ham == 1) | (ham == 4)).astype(float)
    seidel = np.ones((16, 16)) - np.eye(16) - 2 * adj
    return _out(_frame_from_gram(np.eye(16) + seidel / 3.0, 6), dtype, device)


def triangular_lines(n: int, *, dtype=None, device=None) -> torch.Tensor:
    """``C(n, 2)`` equiangular lines at angle ``arccos(1/3)`` from the triangular graph
    ``T(n)``, ``4 <= n <= 8``: in ``R^n`` (``n <= 7``) or ``R^7`` (``n = 8``).

    The vectors ``e_i + e_j - c 1`` (``i < j``) of ``R^n`` have squared norm ``2 - 4c + n
    c^2``, inner product ``1 - 4c + n c^2`` when ``{i, j}`` and ``{k, l}`` share an index and
    ``-4c + n c^2`` otherwise. With ``2 n c^2 - 8 c + 1 = 0`` (real for ``n <= 8``) these are
    ``3/2`` and ``±1/2``: all cosines are ``±1/3`` (Lemmens & Seidel 1973). ``n = 8`` gives
    ``c = 1/4``, vectors orthogonal to ``1``: the 28 lines of :func:`johnson_etf`; ``n = 5``
    the 10 lines of the Paley ETF; ``n = 4`` 6 lines in ``R^4``.

    Raises
    ------
    ValueError
        If ``n`` is not in ``4 .. 8``.
    """
    n = check_int("n", n, minimum=4, maximum=8)
    c = (8.0 - math.sqrt(64.0 - 8.0 * n)) / (4.0 * n)
    i, j = np.triu_indices(n, 1)
    v = np.full((len(i), n), -c)
    v[np.arange(len(i)), i] += 1.0
    v[np.arange(len(i)), j] += 1.0
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    if n == 8:  # rank 7: coordinates in the complement of the all-ones vector
        v = _frame_from_gram(v @ v.T, 7)
    return _out(v, dtype, device)


def johnson_etf(*, dtype=None, device=None) -> torch.Tensor:
    """The 28 equiangular lines in ``R^7`` (coherence 1/3 = Welch bound).

    The ``C(8, 2) = 28`` vectors ``e_i + e_j - (1/4) 1`` of ``R^8`` lie in the 7-dimensional
    complement of the all-ones vector; two of them have cosine ``+1/3`` when ``{i, j}`` and
    ``{k, l}`` share an index and ``-1/3`` otherwise (Lemmens & Seidel 1973). The same as
    :func:`triangular_lines` ``(8)``.
    """
    return triangular_lines(8, dtype=dtype, device=device)


def naimark_complement(frame: torch.Tensor, *, dtype=None, device=None) -> torch.Tensor:
    """Naimark complement of a unit-norm tight frame ``(N, d)``: a unit-norm tight frame
    ``(N, N - d)`` with Gram matrix ``(N/(N-d)) (I - (d/N) F F^T)``.

    The complement of an ETF is an ETF with coherence ``mu d / (N - d)`` (Casazza et al. 2006),
    e.g. (28, 7) -> (28, 21) with coherence 1/9.

    Raises
    ------
    ValueError
        If ``frame`` is not a unit-norm tight frame with ``N > d``.
    """
    check_tensor("frame", frame, ndim=2)
    f = frame.detach().to("cpu", torch.float64).numpy()
    n, d = f.shape
    if n <= d:
        raise ValueError(f"naimark_complement needs num > dim, got shape {(n, d)}")
    if not np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-10) or not np.allclose(
        f.T @ f, (n / d) * np.eye(d), atol=1e-9
    ):
        raise ValueError("frame must be a unit-norm tight frame (unit rows, F^T F = (N/d) I)")
    gram = (n / (n - d)) * (np.eye(n) - (d / n) * (f @ f.T))
    return _out(_frame_from_gram(gram, n - d), dtype, device or frame.device)


def icosahedron(*, dtype=None, device=None) -> torch.Tensor:
    """The 12 vertices ``(0, ±1, ±phi)`` and cyclic shifts of the icosahedron in ``R^3``.

    Sphere mode: largest inner product ``1/sqrt 5``, optimal for 12 points on ``S^2``
    (Fejes Tóth 1943; the solution of the Tammes problem for N = 12). Rows ``2i`` and
    ``2i + 1`` are antipodal; the even rows are 6 equiangular lines (``mu = 1/sqrt 5``).
    """
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    rows = []
    for a in (1.0, -1.0):
        for b in (phi, -phi):
            rows.append((0.0, a, b))
    # cyclic shifts of (0, a, b)
    base = np.array(rows)
    pts = np.concatenate([base, np.roll(base, 1, axis=1), np.roll(base, 2, axis=1)])
    # order as antipodal pairs: (0, 1, phi), (0, -1, -phi), ...
    order = []
    used = set()
    for i in range(12):
        if i in used:
            continue
        j = int(np.argmin(np.linalg.norm(pts + pts[i], axis=1)))
        order += [i, j]
        used |= {i, j}
    return _out(pts[order], dtype, device)


def polygon(num: int, mode: str = "sphere", *, dtype=None, device=None) -> torch.Tensor:
    """``num`` equally spaced unit vectors in ``R^2``.

    ``mode="sphere"``: angles ``2 pi i / N``, largest inner product ``cos(2 pi / N)``
    (optimal; equals the Levenshtein bound). ``mode="lines"``: angles ``pi i / N``, coherence
    ``cos(pi / N)``, optimal by pigeonhole (the ``planar`` bound).
    """
    num = check_int("num", num, minimum=2)
    mode = check_choice("mode", mode, ("lines", "sphere"))
    step = (2.0 if mode == "sphere" else 1.0) * math.pi / num
    ang = step * np.arange(num)
    return _out(np.stack([np.cos(ang), np.sin(ang)], axis=1), dtype, device)


def six_hundred_cell(mode: str = "sphere", *, dtype=None, device=None) -> torch.Tensor:
    """The 120 vertices of the 600-cell in ``R^4`` (the roots of ``H_4``, the unit quaternions
    of the binary icosahedral group), or with ``mode="lines"`` 60 of them, one per ± pair.

    The vertices are the 8 permutations of ``(±1, 0, 0, 0)``, the 16 points ``(±1/2)^4`` and
    the 96 even permutations of ``(±phi, ±1, ±1/phi, 0)/2``, ``phi`` the golden ratio (Coxeter,
    *Regular Polytopes*, 1973, Section 8.7). Inner products between distinct vertices are
    ``cos`` of 36, 60, 72, 90, 108, 120, 144 and 180 degrees, so the coherence is
    ``cos(pi/5) = phi/2`` in both modes: the 120 points are the optimal code of 120 points on
    ``S^3`` (they attain Böröczky's bound, 1978; Andreev 1999), and their 60 lines the value of
    Sloane's table for 54 to 60 lines in ``R^4`` (and within 1e-10 of it for 53). Rows 0 and
    1 are at 36 degrees, so every prefix of two or more rows attains it; in sphere mode the
    second half are the negatives of the first.
    """
    mode = check_choice("mode", mode, ("lines", "sphere"))
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    axes = np.eye(4)
    halves = 0.5 - _bits(3)  # (1/2, ±1/2, ±1/2, ±1/2)
    halves = np.concatenate([np.full((8, 1), 0.5), halves], axis=1)
    perms = [p for p in itertools.permutations(range(4)) if _even(p)]  # the 12 even ones
    signs = 1.0 - 2.0 * _bits(3)  # of phi, 1, 1/phi
    base = np.array([phi, 1.0, 1.0 / phi, 0.0]) / 2.0
    snub = []
    for sg in signs:
        v = base * np.append(sg, 1.0)
        for p in perms:
            w = np.empty(4)
            w[list(p)] = v
            snub.append(w)
    snub = np.array(snub)  # 96 points, closed under negation
    # one per ± pair: the first non-zero entry positive
    lead = snub[np.arange(len(snub)), np.argmax(np.abs(snub) > 1e-12, axis=1)]
    snub = snub[lead > 0]
    rows = _max_pair_first(np.concatenate([axes, halves, snub]), signed=True)
    rows = rows if mode == "lines" else np.concatenate([rows, -rows])
    return _out(rows, dtype, device)


def _even(perm: tuple[int, ...]) -> bool:
    """Whether ``perm`` is an even permutation (an even number of inversions)."""
    return sum(a > b for i, a in enumerate(perm) for b in perm[i + 1 :]) % 2 == 0


def _max_pair_first(rows: np.ndarray, signed: bool = False) -> np.ndarray:
    """Reorder ``rows`` so that rows 0 and 1 have the largest inner product of row 0 with any
    other: then every prefix of two or more rows attains the coherence of a frame all of whose
    rows look alike (root systems, the icosahedron).

    ``signed=False`` (lines): the largest ``|<r_0, r_j>|``, and row 1 re-signed to make it
    positive; ``signed=True`` (points): the largest signed inner product, no sign change.
    """
    g = rows[1:] @ rows[0]
    j = 1 + int(np.argmax(g if signed else np.abs(g)))
    order = [0, j] + [k for k in range(1, len(rows)) if k != j]
    out = rows[order].copy()
    if not signed and g[j - 1] < 0:
        out[1] *= -1.0
    return out


def _e8_positive() -> np.ndarray:
    """One root per ± pair of E8: ``e_i + e_j``, ``e_i - e_j`` (``i < j``) and
    ``(±1/2)^8`` with an even number of minus signs and a first entry ``+1/2``."""
    i, j = np.triu_indices(8, 1)
    plus = np.zeros((28, 8))
    plus[np.arange(28), i] = 1.0
    plus[np.arange(28), j] = 1.0
    minus = plus.copy()
    minus[np.arange(28), j] = -1.0
    bits = _bits(7)  # signs of entries 1..7; entry 0 is +
    halves = np.concatenate([np.zeros((128, 1)), bits], axis=1)
    halves = halves[halves.sum(axis=1) % 2 == 0]
    return np.concatenate([plus, minus, 0.5 - halves])


def root_system(
    family: str, rank: int, mode: str = "sphere", *, dtype=None, device=None
) -> torch.Tensor:
    """The roots of ``D_n`` (``family="D"``, ``rank = n >= 3``) or ``E_6, E_7, E_8``
    (``family="E"``), normalised; with ``mode="lines"`` one root per ± pair.

    ``D_n``: ``±e_i ± e_j`` in ``R^n``, ``2 n (n - 1)`` roots. ``E_8``: those of ``D_8`` and
    ``(±1/2)^8`` with an even number of minus signs, 240 roots. ``E_7`` (126 roots) and ``E_6``
    (72) are the roots of ``E_8`` orthogonal to the root ``rho = (1/2) 1``, and to ``rho`` and
    ``-(e_1 + e_2)`` (an ``A_2``), written in an orthonormal basis of that complement
    (Conway & Sloane, *Sphere Packings, Lattices and Groups*, Ch. 4). Two distinct roots of a
    simply-laced root system have inner product ``0, ±1/2`` or ``-1`` (normalised), so the
    coherence is ``1/2`` in both modes. It meets the Levenstein bound for the lines of ``D_4``
    (12 lines in ``R^4``), ``E_6`` (36 lines in ``R^6``), ``E_7`` (63 in ``R^7``) and ``E_8``
    (120 in ``R^8``), and the Levenshtein bound for the 240 points of ``E_8``.

    Rows 0 and 1 are at ``60`` degrees, so every subset of the first ``N >= 2`` rows keeps the
    coherence ``1/2``; in sphere mode the second half of the rows are the negatives of the
    first.

    Raises
    ------
    ValueError
        If ``family``/``rank`` is not one of those.
    """
    family = check_choice("family", family, ("D", "E"))
    mode = check_choice("mode", mode, ("lines", "sphere"))
    if family == "D":
        n = check_int("rank", rank, minimum=3)
        i, j = np.triu_indices(n, 1)
        k = len(i)
        pos = np.zeros((2 * k, n))
        pos[np.arange(2 * k), np.tile(i, 2)] = 1.0
        pos[np.arange(2 * k), np.tile(j, 2)] = np.repeat([1.0, -1.0], k)
    else:
        rank = check_int("rank", rank, minimum=6, maximum=8)
        pos = _e8_positive()
        if rank < 8:
            con, basis = _e8_complement(rank)
            pos = pos[np.all(np.abs(pos @ con.T) < 1e-12, axis=1)] @ basis
    pos = _max_pair_first(pos / np.linalg.norm(pos, axis=1, keepdims=True))
    rows = pos if mode == "lines" else np.concatenate([pos, -pos])
    return _out(rows, dtype, device)


#: ``(rank, lines, coherence)`` of :func:`root_weight_lines`
ROOT_WEIGHT_SYSTEMS = MappingProxyType(
    {
        "D6": (6, 46, 1.0 / math.sqrt(3.0)),
        "E6": (6, 63, math.sqrt(3.0 / 8.0)),
        "E7": (7, 91, 1.0 / math.sqrt(3.0)),
    }
)


def root_weight_lines(system: str, mode: str = "lines", *, dtype=None, device=None) -> torch.Tensor:
    """The roots of ``D_6``, ``E_6`` or ``E_7`` together with an orbit of minuscule weights,
    normalised; with ``mode="lines"`` (the default, unlike :func:`root_system`) one vector per
    ± pair.

    * ``"D6"``: the 30 root lines ``±e_i ± e_j`` of ``R^6`` and the 16 lines of the half-spin
      weights ``(±1/2)^6`` with an even number of minus signs: 46 lines with coherence
      ``1/sqrt(3)`` (root and weight: ``±1`` over ``sqrt(2 * 3/2)``; two weights: ``±1/2`` over
      ``3/2``, i.e. ``1/3``; two roots: ``1/2``).
    * ``"E6"``: the 36 root lines and the 27 lines of the minuscule weights of norm ``4/3``
      (the 27 lines on a cubic surface; here the E8 roots with norm ``4/3`` after projection
      onto the complement of the ``A_2`` of :func:`root_system`): 63 lines in ``R^6`` with
      coherence ``sqrt(3/8)`` (root and weight: ``±1`` over ``sqrt(2 * 4/3)``; two weights:
      ``1/4`` or ``1/2``).
    * ``"E7"``: the 63 root lines and the 28 lines of the 56 minuscule weights of norm ``3/2``
      (the E8 roots ``r`` with ``<r, rho> = ±1``, projected): 91 lines in ``R^7`` with
      coherence ``1/sqrt(3)`` (root and weight: ``±1`` over ``sqrt(2 * 3/2)``; two weights:
      ``1/3``).

    A root and a weight have an integer inner product, ``0`` or ``±1`` here (the weights lie in
    the dual lattice; Conway & Sloane, *Sphere Packings, Lattices and Groups*, Ch. 4 and 8).
    91 lines in ``R^7`` at ``1/sqrt(3)`` and 63 in ``R^6`` at ``sqrt(3/8)`` are the values of
    Sloane's table of line packings; 46 lines in ``R^6`` at ``1/sqrt(3)`` are a start for 47
    (the table's value, also ``1/sqrt(3)``).

    Rows 0 and 1 (a root and a weight) attain the coherence, so every prefix of two or more
    rows does; in sphere mode the second half of the rows are the negatives of the first.

    Raises
    ------
    ValueError
        If ``system`` is not one of ``"D6"``, ``"E6"``, ``"E7"``.
    """
    system = check_choice("system", system, tuple(ROOT_WEIGHT_SYSTEMS))
    mode = check_choice("mode", mode, ("lines", "sphere"))
    rank, count, _ = ROOT_WEIGHT_SYSTEMS[system]
    if system == "D6":
        roots = root_system("D", 6, "lines", dtype=torch.float64).numpy()
        # signs of entries 1..4 free, entry 0 is + (one per ± pair), entry 5 makes them even
        bits = _bits(4)
        bits = np.concatenate(
            [np.zeros((16, 1), dtype=bits.dtype), bits, bits.sum(1, keepdims=True) % 2], axis=1
        )
        weights = (1.0 - 2.0 * bits) / math.sqrt(6.0)
    else:
        proj = _e8_positive() @ _e8_complement(rank)[1]  # the E8 roots in the complement
        norm2 = (proj * proj).sum(axis=1)
        roots = proj[np.abs(norm2 - 2.0) < 1e-9]
        weights = proj[np.abs(norm2 - (4.0 / 3.0 if system == "E6" else 1.5)) < 1e-9]
        # several roots project onto one weight line: keep the first of each (|cos| = 1)
        unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
        same = np.triu(np.abs(unit @ unit.T) > 1.0 - 1e-9, k=1)
        weights = weights[~same.any(axis=0)]
    rows = np.concatenate(
        [
            roots / np.linalg.norm(roots, axis=1, keepdims=True),
            weights / np.linalg.norm(weights, axis=1, keepdims=True),
        ]
    )
    if len(rows) != count:  # pragma: no cover - guards the construction
        raise RuntimeError(f"internal error: {len(rows)} lines for {system}, expected {count}")
    rows = _max_pair_first(rows)
    rows = rows if mode == "lines" else np.concatenate([rows, -rows])
    return _out(rows, dtype, device)


def _e8_complement(rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(con, basis)`` for ``E_7`` (``rank = 7``) or ``E_6`` (``6``) inside ``E_8``: the roots
    they must be orthogonal to (``rho = (1/2) 1``, and ``-(e_1 + e_2)`` for ``E_6``, an
    ``A_2``), and an orthonormal basis ``(8, rank)`` of the complement of their span."""
    from scipy.linalg import null_space

    con = np.array([np.full(8, 0.5)] + ([-np.eye(8)[0] - np.eye(8)[1]] if rank == 6 else []))
    return con, null_space(con)


def e8_roots(mode: str = "sphere", *, dtype=None, device=None) -> torch.Tensor:
    """The 240 roots of E8 (normalised), or with ``mode="lines"`` 120 of them, one per ± pair.

    The roots are ``±e_i ± e_j`` (112) and ``(±1/2)^8`` with an even number of minus signs
    (128). Sphere mode: largest inner product 1/2, the Levenshtein bound for 240 points in
    ``R^8`` (the kissing configuration; Levenshtein 1979, Odlyzko & Sloane 1979). Lines: 120
    lines with coherence 1/2, the Levenstein bound for (120, 8). The same as
    :func:`root_system` ``("E", 8, mode)``.
    """
    return root_system("E", 8, mode, dtype=dtype, device=device)


_VERIFY_FLOPS = 2e9


def known_optimal(
    num: int, dim: int, mode: str = "lines", *, dtype=None, device=None
) -> torch.Tensor | None:
    """A frame of ``num`` unit vectors in ``R^dim`` whose coherence equals the lower bound.

    The first provably optimal entry of :func:`grassmann.frame_candidates` (closed forms,
    root systems, ETFs, MUBs, ...). Returns ``None`` when no construction there is known to
    meet :func:`grassmann.bounds.lower_bound` for this size. A returned frame is provably optimal:
    its coherence (``mode="lines"``: ``max |cos|``, ``"sphere"``: signed max) equals the
    largest valid lower bound to ``1e-12``. The equality is checked here: the stated
    coherence of the construction against the bound always, and the coherence computed from
    the frame in float64 whenever that costs less than about ``2e9`` flops (larger
    orthonormal/orthoplex/simplex frames are exact by construction and covered by the tests).
    """
    from .catalog import frame_candidates
    from .coherence import coherence

    num = check_int("num", num, minimum=2)
    dim = check_int("dim", dim, minimum=1)
    mode = check_choice("mode", mode, ("lines", "sphere"))
    dtype = check_dtype("dtype", dtype)
    for cand in frame_candidates(num, dim, mode):
        if not cand.optimal:
            continue
        frame = cand.build()
        if float(num) * num * dim <= _VERIFY_FLOPS:
            mu = coherence(frame, mode=mode)
            if abs(mu - cand.bound) > 1e-12:  # pragma: no cover - guards the catalog
                continue
        return frame.to(dtype=dtype, device=device)
    return None
