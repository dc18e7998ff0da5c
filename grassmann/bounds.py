"""Lower bounds on the coherence of unit vectors and upper bounds on subspace packings.

Three families, one per packing problem:

* **Lines** (``mode="lines"``, the EBV coherence ``max_{i != j} |<w_i, w_j>|``):
  :func:`welch`, :func:`orthoplex`, :func:`levenstein`, with :func:`gerzon_limit`.
* **Sphere** (``mode="sphere"``, spherical codes, ``max_{i != j} <w_i, w_j>``):
  :func:`simplex_bound`, :func:`sphere_orthoplex`, :func:`sphere_levenstein`,
  :func:`fejes_toth`.
* **Subspaces** (``N`` points of ``Gr(n, k)``, chordal distance
  ``d_c^2 = k - ||X_i^T X_j||_F^2``): :func:`rankin_simplex`, :func:`rankin_orthoplex`.

:func:`lower_bound` and :func:`subspace_lower_bound` return the strongest valid bound for a size.
Every bound documents its validity range and raises ``ValueError`` outside it: a bound that does
not apply is never returned as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy.optimize import brentq
from scipy.special import binom, roots_jacobi

from ._validation import check_choice, check_int

__all__ = [
    "Bound",
    "fejes_toth",
    "gerzon_limit",
    "levenshtein_function",
    "levenstein",
    "lower_bound",
    "orthoplex",
    "planar",
    "rankin_orthoplex",
    "rankin_simplex",
    "simplex_bound",
    "sphere_levenstein",
    "sphere_orthoplex",
    "subspace_lower_bound",
    "welch",
]


@dataclass(frozen=True)
class Bound:
    """A bound on a packing quantity, with its name.

    Attributes
    ----------
    value
        For vectors (``mode="lines"``/``"sphere"``): a lower bound on the coherence. For
        subspaces: an upper bound on the minimum chordal distance ``d_c`` (not squared).
    name
        Which bound it is (``"welch"``, ``"orthoplex"``, ``"levenstein"``, ``"orthonormal"``,
        ``"simplex"``, ``"sphere_orthoplex"``, ``"sphere_levenstein"``, ``"fejes_toth"``,
        ``"rankin_simplex"``, ``"rankin_orthoplex"``, ...).
    attainable
        ``True`` when a configuration attaining the bound is known to exist for this size,
        ``False`` when the bound is known not to be attained, ``None`` when it is open or
        depends on the size in a way not tracked here.
    note
        A one-line remark (reference, condition for equality).
    """

    value: float
    name: str
    attainable: bool | None = None
    note: str = ""


def _sizes(num: int, dim: int, *, min_num: int = 2) -> tuple[int, int]:
    num = check_int("num", num, minimum=min_num)
    dim = check_int("dim", dim, minimum=1)
    return num, dim


def gerzon_limit(dim: int) -> int:
    """Gerzon's limit ``d (d + 1) / 2`` on the number of equiangular lines in ``R^d``.

    A real equiangular tight frame of ``N`` vectors in ``R^d`` needs ``N <= d (d + 1) / 2``
    (Lemmens & Seidel 1973, Theorem 3.5), so the Welch bound cannot be attained above it.
    """
    dim = check_int("dim", dim, minimum=1)
    return dim * (dim + 1) // 2


def welch(num: int, dim: int) -> Bound:
    r"""Welch bound on the coherence of ``num`` unit vectors in ``R^dim`` (lines).

    .. math:: \mu \ge \sqrt{\frac{N - d}{d (N - 1)}}

    Valid for ``num > dim``. Equality holds exactly for equiangular tight frames, which in the
    real case need ``N <= d (d + 1) / 2`` (Welch 1974; Strohmer & Heath 2003).

    Raises
    ------
    ValueError
        If ``num <= dim`` (there ``N`` orthonormal vectors have coherence 0).
    """
    num, dim = _sizes(num, dim)
    if num <= dim:
        raise ValueError(
            f"welch bound needs num > dim, got num={num}, dim={dim} "
            "(for num <= dim orthonormal vectors have coherence 0)"
        )
    value = math.sqrt((num - dim) / (dim * (num - 1)))
    attainable = False if num > gerzon_limit(dim) else None
    return Bound(value, "welch", attainable, "equality iff equiangular tight frame")


def orthoplex(num: int, dim: int) -> Bound:
    r"""Orthoplex (Rankin) bound on the coherence of ``num`` lines in ``R^dim``.

    .. math:: \mu \ge \frac{1}{\sqrt d} \qquad (N > d (d + 1) / 2)

    The lines' projections ``w w^T - I/d`` lie on a sphere in a space of dimension
    ``D = d (d + 1) / 2 - 1``; more than ``D + 1`` points on it include two at an angle of at
    most 90 degrees (Rankin 1955; Conway, Hardin & Sloane 1996). Valid for
    ``num > dim (dim + 1) / 2``.
    """
    num, dim = _sizes(num, dim)
    if num <= gerzon_limit(dim):
        raise ValueError(
            f"orthoplex bound needs num > dim (dim + 1) / 2 = {gerzon_limit(dim)}, "
            f"got num={num}, dim={dim}"
        )
    attainable = False if num > dim * (dim + 1) - 2 else None
    return Bound(1.0 / math.sqrt(dim), "orthoplex", attainable, "Conway-Hardin-Sloane 1996")


def levenstein(num: int, dim: int) -> Bound:
    r"""Levenstein bound on the coherence of ``num`` lines in ``R^dim``.

    .. math:: \mu^2 \ge \frac{3 N - d (d + 2)}{(d + 2) (N - d)}

    Valid for ``num > dim (dim + 1) / 2`` (Levenstein 1982; Haas, Hammen & Mixon 2017). At
    ``N = d (d + 1) / 2`` it equals the Welch bound, and it is the stronger of the two above.
    Attained for example by the 120 lines of the E8 root system in ``R^8`` (``mu = 1/2``).
    """
    num, dim = _sizes(num, dim)
    if num <= gerzon_limit(dim):
        raise ValueError(
            f"levenstein bound needs num > dim (dim + 1) / 2 = {gerzon_limit(dim)}, "
            f"got num={num}, dim={dim}"
        )
    sq = (3 * num - dim * (dim + 2)) / ((dim + 2) * (num - dim))
    return Bound(math.sqrt(max(sq, 0.0)), "levenstein", None, "Levenstein 1982")


def planar(num: int) -> Bound:
    r"""Exact coherence of ``num`` lines in the plane ``R^2``.

    .. math:: \mu \ge \cos(\pi / N)

    The lines' angles lie in ``[0, pi)``; sorted cyclically their ``N`` gaps sum to ``pi``, so
    one gap is at most ``pi / N``. Attained by equally spaced lines. Valid for ``num >= 2``
    (it equals the Welch bound for ``N = 3`` and the orthoplex bound for ``N = 4``).
    """
    num = check_int("num", num, minimum=2)
    return Bound(math.cos(math.pi / num), "planar", True, "pigeonhole on angles in [0, pi)")


# ---------------------------------------------------------------------------------------------
# sphere mode


def simplex_bound(num: int, dim: int) -> Bound:
    r"""Simplex (Rankin) bound on the largest inner product of ``num`` unit vectors.

    .. math:: \max_{i \ne j} \langle w_i, w_j \rangle \ge -\frac{1}{N - 1}

    Valid for every ``num >= 2`` (``sum_i w_i`` has non-negative squared norm); attained
    exactly by the regular simplex, which exists iff ``N <= d + 1`` (Rankin 1955).
    """
    num, dim = _sizes(num, dim)
    return Bound(-1.0 / (num - 1), "simplex", num <= dim + 1, "Rankin 1955")


def sphere_orthoplex(num: int, dim: int) -> Bound:
    r"""Cross-polytope bound: more than ``d + 1`` unit vectors in ``R^d`` have a pair with
    non-negative inner product (Rankin 1955).

    .. math:: \max_{i \ne j} \langle w_i, w_j \rangle \ge 0 \qquad (N \ge d + 2)

    Attained by ``N`` vertices of the cross-polytope ``{±e_i}`` iff ``N <= 2 d``.
    """
    num, dim = _sizes(num, dim)
    if num < dim + 2:
        raise ValueError(
            f"sphere_orthoplex bound needs num >= dim + 2 = {dim + 2}, got num={num}, dim={dim}"
        )
    return Bound(0.0, "sphere_orthoplex", num <= 2 * dim, "Rankin 1955")


def _gegenbauer(k: int, n: int, t: float) -> list[float]:
    """Gegenbauer polynomials of ``S^{n-1}`` normalised to 1 at 1: values of G_0..G_k at t."""
    vals = [1.0, t]
    for j in range(1, k):
        vals.append(((2 * j + n - 2) * t * vals[j] - j * vals[j - 1]) / (j + n - 2))
    return vals[: k + 1]


@lru_cache(maxsize=4096)
def _jacobi_top_root(k: int, a: float, b: float) -> float:
    if k == 0:
        return -1.0
    return float(roots_jacobi(k, a, b)[0].max())


def _lev_piece(m: int, n: int, s: float) -> float:
    """Levenshtein's L_m(n, s) (Levenshtein 1998, "Universal bounds for codes and designs")."""
    if m % 2 == 1:
        k = (m + 1) // 2
        g = _gegenbauer(k, n, s)
        return float(
            binom(k + n - 3, k - 1)
            * ((2 * k + n - 3) / (n - 1) - (g[k - 1] - g[k]) / ((1 - s) * g[k]))
        )
    k = m // 2
    g = _gegenbauer(k + 1, n, s)
    return float(
        binom(k + n - 2, k)
        * ((2 * k + n - 1) / (n - 1) - (1 + s) * (g[k] - g[k + 1]) / ((1 - s) * (g[k] + g[k + 1])))
    )


