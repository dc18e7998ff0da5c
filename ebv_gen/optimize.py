"""Coherence minimisation on a product of spheres (or Grassmannians): the optimiser.

:class:`CoherenceAdam` minimises the largest pairwise similarity of ``R`` packings at once
(restarts, batched on the leading dimension) by a Riemannian Adam step on the sharpened
log-sum-exp surrogate of :func:`ebv_gen.kernels.surrogate_grad`,

.. math:: f_t(Z) = m + \\frac{1}{t} \\log \\sum_{i<j} \\exp(t (s_{ij} - m)),

with ``max s <= f_t <= max s + log(#pairs) / t``. The temperature ``t`` is sharpened over the
run. The shift ``m`` is the previous step's maximum (kept on the device); every pass also
returns the current maximum, and in the rare case that ``t (max - m)`` leaves a safe window the
pass is repeated with the exact maximum as the shift, so the value and gradient are always those
of the formula above (no overflow).

Its state lives in ``optimizer.state`` (tensors of this process's rows and plain numbers) and
:meth:`CoherenceAdam.state_dict` / :meth:`CoherenceAdam.load_state_dict` are the checkpoint
format: resuming is ``load_state_dict``. :func:`minimize_coherence` is the loop around it
(budgets, target, callbacks, periodic checkpoints, stop requests). With a
:class:`ebv_gen.sharding.Shard` of a process group each rank holds and updates its own rows
and walks its share of the tiles (see :mod:`ebv_gen.sharding`); without one everything runs in
this process.
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

from .kernels import (
    DEFAULT_TILE,
    MODES,
    Stopped,
    max_similarity,
    near_max_pairs,
    surrogate_finish,
    surrogate_grad,
    surrogate_parts,
)
from .product import project, random_start, retract
from .sharding import Shard
from .threshold import PUBLISHED_TOLERANCE, ThresholdResult, best_threshold, threshold_descent

__all__ = [
    "DEFAULT_TILE",
    "CoherenceAdam",
    "OptimizeResult",
    "PUBLISHED_TOLERANCE",
    "ThresholdResult",
    "best_threshold",
    "default_restarts",
    "default_steps",
    "max_similarity",
    "minimize_coherence",
    "near_max_pairs",
    "project",
    "random_start",
    "retract",
    "surrogate_grad",
    "threshold_descent",
]

#: Version of :meth:`CoherenceAdam.state_dict`; other versions are refused on load.
STATE_FORMAT = "ebv_gen.CoherenceAdam/2"

#: Safe window for ``t * (max - shift)``: outside it the pass is redone with the exact maximum.
_WINDOW = {torch.float32: (-20.0, 40.0), torch.float64: (-20.0, 600.0)}

#: Below this many flops per step (``R (N k)^2 d``) a CPU run uses one thread.
_SMALL_WORK = 2e7


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


class CoherenceAdam:
    """Riemannian Adam on the log-sum-exp surrogate of ``R`` packings' largest similarity.

    Parameters
    ----------
    Z0
        ``(R, N k, d)`` starting packings (all rows, on every rank); the dtype and device of
        the search are those of ``Z0``.
    block
        ``k``: rows per point (1 for vectors; ``k > 1`` packs ``k``-dim subspaces).
    mode
        ``"lines"`` or ``"sphere"`` (``k = 1`` only).
    lr
        ``(start, end)`` step size, decayed geometrically with the schedule's progress ``p``:
        the rotation (radians) of the point with the largest gradient in one step.
    beta
        ``(start, end)`` sharpness, geometric in ``p``. The temperature is ``t = beta / scale``
        where ``scale`` is the distance of the current maximum to the nearer end of the
        similarity range (``[0, k]`` for lines, ``[-1, 1]`` for sphere), so ``beta`` is
        scale-free.
    betas
        Adam's moment decay rates.
    tile
        Tile edge in rows of ``Z``.
    shard
        The rows and tiles of this process (default: everything, one process).

    Notes
    -----
    One host synchronisation per step (the ``(R,)`` maxima), none inside the tile loops. The
    step is Adam-like (Kingma and Ba 2015) on the Riemannian gradient (projection of the
    Euclidean gradient onto the tangent space of each point) with one change: the second
    moment is summed over each point's coordinates and the largest point's value normalises
    every point, so the most active point turns by about ``lr`` radians and points that carry
    no weight in the soft maximum do not move (per-coordinate Adam would move them by ``lr``
    too, which adds noise). The update is projected again and retracted (row normalisation, or
    QR of each ``k``-block). The iterate with the smallest exact maximum is kept in
    ``state["best_Z"]``, so the surrogate's bias never costs quality.
    """

    def __init__(
        self,
        Z0: torch.Tensor,
        *,
        block: int = 1,
        mode: str = "lines",
        lr: tuple[float, float] = (0.1, 1e-3),
        beta: tuple[float, float] = (0.5, 2e3),
        betas: tuple[float, float] = (0.9, 0.99),
        tile: int = DEFAULT_TILE,
        shard: Shard | None = None,
    ) -> None:
        check_tensor("Z0", Z0, ndim=3)
        self.block = check_int("block", block, minimum=1)
        self.mode = check_choice("mode", mode, MODES)
        if self.mode == "sphere" and self.block != 1:
            raise ValueError(f"mode='sphere' needs block=1, got block={block}")
        self.tile = check_int("tile", tile, minimum=1)
        R, M, _ = Z0.shape
        if M % self.block:
            raise ValueError(f"Z0 has {M} rows, not a multiple of block={block}")
        self.num = M // self.block
        self.lr, self.beta, self.betas = lr, beta, betas
        self.shard = shard if shard is not None else Shard.create(self.num, self.block, tile)
        self.dtype, self.device = Z0.dtype, Z0.device
        self.lo, self.hi = (0.0, float(self.block)) if self.mode == "lines" else (-1.0, 1.0)
        self._workspace: dict[str, torch.Tensor] = {}
        own = self.shard.own(Z0).clone()
        self.state: dict[str, Any] = {
            "Z": own,
            "best_Z": own.clone(),
            "best": [math.inf] * R,
            "m1": torch.zeros_like(own),
            "m2": torch.zeros_like(own),
            "step": 0,
            "elapsed": 0.0,
            "history": [],
            "shift": self._max(Z0),
        }

    # -- the pieces of a step ------------------------------------------------------------------

    def _max(self, Z_full: torch.Tensor, poll: Callable[[], bool] | None = None) -> torch.Tensor:
        """Exact maximum similarity (working precision) of every packing, over all ranks."""
        s = max_similarity(
            Z_full, block=self.block, mode=self.mode, tiles=self.shard.tiles, poll=poll
        )
        return self.shard.max_(s)

    def _surrogate(self, Z_full, t, shift, poll):
        if not self.shard.distributed:
            return surrogate_grad(
                Z_full,
                t,
                shift,
                block=self.block,
                mode=self.mode,
                tile=self.tile,
                workspace=self._workspace,
                poll=poll,
            )
        total, emax, grad = surrogate_parts(
            Z_full,
            t,
            shift,
            block=self.block,
            mode=self.mode,
            tiles=self.shard.tiles,
            workspace=self._workspace,
            poll=poll,
        )
        self.shard.sum_(total)
        self.shard.max_(emax)
        self.shard.sum_(grad)
        return surrogate_finish(total, emax, self.shard.own(grad), t, shift, self.mode)

    def step(self, progress: float, poll: Callable[[], bool] | None = None) -> list[float]:
        """One step at schedule position ``progress`` in ``[0, 1]``.

        Returns the exact maximum similarity of every packing *before* the step (the one host
        synchronisation), after recording the improvements in ``state["best"]`` and
        ``state["best_Z"]``. ``poll`` is checked between tiles: True raises
        :class:`ebv_gen.kernels.Stopped` and leaves the state as it was before the step.
        """
        st = self.state
        Z, shift = st["Z"], st["shift"]
        p = min(1.0, max(0.0, progress))
        beta_now = self.beta[0] * (self.beta[1] / self.beta[0]) ** p
        lr_now = self.lr[0] * (self.lr[1] / self.lr[0]) ** p
        scale = torch.clamp(torch.minimum(shift - self.lo, self.hi - shift), min=1e-9)
        t = beta_now / scale
        Z_full = self.shard.gather(Z)
        value, eg, smax = self._surrogate(Z_full, t, shift, poll)
        R = Z.shape[0]
        lo, hi = _WINDOW.get(self.dtype, _WINDOW[torch.float32])
        x = t * (smax - shift)
        ok = (x >= lo) & (x <= hi)
        packed = torch.cat([smax, ok.to(self.dtype)]).cpu()  # the one host sync of the step
        smax_h = packed[:R].tolist()
        if not all(v > 0.5 for v in packed[R:].tolist()):
            value, eg, smax = self._surrogate(Z_full, t, smax, poll)
        best = st["best"]
        improved = [i for i in range(R) if smax_h[i] < best[i]]
        if improved:
            if len(improved) == R:
                st["best_Z"].copy_(Z)
            else:
                idx = torch.tensor(improved, device=self.device)
                st["best_Z"][idx] = Z[idx]
            for i in improved:
                best[i] = smax_h[i]
        st["shift"] = smax
        rg = project(Z, eg, self.block)
        st["step"] += 1
        b1, b2 = self.betas
        m1, m2 = st["m1"], st["m2"]
        m1.mul_(b1).add_(rg, alpha=1 - b1)
        m2.mul_(b2).addcmul_(rg, rg, value=1 - b2)
        c1 = 1 - b1 ** st["step"]
        c2 = 1 - b2 ** st["step"]
        # Adam-like, but the second moment is pooled per point and then the largest point's is
        # used for all: the most active point turns by about lr radians per step, the others in
        # proportion to their gradient (inactive points stay put).
        vmax = self.shard.max_(m2.sum(dim=-1).amax(dim=-1))
        upd = (m1 / c1) / (vmax / c2).sqrt_().add_(1e-30).view(-1, 1, 1)
        upd = project(Z, upd, self.block)
        st["Z"] = retract(Z - lr_now * upd, self.block)
        return smax_h

    def measure(self, poll: Callable[[], bool] | None = None) -> None:
        """Measure the current iterate exactly and keep it where it improves the best."""
        st = self.state
        final = self._max(self.shard.gather(st["Z"]), poll).cpu().tolist()
        for i, v in enumerate(final):
            if v < st["best"][i]:
                st["best"][i] = v
                st["best_Z"][i] = st["Z"][i]

    def best(self) -> tuple[torch.Tensor, list[float], int]:
        """``(best_Z, best, k)``: every packing's best iterate (all rows), their similarities,
        and the index of the best packing."""
        best = list(self.state["best"])
        k = min(range(len(best)), key=lambda i: best[i])
        return self.shard.gather(self.state["best_Z"]), best, k

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state as CPU tensors and numbers (this rank's rows when sharded)."""
        out: dict[str, Any] = {"format": STATE_FORMAT, "block": self.block, "mode": self.mode}
        out["rank"], out["world"] = self.shard.rank, self.shard.world
        for key, value in self.state.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.detach().cpu().clone()
            elif isinstance(value, list):
                out[key] = list(value)
            else:
                out[key] = value
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same sizes, mode and world size).

        Raises
        ------
        ValueError
            A state of another format (an older version's checkpoint), size, mode or world size.
        """
        fmt = state.get("format")
        if fmt != STATE_FORMAT:
            raise ValueError(
                f"state has format {fmt!r}, this version reads {STATE_FORMAT!r} (a checkpoint "
                "of an older version): start the run again without resuming"
            )
        mine = (self.block, self.mode, self.shard.rank, self.shard.world)
        theirs = (state["block"], state["mode"], state["rank"], state["world"])
        if mine != theirs:
            raise ValueError(
                f"state is for (block, mode, rank, world) = {theirs}, this optimiser is {mine}"
            )
        if tuple(state["Z"].shape) != tuple(self.state["Z"].shape):
            raise ValueError(
                f"state holds packings of shape {tuple(state['Z'].shape)}, this optimiser "
                f"{tuple(self.state['Z'].shape)}"
            )
        for key in self.state:
            value = state[key]
            if isinstance(value, torch.Tensor):
                self.state[key] = value.to(device=self.device, dtype=self.dtype)
            elif key == "history":
                self.state[key] = [tuple(h) for h in value]
            elif isinstance(value, list):
                self.state[key] = list(value)
            else:
                self.state[key] = value


@dataclass
class OptimizeResult:
    """Outcome of :func:`minimize_coherence`.

    Attributes
    ----------
    Z
        ``(N k, d)`` best packing found (working dtype, on the device; all rows).
    similarity
        Its maximum pairwise similarity in the working precision (``max s_ij``).
    steps
        Optimisation steps taken (cumulative over resumes).
    seconds
        Optimisation wall time (cumulative over resumes).
    history
        ``[(step, seconds, best similarity), ...]`` recorded now and then.
    interrupted
        True when a stop request or ``KeyboardInterrupt`` ended the run (the best so far is
        returned).
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
    group: Any = None,
) -> OptimizeResult:
    """Minimise the largest pairwise similarity of ``R`` packings with :class:`CoherenceAdam`.

    Parameters
    ----------
    Z0
        ``(R, N k, d)`` starting packings (see :func:`random_start`); the dtype and device of the
        search are those of ``Z0``. With ``group``, the same on every rank.
    block, mode, lr, beta, betas, tile
        As for :class:`CoherenceAdam`.
    steps, time_budget
        Stop after this many steps and/or seconds. The schedule's progress is
        ``p = step / steps`` when only ``steps`` is given (deterministic),
        ``elapsed / time_budget`` when only the time budget is, and the larger of the two with
        both: the schedule runs to its end by whichever budget ends first (a run cut short by
        the clock is still fully sharpened). At least one is required.
    target
        Stop once the best similarity is ``<= target`` (e.g. the lower bound).
    callback
        ``callback(step, current, best)`` after every step with similarities (``max s``).
    checkpoint, checkpoint_every
        ``checkpoint(state)`` is called every ``checkpoint_every`` seconds, and once when the
        run is stopped, with :meth:`CoherenceAdam.state_dict` (this rank's rows when sharded).
    state
        A dict produced by ``checkpoint`` to continue from (:meth:`CoherenceAdam.load_state_dict`).
    history_every
        Record ``(step, seconds, best)`` every this many steps (default: about 200 records).
    should_stop
        Polled between steps and between the tiles of a step: True stops the run within one
        tile, as if interrupted (the step in progress is dropped, so the checkpoint written on
        the way out is consistent).
    group
        A ``torch.distributed`` process group: the rows and tiles are shared over its ranks
        (:mod:`ebv_gen.sharding`). Every rank must call with the same arguments; the result is
        the same on every rank. ``should_stop`` must then agree across ranks (it is combined
        between steps; within a step a rank's request stops at the next step).

    Returns
    -------
    OptimizeResult
        The best iterate over all steps and restarts.
    """
    if steps is None and time_budget is None:
        raise ValueError("give steps or time_budget (or both), got neither")
    if steps is not None:
        steps = check_int("steps", steps, minimum=0)
    if time_budget is not None:
        time_budget = check_float("time_budget", time_budget, minimum=0.0)
    check_tensor("Z0", Z0, ndim=3)
    shard = None
    if group is not None:
        shard = Shard.create(Z0.shape[1] // max(1, block), block, tile, group)
    opt = CoherenceAdam(
        Z0, block=block, mode=mode, lr=lr, beta=beta, betas=betas, tile=tile, shard=shard
    )
    if state is not None:
        opt.load_state_dict(state)
    R = Z0.shape[0]
    if opt.num < 2:
        return OptimizeResult(Z0[0], -math.inf, 0, 0.0, [], False, 0, Z0, [-math.inf] * R)
    with _cpu_threads_for(Z0):
        return _loop(opt, steps, time_budget, target, callback, checkpoint, checkpoint_every,
                     history_every, should_stop)  # fmt: skip


def _loop(
    opt: CoherenceAdam,
    steps: int | None,
    time_budget: float | None,
    target: float | None,
    callback: Callable[[int, float, float], None] | None,
    checkpoint: Callable[[dict[str, Any]], None] | None,
    checkpoint_every: float | None,
    history_every: int | None,
    should_stop: Callable[[], bool] | None,
) -> OptimizeResult:
    """The run of :func:`minimize_coherence`: budgets, stop requests, records, checkpoints."""
    st = opt.state
    every = history_every if history_every is not None else max(1, (steps or 2000) // 200)
    start = time.perf_counter()
    base = st["elapsed"]

    def elapsed() -> float:
        return base + time.perf_counter() - start

    def requests(last_ckpt: float) -> tuple[float, bool, bool]:
        """(elapsed seconds, stop requested, checkpoint due). Across a group every rank agrees
        (the latest clock; any rank's stop request or checkpoint time), so that all of them
        follow the same schedule and stop or checkpoint at the same step."""
        now = elapsed()
        stop = should_stop is not None and should_stop()
        due = (
            checkpoint is not None
            and checkpoint_every is not None
            and time.perf_counter() - last_ckpt >= checkpoint_every
        )
        if opt.shard.distributed:
            flags = torch.tensor([now, float(stop), float(due)], dtype=torch.float64)
            now, s, c = opt.shard.max_(flags.to(opt.device)).tolist()
            stop, due = s > 0.5, c > 0.5
        return now, stop, due

    last_ckpt = time.perf_counter()
    poll = should_stop if not opt.shard.distributed else None
    interrupted = False
    try:
        now, stop, _ = requests(last_ckpt)
        while True:
            if steps is not None and st["step"] >= steps:
                break
            if time_budget is not None and now >= time_budget:
                break
            if target is not None and min(st["best"]) <= target:
                break
            if stop:
                interrupted = True
                break
            by_clock = 0.0 if time_budget is None else now / max(time_budget, 1e-9)
            by_steps = 0.0 if steps is None else st["step"] / max(steps, 1)
            current = opt.step(max(by_steps, by_clock), poll)
            st = opt.state
            if st["step"] % every == 0 or st["step"] == 1:
                st["history"].append((st["step"], round(elapsed(), 4), min(st["best"])))
            if callback is not None:
                callback(st["step"], min(current), min(st["best"]))
            now, stop, due = requests(last_ckpt)
            if due:
                st["elapsed"] = now
                checkpoint(opt.state_dict())
                last_ckpt = time.perf_counter()
    except (KeyboardInterrupt, Stopped):
        interrupted = True
    st = opt.state
    st["elapsed"] = elapsed()
    if interrupted and checkpoint is not None:
        checkpoint(opt.state_dict())
    if not interrupted:
        opt.measure()  # the final iterate has not been measured yet
    best_Z, best, k = opt.best()
    history = list(st["history"])
    if history and history[-1][0] == st["step"]:
        history.pop()
    history.append((st["step"], round(st["elapsed"], 4), best[k]))
    return OptimizeResult(
        best_Z[k].clone(), best[k], st["step"], st["elapsed"], history, interrupted, k, best_Z,
        best,
    )  # fmt: skip
