"""Coherence minimisation on a product of spheres (or Grassmannians), streamed in tiles.

The engine optimises ``R`` independent packings at once (restarts, batched on the leading
dimension). A packing is ``N`` points, each a block of ``k`` orthonormal rows in ``R^d``, stored
flat as ``Z`` of shape ``(R, N * k, d)``; ``k = 1`` is the vector (EBV) case. The similarity of
two points is

* lines mode: ``s_ij = ||Z_i Z_j^T||_F^2`` (``cos^2`` for ``k = 1``; for ``k > 1`` it is
  ``k - d_c^2``, the chordal distance of Conway, Hardin and Sloane 1996),
* sphere mode (``k = 1`` only): ``s_ij = <z_i, z_j>`` (signed).

The smooth surrogate of ``max_{i<j} s_ij`` is the log-sum-exp

.. math:: f_t(Z) = m + \\frac{1}{t} \\log \\sum_{i<j} \\exp(t (s_{ij} - m)),

which satisfies ``max s <= f_t <= max s + log(#pairs) / t``. The temperature ``t`` is sharpened
over the run. The shift ``m`` is the previous step's maximum (kept on the device); every pass
also returns the current maximum, and in the rare case that ``t (max - m)`` leaves a safe window
the pass is repeated with the exact maximum as the shift, so the value and gradient are always
those of the formula above (no overflow; exponents below -80 are clamped, which changes the sum
by less than 1e-14 relative).

The Gram matrix is never materialised: for row blocks ``I <= J`` the tile ``G_IJ = Z_I Z_J^T``
gives the weights ``A_IJ`` and the gradient is accumulated as ``grad_I += A_IJ Z_J`` and
``grad_J += A_IJ^T Z_I``. Memory is ``O(R N k d + R tile^2)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from grassmann._validation import check_choice, check_float, check_int, check_tensor

__all__ = [
    "OptimizeResult",
    "ThresholdResult",
    "best_threshold",
    "default_restarts",
    "default_steps",
    "max_similarity",
    "minimize_coherence",
    "project",
    "random_start",
    "retract",
    "surrogate_grad",
    "threshold_descent",
]

MODES = ("lines", "sphere")

#: Safe window for ``t * (max - shift)``: outside it the pass is redone with the exact maximum.
_WINDOW = {torch.float32: (-20.0, 40.0), torch.float64: (-20.0, 600.0)}

#: Exponents are clamped from below here before ``exp``: underflow to subnormals/zero is ~10x
#: slower on CPUs, and with the maximum's exponent >= -20 (the window) a term below
#: ``exp(-80)`` weighs less than ``1e-26`` relative, ``1e-14`` even summed over 10^12 pairs.
_EXP_FLOOR = {torch.float32: -80.0, torch.float64: -700.0}

#: Below this many flops per step (``R (N k)^2 d``) a CPU run uses one thread.
_SMALL_WORK = 2e7

#: The published EBV script stops once ``max |cos| <= threshold + 1e-4``.
PUBLISHED_TOLERANCE = 1e-4

#: Default tile edge (rows of ``Z``); the working memory is a few ``R * tile^2`` buffers.
DEFAULT_TILE = 2048


# ----------------------------------------------------------------------------- tiles


def _pool(sq: torch.Tensor, block: int) -> torch.Tensor:
    """Sum ``k x k`` blocks of a ``(R, a k, b k)`` tile -> ``(R, a, b)``."""
    if block == 1:
        return sq
    r, a, b = sq.shape
    return sq.view(r, a // block, block, b // block, block).sum(dim=(2, 4))


def _tile_ranges(n: int, tile_blocks: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile_blocks, n)) for s in range(0, n, tile_blocks)]


def _similarities(G: torch.Tensor, block: int, mode: str, diagonal: bool) -> torch.Tensor:
    """Pooled similarities of a Gram tile, with the self-pairs of a diagonal tile at ``-inf``."""
    s = G * G if mode == "lines" else G.clone()
    s = _pool(s, block)
    if diagonal:
        s.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    return s


def max_similarity(
    Z: torch.Tensor, *, block: int = 1, mode: str = "lines", tile: int = DEFAULT_TILE
) -> torch.Tensor:
    """Largest off-diagonal similarity of each packing in ``Z`` (shape ``(R,)``), streamed.

    ``Z`` is ``(N k, d)`` or ``(R, N k, d)``; no host synchronisation happens inside.
    For ``N = 1`` the result is ``-inf``.
    """
    batched = Z.ndim == 3
    Zb = Z if batched else Z.unsqueeze(0)
    n = Zb.shape[1] // block
    tb = max(1, tile // block)
    out = torch.full((Zb.shape[0],), -math.inf, dtype=Zb.dtype, device=Zb.device)
    for i0, i1 in _tile_ranges(n, tb):
        ZI = Zb[:, i0 * block : i1 * block]
        for j0, j1 in _tile_ranges(n, tb):
            if j0 < i0:
                continue
            ZJ = Zb[:, j0 * block : j1 * block]
            s = _similarities(torch.bmm(ZI, ZJ.transpose(1, 2)), block, mode, i0 == j0)
            out = torch.maximum(out, s.amax(dim=(1, 2)))
    return out if batched else out[0]


def near_max_pairs(
    Z: torch.Tensor,
    margin: float,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    limit: int | None = None,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs of points whose similarity is within ``margin`` of the largest, streamed.

    ``Z`` is one packing ``(N k, d)``. Returns ``(smax, i, j, s)``: the largest off-diagonal
    similarity (a float) and the point indices ``i < j`` and similarities ``s`` of every pair
    with ``s >= smax - margin`` (in no particular order). With ``limit`` at most that many of
    the largest such pairs are kept, so memory stays ``O(limit + tile^2)`` whatever the margin.
    One host synchronisation per tile (this serves the finish, not the optimiser's steps).
    """
    n = Z.shape[0] // block
    tb = max(1, tile // block)
    run_max = -math.inf
    kept_i: list[torch.Tensor] = []
    kept_j: list[torch.Tensor] = []
    kept_s: list[torch.Tensor] = []
    count = 0
    for i0, i1 in _tile_ranges(n, tb):
        ZI = Z[i0 * block : i1 * block]
        for j0, j1 in _tile_ranges(n, tb):
            if j0 < i0:
                continue
            ZJ = Z[j0 * block : j1 * block]
            s = _similarities((ZI @ ZJ.T).unsqueeze(0), block, mode, i0 == j0)[0]
            if i0 == j0:  # the lower triangle of a diagonal tile repeats the upper one
                # (a comparison of aranges: tril/triu are far slower on small tiles, where
                # torch hands them to its thread pool)
                r = torch.arange(s.shape[0], device=s.device)
                s = s.masked_fill(r[:, None] >= r[None, :], -math.inf)
            run_max = max(run_max, float(s.max()))
            ii, jj = torch.nonzero(s >= run_max - margin, as_tuple=True)
            kept_i.append(ii + i0)
            kept_j.append(jj + j0)
            kept_s.append(s[ii, jj])
            count += ii.numel()
            if limit is not None and count > 2 * limit:
                kept_i, kept_j, kept_s, count = _keep_largest(kept_i, kept_j, kept_s, limit)
    i = torch.cat(kept_i)
    j = torch.cat(kept_j)
    s = torch.cat(kept_s)
    keep = s >= run_max - margin
    i, j, s = i[keep], j[keep], s[keep]
    if limit is not None and s.numel() > limit:
        (i,), (j,), (s,), _ = _keep_largest([i], [j], [s], limit)
    return run_max, i, j, s


def _keep_largest(
    i: list[torch.Tensor], j: list[torch.Tensor], s: list[torch.Tensor], limit: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], int]:
    """The ``limit`` pairs of largest similarity among the collected ones."""
    ic, jc, sc = torch.cat(i), torch.cat(j), torch.cat(s)
    top = torch.topk(sc, min(limit, sc.numel())).indices
    return [ic[top]], [jc[top]], [sc[top]], int(top.numel())