def _lev_interval(m: int, n: int) -> tuple[float, float]:
    """Interval of ``s`` on which L_m applies: I_{2k-1} = [t_{k-1}^{1,1}, t_k^{1,0}],
    I_{2k} = [t_k^{1,0}, t_k^{1,1}], t_k^{1,e} the largest zero of P_k^{(a+1, a+e)},
    a = (n - 3) / 2."""
    a = (n - 3) / 2
    if m % 2 == 1:
        k = (m + 1) // 2
        return _jacobi_top_root(k - 1, a + 1, a + 1), _jacobi_top_root(k, a + 1, a)
    k = m // 2
    return _jacobi_top_root(k, a + 1, a), _jacobi_top_root(k, a + 1, a + 1)


def levenshtein_function(dim: int, s: float) -> float:
    """Levenshtein's upper bound ``L(n, s)`` on the size of a spherical code in ``R^n``
    (``n = dim``) with all inner products ``<= s``, for ``-1 <= s < 1``.

    Continuous and increasing in ``s``; piecewise given by ``L_m`` on Levenshtein's intervals.
    """
    n = check_int("dim", dim, minimum=2)
    if not -1.0 <= s < 1.0:
        raise ValueError(f"s must lie in [-1, 1), got {s}")
    for m in range(1, 2000):
        lo, hi = _lev_interval(m, n)
        if lo <= s <= hi:
            return _lev_piece(m, n, s)
    raise ValueError(f"s={s} too close to 1 for the Levenshtein bound")  # pragma: no cover


