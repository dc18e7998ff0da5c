"""Mutual coherence of unit vectors and of subspaces, tiled so that any size fits in memory.

The Gram matrix of ``N`` rows is never formed: only its upper triangle is computed, one
``chunk x chunk`` tile (block pair ``b >= a``) at a time into a preallocated buffer. Extra
memory is ``O(chunk^2 + N d)``; the per-tile maxima stay on the device of the input and are
read back once.

Precision. A float64 input is normalised and searched in float64 directly. Any other input is
normalised and searched in float32 (fast matrix products), and then *verified*: every tile whose
float32 maximum lies within twice the rounding-error bound of the float32 maximum (``(d + 2) u``
for the products plus ``2 (d + 2) u`` for the float32 norms, ``u`` the unit roundoff of the
matmul precision in use: float32, TF32 or bfloat16) is revisited, and each of its pairs above
that threshold is computed again from the input in float64 as
``<w_i, w_j> / (||w_i|| ||w_j||)`` (the whole tile in float64 when a tile has more than 65,536
such pairs). The pair holding the true maximum is always among them, so the returned value is
the float64 computation on the input values upcast. For random frames a handful of pairs are
recomputed; for frames whose pairs all sit at the maximum (equiangular frames) every tile is,
and the cost is that of a float32 plus a float64 pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._validation import check_choice, check_finite, check_int, check_tensor
from .bounds import lower_bound
from .tiles import Tile, partition, upper_tiles

__all__ = [
    "CoherenceReport",
    "SubspaceCoherence",
    "coherence",
    "coherence_of_share",
    "coherence_report",
    "default_chunk_size",
    "subspace_coherence",
]

_MODES = ("lines", "sphere")


def default_chunk_size(num: int, dim: int, device: torch.device | str = "cpu") -> int:
    """Rows per block: tiles of about 16 MB (CPU) or 64 MB (CUDA) of float32, at most ``num``.

    Larger tiles make each matrix product more efficient (for small ``dim`` the products are
    bound by writing the tile) and cut the per-tile Python overhead; the cap keeps the tile in
    the last-level cache range on a CPU.
    """
    target = (64 if torch.device(device).type == "cuda" else 16) * 2**20
    c = int(math.isqrt(target // 4))
    if dim >= 1024:
        c = max(512, c // 2)
    return max(1, min(num, c))


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    if dtype == torch.float64:
        return 2.0**-53
    precision = torch.get_float32_matmul_precision()
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        precision = "high" if precision == "highest" else precision
    return {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}.get(precision, 2.0**-8)


def _prepare(W: Any, name: str = "W") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``W`` (N x d) and return (W, 1/||w_i|| in float64)."""
    check_tensor(name, W, ndim=2)
    n, d = W.shape
    if n < 2:
        raise ValueError(f"coherence needs at least 2 vectors, got {name} with {n} row(s)")
    if d < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(W.shape)}")
    check_finite(name, W)
    norms = torch.empty(n, dtype=torch.float64, device=W.device)
    step = max(1, 2**22 // d)  # float64 copies of at most 32 MB at a time
    for s in range(0, n, step):
        torch.linalg.vector_norm(W[s : s + step].to(torch.float64), dim=1, out=norms[s : s + step])
    if not bool((norms > 0).all()):
        bad = int(torch.nonzero(norms == 0)[0, 0])
        raise ValueError(f"{name} has a zero row (row {bad}): it has no direction to normalise")
    return W, 1.0 / norms


def _normalised(W: torch.Tensor, inv: torch.Tensor, dtype: torch.dtype, block: int) -> torch.Tensor:
    """Rows of ``W`` normalised in float64 and stored in ``dtype`` (built block by block)."""
    out = torch.empty(W.shape, dtype=dtype, device=W.device)
    for s in range(0, W.shape[0], block):
        out[s : s + block] = W[s : s + block].to(torch.float64) * inv[s : s + block, None]
    return out


def _tile_max(t: torch.Tensor, lines: bool) -> torch.Tensor:
    if lines:
        mn, mx = torch.aminmax(t)
        return torch.maximum(mx, -mn)
    return t.max()


def _search(rows: torch.Tensor, tiles: list[Tile], lines: bool) -> torch.Tensor:
    """Per-tile maxima of ``tiles`` (one device tensor; no host sync)."""
    area = max(t.area for t in tiles)
    buf = torch.empty(area, dtype=rows.dtype, device=rows.device)
    fill = 0.0 if lines else -2.0
    maxima = []
    for tl in tiles:
        t = buf[: tl.area].view(tl.i1 - tl.i0, tl.j1 - tl.j0)
        torch.mm(rows[tl.i0 : tl.i1], rows[tl.j0 : tl.j1].T, out=t)
        if tl.diagonal:
            t.fill_diagonal_(fill)
        maxima.append(_tile_max(t, lines))
    return torch.stack(maxima)


def coherence(W: torch.Tensor, mode: str = "lines", chunk_size: int | None = None) -> float:
    r"""Exact mutual coherence of the rows of ``W``.

    .. math::

        \mu(W) = \max_{i \ne j} |\langle \hat w_i, \hat w_j \rangle| \quad (\text{lines}),
        \qquad \max_{i \ne j} \langle \hat w_i, \hat w_j \rangle \quad (\text{sphere}),

    with ``w_hat_i = w_i / ||w_i||`` (normalised inside, in float64).

    Parameters
    ----------
    W
        ``(N, d)`` tensor, ``N >= 2``, any real floating dtype, on any device (the work runs
        there).
    mode
        ``"lines"`` (EBV coherence, absolute value) or ``"sphere"`` (spherical codes, signed).
    chunk_size
        Rows per block; tiles are ``chunk_size x chunk_size``. Default
        :func:`default_chunk_size`.

    Returns
    -------
    float
        Accurate to float64 rounding whatever the input precision (see the module notes on the
        float32 search with float64 verification).

    Raises
    ------
    ValueError
        ``N < 2``, non-finite entries, a zero row, an unknown ``mode`` or ``chunk_size < 1``.
    """
    return coherence_of_share(W, mode, chunk_size)


def coherence_of_share(
    W: torch.Tensor,
    mode: str = "lines",
    chunk_size: int | None = None,
    part: int = 0,
    parts: int = 1,
) -> float:
    """:func:`coherence` over the ``part``-th of ``parts`` shares of the tiles
    (:func:`grassmann.tiles.partition`), ``-inf`` for an empty share.

    The maximum of the shares' values is :func:`coherence` exactly (each pair's value is
    computed the same way whichever share holds it): the ranks of a process group each compute
    one share and all-reduce the maximum.
    """
    mode = check_choice("mode", mode, _MODES)
    lines = mode == "lines"
    if isinstance(W, torch.Tensor) and W.dtype == torch.float64:
        W, inv = _prepare(W)
        n, d = W.shape
        c = _chunk(n, d, W.device, chunk_size)
        tiles = partition(upper_tiles(n, c), parts)[part]
        if not tiles:
            return -math.inf
        rows = _normalised(W, inv, torch.float64, c)
        return float(_search(rows, tiles, lines).max())
    rows = _search_rows(W)
    n, d = W.shape
    c = _chunk(n, d, W.device, chunk_size)
    tiles = partition(upper_tiles(n, c), parts)[part]
    if not tiles:
        return -math.inf
    maxima = _search(rows, tiles, lines)
    host = maxima.to("cpu", torch.float64).numpy()  # the one host sync of the search
    # the float32 values are off by at most (d + 2) u (products) plus 2 (d + 2) u (the float32
    # norms): every tile within twice that of the maximum may hold the true maximum
    u = _unit_roundoff(torch.float32, W.device)
    margin = 2.0 * (3 * (d + 2) * u * 1.01 + 1e-30)
    cand = np.nonzero(host >= host.max() - margin)[0]
    threshold = float(host.max()) - margin
    best = [_verified_max(W, rows, tiles[i], threshold, lines) for i in cand]
    return float(max(best))


def _chunk(n: int, d: int, device: torch.device, chunk_size: int | None) -> int:
    c = default_chunk_size(n, d, device) if chunk_size is None else chunk_size
    return min(check_int("chunk_size", c, minimum=1), n)


def _search_rows(W: Any) -> torch.Tensor:
    """``W``'s rows normalised in float32 for the float32 search, validated (``N >= 2``,
    finite, no zero row). The norms are taken in float32 (their error is part of the search's
    margin; the verification recomputes every candidate in float64). Where float32 cannot
    tell (a sum of squares that overflows or underflows), :func:`_prepare` decides in float64."""
    check_tensor("W", W, ndim=2)
    n, d = W.shape
    if n < 2:
        raise ValueError(f"coherence needs at least 2 vectors, got W with {n} row(s)")
    if d < 1:
        raise ValueError(f"W must have at least one column, got shape {tuple(W.shape)}")
    W32 = W.to(torch.float32)
    norms = torch.linalg.vector_norm(W32, dim=1)
    tiny = torch.finfo(torch.float32).tiny
    if not bool(((norms > 1e3 * tiny) & (norms < 1e18)).all()):  # one host sync
        _, inv = _prepare(W)  # raises for non-finite entries and zero rows
        return _normalised(W, inv, torch.float32, max(1, 2**22 // d))
    return W32 / norms[:, None]


#: Most candidate pairs of one tile verified pair by pair; above, the tile is redone whole.
_PAIR_VERIFY = 1 << 16


def _verified_max(
    W: torch.Tensor, rows: torch.Tensor, tl: Tile, threshold: float, lines: bool
) -> torch.Tensor:
    """The float64 maximum of tile ``tl`` (``|cos|`` for lines): the float32 tile is recomputed,
    and every pair at or above ``threshold`` is computed again from ``W`` in float64,
    ``<w_i, w_j> / (||w_i|| ||w_j||)``; with more than :data:`_PAIR_VERIFY` such pairs the whole
    tile is computed in float64."""
    A, B = rows[tl.i0 : tl.i1], rows[tl.j0 : tl.j1]
    t = A @ B.T
    if lines:
        t.abs_()
    if tl.diagonal:
        r = torch.arange(t.shape[0], device=t.device)
        t.masked_fill_(r[:, None] >= r[None, :], -3.0)
    # rows first: nonzero over a whole tile costs more than its matrix product
    hot = torch.nonzero(t.amax(dim=1) >= threshold).flatten()
    ii, jj = torch.nonzero(t[hot] >= threshold, as_tuple=True)
    ii = hot[ii]
    if ii.numel() == 0:
        return torch.tensor(-2.0, dtype=torch.float64)
    if ii.numel() > _PAIR_VERIFY:
        A64 = W[tl.i0 : tl.i1].to(torch.float64)
        B64 = W[tl.j0 : tl.j1].to(torch.float64)
        A64 = A64 / torch.linalg.vector_norm(A64, dim=1, keepdim=True)
        B64 = B64 / torch.linalg.vector_norm(B64, dim=1, keepdim=True)
        t64 = A64 @ B64.T
        if tl.diagonal:
            t64.fill_diagonal_(0.0 if lines else -2.0)
        return _tile_max(t64, lines).cpu()
    a = W[tl.i0 + ii].to(torch.float64)
    b = W[tl.j0 + jj].to(torch.float64)
    cos = (a * b).sum(dim=1) / (
        torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    )
    return (cos.abs() if lines else cos).max().cpu()


@dataclass(frozen=True, eq=False)
class CoherenceReport:
    """Summary of the off-diagonal Gram entries of a frame (see :func:`coherence_report`).

    Attributes
    ----------
    coherence
        The maximum (``|cos|`` for lines, signed ``cos`` for sphere), float64-exact.
    mean
        Mean of the off-diagonal values over the ``N (N - 1) / 2`` pairs.
    quantiles
        ``{q: value}`` read from the histogram by linear interpolation within a bin: accurate
        to one bin width (``1 / bins`` for lines, ``2 / bins`` for sphere).
    pairs
        Up to ``max_pairs`` index pairs ``(i, j)``, ``i < j``, whose value is within ``1e-12``
        of the maximum; ``num_pairs`` counts all of them.
    bound, bound_name
        The largest valid lower bound (:func:`grassmann.bounds.lower_bound`) and its name.
    gap
        ``coherence - bound`` (``>= 0`` up to rounding).
    histogram
        ``(edges, counts)`` numpy arrays (``bins + 1`` edges over ``[0, 1]`` for lines or
        ``[-1, 1]`` for sphere), for plotting.
    """

    coherence: float
    mean: float
    quantiles: dict[float, float]
    pairs: list[tuple[int, int]]
    num_pairs: int
    bound: float
    bound_name: str
    gap: float
    histogram: tuple[np.ndarray, np.ndarray] = field(repr=False)
    num: int
    dim: int
    mode: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary (quantile keys as strings, arrays as lists)."""
        edges, counts = self.histogram
        return {
            "coherence": float(self.coherence),
            "mean": float(self.mean),
            "quantiles": {str(q): float(v) for q, v in self.quantiles.items()},
            "pairs": [[int(i), int(j)] for i, j in self.pairs],
            "num_pairs": int(self.num_pairs),
            "bound": float(self.bound),
            "bound_name": str(self.bound_name),
            "gap": float(self.gap),
            "histogram": {
                "edges": [float(e) for e in edges],
                "counts": [int(c) for c in counts],
            },
            "num": int(self.num),
            "dim": int(self.dim),
            "mode": str(self.mode),
        }


def coherence_report(
    W: torch.Tensor,
    mode: str = "lines",
    chunk_size: int | None = None,
    bins: int = 10_000,
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999),
    max_pairs: int = 100,
) -> CoherenceReport:
    """Coherence, mean, quantiles, attaining pairs and the gap to the lower bound of ``W``.

    One float64 pass over the upper-triangular tiles accumulates the sum, a ``bins``-bin
    histogram and the per-tile maxima (memory ``O(chunk^2 + N d + bins)``); the tiles that hold
    the maximum are then revisited to list the attaining pairs. Exact quantiles would need all
    ``N (N - 1) / 2`` values, so they are read from the histogram (error at most one bin).

    Parameters
    ----------
    W, mode, chunk_size
        As in :func:`coherence`.
    bins
        Histogram bins (resolution ``1/bins`` for lines, ``2/bins`` for sphere).
    quantiles
        Levels in ``[0, 1]`` to report.
    max_pairs
        Most attaining pairs listed (all are counted in ``num_pairs``).
    """
    mode = check_choice("mode", mode, _MODES)
    bins = check_int("bins", bins, minimum=1)
    max_pairs = check_int("max_pairs", max_pairs, minimum=0)
    for q in quantiles:
        if not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"quantiles must lie in [0, 1], got {q}")
    W, inv = _prepare(W)
    n, d = W.shape
    c = default_chunk_size(n, d, W.device) if chunk_size is None else chunk_size
    c = min(check_int("chunk_size", c, minimum=1), n)
    lines = mode == "lines"
    lo = 0.0 if lines else -1.0
    rows = _normalised(W, inv, torch.float64, c)
    dev = W.device
    buf = torch.empty(c * c, dtype=torch.float64, device=dev)
    hist = torch.zeros(bins, dtype=torch.float64, device=dev)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    maxima, tiles = [], []

    def tile(a0, a1, b0, b1):
        t = buf[: (a1 - a0) * (b1 - b0)].view(a1 - a0, b1 - b0)
        torch.mm(rows[a0:a1], rows[b0:b1].T, out=t)
        t.clamp_(-1.0, 1.0)
        if lines:
            t.abs_()
        if a0 == b0:
            iu = torch.triu_indices(a1 - a0, b1 - b0, offset=1, device=dev)
            return t, t[iu[0], iu[1]]
        return t, t.reshape(-1)

    for a0, a1, b0, b1 in upper_tiles(n, c):
        _, vals = tile(a0, a1, b0, b1)
        if vals.numel() == 0:
            continue
        total += vals.sum()
        hist += torch.histc(vals, bins=bins, min=lo, max=1.0)
        maxima.append(vals.max())
        tiles.append((a0, a1, b0, b1))
    host = torch.stack(maxima).cpu().numpy()
    mu = float(host.max())
    found: list[tuple[int, int]] = []
    count = 0
    for t_idx in np.nonzero(host >= mu - 1e-12)[0]:
        a0, a1, b0, b1 = tiles[t_idx]
        t, _ = tile(a0, a1, b0, b1)
        hit = t >= mu - 1e-12
        if a0 == b0:
            hit = torch.triu(hit, diagonal=1)
        idx = torch.nonzero(hit).cpu().numpy()
        count += len(idx)
        for i, j in idx[: max(0, max_pairs - len(found))]:
            found.append((int(i) + a0, int(j) + b0))
    counts = hist.cpu().numpy().astype(np.int64)
    edges = np.linspace(lo, 1.0, bins + 1)
    npairs = n * (n - 1) // 2
    cum = np.cumsum(counts)
    qs = {}
    for q in quantiles:
        target = float(q) * npairs
        k = int(np.searchsorted(cum, target, side="left"))
        k = min(k, bins - 1)
        before = cum[k - 1] if k > 0 else 0
        frac = 0.0 if counts[k] == 0 else (target - before) / counts[k]
        qs[float(q)] = float(min(edges[k] + frac * (edges[k + 1] - edges[k]), mu))
    bound = lower_bound(n, d, mode)
    return CoherenceReport(
        coherence=mu,
        mean=float(total) / npairs,
        quantiles=qs,
        pairs=found,
        num_pairs=count,
        bound=bound.value,
        bound_name=bound.name,
        gap=mu - bound.value,
        histogram=(edges, counts),
        num=n,
        dim=d,
        mode=mode,
    )


# ---------------------------------------------------------------------------------------------
# subspaces


@dataclass(frozen=True)
class SubspaceCoherence:
    """Packing quality of ``N`` subspaces (see :func:`subspace_coherence`).

    Attributes
    ----------
    min_angle
        Smallest principal angle over all pairs ``i != j`` (radians).
    min_chordal_distance
        ``min_{i != j} sqrt(k - ||X_i^T X_j||_F^2)``.
    pair_angle, pair_distance
        The pairs ``(i, j)``, ``i < j``, attaining them.
    num, n, k
        Sizes of the stack.
    """

    min_angle: float
    min_chordal_distance: float
    pair_angle: tuple[int, int]
    pair_distance: tuple[int, int]
    num: int
    n: int
    k: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        return {
            "min_angle": self.min_angle,
            "min_chordal_distance": self.min_chordal_distance,
            "pair_angle": list(self.pair_angle),
            "pair_distance": list(self.pair_distance),
            "num": self.num,
            "n": self.n,
            "k": self.k,
        }


def _pair_refined(X: torch.Tensor, i: int, j: int) -> tuple[float, float]:
    """(smallest principal angle, chordal distance) of X_i, X_j via sines (Knyazev & Argentati
    2002): the residual ``X_j - X_i X_i^T X_j`` has singular values ``sin theta``."""
    xi, xj = X[i], X[j]
    cross = xi.T @ xj
    resid = xj - xi @ cross
    sines = torch.linalg.svdvals(resid)
    cosines = torch.linalg.svdvals(cross)
    s_min = float(sines.min())
    if s_min * s_min < 0.5:
        angle = math.asin(min(s_min, 1.0))
    else:
        angle = math.acos(min(float(cosines.max()), 1.0))
    return angle, float(torch.linalg.matrix_norm(resid))


def subspace_coherence(X: torch.Tensor, chunk_size: int | None = None) -> SubspaceCoherence:
    r"""Smallest principal angle and smallest chordal distance of a stack of subspaces.

    For ``X`` of shape ``(N, n, k)`` with orthonormal columns (``X_i`` spans a point of
    ``Gr(n, k)``), with the chordal distance of Conway, Hardin & Sloane (1996)

    .. math:: d_c(X_i, X_j)^2 = k - \|X_i^T X_j\|_F^2 = \sum_l \sin^2\theta_l .

    The columns are stacked as rows ``Z`` (``N k x n``, float64) and ``Z Z^T`` is formed tile
    by tile (``chunk_size`` subspaces per block, upper-triangular block pairs only); each
    ``k x k`` block ``X_i^T X_j`` gives ``||.||_F^2`` and its largest singular value
    ``cos theta_min`` (batched ``eigvalsh`` of the block's Gram). The attaining pairs are then
    refined from the sines (``X_j - X_i X_i^T X_j``), which keeps small angles and distances
    accurate where ``arccos`` and ``k - ||.||_F^2`` would cancel. Exact ties between
    different pairs (within about ``1e-15``) may pick either pair.

    Raises
    ------
    ValueError
        If ``X`` is not ``(N, n, k)`` with ``N >= 2``, ``1 <= k <= n``, finite, with
        orthonormal columns (``max |X_i^T X_i - I| <= 1e-6`` for float64, ``1e-4`` otherwise).
    """
    check_tensor("X", X, ndim=3)
    num, n, k = X.shape
    if num < 2:
        raise ValueError(f"subspace_coherence needs at least 2 subspaces, got X with {num}")
    if not 1 <= k <= n:
        raise ValueError(f"X must have shape (N, n, k) with 1 <= k <= n, got {tuple(X.shape)}")
    check_finite("X", X)
    X64 = X.to(torch.float64)
    err = float(
        (X64.transpose(1, 2) @ X64 - torch.eye(k, dtype=X64.dtype, device=X.device)).abs().max()
    )
    tol = 1e-6 if X.dtype == torch.float64 else 1e-4
    if err > tol:
        raise ValueError(
            f"X must have orthonormal columns (X_i^T X_i = I), max deviation {err:.3g} > {tol:g}"
        )
    c = chunk_size
    if c is None:
        c = max(1, int(math.isqrt(16 * 2**20 // 8)) // k)
    c = min(check_int("chunk_size", c, minimum=1), num)
    Z = X64.transpose(1, 2).reshape(num * k, n)
    buf = torch.empty(c * k * c * k, dtype=torch.float64, device=X.device)
    fro_best, fro_arg, cos_best, cos_arg, offsets = [], [], [], [], []
    for a0, a1, b0, b1 in upper_tiles(num, c):
        ra, rb = a1 - a0, b1 - b0
        t = buf[: ra * k * rb * k].view(ra * k, rb * k)
        torch.mm(Z[a0 * k : a1 * k], Z[b0 * k : b1 * k].T, out=t)
        blk = t.view(ra, k, rb, k).permute(0, 2, 1, 3)  # (ra, rb, k, k): X_i^T X_j
        fro = blk.square().sum(dim=(-1, -2))
        if k == 1:
            cmax = blk.reshape(ra, rb).abs()
        else:
            gram = blk.transpose(-1, -2) @ blk
            cmax = torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()
        if a0 == b0:
            fro.fill_diagonal_(-1.0)
            cmax.fill_diagonal_(-1.0)
        fv, fi = fro.reshape(-1).max(dim=0)
        cv, ci = cmax.reshape(-1).max(dim=0)
        fro_best.append(fv)
        fro_arg.append(fi)
        cos_best.append(cv)
        cos_arg.append(ci)
        offsets.append((a0, b0, rb))

    def locate(vals, args):
        t_idx = int(torch.stack(vals).argmax())
        a0, b0, rb = offsets[t_idx]
        flat = int(args[t_idx])
        i, j = a0 + flat // rb, b0 + flat % rb
        return (min(i, j), max(i, j))

    pair_d = locate(fro_best, fro_arg)
    pair_a = locate(cos_best, cos_arg)
    angle, _ = _pair_refined(X64, *pair_a)
    _, dist = _pair_refined(X64, *pair_d)
    return SubspaceCoherence(angle, dist, pair_a, pair_d, num, n, k)
