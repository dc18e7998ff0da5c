r"""The catalog of frame constructions: for ``(N, d)``, every one that fits, best first.

:func:`frame_candidates` lists each construction whose own dimension is at most ``d`` and
which holds at least ``N`` vectors, with its coherence for exactly those ``N`` vectors *from
theory* (nothing is built), its family, reference, the lower bound of
:func:`grassmann.bounds.lower_bound` and whether it meets it (then it is provably optimal).
:meth:`Candidate.build` builds the frame: ``(N, d)`` unit rows, a subset of the construction
(its first ``N`` rows, ordered so that the coherence of every prefix is as low as the family's
structure allows) zero-padded to ``d`` (padding keeps every inner product).

Two generic steps add vectors for free:

* **standard basis**: a family of ``±1/sqrt(n)`` vectors in ``R^n`` has cross coherence
  ``1/sqrt(n)`` with the standard basis of ``R^d`` (``d >= n``), not above the family's own
  coherence, so the ``d`` basis vectors come first (as in :func:`grassmann.embedded_mubs`);
* **antipodes** (sphere mode): a lines frame of ``N'`` vectors and their negatives are ``2 N'``
  points whose largest signed inner product is the lines coherence.

For each family only the parameter with the lowest coherence for ``(N, d)`` is listed (ties:
the smallest own dimension). For ``mode="lines"`` and ``N <= d`` the list is just the
orthonormal frame. Listing takes tens of microseconds to a millisecond, whatever ``N``.

The families (see :doc:`/frames` for sizes and coherence): orthonormal, simplex, orthoplex,
polygon, icosahedron, root systems ``D_n, E_6, E_7, E_8, H_4`` (the 600-cell; and ``D_6, E_6,
E_7`` with a minuscule weight orbit), triangular-graph lines, Paley ETFs,
Steiner ETFs and their Naimark complements, packings of triples, the lines of affine planes,
Hadamard + identity, Kerdock MUBs (embedded and punctured), Gold, Kasami (small, large), dual
BCH (3 zeros), and DeVore's polynomial frames.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from . import constructions as _c
from ._finite_fields import prime_power
from ._validation import check_choice, check_dtype, check_int
from .bounds import lower_bound
from .designs import (
    affine_plane_frame,
    affine_plane_frame_size,
    devore_frame,
    hadamard,
    hadamard_order,
    steiner_etf,
    steiner_etf_size,
    triple_packing_frame,
    triple_packing_size,
)
from .mubs import embedded_mubs, mub_coherence, punctured_mub_coherence, punctured_mubs
from .sequences import TraceCode, _family_frame, _fill, trace_code

__all__ = ["Candidate", "frame_candidates"]

#: largest frame built through an ``N x N`` eigendecomposition (Paley ETFs, Naimark
#: complements): about 10 s on a laptop CPU at 2048
EIGH_LIMIT = 2048
#: largest Hadamard order built by Paley's constructions (``O(n^2)`` tables)
HADAMARD_LIMIT = 4096
#: the most points of a packing of triples in the catalog (``O(v^2)`` to build; beyond a few
#: thousand dimensions a frame at ``1/3`` is never the best one anyway)
TRIPLE_LIMIT = 4096

Maker = Callable[[int, int, torch.dtype, torch.device | str | None], torch.Tensor]


@dataclass(frozen=True)
class Candidate:
    """One construction for ``num`` vectors in ``R^dim``, described without building it.

    Attributes
    ----------
    name
        The construction with its parameters, e.g. ``"gold(m=9), punctured + basis"``.
    family
        The family key (one entry per family in :func:`frame_candidates`).
    reference
        Where the construction and its coherence come from.
    num, dim, mode
        The request.
    coherence
        The coherence of the ``num`` vectors :meth:`build` returns (``mode="lines"``: ``max
        |<w_i, w_j>|``, ``"sphere"``: ``max <w_i, w_j>``), from theory; the tests check it
        against the built frames to ``1e-12``.
    bound, bound_name
        The largest valid lower bound (:func:`grassmann.bounds.lower_bound`).
    own_dim
        The dimension the construction lives in (zero-padded to ``dim``).
    capacity
        The most vectors this construction puts in ``R^dim`` (``>= num``).
    cost
        The cost of :meth:`build`: ``"O(N d)"`` or an ``N' x N'`` eigendecomposition.
    """

    name: str
    family: str
    reference: str
    num: int
    dim: int
    mode: str
    coherence: float
    bound: float
    bound_name: str
    own_dim: int
    capacity: int
    cost: str
    _make: Maker = field(repr=False, compare=False)

    @property
    def optimal(self) -> bool:
        """Whether the coherence meets the lower bound (to ``1e-12``): provably optimal."""
        return abs(self.coherence - self.bound) <= 1e-12

    @property
    def ratio(self) -> float:
        """``coherence / bound`` (``1`` when both are 0, ``inf`` when only the bound is)."""
        if self.bound == 0.0:
            return 1.0 if self.coherence <= 0.0 else math.inf
        return self.coherence / self.bound

    def build(self, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """The frame: ``(num, dim)`` unit rows, float64 unless ``dtype`` says otherwise, built
        on ``device`` where the construction allows (the ``±1`` families build there)."""
        dtype = check_dtype("dtype", dtype)
        out = self._make(self.num, self.dim, dtype, device)
        return out.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class _Spec:
    family: str
    name: str
    reference: str
    own_dim: int
    capacity: int
    coherence: float
    make: Maker
    cost: str = "O(N d)"
    antipodal: bool = True  # may be doubled into a sphere code


# ---------------------------------------------------------------------------------------------
# builders


def _padded(frame_fn: Callable[..., torch.Tensor]) -> Maker:
    """A maker from ``frame_fn(num, dtype, device) -> (num, n)``, zero-padded to ``dim``."""

    def make(num, dim, dtype, device):
        rows = frame_fn(num, dtype, device)
        out = torch.zeros(num, dim, dtype=dtype, device=rows.device)
        out[:, : rows.shape[1]] = rows.to(dtype)
        return out

    return make


def _prefix(full: Callable[[], torch.Tensor], signed: bool = False) -> Maker:
    """A maker taking the first ``num`` rows of a small fixed frame whose rows all look alike,
    after putting a pair that attains its coherence first (so that every prefix of two or more
    rows attains it; :func:`grassmann.constructions._max_pair_first`)."""

    def frame_fn(num, dtype, device):
        rows = _c._max_pair_first(full().numpy(), signed=signed)
        return torch.as_tensor(rows[:num], dtype=dtype, device=device)

    return _padded(frame_fn)


def _with_basis(own: int, fill: Callable[[torch.Tensor], None]) -> Maker:
    """The standard basis of ``R^dim`` and then ``fill(view)`` writes the ``±1/sqrt(own)``
    family rows into the ``(num - dim, own)`` block."""

    def make(num, dim, dtype, device):
        out = torch.zeros(num, dim, dtype=dtype, device=device)
        k = min(num, dim)
        idx = torch.arange(k, device=out.device)
        out[idx, idx] = 1.0
        if num > dim:
            fill(out[dim:, :own])
        return out

    return make


def _trace_fill(code: TraceCode, extended: bool) -> Callable[[torch.Tensor], None]:
    return lambda view: _fill(code, view, extended)


def _copy_fill(frame_fn: Callable[[int, torch.dtype, object], torch.Tensor]):
    def fill(view):
        view.copy_(frame_fn(view.shape[0], view.dtype, view.device))

    return fill


def _antipodal(lines_make: Maker) -> Maker:
    """Sphere maker: ``v_1, -v_1, v_2, -v_2, ...`` from the lines rows ``v_i``."""

    def make(num, dim, dtype, device):
        half = lines_make(-(-num // 2), dim, dtype, device)
        out = torch.empty(num, dim, dtype=half.dtype, device=half.device)
        out[0::2] = half
        out[1::2] = -half[: num // 2]
        return out

    return make


# ---------------------------------------------------------------------------------------------
# cached tables of sizes


@lru_cache(maxsize=1)
def _paley_dims() -> tuple[int, ...]:
    """``d'`` with ``2 d' - 1`` a prime power ``= 1 (mod 4)`` and ``2 d' <= EIGH_LIMIT``."""
    return tuple(
        h for h in range(3, EIGH_LIMIT // 2 + 1) if (2 * h - 1) % 4 == 1 and prime_power(2 * h - 1)
    )


@lru_cache(maxsize=1)
def _hadamard_orders() -> tuple[int, ...]:
    return tuple(n for n in range(2, HADAMARD_LIMIT + 1) if hadamard_order(n))


@lru_cache(maxsize=1)
def _prime_powers() -> tuple[int, ...]:
    return tuple(q for q in range(2, 1 << 12) if prime_power(q))


@lru_cache(maxsize=8)
def _codes(family: str) -> tuple[TraceCode, ...]:
    """The codes of a sequence family for every allowed ``m <= 40``, by increasing ``m``."""
    out = []
    for m in range(3, 41):
        try:
            out.append(trace_code(family, m))
        except ValueError:
            continue
    return tuple(out)


def _largest_at_most(values: tuple[int, ...], limit: int) -> Iterator[int]:
    """``values`` (sorted) that are ``<= limit``, largest first."""
    for i in range(bisect.bisect_right(values, limit) - 1, -1, -1):
        yield values[i]


# ---------------------------------------------------------------------------------------------
# lines families


def _lines_closed(num: int, dim: int) -> Iterator[_Spec]:
    if dim == 1:
        yield _Spec(
            "trivial", "all equal (R^1)", "R^1 holds one line", 1, num, 1.0,
            _padded(lambda n, dt, dev: torch.ones(n, 1, dtype=dt, device=dev)), antipodal=False,
        )  # fmt: skip
    if num == dim + 1:
        yield _Spec(
            "simplex", f"simplex({dim})", "regular simplex; Welch bound (Welch 1974)", dim,
            dim + 1, 1.0 / dim, _padded(lambda n, dt, dev: _c.simplex(dim, dtype=dt)),
        )  # fmt: skip
    if dim >= 2:
        yield _Spec(
            "polygon", f"polygon({num}) in R^2", "equally spaced lines; planar bound", 2, num,
            math.cos(math.pi / num),
            _padded(lambda n, dt, dev: _c.polygon(n, "lines", dtype=dt)), antipodal=False,
        )  # fmt: skip
    for n in range(4, 9):
        own = min(n, 7)
        if own <= dim and n * (n - 1) // 2 >= num:
            yield _Spec(
                "triangular", f"triangular_lines({n})", "Lemmens & Seidel 1973", own,
                n * (n - 1) // 2, 1.0 / 3.0,
                _padded(lambda k, dt, dev, n=n: _c.triangular_lines(n, dtype=dt)[:k]),
            )  # fmt: skip
            break


def _roots(num: int, dim: int, mode: str) -> Iterator[_Spec]:
    per = 1 if mode == "lines" else 2
    ref = "Conway & Sloane, Sphere Packings, Lattices and Groups, Ch. 4"
    n = max(3, math.ceil((1 + math.sqrt(1 + 4 * num / per)) / 2))
    while n * (n - 1) * per < num:
        n += 1
    if n <= dim:
        yield _Spec(
            "roots_D", f"root_system(D{n})", ref, n, per * n * (n - 1), 0.5,
            _prefix(lambda n=n: _c.root_system("D", n, mode), signed=mode == "sphere"),
            antipodal=False,
        )  # fmt: skip
    for rank, count in ((6, 36), (7, 63), (8, 120)):
        if rank <= dim and per * count >= num:
            yield _Spec(
                f"roots_E{rank}", f"root_system(E{rank})", ref, rank, per * count, 0.5,
                _prefix(lambda r=rank: _c.root_system("E", r, mode), signed=mode == "sphere"),
                antipodal=False,
            )  # fmt: skip
    if dim >= 4 and per * 60 >= num:
        yield _Spec(
            "roots_H4", "six_hundred_cell", "Coxeter, Regular Polytopes, 1973, Sec. 8.7", 4,
            per * 60, math.cos(math.pi / 5),
            _prefix(lambda: _c.six_hundred_cell(mode), signed=mode == "sphere"), antipodal=False,
        )  # fmt: skip
    # with an orbit of minuscule weights: D6 (46 lines), E6 (63), E7 (91)
    for system, (rank, count, mu) in _c.ROOT_WEIGHT_SYSTEMS.items():
        if rank <= dim and per * count >= num:
            yield _Spec(
                f"root_weights_{system}", f"root_weight_lines({system!r})", ref + " and 8", rank,
                per * count, mu,
                _prefix(lambda s=system: _c.root_weight_lines(s, mode), signed=mode == "sphere"),
                antipodal=False,
            )  # fmt: skip


def _paley(num: int, dim: int) -> Iterator[_Spec]:
    for h in _largest_at_most(_paley_dims(), dim):
        if 2 * h < num:
            return
        yield _Spec(
            "paley", f"paley_etf({2 * h})", "Paley 1933; Strohmer & Heath 2003 (ETF)", h, 2 * h,
            1.0 / math.sqrt(2 * h - 1),
            _padded(lambda n, dt, dev, h=h: _c.paley_etf(2 * h, dtype=dt)[:n]),
            cost=f"O(N'^3), N' = {2 * h} (eigendecomposition)",
        )  # fmt: skip
        return


def _steiner(num: int, dim: int) -> Iterator[_Spec]:
    ref = "Fickus, Mixon & Tremain 2012, Linear Algebra Appl. 436 (Steiner ETFs)"
    # all pairs of v points (v a Hadamard order): (v^2, v(v-1)/2), mu = 1/(v-1)
    vmax = int((1 + math.isqrt(1 + 8 * dim)) // 2)
    for v in _largest_at_most(_hadamard_orders(), vmax):
        if v < 4 or v * (v - 1) // 2 > dim:
            continue
        if v * v >= num:
            yield _Spec(
                "steiner_pairs", f"steiner_etf({v}, 'pairs')", ref, v * (v - 1) // 2, v * v,
                1.0 / (v - 1),
                _padded(lambda n, dt, dev, v=v: steiner_etf(v, "pairs", n, dtype=dt, device=dev)),
            )  # fmt: skip
        break
    # lines of PG(k-1, 2): v = 2^k - 1 points
    best = None
    for k in range(3, 40):
        size = steiner_etf_size((1 << k) - 1, "triples")
        if size is None or size[1] > dim:
            break
        if size[0] >= num:
            best = (k, size)
    if best is not None:
        k, (n_, b, mu) = best
        v = (1 << k) - 1
        yield _Spec(
            "steiner_triples", f"steiner_etf({v}, 'triples')", ref, b, n_, mu,
            _padded(lambda n, dt, dev, v=v: steiner_etf(v, "triples", n, dtype=dt, device=dev)),
        )  # fmt: skip
    # Naimark complements (N, N - b), mu' = mu b / (N - b): ETFs again (Casazza et al. 2006)
    best_c = None
    for v, design, n_, b, mu in _steiner_complements():
        own = n_ - b
        if own <= dim and n_ >= num:
            mu_c = mu * b / own
            if best_c is None or mu_c < best_c[-1]:
                best_c = (v, design, n_, own, mu_c)
    if best_c is not None:
        v, design, n_, own, mu_c = best_c
        yield _Spec(
            "steiner_complement", f"naimark_complement(steiner_etf({v}, {design!r}))",
            ref + "; Casazza et al. 2006 (Naimark complements)", own, n_, mu_c,
            _padded(lambda n, dt, dev, v=v, design=design: _c.naimark_complement(
                steiner_etf(v, design)).to(dt)[:n]),
            cost=f"O(N'^3), N' = {n_} (eigendecomposition)",
        )  # fmt: skip


def _triples(num: int, dim: int) -> Iterator[_Spec]:
    """The packing of triples on all ``dim`` points, at most :data:`TRIPLE_LIMIT`
    (:func:`grassmann.designs.triple_packing_frame`: ``1/3`` on every number of points; all
    of them, so that a subset of it, as a start of the search, spans ``R^dim``). Building it
    costs ``O(v^2)`` for the packing (0.6 s and 213 MB at 4096 points)."""
    v = min(dim, TRIPLE_LIMIT)
    size = 4 * triple_packing_size(v) if v >= 3 else 0
    if size >= num:
        yield _Spec(
            "triple_packing", f"triple_packing_frame({v})",
            "packings of triples (Bose 1939, Skolem 1958; Lindner & Rodger 2008, Ch. 1) "
            "with the Steiner ETF construction (Fickus, Mixon & Tremain 2012)",
            v, size, 1.0 / 3.0,
            _padded(lambda n, dt, dev: triple_packing_frame(v, n, dtype=dt, device=dev)),
        )  # fmt: skip


def _affine(num: int, dim: int) -> Iterator[_Spec]:
    """The lines of the largest affine plane AG(2, q) with ``q^2 <= dim`` and ``q = 3 (mod 4)``
    (:func:`grassmann.designs.affine_plane_frame`: ``1/q``, smaller for larger ``q``, and the
    largest also holds the most vectors)."""
    for q in range(math.isqrt(dim), 2, -1):
        size = affine_plane_frame_size(q)
        if size is None:
            continue
        if size[0] >= num:
            yield _Spec(
                "affine_plane", f"affine_plane_frame({q})",
                "lines of AG(2, q) with the Steiner ETF construction (Fickus, Mixon & Tremain "
                "2012)", q * q, size[0], size[2],
                _padded(lambda n, dt, dev, q=q: affine_plane_frame(q, n, dtype=dt, device=dev)),
            )  # fmt: skip
        return


@lru_cache(maxsize=1)
def _steiner_complements() -> tuple[tuple[int, str, int, int, float], ...]:
    """``(v, design, N, b, mu)`` of the Steiner ETFs with ``N <= EIGH_LIMIT``."""
    out = []
    for design, vs in (("pairs", range(4, 46)), ("triples", [(1 << k) - 1 for k in range(3, 12)])):
        for v in vs:
            size = steiner_etf_size(v, design)
            if size is not None and size[0] <= EIGH_LIMIT:
                out.append((v, design, *size))
    return tuple(out)


def _best_punctured_kerdock(count: int, dim: int, signed: bool) -> tuple[int, float] | None:
    """``(n, mu)`` of the best punctured Kerdock set ``R^n``, ``n = 4^k - 1 <= dim``, for
    ``count`` of its vectors: lines after the standard basis (cross coherence ``1/sqrt(n)``),
    or alone as a spherical code (``signed``)."""
    best = None
    for m in range(4, 64, 2):
        n = (1 << m) - 1
        if n > dim:
            break
        if count > (n + 1) ** 2 // 2:
            continue
        if signed:
            mu = punctured_mub_coherence(count, n, signed=True)
        else:
            cross = 1.0 / math.sqrt(n)
            mu = cross if count == 1 else max(cross, punctured_mub_coherence(count, n))
        if best is None or mu < best[1]:
            best = (n, mu)
    return best


def _flat(num: int, dim: int) -> Iterator[_Spec]:
    """Families of ``±1/sqrt(n)`` vectors, after the standard basis of ``R^dim``."""
    extra = num - dim  # vectors beyond the standard basis (num > dim here)
    # Hadamard + identity: two unbiased bases
    for n in _largest_at_most(_hadamard_orders(), dim):
        if extra <= n:
            yield _Spec(
                "hadamard_identity", f"identity + hadamard({n})", "Sylvester 1867; Paley 1933",
                n, dim + n, 1.0 / math.sqrt(n),
                _with_basis(n, _copy_fill(lambda k, dt, dev, n=n: hadamard(
                    n, dtype=dt, device=dev)[:k] / math.sqrt(n))),
            )  # fmt: skip
        break
    # Kerdock MUBs of the largest R^(4^k) inside (grassmann.mubs)
    mu = mub_coherence(num, dim)
    if mu is not None:
        sub = 4 ** ((dim.bit_length() - 1) // 2)
        yield _Spec(
            "kerdock", f"embedded_mubs (Kerdock, R^{sub})",
            "Cameron & Seidel 1973; Calderbank, Cameron, Kantor & Seidel 1997", sub,
            dim + sub * sub // 2, mu, lambda n, d, dt, dev: embedded_mubs(n, d, dtype=dt,
                                                                         device=dev),
        )  # fmt: skip
    # punctured Kerdock: R^(4^k - 1)
    best = _best_punctured_kerdock(extra, dim, signed=False)
    if best is not None:
        n, mu_p = best
        yield _Spec(
            "kerdock_punctured", f"punctured_mubs({n}) + basis",
            "Kerdock 1972; MacWilliams & Sloane 1977, Ch. 15", n, dim + (n + 1) ** 2 // 2, mu_p,
            _with_basis(n, _copy_fill(lambda k, dt, dev, n=n: punctured_mubs(
                n, k, dtype=dt, device=dev))),
        )  # fmt: skip
    # binary sequence families
    for family, variants in (
        ("gold", (False, True)),
        ("kasami_small", (False,)),  # extended: unbiased bases, fewer than Kerdock's
        ("kasami_large", (False, True)),
        ("dual_bch", (False, True)),
    ):
        for extended in variants:
            best = None
            for code in _codes(family):
                if code.dim(extended) > dim:
                    break
                if extra > code.size or extra <= _prefix_family_size(code):
                    continue  # too small, or the first rows are a family listed on its own
                own = code.dim(extended)
                cross = 1.0 / math.sqrt(own)
                mu_t = cross if extra == 1 else max(cross, code.coherence(extra, extended))
                if best is None or mu_t < best[1]:
                    best = (code, mu_t)
            if best is not None:
                code, mu_t = best
                own = code.dim(extended)
                kind = "extended" if extended else "punctured"
                yield _Spec(
                    family + ("_extended" if extended else ""),
                    f"{family}(m={code.m}), {kind} + basis", code.reference, own,
                    dim + code.size, mu_t, _with_basis(own, _trace_fill(code, extended)),
                )  # fmt: skip


def _prefix_family_size(code: TraceCode) -> int:
    """Rows of ``code`` that are another family listed on its own (0 if none): the Gold
    family heads the dual BCH code, the small Kasami set the large one."""
    if code.family in ("dual_bch", "kasami_large"):
        return code.classes(len(code.components) - 1) << code.m
    return 0


def _devore(num: int, dim: int) -> Iterator[_Spec]:
    best = None
    for q in _largest_at_most(_prime_powers(), math.isqrt(dim)):
        r, cap = 1, q * q
        while cap < num and r < q - 1:
            r, cap = r + 1, cap * q
        if cap >= num and (best is None or r / q < best[1] / best[0]):
            best = (q, r, cap)
    if best is not None:
        q, r, cap = best
        yield _Spec(
            "devore", f"devore_frame(q={q}, degree={r})", "DeVore 2007, J. Complexity 23", q * q,
            cap, r / q,
            _padded(lambda n, dt, dev, q=q, r=r: devore_frame(q, r, n, dtype=dt, device=dev)),
        )  # fmt: skip


def _lines_specs(num: int, dim: int) -> list[_Spec]:
    if num <= dim:
        return [
            _Spec(
                "orthonormal",
                f"orthonormal({num}, {dim})",
                "standard basis",
                num,
                dim,
                0.0,
                lambda n, d, dt, dev: _c.orthonormal(n, d, dtype=dt, device=dev),
                antipodal=False,
            )
        ]
    specs = list(_lines_closed(num, dim))
    specs += _roots(num, dim, "lines")
    specs += _paley(num, dim)
    specs += _steiner(num, dim)
    specs += _triples(num, dim)
    specs += _affine(num, dim)
    specs += _flat(num, dim)
    specs += _devore(num, dim)
    return specs


# ---------------------------------------------------------------------------------------------
# sphere families


def _sphere_specs(num: int, dim: int) -> list[_Spec]:
    specs: list[_Spec] = []
    if num <= dim + 1:
        specs.append(
            _Spec(
                "simplex",
                f"simplex({num - 1})",
                "regular simplex; Rankin 1955",
                num - 1,
                num,
                -1.0 / (num - 1),
                _padded(lambda n, dt, dev: _c.simplex(n - 1, dtype=dt)),
            )
        )
    if 3 <= num <= 2 * dim:
        specs.append(
            _Spec(
                "orthoplex",
                f"orthoplex({num}, {dim})",
                "cross-polytope; Rankin 1955",
                -(-num // 2),
                2 * dim,
                0.0,
                lambda n, d, dt, dev: _c.orthoplex(n, d, dtype=dt, device=dev),
            )
        )
    if dim == 1 and num >= 3:
        specs.append(
            _Spec(
                "trivial",
                "all equal (R^1)",
                "S^0 has two points",
                1,
                num,
                1.0,
                _padded(lambda n, dt, dev: torch.ones(n, 1, dtype=dt, device=dev)),
            )
        )
    if dim >= 2:
        specs.append(
            _Spec(
                "polygon",
                f"polygon({num}) in R^2",
                "regular polygon; Levenshtein bound",
                2,
                num,
                math.cos(2 * math.pi / num),
                _padded(lambda n, dt, dev: _c.polygon(n, "sphere", dtype=dt)),
            )
        )
    if dim >= 3 and num <= 12:
        specs.append(
            _Spec(
                "icosahedron",
                "icosahedron",
                "Fejes Toth 1943 (Tammes problem, N = 12)",
                3,
                12,
                1.0 / math.sqrt(5.0),
                _prefix(_c.icosahedron, signed=True),
            )
        )
    specs += _roots(num, dim, "sphere")
    # punctured ±1 families as spherical codes: signed max (2^(m - r/2) - 1)/(2^m - 1)
    for family in ("gold", "kasami_small", "kasami_large", "dual_bch"):
        best = None
        for code in _codes(family):
            if code.dim(False) > dim:
                break
            if _prefix_family_size(code) < num <= code.size:
                mu = code.coherence(num, extended=False, signed=True)
                if best is None or mu < best[1]:
                    best = (code, mu)
        if best is not None:
            code, mu = best
            own = code.dim(False)
            specs.append(
                _Spec(
                    family + "_signed",
                    f"{family}(m={code.m}), punctured",
                    code.reference,
                    own,
                    code.size,
                    mu,
                    _padded(lambda n, dt, dev, code=code: _family_frame(code, n, False, dt, dev)),
                )
            )
    # the punctured Kerdock set: signed max (2^(m/2) - 1)/(2^m - 1) beyond one basis
    best_k = _best_punctured_kerdock(num, dim, signed=True)
    if best_k is not None:
        n, mu = best_k
        specs.append(
            _Spec(
                "kerdock_punctured_signed",
                f"punctured_mubs({n})",
                "Kerdock 1972; MacWilliams & Sloane 1977, Ch. 15",
                n,
                (n + 1) ** 2 // 2,
                mu,
                _padded(lambda k, dt, dev, n=n: punctured_mubs(n, k, dtype=dt, device=dev)),
            )
        )
    # antipodal doubling of the lines constructions
    half = -(-num // 2)
    if half >= 2:
        for s in _lines_specs(half, dim):
            if s.antipodal:
                specs.append(
                    _Spec(
                        "antipodal_" + s.family,
                        s.name + " with antipodes",
                        s.reference,
                        s.own_dim,
                        2 * s.capacity,
                        s.coherence,
                        _antipodal(s.make),
                        s.cost,
                    )
                )
    return specs


# ---------------------------------------------------------------------------------------------


def frame_candidates(num: int, dim: int, mode: str = "lines") -> list[Candidate]:
    """Every construction of ``num`` unit vectors in ``R^dim`` that the package knows, best
    first, each with its coherence from theory; nothing is built.

    Parameters
    ----------
    num, dim
        ``num >= 2`` vectors in ``R^dim``.
    mode
        ``"lines"`` (``max |<w_i, w_j>|``) or ``"sphere"`` (``max <w_i, w_j>``).

    Returns
    -------
    list of Candidate
        Sorted by coherence (ties: cheaper to build, smaller own dimension). One entry per
        family, with the family's best parameter for ``(num, dim)``. ``candidate.optimal``
        says whether it meets :func:`grassmann.bounds.lower_bound`; ``candidate.build()``
        returns the ``(num, dim)`` frame. A construction with more vectors, or in a smaller
        dimension, is listed with its subset and zero padding: these are also the structured
        starting points for an optimiser.

    Examples
    --------
    >>> import grassmann
    >>> best = grassmann.frame_candidates(262_143, 511)[0]
    >>> best.name, round(best.coherence, 4), round(best.ratio, 3)
    ('gold(m=9), punctured + basis', 0.0646, 1.033)
    """
    num = check_int("num", num, minimum=2)
    dim = check_int("dim", dim, minimum=1)
    mode = check_choice("mode", mode, ("lines", "sphere"))
    bound = lower_bound(num, dim, mode)
    specs = _lines_specs(num, dim) if mode == "lines" else _sphere_specs(num, dim)
    best: dict[str, _Spec] = {}
    for s in specs:
        kept = best.get(s.family)
        if kept is None or (s.coherence, s.own_dim) < (kept.coherence, kept.own_dim):
            best[s.family] = s
    ranked = sorted(
        best.values(),
        key=lambda s: (round(s.coherence, 12), s.cost != "O(N d)", s.own_dim, s.capacity),
    )
    return [
        Candidate(
            s.name,
            s.family,
            s.reference,
            num,
            dim,
            mode,
            s.coherence,
            bound.value,
            bound.name,
            s.own_dim,
            s.capacity,
            s.cost,
            s.make,
        )  # fmt: skip
        for s in ranked
    ]