def sphere_levenstein(num: int, dim: int) -> Bound:
    r"""Levenshtein bound on the largest inner product of a spherical code.

    Levenshtein (1979, 1998) proved ``|C| <= L(n, s)`` for every code ``C`` on ``S^{n-1}``
    with inner products ``<= s``, where ``L`` is continuous and increasing and equals, on
    Levenshtein's intervals ``I_m``,

    .. math::

        L_{2k-1}(n, s) = \binom{k+n-3}{k-1}\left[\frac{2k+n-3}{n-1}
            - \frac{G_{k-1}(s) - G_k(s)}{(1 - s) G_k(s)}\right], \quad
        L_{2k}(n, s) = \binom{k+n-2}{k}\left[\frac{2k+n-1}{n-1}
            - \frac{(1+s)(G_k(s) - G_{k+1}(s))}{(1-s)(G_k(s) + G_{k+1}(s))}\right]

    with ``G_k`` the Gegenbauer polynomials of ``S^{n-1}`` normalised by ``G_k(1) = 1``. The
    bound returned is ``s* = L^{-1}(N)``: every ``N`` unit vectors in ``R^n`` have a pair with
    inner product ``>= s*``. Valid for ``num >= 2`` and ``dim >= 2``; sharp configurations
    (regular polygons, the icosahedron, the E8 roots, the Leech lattice's minimal vectors ...)
    attain it; the 600-cell does not (0.80726 < (1 + sqrt 5) / 4)
    (Cohn & Kumar 2007).
    """
    num, dim = _sizes(num, dim)
    if dim < 2:
        raise ValueError(f"sphere_levenstein bound needs dim >= 2, got dim={dim}")
    if num == 2:
        return Bound(-1.0, "sphere_levenstein", True, "Levenshtein 1998")
    m = 1
    while True:
        lo, hi = _lev_interval(m, dim)
        if _lev_piece(m, dim, hi) >= num:
            break
        m += 1
    f = lambda s: _lev_piece(m, dim, s) - num  # noqa: E731
    if f(lo) >= 0:
        s = lo
    else:
        s = brentq(f, lo, hi, xtol=1e-17, rtol=8.9e-16, maxiter=200)
    return Bound(float(s), "sphere_levenstein", None, "Levenshtein 1998")


