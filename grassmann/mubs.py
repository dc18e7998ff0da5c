"""Real mutually unbiased bases (MUBs) of ``R^{4^k}`` from a Kerdock set, and their embedding.

Two orthonormal bases of ``R^d`` are *unbiased* when every vector of one has ``|<u, v>| =
1/sqrt(d)`` with every vector of the other. ``R^d`` with ``d = 2^m``, ``m`` even, holds
``d/2 + 1`` mutually unbiased bases (Cameron and Seidel 1973), the most any real ``R^d`` can hold
(Delsarte, Goethals and Seidel 1975): ``d (d + 2) / 2`` lines with coherence ``1/sqrt(d)``. That
meets the Levenstein bound ``mu^2 >= (3N - d (d+2)) / ((d+2)(N-d))`` with equality, so the full
set is an optimal packing of lines.

Construction (as for the binary Kerdock code): the standard basis, and for each quadratic form
``Q_a`` of a Kerdock set the basis of the columns of ``D_a H / sqrt(d)``, where ``H[x, y] =
(-1)^{x . y}`` is the Sylvester Hadamard matrix on ``x, y in GF(2)^m`` and ``D_a =
diag((-1)^{Q_a(x)})``. The inner product of column ``y`` of basis ``a`` with column ``z`` of basis
``b`` is ``d^{-1} sum_x (-1)^{(Q_a + Q_b)(x) + x.(y + z)}``, a Walsh coefficient of the quadratic
form ``Q_a + Q_b``; it has modulus ``d^{-1/2}`` exactly when the alternating form of ``Q_a + Q_b``
is non-singular. A Kerdock set is ``2^{m-1}`` alternating ``m x m`` matrices over GF(2) whose
pairwise differences are non-singular. The one used here lives on ``V = GF(2^n) x GF(2)``,
``n = m - 1`` odd:

.. math::

    B_a((x, e), (y, f)) = Tr(a x y) + Tr(\\sqrt{a} x) Tr(\\sqrt{a} y)
        + e Tr(\\sqrt{a} y) + f Tr(\\sqrt{a} x),   a \\in GF(2^n).

``B_a`` is alternating: its diagonal is ``Tr(a x^2) + Tr(\\sqrt a x)^2 = 0``. The difference of
two is non-singular: write ``s = \\sqrt a``, ``r = \\sqrt b`` (``s != r``) and let ``(y, f)`` be in
the radical of ``B_a + B_b``. The pairing with ``(0, 1)`` gives ``Tr(s y) = Tr(r y) =: u``, and
then the pairing with every ``(x, 0)`` gives ``(s + r)^2 y = (u + f)(s + r)``. If ``u + f = 0``
then ``y = 0``, so ``u = 0`` and ``f = 0``; otherwise ``y = 1/(s + r)`` and ``Tr(s y) + Tr(r y) =
Tr(1) = 1`` (``n`` odd), contradicting ``Tr(s y) = Tr(r y)``. The tests check the non-singularity
numerically for every ``d <= 1024`` and the unbiasedness of the vectors directly.

:func:`embedded_mubs` puts ``N`` lines into any ``R^d``: the standard basis of ``R^d`` and then
MUB vectors of the largest ``R^{4^k} <= R^d``, coherence ``1/sqrt(4^k)``, for up to
``d + 4^k 4^k / 2`` lines. Far from the bound in general, but for ``N >> d`` it is often better
than what any optimiser reaches (e.g. 1000 lines in ``R^100``: ``1/8`` against the Welch bound
0.0949); :func:`ebv_gen.generate` compares it with its optimiser and keeps the better.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._finite_fields import gf2_field
from ._validation import check_dtype, check_int

__all__ = [
    "embedded_mubs",
    "mub_coherence",
    "mub_dimension",
    "punctured_mub_coherence",
    "punctured_mubs",
    "real_mubs",
]


def _largest_power_of_four(dim: int) -> int:
    """The largest ``4^k <= dim`` (``dim >= 1``)."""
    return 4 ** ((dim.bit_length() - 1) // 2)


def _capacity(dim: int) -> int:
    """Most lines :func:`embedded_mubs` puts in ``R^dim`` (``dim >= 4``): ``dim + 4^k 4^k / 2``."""
    sub = _largest_power_of_four(dim)
    return dim + sub * sub // 2


def _power_of_four(dim: int) -> bool:
    return dim >= 4 and dim & (dim - 1) == 0 and (dim.bit_length() - 1) % 2 == 0


def _kerdock_set(m: int, count: int | None = None) -> np.ndarray:
    """The first ``count`` (default all ``2^{m-1}``) alternating matrices ``B_a`` (see the module
    docstring) of the Kerdock set on ``GF(2)^m``, ``m`` even: ``(count, m, m)`` in {0, 1}.

    Coordinates: ``0 .. n-1`` are the polynomial-basis coefficients of ``x in GF(2^n)``, ``n`` is
    the ``GF(2)`` coordinate ``e``; ``a`` runs over the field elements ``0, 1, 2, ...`` as integers.
    """
    n = m - 1
    powers, trace, sqrt = gf2_field(n)
    q = 1 << n
    count = q if count is None else count
    a = np.arange(count)
    lin = trace[powers[a]]  # lin[a, k] = Tr(a x^k), k <= 2n - 2
    root = trace[powers[sqrt[a], :n]]  # root[a, i] = Tr(sqrt(a) x^i)
    i = np.arange(n)
    out = np.zeros((count, m, m), dtype=np.int64)
    out[:, :n, :n] = lin[:, i[:, None] + i[None, :]] ^ (root[:, :, None] & root[:, None, :])
    out[:, :n, n] = root
    out[:, n, :n] = root
    return out


def _hadamard(d: int) -> np.ndarray:
    """Sylvester Hadamard matrix ``H[x, y] = (-1)^{popcount(x & y)}`` (``d = 2^m``)."""
    h = np.ones((1, 1))
    while h.shape[0] < d:
        h = np.block([[h, h], [h, -h]])
    return h


def _bases(d: int, count: int) -> np.ndarray:
    """The first ``count`` MUBs of ``R^d`` (``d = 4^k``) as rows ``(count d, d)``, float64."""
    m = d.bit_length() - 1
    out = np.empty((count * d, d))
    out[:d] = np.eye(d)
    if count == 1:
        return out
    kerdock = _kerdock_set(m, count - 1)
    h = _hadamard(d) / math.sqrt(d)
    bits = (np.arange(d)[:, None] >> np.arange(m)) & 1  # (d, m): x in GF(2)^m
    for j, alt in enumerate(kerdock, start=1):
        # a quadratic form with alternating form ``alt``: Q(x) = sum_{i<j} alt_ij x_i x_j
        quad = np.einsum("xi,ij,xj->x", bits, np.triu(alt, 1), bits) % 2
        out[j * d : (j + 1) * d] = h * np.where(quad == 1, -1.0, 1.0)[None, :]
    return out


def _out(x: np.ndarray, dtype: torch.dtype | None, device) -> torch.Tensor:
    dtype = check_dtype("dtype", dtype)
    return torch.as_tensor(x, dtype=torch.float64).to(dtype=dtype, device=device)


def real_mubs(
    dim: int, bases: int | None = None, *, dtype: torch.dtype | None = None, device=None
) -> torch.Tensor:
    """``bases`` mutually unbiased orthonormal bases of ``R^dim``, ``dim = 4^k``, as unit rows.

    Parameters
    ----------
    dim
        ``4, 16, 64, 256, 1024, ...``.
    bases
        How many bases, ``1 <= bases <= dim/2 + 1`` (default: all ``dim/2 + 1``).

    Returns
    -------
    torch.Tensor
        ``(bases * dim, dim)``; rows ``j dim .. (j+1) dim - 1`` form basis ``j`` (basis 0 is the
        standard basis). ``|<u, v>| = 0`` within a basis and ``1/sqrt(dim)`` across bases, so
        the coherence is ``1/sqrt(dim)`` (for ``bases >= 2``). The full set, ``dim (dim + 2)/2``
        lines, meets the Levenstein bound (Cameron and Seidel 1973; Calderbank, Cameron, Kantor
        and Seidel 1997).

    Raises
    ------
    ValueError
        If ``dim`` is not a power of 4 (at least 4) or ``bases`` is out of range.
    """
    dim = check_int("dim", dim, minimum=4)
    if not _power_of_four(dim):
        raise ValueError(f"dim must be a power of 4 (4, 16, 64, 256, ...), got {dim}")
    most = dim // 2 + 1
    bases = most if bases is None else check_int("bases", bases, minimum=1, maximum=most)
    return _out(_bases(dim, bases), dtype, device)


def mub_dimension(num: int, dim: int) -> int | None:
    """``4^k``, the dimension of the MUBs that :func:`embedded_mubs` uses for ``num`` lines in
    ``R^dim``: the largest power of 4 with ``4^k <= dim``, provided ``dim < num <= dim +
    4^k 4^k / 2``; ``None`` otherwise (``num <= dim`` needs no MUBs, larger ``num`` do not fit,
    and ``dim < 4`` holds no unbiased bases)."""
    num = check_int("num", num, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    if dim < 4 or num <= dim:
        return None
    return _largest_power_of_four(dim) if num <= _capacity(dim) else None


def mub_coherence(num: int, dim: int) -> float | None:
    """Coherence of :func:`embedded_mubs` ``(num, dim)``: ``0`` for ``num <= dim``,
    ``1/sqrt(4^k)`` when the lines fit (see :func:`mub_dimension`), else ``None``."""
    num = check_int("num", num, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    if num <= dim:
        return 0.0
    sub = mub_dimension(num, dim)
    return None if sub is None else 1.0 / math.sqrt(sub)


def embedded_mubs(
    num: int, dim: int, *, dtype: torch.dtype | None = None, device=None
) -> torch.Tensor:
    """``num`` lines in ``R^dim`` from real MUBs: the standard basis of ``R^dim``, then vectors
    of further MUBs of ``R^{4^k}`` (the first ``4^k`` coordinates, ``4^k <= dim`` the largest
    power of 4).

    Parameters
    ----------
    num, dim
        ``num <= dim + 4^k 4^k / 2`` lines (the standard basis plus ``4^k / 2`` unbiased bases).

    Returns
    -------
    torch.Tensor
        ``(num, dim)`` unit rows, coherence :func:`mub_coherence` ``(num, dim)``: ``0`` for
        ``num <= dim``, else exactly ``1/sqrt(4^k)``. For ``dim = 4^k`` and ``dim (dim + 1)/2 <
        num <= dim (dim + 2)/2`` that is the orthoplex bound ``1/sqrt(dim)``: optimal.

    Raises
    ------
    ValueError
        If ``num`` exceeds that capacity (the message gives it).

    Examples
    --------
    >>> import grassmann
    >>> grassmann.coherence(grassmann.embedded_mubs(1000, 100))  # 1/8: 15 MUBs of R^64 + spares
    0.125
    """
    num = check_int("num", num, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    out = np.zeros((num, dim))
    if num <= dim:
        out[np.arange(num), np.arange(num)] = 1.0
        return _out(out, dtype, device)
    if dim < 4:
        raise ValueError(
            f"num={num} lines in R^{dim} need unbiased bases, which need dim >= 4; "
            f"with dim={dim} at most num={dim} (an orthonormal basis)"
        )
    sub = mub_dimension(num, dim)
    if sub is None:
        raise ValueError(
            f"num={num} lines do not fit in the real MUBs of R^{dim}: at most {_capacity(dim)} "
            f"(the standard basis plus 4^k/2 unbiased bases of the largest R^(4^k) inside)"
        )
    extra = num - dim  # vectors beyond the standard basis of R^dim
    count = 1 + -(-extra // sub)  # bases of R^sub, the standard one included
    out[np.arange(dim), np.arange(dim)] = 1.0
    out[dim:, :sub] = _bases(sub, count)[sub : sub + extra]
    return _out(out, dtype, device)


def _punctured_m(dim: int) -> int:
    """``m`` with ``dim = 2^m - 1``, ``m`` even ``>= 4``; ``ValueError`` otherwise."""
    dim = check_int("dim", dim, minimum=15)
    if not _power_of_four(dim + 1):
        raise ValueError(f"dim must be 4^k - 1 (15, 63, 255, 1023, ...), got {dim}")
    return (dim + 1).bit_length() - 1


def punctured_mub_coherence(num: int, dim: int, signed: bool = False) -> float:
    """Coherence of the first ``num`` rows of :func:`punctured_mubs` ``(dim)``, ``dim = 2^m -
    1``: ``1/dim`` for ``num <= dim + 1`` (one basis: a simplex), else ``(2^{m/2} + 1) / dim``.

    ``signed=True``: the largest signed inner product (spherical code), ``-1/dim`` and
    ``(2^{m/2} - 1) / dim``.
    """
    m = _punctured_m(dim)
    num = check_int("num", num, minimum=2, maximum=(dim + 1) ** 2 // 2)
    if num <= dim + 1:
        return -1.0 / dim if signed else 1.0 / dim
    return ((1 << (m // 2)) + (-1 if signed else 1)) / dim


def punctured_mubs(
    dim: int, num: int | None = None, *, dtype: torch.dtype | None = None, device=None
) -> torch.Tensor:
    """The ``(dim + 1)/2`` non-standard MUBs of ``R^{dim+1}`` (:func:`real_mubs`) punctured at
    the coordinate ``x = 0``: up to ``(dim + 1)^2 / 2`` lines in ``R^dim``, ``dim = 4^k - 1``.

    Every vector of those bases is ``±1/sqrt(dim + 1)`` with the entry ``+1`` at ``x = 0`` (the
    forms vanish at 0 and the Hadamard column 0 is all ones), so dropping it lowers every inner
    product by exactly ``1/(dim + 1)``: within a basis ``0 -> -1/(dim + 1)``, across bases
    ``±2^{-m/2} -> ±2^{-m/2} - 1/(dim + 1)``. Renormalised, the coherence is ``(2^{m/2} + 1) /
    (2^m - 1)``, the same as the small Kasami set (:func:`grassmann.sequences.kasami`) of the
    same length, with ``2^{m/2 - 1}`` times as many vectors: e.g. 524,288 lines in ``R^1023``
    at ``33/1023`` (the punctured Kerdock code; Kerdock 1972, MacWilliams & Sloane 1977,
    Ch. 15). The first ``dim + 1`` rows (one basis) are a regular simplex.

    Raises
    ------
    ValueError
        If ``dim`` is not ``4^k - 1`` (``k >= 2``) or ``num`` exceeds ``(dim + 1)^2 / 2``.
    """
    _punctured_m(dim)
    sub = dim + 1
    most = sub * sub // 2
    num = most if num is None else check_int("num", num, minimum=1, maximum=most)
    count = -(-num // sub)
    rows = _bases(sub, count + 1)[sub : sub + num, 1:]
    return _out(rows * math.sqrt(sub / dim), dtype, device)
