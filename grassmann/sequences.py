r"""±1 frames from binary sequence families: Gold, Kasami and dual-BCH codes.

Every family here is a binary code of functions on GF(2^m) (primitive element ``alpha``,
``n = 2^m - 1``)

.. math::

    f_{c, b}(x) = Q_c(x) + \mathrm{Tr}(b x), \qquad
    Q_c(x) = \sum_j \mathrm{Tr}_1^{k_j}(c_j x^{e_j}),

a linear space of quadratic forms ``Q_c`` (exponents ``e_j = 2^i + 1`` or ``2^{m/2} + 1``) plus
all linear functions. Its ``±1`` vectors ``(-1)^{f(x)} / sqrt(#x)`` are unit vectors

* *punctured* (``d = 2^m - 1``): ``x = alpha^t``, ``t = 0 .. n-1``. Then ``f_{c, b}(alpha^t)``
  is a binary sequence: ``Tr(b alpha^t)`` are the cyclic shifts of the m-sequence
  ``u(t) = Tr(alpha^t)``, ``Tr(a alpha^{e t})`` its decimations by ``e``, and the frame is the
  sequence family with all its cyclic shifts (and the all-ones sequence);
* *extended* (``d = 2^m``): ``x`` runs over all of GF(2^m); for each ``c`` the ``2^m`` vectors
  ``b -> f_{c, b}`` form an orthonormal (Hadamard) basis.

Coherence. The code is linear, so ``<v_{c,b}, v_{c',b'}>`` is the Walsh coefficient
``W_R(b + b') = sum_x (-1)^{R(x) + Tr((b + b') x)}`` of the form ``R = Q_c + Q_{c'}``, divided
by ``d`` (extended) or, minus the term ``x = 0``, ``(W - 1)/d`` (punctured). A quadratic form
of rank ``r`` (the rank of its alternating form) has ``W in {0, ±2^{m - r/2}}``, both signs
occurring (MacWilliams & Sloane, *The Theory of Error-Correcting Codes*, 1977, Ch. 15). So with
``r`` the least rank of a non-zero form in the span:

* extended: ``mu = 2^{-r/2}`` (``0`` within one class);
* punctured: ``mu = (2^{m - r/2} + 1) / (2^m - 1)`` (``1/n`` within one class: a simplex);
  signed, as a spherical code: ``max <v, w> = (2^{m - r/2} - 1) / (2^m - 1)``.

==================  =========  ================================  ========  ==========
family              m          quadratic part                    classes   least rank
==================  =========  ================================  ========  ==========
Gold                odd >= 3   Tr(a x^3)                         2^m       m - 1
Kasami, small set   even >= 4  Tr_1^{m/2}(c x^{2^{m/2}+1})       2^{m/2}   m (bent)
Kasami, large set   even >= 4  small + Tr(a x^{2^{m/2+1}+1})     2^{3m/2}  m - 2
dual BCH (3 zeros)  odd >= 5   Tr(a x^3 + c x^5)                 2^{2m}    m - 3
==================  =========  ================================  ========  ==========

(Gold 1967, 1968; Kasami 1966, 1969; Sarwate & Pursley 1980, "Crosscorrelation properties of
pseudorandom and related sequences", Proc. IEEE 68; Helleseth & Kumar 1998, "Sequences with low
correlation", Handbook of Coding Theory, Ch. 21.) Examples: Gold ``m = 9`` gives ``2^18 =
262,144`` lines in ``R^511`` at ``33/511 = 0.0646`` (extended: in ``R^512`` at ``1/16``), the
small Kasami set ``m = 10`` gives ``32,768`` lines in ``R^1023`` at ``33/1023 = 0.0323``.

Rows are ordered by class (``2^m`` consecutive rows per ``c``, ``b = 0, alpha^0, alpha^1,
...``), the classes so that every prefix is as good as the family allows: the classes of the
sub-family of the first ``j`` components (a subspace of forms, least rank ``r_j``) come before
the others, and the first class of each new component is one whose form attains ``r_j`` with
those before it, so the first ``N`` rows have exactly the coherence of the smallest level that
holds them (:meth:`TraceCode.coherence`). Built in ``O(N d)`` time and memory from tables of
size ``O(2^m d)``, on the requested device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch

from ._finite_fields import gf2_log_tables, subfield_trace
from ._validation import check_dtype, check_int

__all__ = ["TraceCode", "dual_bch", "gold", "kasami", "trace_code"]

_REFERENCES = {
    "gold": "Gold 1967/1968; Sarwate & Pursley 1980, Proc. IEEE 68",
    "kasami_small": "Kasami 1966/1969; Sarwate & Pursley 1980, Proc. IEEE 68",
    "kasami_large": "Kasami 1969; Helleseth & Kumar 1998, Handbook of Coding Theory, Ch. 21",
    "dual_bch": "Kasami 1969; MacWilliams & Sloane 1977, Ch. 15",
}


@dataclass(frozen=True)
class TraceCode:
    """A binary sequence family ``{Q_c + Tr(b x)}`` over GF(2^m) (see the module docstring).

    Attributes
    ----------
    family
        ``"gold"``, ``"kasami_small"``, ``"kasami_large"`` or ``"dual_bch"``.
    m
        Degree of the field GF(2^m).
    components
        ``(e_j, k_j)``: the quadratic part is ``sum_j Tr_1^{k_j}(c_j x^{e_j})``,
        ``c_j in GF(2^{k_j})``.
    ranks
        ``r_j``: the least rank of a non-zero form spanned by the first ``j`` components (from
        the theory of the family; the tests check it by exhaustive Walsh spectra).
    reference
        Where the family and its correlation values come from.
    """

    family: str
    m: int
    components: tuple[tuple[int, int], ...]
    ranks: tuple[int, ...]
    reference: str

    def classes(self, level: int | None = None) -> int:
        """Number of quadratic forms (classes of ``2^m`` rows) spanned by the first ``level``
        components (default all)."""
        comps = self.components if level is None else self.components[:level]
        return 1 << sum(k for _, k in comps)

    @cached_property
    def size(self) -> int:
        """Number of vectors: ``2^m`` per class."""
        return self.classes() << self.m

    def dim(self, extended: bool) -> int:
        """``2^m`` (extended) or ``2^m - 1`` (punctured)."""
        return (1 << self.m) - (0 if extended else 1)

    def coherence(self, num: int, extended: bool = False, signed: bool = False) -> float:
        """Coherence of the first ``num`` rows (``2 <= num <= size``) from theory.

        ``signed=False``: ``max |<v, w>|`` (lines); ``signed=True``: ``max <v, w>`` (spherical
        code). Values as in the module docstring, with ``r`` the least rank of the smallest
        level that holds the ``ceil(num / 2^m)`` classes.
        """
        num = check_int("num", num, minimum=2, maximum=self.size)
        n = (1 << self.m) - 1
        classes = -(-num >> self.m)  # ceil(num / 2^m)
        if classes == 1:
            if extended:
                return 0.0
            return -1.0 / n if signed else 1.0 / n
        level = next(j for j in range(1, len(self.ranks) + 1) if self.classes(j) >= classes)
        peak = 1 << (self.m - self.ranks[level - 1] // 2)  # 2^(m - r/2)
        if extended:
            return peak / (1 << self.m)
        return (peak - 1) / n if signed else (peak + 1) / n


def trace_code(family: str, m: int) -> TraceCode:
    """The :class:`TraceCode` of a family for GF(2^m).

    Raises
    ------
    ValueError
        If ``family`` is unknown or ``m`` is not allowed for it (the message says which are).
    """
    m = check_int("m", m, minimum=2)
    half = m // 2
    if family == "gold":
        if m % 2 == 0 or m < 3:
            raise ValueError(f"the Gold family needs an odd m >= 3, got m={m}")
        return TraceCode(family, m, ((3, m),), (m - 1,), _REFERENCES[family])
    if family in ("kasami_small", "kasami_large"):
        if m % 2 or m < 4:
            raise ValueError(f"Kasami sets need an even m >= 4, got m={m}")
        small = ((1 << half) + 1, half)
        if family == "kasami_small":
            return TraceCode(family, m, (small,), (m,), _REFERENCES[family])
        large = (small, ((1 << (half + 1)) + 1, m))
        return TraceCode(family, m, large, (m, m - 2), _REFERENCES[family])
    if family == "dual_bch":
        if m % 2 == 0 or m < 5:
            raise ValueError(
                f"the dual BCH family (3 zeros) needs an odd m >= 5, got m={m} "
                "(for m = 3 the exponents 3 and 5 are conjugate)"
            )
        return TraceCode(family, m, ((3, m), (5, m)), (m - 1, m - 3), _REFERENCES[family])
    raise ValueError(
        f"family must be one of 'gold', 'kasami_small', 'kasami_large', 'dual_bch', got {family!r}"
    )


# ---------------------------------------------------------------------------------------------
# tables


def _component_table(m: int, exponent: int, k: int) -> np.ndarray:
    """``T[i, t] = Tr_1^k(c_i alpha^{e t})`` (``(2^k, 2^m - 1)`` bits): ``c_0 = 0`` and
    ``c_{i+1} = beta^i``, ``beta`` the primitive element of GF(2^k)."""
    n = (1 << m) - 1
    sub = (1 << k) - 1
    step = n // sub  # beta = alpha^step; x^e lies in GF(2^k) since step | e
    if exponent % step:  # pragma: no cover - guarded by trace_code
        raise RuntimeError("internal error: x^e is not in the subfield")
    seq = gf2_log_tables(m)[1] if k == m else subfield_trace(m, k)
    i = np.arange(sub, dtype=np.int64)[:, None]
    t = np.arange(n, dtype=np.int64)[None, :]
    out = np.zeros((sub + 1, n), dtype=np.uint8)
    out[1:] = seq[(i + (exponent // step) * t) % sub]
    return out


def _max_walsh(bits: np.ndarray, m: int) -> np.ndarray:
    """``max_b |sum_x (-1)^{f(x) + Tr(b x)}|`` for each row ``f`` of ``bits`` (punctured order,
    ``f(0) = 0``): a fast Walsh-Hadamard transform over the polynomial-basis order of x."""
    antilog = gf2_log_tables(m)[0]
    a = np.ones((len(bits), 1 << m), dtype=np.int64)
    a[:, antilog] = 1 - 2 * bits.astype(np.int64)
    h, size = 1, 1 << m
    while h < size:
        a = a.reshape(len(bits), size // (2 * h), 2, h)
        a = np.concatenate([a[:, :, :1] + a[:, :, 1:], a[:, :, :1] - a[:, :, 1:]], axis=2)
        a = a.reshape(len(bits), size)
        h *= 2
    return np.abs(a).max(axis=1)


@lru_cache(maxsize=16)
def _tables(code: TraceCode) -> tuple[np.ndarray, ...]:
    """The component tables (punctured columns), each rotated so that its first non-zero
    coefficient attains the level's least rank together with the forms before it."""
    m = code.m
    tables: list[np.ndarray] = []
    prev = np.zeros((1, (1 << m) - 1), dtype=np.uint8)  # forms spanned so far
    last = len(code.components) - 1
    for j, ((exponent, k), rank) in enumerate(zip(code.components, code.ranks, strict=True)):
        peak = 1 << (m - rank // 2)
        base = _component_table(m, exponent, k)
        offset = next(
            (
                o
                for o in range((1 << k) - 1)
                if any(
                    _max_walsh(prev[s : s + 256] ^ base[1 + o], m).max() == peak
                    for s in range(0, len(prev), 256)
                )
            ),
            None,
        )
        if offset is None:  # pragma: no cover - would contradict the theory of the family
            raise RuntimeError(f"internal error: no form of rank {rank} in {code.family}")
        table = np.roll(base[1:], -offset, axis=0)
        table = np.concatenate([base[:1], table])
        tables.append(table)
        if j < last:
            prev = (prev[None, :, :] ^ table[:, None, :]).reshape(-1, prev.shape[1])
    return tuple(tables)


def _fill(code: TraceCode, out: torch.Tensor, extended: bool) -> None:
    """Write the first ``len(out)`` rows of the family into ``out`` (``(N, code.dim(ext))``)."""
    m, num = code.m, out.shape[0]
    width = code.dim(extended)
    dev = out.device
    lin = _component_table(m, 1, m)  # Tr(b x): b = 0, alpha^0, alpha^1, ...
    tables = _tables(code)
    if extended:  # x = 0 first: every form vanishes there
        lin = np.concatenate([np.zeros((len(lin), 1), np.uint8), lin], axis=1)
        tables = tuple(np.concatenate([np.zeros((len(t), 1), np.uint8), t], 1) for t in tables)
    classes = -(-num >> m)
    idx = np.arange(classes)
    quad = np.zeros((classes, width), dtype=np.uint8)
    for table in tables:
        quad ^= table[idx % len(table)]
        idx //= len(table)
    # (-1)^(q + l) = (-1)^q (-1)^l: each row is a product of a class row and a linear row
    signs = torch.tensor([1.0, -1.0], dtype=out.dtype, device=dev)
    quad_s = signs[torch.as_tensor(quad, dtype=torch.long, device=dev)]
    lin_s = signs[torch.as_tensor(lin, dtype=torch.long, device=dev)] / math.sqrt(width)
    per = 1 << m
    full = num >> m
    step = max(1, (1 << 22) // (per * width))  # classes per product: ~4M entries
    for c0 in range(0, full, step):
        c1 = min(full, c0 + step)
        target = out[c0 * per : c1 * per].view(c1 - c0, per, width)
        torch.mul(quad_s[c0:c1, None, :], lin_s[None, :, :], out=target)
    if num > full * per:  # a partial last class
        torch.mul(quad_s[full, None, :], lin_s[: num - full * per], out=out[full * per :])


def _family_frame(code: TraceCode, num, extended: bool, dtype, device) -> torch.Tensor:
    if num is None:
        num = code.size
    num = check_int("num", num, minimum=1)
    if num > code.size:
        raise ValueError(
            f"num={num} exceeds the {code.family} family of m={code.m}: at most {code.size} "
            f"vectors ({code.classes()} classes of 2^m = {1 << code.m})"
        )
    dtype = check_dtype("dtype", dtype)
    out = torch.empty(num, code.dim(extended), dtype=dtype, device=device)
    _fill(code, out, extended)
    return out


def gold(
    m: int, num: int | None = None, *, extended: bool = False, dtype=None, device=None
) -> torch.Tensor:
    """The Gold family as ``num`` (default all ``2^{2m}``) unit vectors, ``m`` odd.

    Punctured (``d = 2^m - 1``): the ``±1`` sequences ``Tr(a alpha^{3t} + b alpha^t)``, i.e.
    the preferred pair ``u`` (an m-sequence) and ``v = u`` decimated by 3, the ``2^m + 1``
    sequences ``u, v, u + T^tau v`` with all their cyclic shifts, and the all-ones sequence.
    Coherence ``(2^{(m+1)/2} + 1) / (2^m - 1)`` (Gold 1968; Sarwate & Pursley 1980), e.g.
    ``33/511`` for 262,144 lines in ``R^511``, against the Levenstein bound ``0.0625``.
    Extended (``d = 2^m``): ``2^m`` orthonormal bases with coherence ``2^{-(m-1)/2} =
    sqrt(2/d)`` (the extended dual of the double-error-correcting BCH code; MacWilliams &
    Sloane 1977, Ch. 15), e.g. ``1/16`` in ``R^512``.

    The first ``num`` rows: one class (``2^m`` rows) is a simplex (punctured, ``1/n``) or an
    orthonormal basis (extended, ``0``); two or more have the full coherence. Output
    ``(num, d)``, float64 unless ``dtype`` says otherwise, on ``device``.

    Raises
    ------
    ValueError
        If ``m`` is even or below 3, or ``num > 2^{2m}``.
    """
    return _family_frame(trace_code("gold", m), num, extended, dtype, device)


def kasami(
    m: int,
    num: int | None = None,
    *,
    large: bool = False,
    extended: bool = False,
    dtype=None,
    device=None,
) -> torch.Tensor:
    """The small (default) or large Kasami set as ``num`` unit vectors, ``m`` even.

    Small set (``2^{3m/2}`` vectors): the m-sequence ``u`` plus the shifts of ``w = u``
    decimated by ``2^{m/2} + 1`` (period ``2^{m/2} - 1``), with all cyclic shifts; coherence
    ``(2^{m/2} + 1) / (2^m - 1)``, e.g. ``33/1023`` for 32,768 lines in ``R^1023`` (Kasami
    1966; Sarwate & Pursley 1980). Extended, the classes are ``2^{m/2}`` mutually unbiased
    bases of ``R^{2^m}`` (the quadratic forms are bent).

    Large set (``2^{5m/2}`` vectors): the small set plus the decimation by ``2^{m/2+1} + 1``;
    the first ``2^{3m/2}`` rows are the small set, beyond that the coherence is
    ``(2^{m/2+1} + 1) / (2^m - 1)`` (punctured) or ``2^{-(m-2)/2}`` (extended) (Kasami 1969;
    Helleseth & Kumar 1998). The least rank ``m - 2`` holds for every even ``m = 2k``, ``0`` and
    ``2 (mod 4)`` alike: the form ``Tr(a x^{2^{k+1}+1}) + Tr_1^k(c x^{2^k+1})`` has alternating
    form ``Tr(y L(x))`` with ``L(x)^{2^{k+1}} = a^{2^{k+1}} x^4 + c^2 x^2 + a x``, a linearised
    polynomial of degree 4 (kernel of dimension ``<= 2``), and ``a = 1, c = 0`` attains it
    (kernel ``GF(4)``). The tests check the ranks exhaustively for ``m = 4, 6, 8, 10``.

    Raises
    ------
    ValueError
        If ``m`` is odd or below 4, or ``num`` exceeds the family.
    """
    family = "kasami_large" if large else "kasami_small"
    return _family_frame(trace_code(family, m), num, extended, dtype, device)


def dual_bch(
    m: int, num: int | None = None, *, extended: bool = False, dtype=None, device=None
) -> torch.Tensor:
    """The dual of the triple-error-correcting BCH code, ``Tr(a x^5 + c x^3 + b x)``, as
    ``num`` (default all ``2^{3m}``) unit vectors, ``m`` odd ``>= 5``.

    The forms have rank ``m - 1`` or ``m - 3`` (weights ``2^{m-1}``, ``2^{m-1} ±
    2^{(m-1)/2}``, ``2^{m-1} ± 2^{(m+1)/2}``; Kasami 1969, MacWilliams & Sloane 1977, Ch. 15):
    coherence ``(2^{(m+3)/2} + 1) / (2^m - 1)`` punctured, ``2^{-(m-3)/2}`` extended. The first
    ``2^{2m}`` rows are the Gold family (:func:`gold`).

    Raises
    ------
    ValueError
        If ``m`` is even or below 5, or ``num > 2^{3m}``.
    """
    return _family_frame(trace_code("dual_bch", m), num, extended, dtype, device)