def fejes_toth(num: int, dim: int = 3) -> Bound:
    r"""Fejes Tóth's bound for ``num`` points on the sphere ``S^2`` (``dim = 3`` only).

    .. math::

        \max_{i \ne j} \langle w_i, w_j \rangle \ge \frac{\cot^2\omega - 1}{2},
        \qquad \omega = \frac{\pi N}{6 (N - 2)}

    Valid for ``num >= 3``; attained for ``N = 3, 4, 6, 12`` (triangle, tetrahedron,
    octahedron, icosahedron: ``1/sqrt 5`` for 12 points) (Fejes Tóth 1943).
    """
    num, dim = _sizes(num, dim, min_num=3)
    if dim != 3:
        raise ValueError(f"fejes_toth bound holds for dim=3 only, got dim={dim}")
    omega = math.pi * num / (6 * (num - 2))
    exact = {3: -0.5, 4: -1.0 / 3.0, 6: 0.0, 12: 1.0 / math.sqrt(5.0)}
    value = exact.get(num, (1.0 / math.tan(omega) ** 2 - 1.0) / 2.0)
    return Bound(value, "fejes_toth", num in (3, 4, 6, 12), "Fejes Toth 1943")


# ---------------------------------------------------------------------------------------------
# subspaces


def _subspace_sizes(num: int, n: int, k: int) -> tuple[int, int, int]:
    num = check_int("num", num, minimum=2)
    n = check_int("n", n, minimum=2)
    k = check_int("k", k, minimum=1, maximum=n - 1)
    return num, n, k


def rankin_simplex(num: int, n: int, k: int) -> Bound:
    r"""Rankin simplex bound for ``num`` ``k``-dimensional subspaces of ``R^n`` (chordal).

    .. math:: d_c^2 \le \frac{k (n - k)}{n} \frac{N}{N - 1}

    The returned ``value`` is the bound on ``d_c`` itself (the square root). Valid for every
    ``num >= 2``, ``1 <= k <= n - 1``; equality needs ``N <= D + 1`` with
    ``D = n (n + 1) / 2 - 1`` (Conway, Hardin & Sloane 1996, Corollary 5).
    """
    num, n, k = _subspace_sizes(num, n, k)
    value = math.sqrt(k * (n - k) / n * num / (num - 1))
    big_d = n * (n + 1) // 2 - 1
    return Bound(value, "rankin_simplex", False if num > big_d + 1 else None, "CHS 1996")


def rankin_orthoplex(num: int, n: int, k: int) -> Bound:
    r"""Rankin orthoplex bound for ``num`` ``k``-dimensional subspaces of ``R^n`` (chordal).

    .. math:: d_c^2 \le \frac{k (n - k)}{n} \qquad (N > D + 1 = n (n + 1) / 2)

    The returned ``value`` is the bound on ``d_c``. Valid for ``num > n (n + 1) / 2``;
    equality needs ``N <= 2 D = n (n + 1) - 2`` (Conway, Hardin & Sloane 1996, Corollary 5).
    """
    num, n, k = _subspace_sizes(num, n, k)
    big_d = n * (n + 1) // 2 - 1
    if num <= big_d + 1:
        raise ValueError(
            f"rankin_orthoplex bound needs num > n (n + 1) / 2 = {big_d + 1}, "
            f"got num={num}, n={n}, k={k}"
        )
    value = math.sqrt(k * (n - k) / n)
    return Bound(value, "rankin_orthoplex", False if num > 2 * big_d else None, "CHS 1996")


