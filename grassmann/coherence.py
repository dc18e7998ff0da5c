"""Mutual coherence of unit vectors and of subspaces, tiled so that any size fits in memory.

The Gram matrix of ``N`` rows is never formed: only its upper triangle is computed, one
``chunk x chunk`` tile (block pair ``b >= a``) at a time into a preallocated buffer. Extra
memory is ``O(chunk^2 + N d)``; the per-tile maxima stay on the device of the input and are
read back once.

Precision. Rows are normalised in float64 whatever the input dtype. A float64 input is searched
in float64 directly. Any other input is searched in float32 (fast matrix products), and then
*verified*: every tile whose float32 maximum lies within twice the rounding-error bound
``(d + 2) u`` (``u`` the unit roundoff of the matmul precision in use: float32, TF32 or bfloat16)
of the float32 maximum is recomputed in float64. The tile holding the true maximum is always
among them, so the returned value equals the float64 computation on the input values upcast (up
to the last-bit differences between two float64 matrix products). For random frames only a
handful of tiles are recomputed; for frames whose pairs all sit at the maximum (equiangular
frames) every tile is, and the cost is that of a float32 plus a float64 pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._validation import check_choice, check_finite, check_int, check_tensor
from .bounds import lower_bound

__all__ = [
    "CoherenceReport",
    "SubspaceCoherence",
    "coherence",
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


def _blocks(n: int, c: int) -> list[tuple[int, int]]:
    return [(s, min(s + c, n)) for s in range(0, n, c)]


def _tiles(n: int, c: int, device: torch.device) -> list[tuple[int, int, int, int]]:
    """Upper-triangular tiles ``(a0, a1, b0, b1)``: the ``c x c`` block pairs ``b >= a``.

    (Row strips of 256 rows against wider column blocks, to reduce each tile while it is in
    cache, were measured 3-4x slower on a 2-core CPU: the thin products run far below the
    square-tile GEMM rate.)
    """
    r = c
    out = []
    for a0, a1 in _blocks(n, r):
        for b0 in range(a0, n, c):
            out.append((a0, a1, b0, min(b0 + c, n)))
    return out


def _tile_max(t: torch.Tensor, lines: bool) -> torch.Tensor:
    if lines:
        mn, mx = torch.aminmax(t)
        return torch.maximum(mx, -mn)
    return t.max()


def _search(rows: torch.Tensor, c: int, lines: bool):
    """Per-tile maxima over the upper-triangular block pairs (one device tensor)."""
    pairs = _tiles(rows.shape[0], c, rows.device)
    buf = torch.empty(c * c, dtype=rows.dtype, device=rows.device)
    fill = 0.0 if lines else -2.0
    maxima = []
    for a0, a1, b0, b1 in pairs:
        t = buf[: (a1 - a0) * (b1 - b0)].view(a1 - a0, b1 - b0)
        torch.mm(rows[a0:a1], rows[b0:b1].T, out=t)
        if a0 == b0:
            t.fill_diagonal_(fill)
        maxima.append(_tile_max(t, lines))
    return torch.stack(maxima), pairs


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
    mode = check_choice("mode", mode, _MODES)
    W, inv = _prepare(W)
    n, d = W.shape
    c = default_chunk_size(n, d, W.device) if chunk_size is None else chunk_size
    c = min(check_int("chunk_size", c, minimum=1), n)
    lines = mode == "lines"
    search_dtype = torch.float64 if W.dtype == torch.float64 else torch.float32
    rows = _normalised(W, inv, search_dtype, c)
    maxima, pairs = _search(rows, c, lines)
    if search_dtype == torch.float64:
        return float(maxima.max())
    # verification in float64 of every tile that may hold the maximum
    host = maxima.to("cpu", torch.float64).numpy()  # the one host sync of the search
    u = _unit_roundoff(search_dtype, W.device)
    margin = 2.0 * ((d + 2) * u * 1.01 + 1e-30)
    cand = np.nonzero(host >= host.max() - margin)[0]
    del rows
    rows64 = None
    if len(cand) > 0.25 * len(pairs):
        rows64 = _normalised(W, inv, torch.float64, c)
    buf = torch.empty(c * c, dtype=torch.float64, device=W.device)
    fill = 0.0 if lines else -2.0
    best = []
    for t_idx in cand:
        a0, a1, b0, b1 = pairs[t_idx]
        if rows64 is not None:
            A, B = rows64[a0:a1], rows64[b0:b1]
        else:
            A = W[a0:a1].to(torch.float64) * inv[a0:a1, None]
            B = W[b0:b1].to(torch.float64) * inv[b0:b1, None]
        t = buf[: (a1 - a0) * (b1 - b0)].view(a1 - a0, b1 - b0)
        torch.mm(A, B.T, out=t)
        if a0 == b0:
            t.fill_diagonal_(fill)
        best.append(_tile_max(t, lines))
    return float(torch.stack(best).max())


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

    for a0, a1, b0, b1 in _tiles(n, c, dev):
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
    blocks = _blocks(num, c)
    buf = torch.empty(c * k * c * k, dtype=torch.float64, device=X.device)
    fro_best, fro_arg, cos_best, cos_arg, offsets = [], [], [], [], []
    for ia, (a0, a1) in enumerate(blocks):
        for b0, b1 in blocks[ia:]:
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