def _buffer(workspace: dict[str, torch.Tensor], name: str, numel: int, like: torch.Tensor):
    """A flat buffer of at least ``numel`` elements, kept in ``workspace`` across calls."""
    buf = workspace.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
        buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        workspace[name] = buf
    return buf


def _view(buf: torch.Tensor, *shape: int) -> torch.Tensor:
    """The first ``prod(shape)`` elements of a flat buffer, as a contiguous tensor."""
    return buf[: math.prod(shape)].view(*shape)


def surrogate_grad(
    Z: torch.Tensor,
    t: torch.Tensor,
    shift: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    tile: int = DEFAULT_TILE,
    workspace: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-sum-exp surrogate of the maximum similarity, its Euclidean gradient, and the maximum.

    Parameters
    ----------
    Z
        ``(R, N k, d)`` packings (rows of each ``k``-block orthonormal).
    t, shift
        ``(R,)`` temperatures and shifts (on ``Z``'s device and dtype).
    block
        ``k``, the number of rows per point.
    mode
        ``"lines"`` (``s = ||Z_i Z_j^T||_F^2``) or ``"sphere"`` (``s = <z_i, z_j>``, ``k = 1``).
    tile
        Tile edge in rows; the Gram matrix is streamed in ``tile x tile`` pieces.
    workspace
        Optional dict that keeps the tile buffers between calls, so that repeated calls (the
        optimiser's steps) allocate nothing; pass the same dict each time.

    Returns
    -------
    value : torch.Tensor
        ``(R,)``: ``shift + log(sum_{i<j} exp(t (s_ij - shift))) / t``.
    grad : torch.Tensor
        ``(R, N k, d)``: the Euclidean gradient of ``value`` with respect to ``Z``.
    smax : torch.Tensor
        ``(R,)``: ``max_{i<j} s_ij`` in the working precision, read off the largest exponent
        ``x = t (s - shift)`` as ``shift + x / t``.

    Notes
    -----
    With ``p_ij = exp(t (s_ij - shift)) / S`` and ``S = sum_{i<j} exp(t (s_ij - shift))``, the
    gradient is ``dvalue/dZ_i = sum_j p_ij ds_ij/dZ_i`` where ``ds_ij/dZ_i = 2 G_ij Z_j`` (lines)
    or ``Z_j`` (sphere). Only tiles ``J >= I`` are computed; host sync: none.

    The left factor of each tile product is pre-scaled by ``c = sqrt(t)`` (lines) or ``c = t``
    (sphere), so the tile ``H = c G`` gives the exponents in one fused pass:
    ``t (s - shift) = H * H - t shift`` (``addcmul``; pooled over ``k x k`` blocks for
    ``k > 1``) or ``H - t shift``. The lines weights ``H * e`` carry the factor ``c``, divided
    out once at the end. Tile buffers are reused across tiles (and across calls with
    ``workspace``); the only per-tile work besides the three products is the exponent, its
    maximum, clamp, ``exp``, sum and (lines) one product of the tile with ``e``.
    """
    R, M, d = Z.shape
    n = M // block
    tb = max(1, tile // block)
    lines = mode == "lines"
    ws: dict[str, torch.Tensor] = workspace if workspace is not None else {}
    grad = torch.zeros_like(Z)
    total = torch.zeros(R, dtype=Z.dtype, device=Z.device)
    emax = torch.full((R,), -math.inf, dtype=Z.dtype, device=Z.device)
    floor = _EXP_FLOOR.get(Z.dtype, -80.0)
    c = t.sqrt() if lines else t
    Zs = _view(_buffer(ws, "Zs", Z.numel(), Z), R, M, d)
    torch.mul(Z, c.view(R, 1, 1), out=Zs)
    neg_tm = (-(t * shift)).view(R, 1, 1)
    side = min(n, tb)
    hbuf = _buffer(ws, "H", R * (side * block) ** 2, Z)
    ebuf = _buffer(ws, "E", R * side * side, Z) if lines else hbuf
    sqbuf = _buffer(ws, "S", R * (side * block) ** 2, Z) if lines and block > 1 else hbuf
    for i0, i1 in _tile_ranges(n, tb):
        rows_i = slice(i0 * block, i1 * block)
        ZI = Z[:, rows_i]
        gI = grad[:, rows_i]
        for j0, j1 in _tile_ranges(n, tb):
            if j0 < i0:
                continue
            a, b = i1 - i0, j1 - j0
            diagonal = i0 == j0
            rows_j = slice(j0 * block, j1 * block)
            ZJ = Z[:, rows_j]
            H = _view(hbuf, R, a * block, b * block)
            torch.bmm(Zs[:, rows_i], ZJ.transpose(1, 2), out=H)
            if not lines:
                E = H.add_(neg_tm)  # t (s - shift), in place: the weights are e alone
            elif block == 1:
                E = torch.addcmul(neg_tm, H, H, out=_view(ebuf, R, a, b))
            else:
                sq = torch.mul(H, H, out=_view(sqbuf, R, a * block, b * block))
                E = _view(ebuf, R, a, b)
                torch.sum(sq.view(R, a, block, b, block), dim=(2, 4), out=E)
                E.add_(neg_tm)
            if diagonal:
                E.diagonal(dim1=1, dim2=2).fill_(-math.inf)
            emax = torch.maximum(emax, E.amax(dim=(1, 2)))
            E.clamp_(min=floor).exp_()
            if diagonal:
                E.diagonal(dim1=1, dim2=2).zero_()
            part = E.sum(dim=(1, 2))
            total += part * 0.5 if diagonal else part
            if not lines:
                A = E
            elif block == 1:
                A = H.mul_(E)
            else:
                A = H.view(R, a, block, b, block).mul_(E.view(R, a, 1, b, 1))
                A = A.view(R, a * block, b * block)
            gI.baddbmm_(A, ZJ)
            if not diagonal:
                grad[:, rows_j].baddbmm_(A.transpose(1, 2), ZI)
    scale = 2.0 / (c * total) if lines else 1.0 / total
    grad.mul_(scale.view(R, 1, 1))
    value = shift + torch.log(total) / t
    smax = shift + emax / t
    return value, grad, smax


# ----------------------------------------------------------------------------- manifold


def project(Z: torch.Tensor, U: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Project ``U`` onto the (horizontal) tangent space at ``Z``: ``U_i - (U_i Z_i^T) Z_i``."""
    if block == 1:
        return U - (U * Z).sum(dim=-1, keepdim=True) * Z
    R, M, d = Z.shape
    Zb = Z.view(R, M // block, block, d)
    Ub = U.view(R, M // block, block, d)
    return (Ub - (Ub @ Zb.transpose(-1, -2)) @ Zb).view(R, M, d)


def retract(Z: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Map each point back to the manifold: normalise rows (``k = 1``) or orthonormalise each
    ``k``-block of rows by QR with the signs of ``diag(R)`` made positive (``k > 1``)."""
    if block == 1:
        return Z / torch.linalg.vector_norm(Z, dim=-1, keepdim=True)
    R, M, d = Z.shape
    X = Z.view(R, M // block, block, d).transpose(-1, -2)  # (R, N, d, k)
    Q, Rm = torch.linalg.qr(X)
    sign = torch.sign(torch.diagonal(Rm, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    Q = Q * sign.unsqueeze(-2)
    return Q.transpose(-1, -2).reshape(R, M, d).contiguous()


def random_start(
    restarts: int,
    num: int,
    dim: int,
    *,
    block: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random starting packings ``(R, N k, d)``: Gaussian rows retracted to the manifold.

    For ``N k <= d`` the start is one orthonormal frame (a global optimum, coherence 0).
    The Gaussian draw happens on the CPU with ``generator`` (float64) so that the start is the
    same on every device for a given seed.
    """
    rows = num * block
    g = torch.randn(restarts, rows, dim, generator=generator, dtype=torch.float64)
    if dim >= rows:
        Q, Rm = torch.linalg.qr(g.transpose(1, 2))
        sign = torch.sign(torch.diagonal(Rm, dim1=-2, dim2=-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        g = (Q * sign.unsqueeze(-2)).transpose(1, 2)
    else:
        g = retract(g, block)
    return g.to(dtype=dtype, device=device).contiguous()


# ----------------------------------------------------------------------------- defaults


def default_steps(num: int, dim: int, block: int = 1) -> int:
    """Default number of optimisation steps: 3000 for small problems, fewer as the work per
    step (``N^2 k^2 d``) grows, at least 200.

    Roughly 10-30 s on a laptop CPU for ``(1000, 512)``; seconds for ``N d <= 10^4``.
    """
    work = float(num * block) ** 2 * dim
    return int(min(3000, max(200, round(2.5e11 / max(work, 1.0), -1))))


def default_restarts(num: int, dim: int, block: int = 1) -> int:
    """Number of restarts run side by side: 16 for tiny problems (where one step costs about
    the same whatever ``R``), down to 1 once ``N k d`` exceeds a few thousand."""
    size = num * block * dim
    return int(max(1, min(16, 4096 // max(size, 1))))


# ----------------------------------------------------------------------------- optimiser


@dataclass
class OptimizeResult:
    """Outcome of :func:`minimize_coherence`.

    Attributes
    ----------
    Z
        ``(N k, d)`` best packing found (working dtype, on the device).
    similarity
        Its maximum pairwise similarity in the working precision (``max s_ij``).
    steps
        Optimisation steps taken (cumulative over resumes).
    seconds
        Optimisation wall time (cumulative over resumes).
    history
        ``[(step, seconds, best similarity), ...]`` recorded now and then.
    interrupted
        True when a ``KeyboardInterrupt`` stopped the run (the best so far is returned).
    restart
        Index of the restart that gave ``Z``.
    restart_Z, restart_similarity
        ``(R, N k, d)``: the best iterate of every restart, and their similarities (a list of
        ``R`` floats); the multi-start search finishes several of them.
    """

    Z: torch.Tensor
    similarity: float
    steps: int
    seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)
    interrupted: bool = False
    restart: int = 0
    restart_Z: torch.Tensor | None = None
    restart_similarity: list[float] = field(default_factory=list)


def _cpu_threads_for(Z: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Run tiny CPU problems single-threaded: their matrix products are far too small to share,
    and thread hand-offs (worse on a loaded machine) would cost more than the work."""
    R, M, d = Z.shape if Z.ndim == 3 else (1, *Z.shape)
    return single_thread(Z.device.type == "cpu" and float(R) * M * M * d <= _SMALL_WORK)


@contextlib.contextmanager
def single_thread(active: bool = True) -> Iterator[None]:
    """torch on one CPU thread inside the block (when ``active``), restored after it."""
    if not active:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _window_ok(dtype: torch.dtype, t: torch.Tensor, smax: torch.Tensor, shift: torch.Tensor):
    lo, hi = _WINDOW.get(dtype, _WINDOW[torch.float32])
    x = t * (smax - shift)
    return (x >= lo) & (x <= hi)


def minimize_coherence(
    Z0: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    steps: int | None = None,
    time_budget: float | None = None,
    lr: tuple[float, float] = (0.1, 1e-3),
    beta: tuple[float, float] = (0.5, 2e3),
    betas: tuple[float, float] = (0.9, 0.99),
    tile: int = DEFAULT_TILE,
    target: float | None = None,
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: float | None = None,
    state: dict[str, Any] | None = None,
    history_every: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> OptimizeResult:
    """Minimise the largest pairwise similarity of ``R`` packings by Riemannian Adam on a
    sharpened log-sum-exp surrogate.

    Parameters
    ----------
    Z0
        ``(R, N k, d)`` starting packings (see :func:`random_start`); the dtype and device of the
        search are those of ``Z0``.
    block
        ``k``: rows per point (1 for vectors; ``k > 1`` packs ``k``-dim subspaces).
    mode
        ``"lines"`` or ``"sphere"`` (``k = 1`` only).
    steps, time_budget
        Stop after this many steps and/or seconds. The schedule's progress is
        ``p = step / steps`` when only ``steps`` is given (deterministic),
        ``elapsed / time_budget`` when only the time budget is, and the larger of the two with
        both: the schedule runs to its end by whichever budget ends first (a run cut short by
        the clock is still fully sharpened). At least one is required.
    lr
        ``(start, end)`` step size, decayed geometrically with ``p``: the rotation (radians)
        of the point with the largest gradient in one step.
    beta
        ``(start, end)`` sharpness. The temperature is ``t = beta / scale`` where ``scale`` is the
        distance of the current maximum to the nearer end of the similarity range (``[0, k]``
        for lines, ``[-1, 1]`` for sphere), so ``beta`` is scale-free.
    betas
        Adam's moment decay rates.
    tile
        Tile edge in rows of ``Z``.
    target
        Stop once the best similarity is ``<= target`` (e.g. the lower bound).
    callback
        ``callback(step, current, best)`` after every step with similarities (``max s``).
    checkpoint, checkpoint_every
        ``checkpoint(state)`` is called every ``checkpoint_every`` seconds with a dict of CPU
        tensors and numbers from which ``state=`` resumes the run.
    state
        A dict produced by ``checkpoint`` to continue from.
    history_every
        Record ``(step, seconds, best)`` every this many steps (default: about 200 records).
    should_stop
        Polled once per step; when it returns True the run stops at the step boundary as if
        interrupted (the CLI's SIGINT/SIGTERM handlers use it so that the checkpoint written on
        the way out is consistent).

    Returns
    -------
    OptimizeResult
        The best iterate over all steps and restarts (a ``KeyboardInterrupt`` returns the best
        so far with ``interrupted=True``).

    Notes
    -----
    One host synchronisation per step (the ``(R,)`` maxima), none inside the tile loops.
    The step is Adam-like (Kingma and Ba 2015) on the Riemannian gradient (projection of the
    Euclidean gradient onto the tangent space of each point) with one change: the second
    moment is summed over each point's coordinates and the largest point's value normalises
    every point, so the most active point turns by about ``lr`` radians and points that carry
    no weight in the soft maximum do not move (per-coordinate Adam would move them by ``lr``
    too, which adds noise). The update is projected again and retracted (row normalisation,
    or QR of each ``k``-block). The iterate with the smallest
    exact maximum is kept, so the surrogate's bias never costs quality.
    """
    check_tensor("Z0", Z0, ndim=3)
    block = check_int("block", block, minimum=1)
    mode = check_choice("mode", mode, MODES)
    if mode == "sphere" and block != 1:
        raise ValueError(f"mode='sphere' needs block=1, got block={block}")
    if steps is None and time_budget is None:
        raise ValueError("give steps or time_budget (or both), got neither")
    if steps is not None:
        steps = check_int("steps", steps, minimum=0)
    if time_budget is not None:
        time_budget = check_float("time_budget", time_budget, minimum=0.0)
    tile = check_int("tile", tile, minimum=1)
    R, M, d = Z0.shape
    if M % block:
        raise ValueError(f"Z0 has {M} rows, not a multiple of block={block}")
    n = M // block
    dtype, device = Z0.dtype, Z0.device
    lo, hi = (0.0, float(block)) if mode == "lines" else (-1.0, 1.0)

    if state is None:
        Z = Z0.clone()
        best_Z = Z0.clone()
        best = [math.inf] * R
        m1 = torch.zeros_like(Z)
        m2 = torch.zeros_like(Z)
        step = 0
        elapsed = 0.0
        history: list[tuple[int, float, float]] = []
        shift = max_similarity(Z, block=block, mode=mode, tile=tile)
    else:
        Z = state["Z"].to(device=device, dtype=dtype)
        best_Z = state["best_Z"].to(device=device, dtype=dtype)
        best = list(state["best"])
        m1 = state["m1"].to(device=device, dtype=dtype)
        m2 = state["m2"].to(device=device, dtype=dtype)
        step = int(state["step"])
        elapsed = float(state["elapsed"])
        history = [tuple(h) for h in state["history"]]
        shift = state["shift"].to(device=device, dtype=dtype)
    if n < 2:
        return OptimizeResult(Z[0], -math.inf, 0, 0.0, [], False, 0, Z, [-math.inf] * R)
    with _cpu_threads_for(Z):
        return _run(
            Z,
            best_Z,
            best,
            m1,
            m2,
            step,
            elapsed,
            history,
            shift,
            block=block,
            mode=mode,
            steps=steps,
            time_budget=time_budget,
            lr=lr,
            beta=beta,
            betas=betas,
            tile=tile,
            target=target,
            callback=callback,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            history_every=history_every,
            should_stop=should_stop,
            lo=lo,
            hi=hi,
        )


def _run(
    Z,
    best_Z,
    best,
    m1,
    m2,
    step,
    elapsed,
    history,
    shift,
    *,
    block,
    mode,
    steps,
    time_budget,
    lr,
    beta,
    betas,
    tile,
    target,
    callback,
    checkpoint,
    checkpoint_every,
    history_every,
    should_stop,
    lo,
    hi,
) -> OptimizeResult:
    R = Z.shape[0]
    dtype, device = Z.dtype, Z.device
    if history_every is None:
        history_every = max(1, (steps or 2000) // 200)

    def progress(elapsed_now: float) -> float:
        by_clock = 0.0 if time_budget is None else elapsed_now / max(time_budget, 1e-9)
        by_steps = 0.0 if steps is None else step / max(steps, 1)
        return max(by_steps, by_clock)

    def snapshot() -> dict[str, Any]:
        return {
            "Z": Z.detach().cpu().clone(),
            "best_Z": best_Z.detach().cpu().clone(),
            "best": list(best),
            "m1": m1.cpu().clone(),
            "m2": m2.cpu().clone(),
            "step": step,
            "elapsed": elapsed_total(),
            "history": list(history),
            "shift": shift.cpu().clone(),
            "block": block,
            "mode": mode,
        }

    start = time.perf_counter()
    base_elapsed = elapsed

    def elapsed_total() -> float:
        return base_elapsed + time.perf_counter() - start

    last_ckpt = time.perf_counter()
    workspace: dict[str, torch.Tensor] = {}
    b1, b2 = betas
    interrupted = False
    try:
        while True:
            now = elapsed_total()
            if steps is not None and step >= steps:
                break
            if time_budget is not None and now >= time_budget:
                break
            if target is not None and min(best) <= target:
                break
            if should_stop is not None and should_stop():
                interrupted = True
                break
            p = min(1.0, progress(now))
            beta_now = beta[0] * (beta[1] / beta[0]) ** p
            lr_now = lr[0] * (lr[1] / lr[0]) ** p
            scale = torch.clamp(torch.minimum(shift - lo, hi - shift), min=1e-9)
            t = beta_now / scale
            value, eg, smax = surrogate_grad(
                Z, t, shift, block=block, mode=mode, tile=tile, workspace=workspace
            )
            ok = _window_ok(dtype, t, smax, shift)
            packed = torch.cat([smax, ok.to(dtype)]).cpu()  # the one host sync of the step
            smax_h = packed[:R].tolist()
            if not all(v > 0.5 for v in packed[R:].tolist()):
                shift = smax
                value, eg, smax = surrogate_grad(
                    Z, t, shift, block=block, mode=mode, tile=tile, workspace=workspace
                )
            improved = [i for i in range(R) if smax_h[i] < best[i]]
            if improved:
                if len(improved) == R:
                    best_Z.copy_(Z)
                else:
                    idx = torch.tensor(improved, device=device)
                    best_Z[idx] = Z[idx]
                for i in improved:
                    best[i] = smax_h[i]
            shift = smax
            rg = project(Z, eg, block)
            step += 1
            m1.mul_(b1).add_(rg, alpha=1 - b1)
            m2.mul_(b2).addcmul_(rg, rg, value=1 - b2)
            c1 = 1 - b1**step
            c2 = 1 - b2**step
            # Adam-like, but the second moment is pooled per point and then the largest point's
            # is used for all: the most active point turns by about lr radians per step, the
            # others in proportion to their gradient (inactive points stay put).
            vmax = m2.sum(dim=-1).amax(dim=-1)
            upd = (m1 / c1) / (vmax / c2).sqrt_().add_(1e-30).view(-1, 1, 1)
            upd = project(Z, upd, block)
            Z = retract(Z - lr_now * upd, block)
            if step % history_every == 0 or step == 1:
                history.append((step, round(elapsed_total(), 4), min(best)))
            if callback is not None:
                callback(step, min(smax_h), min(best))
            if (
                checkpoint is not None
                and checkpoint_every is not None
                and time.perf_counter() - last_ckpt >= checkpoint_every
            ):
                checkpoint(snapshot())
                last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and checkpoint is not None:
        checkpoint(snapshot())
    # the final iterate has not been measured yet
    final = max_similarity(Z, block=block, mode=mode, tile=tile).cpu().tolist()
    for i in range(R):
        if final[i] < best[i]:
            best[i] = final[i]
            best_Z[i] = Z[i]
    k = min(range(R), key=lambda i: best[i])
    seconds = elapsed_total()
    if history and history[-1][0] == step:
        history.pop()
    history.append((step, round(seconds, 4), best[k]))
    return OptimizeResult(
        best_Z[k].clone(), best[k], step, seconds, history, interrupted, k, best_Z, list(best)
    )


# ----------------------------------------------------------------------------- threshold


@dataclass
class ThresholdResult:
    """Outcome of :func:`threshold_descent` (the published EBV generator's algorithm).

    ``stalled`` is True when the run stopped because ``max |cos|`` made no progress for
    ``patience`` steps (the threshold is out of its reach from this start).
    """

    Z: torch.Tensor
    coherence: float
    reached: bool
    steps: int
    seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)
    interrupted: bool = False
    stalled: bool = False
    threshold: float = math.nan


def threshold_descent(
    W0: torch.Tensor,
    threshold: float = 0.002,
    *,
    lr: float = 1e-3,
    steps: int | None = None,
    time_budget: float | None = None,
    tile: int = DEFAULT_TILE,
    tolerance: float = PUBLISHED_TOLERANCE,
    patience: int | None = None,
    min_delta: float = 1e-4,
    callback: Callable[[int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ThresholdResult:
    """Plain SGD on ``L(W) = sum_{i != j} relu(|<w_i, w_j>| - threshold)``, rows renormalised
    after every step, until ``max |cos| <= threshold + tolerance`` or the budget is spent.

    This is the algorithm of the published EBV generator (Shen et al., CVPR 2023), implemented
    tiled (no Gram matrix, no per-slice host sync) but otherwise faithfully: the loss is the
    *sum* of the hinges over ordered pairs ``i != j`` (each unordered pair twice, so the
    gradient of row ``i`` is ``2 sum_j sign(c_ij) [|c_ij| > threshold] w_j``), a fixed step
    size, no momentum, no projection onto the tangent space, rows renormalised before each
    gradient evaluation. ``W0`` is ``(N, d)`` unit rows. The returned ``coherence`` is
    ``max |cos|`` of the returned (best) iterate, in the working precision.

    The defaults ``threshold=0.002`` and ``lr=1e-3`` are those of the published script
    (written for ``N = d = 1000``; for ``N > d`` that threshold is below the Welch bound and
    the run uses its whole budget); the script stops at ``max |cos| <= threshold + 1e-4``
    (``tolerance=1e-4``) after at most 100000 steps.

    ``patience`` (not in the script; used by :func:`best_threshold`): stop, with
    ``stalled=True``, once the best ``max |cos|`` has not decreased by ``min_delta`` over the
    last ``patience`` steps. Too low a threshold makes the summed hinge push every row hard
    and the iterate wanders or collapses instead of converging, so such a run would otherwise
    burn its whole budget.
    """
    check_tensor("W0", W0, ndim=2)
    threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
    lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
    tolerance = check_float("tolerance", tolerance, minimum=0.0)
    min_delta = check_float("min_delta", min_delta, minimum=0.0)
    if patience is not None:
        patience = check_int("patience", patience, minimum=1)
    if steps is None and time_budget is None:
        raise ValueError("give steps or time_budget (or both), got neither")
    W = W0.clone()
    N = W.shape[0]
    best_W = W.clone()
    best = math.inf
    mark, mark_step = math.inf, 0  # best value at the last real improvement (patience)
    step = 0
    history: list[tuple[int, float, float]] = []
    ranges = _tile_ranges(N, tile)
    start = time.perf_counter()
    interrupted = stalled = False
    try:
        while True:
            if steps is not None and step >= steps:
                break
            if time_budget is not None and time.perf_counter() - start >= time_budget:
                break
            if should_stop is not None and should_stop():
                interrupted = True
                break
            grad = torch.zeros_like(W)
            cmax = torch.zeros((), dtype=W.dtype, device=W.device)
            for i0, i1 in ranges:
                WI = W[i0:i1]
                for j0, j1 in ranges:
                    if j0 < i0:
                        continue
                    WJ = W[j0:j1]
                    G = WI @ WJ.T
                    if i0 == j0:
                        G.fill_diagonal_(0.0)
                    a = G.abs()
                    cmax = torch.maximum(cmax, a.amax())
                    # d/dG relu(|G| - thr) = sign(G) [|G| > thr]; each unordered pair counts
                    # twice in the sum over i != j.
                    A = G.sign_().mul_(a > threshold)
                    grad[i0:i1].addmm_(A, WJ, alpha=2.0)
                    if i0 != j0:
                        grad[j0:j1].addmm_(A.T, WI, alpha=2.0)
            c = float(cmax)  # one sync per step
            if c < best:
                best = c
                best_W.copy_(W)
            if c < mark - min_delta:
                mark, mark_step = c, step
            if step % 50 == 0:
                history.append((step, round(time.perf_counter() - start, 4), best))
            if callback is not None:
                callback(step, c, best)
            if c <= threshold + tolerance:
                break
            if patience is not None and step - mark_step >= patience:
                stalled = True
                break
            W = W - lr * grad
            W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True)
            step += 1
    except KeyboardInterrupt:
        interrupted = True
    seconds = time.perf_counter() - start
    history.append((step, round(seconds, 4), best))
    reached = best <= threshold + tolerance
    return ThresholdResult(
        best_W, best, reached, step, seconds, history, interrupted, stalled, threshold
    )


def best_threshold(
    W0: torch.Tensor,
    *,
    time_budget: float,
    low: float,
    high: float = 1.0,
    rounds: int = 8,
    lr: float = 1e-3,
    tile: int = DEFAULT_TILE,
    tolerance: float = PUBLISHED_TOLERANCE,
    patience: int | None = 100,
    min_delta: float = 1e-4,
    trials: list[ThresholdResult] | None = None,
) -> tuple[float, ThresholdResult | None]:
    """Bisect on the threshold of :func:`threshold_descent`: the smallest threshold in
    ``[low, high]`` that the algorithm reaches from ``W0`` within a total of ``time_budget``
    seconds.

    Each trial starts from ``W0`` (as the published script starts from a random draw) and
    runs until it reaches its threshold (within ``tolerance``, the script's ``1e-4``), stalls
    (``patience`` steps without a ``min_delta`` decrease of the best ``max |cos|``) or the
    remaining budget is spent, so an unreachable threshold costs a few hundred steps rather
    than a fixed slice of the budget. After a success the next trial aims just below the
    coherence that run actually reached (often well under its threshold) when that is above
    the current ``low``. At most ``rounds`` trials.

    Returns the smallest threshold reached and its run (``None`` if none was). Every trial is
    appended to ``trials`` when a list is given: the best ``coherence`` over all of them is the
    fairest single figure for the published algorithm at that budget.
    """
    check_tensor("W0", W0, ndim=2)
    rounds = check_int("rounds", rounds, minimum=1)
    time_budget = check_float("time_budget", time_budget, minimum=0.0)
    start = time.perf_counter()
    best: tuple[float, ThresholdResult | None] = (high, None)
    for _ in range(rounds):
        left = time_budget - (time.perf_counter() - start)
        if left <= 0:
            break
        mid = 0.5 * (low + high)
        res = threshold_descent(
            W0,
            mid,
            lr=lr,
            time_budget=left,
            tile=tile,
            tolerance=tolerance,
            patience=patience,
            min_delta=min_delta,
        )
        if trials is not None:
            trials.append(res)
        if res.reached:
            high = min(mid, res.coherence)
            best = (high, res)
        else:
            low = mid
    return best