def subspace_lower_bound(num: int, n: int, k: int) -> Bound:
    r"""The strongest known upper bound on the minimum chordal distance of ``num`` points of
    ``Gr(n, k)``.

    Despite the name (it pairs with :func:`lower_bound`), ``value`` is an *upper* bound on the
    minimum chordal distance ``d_c`` of any packing. Candidates, smallest valid one wins:

    * ``"orthogonal"``: with ``m = min(k, n - k)`` every pair has ``d_c^2 <= m`` (at least
      ``2k - n`` principal angles vanish); when ``N m <= n`` mutually orthogonal subspaces (or
      subspaces with mutually orthogonal complements) attain it.
    * ``"lines:<name>"`` for ``k = 1`` or ``k = n - 1``: a line packing with coherence ``mu`` has
      ``d_c^2 = 1 - mu^2`` (and complements keep chordal distances), so the lines bound of
      :func:`lower_bound` gives ``d_c <= sqrt(1 - mu_bound^2)``; it is never weaker than Rankin's.
    * :func:`rankin_simplex` (all ``N``) and :func:`rankin_orthoplex` (``N > n (n + 1) / 2``)
      (Conway, Hardin & Sloane 1996).
    """
    num, n, k = _subspace_sizes(num, n, k)
    m = min(k, n - k)
    if num * m <= n:
        return Bound(math.sqrt(m), "orthogonal", True, "N min(k, n - k) <= n orthogonal subspaces")
    cands = [rankin_simplex(num, n, k)]
    if num > n * (n + 1) // 2:
        cands.append(rankin_orthoplex(num, n, k))
    if m == 1:
        lines = lower_bound(num, n, "lines")
        cands.append(
            Bound(
                math.sqrt(max(0.0, 1.0 - lines.value**2)),
                f"lines:{lines.name}",
                lines.attainable,
                f"d_c^2 = 1 - mu^2 with the {lines.name} bound on mu",
            )
        )
    best = min(cands, key=lambda b: b.value)
    if best.value > math.sqrt(m):
        return Bound(math.sqrt(m), "orthogonal", None, "d_c^2 <= min(k, n - k)")
    return best


# ---------------------------------------------------------------------------------------------


def lower_bound(num: int, dim: int, mode: str = "lines") -> Bound:
    """The largest valid lower bound on the coherence of ``num`` unit vectors in ``R^dim``.

    ``mode="lines"``: ``"orthonormal"`` (value 0, attained) for ``N <= d``; :func:`planar`
    (exact) for ``d = 2``; otherwise the largest of :func:`welch`, :func:`orthoplex` and
    :func:`levenstein` among those valid.

    ``mode="sphere"``: :func:`simplex_bound` (attained) for ``N <= d + 1``; otherwise the
    largest of :func:`sphere_orthoplex`, :func:`sphere_levenstein` and (``d = 3``)
    :func:`fejes_toth`. For ``d = 1`` and ``N >= 3`` two of the points coincide: value 1,
    name ``"pigeonhole"``.
    """
    mode = check_choice("mode", mode, ("lines", "sphere"))
    num, dim = _sizes(num, dim)
    if mode == "lines":
        if num <= dim:
            return Bound(0.0, "orthonormal", True, "N <= d orthonormal vectors")
        if dim == 2 and num >= 3:
            return planar(num)
        cands = [welch(num, dim)]
        if num > gerzon_limit(dim):
            cands += [orthoplex(num, dim), levenstein(num, dim)]
        return max(cands, key=lambda b: b.value)
    if num <= dim + 1:
        return simplex_bound(num, dim)
    if dim == 1:
        return Bound(1.0, "pigeonhole", True, "S^0 has two points")
    cands = [sphere_orthoplex(num, dim), sphere_levenstein(num, dim)]
    if dim == 3:
        cands.append(fejes_toth(num, dim))
    return max(cands, key=lambda b: b.value)  # first of equals: sphere_orthoplex on ties
