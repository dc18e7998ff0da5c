"""Coherence minimisation on a product of spheres (or Grassmannians): the run.

:func:`minimize_coherence` drives :class:`ebv_gen.adam.CoherenceAdam` (the optimiser: a
Riemannian Adam step on the sharpened log-sum-exp surrogate of the largest similarity) through
its budgets: steps and/or seconds, a target, callbacks, periodic checkpoints
(:meth:`~ebv_gen.adam.CoherenceAdam.state_dict`) and stop requests, in one process or on the
ranks of a process group (:mod:`ebv_gen.sharding`). The defaults of a run
(:func:`default_steps`, :func:`default_restarts`) live here; the tile kernels in
:mod:`ebv_gen.kernels`, the product geometry in :mod:`ebv_gen.product`, the published baseline
in :mod:`ebv_gen.threshold` (all re-exported here under their old names).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from grassmann._validation import check_float, check_int, check_tensor

from .adam import CoherenceAdam
from .kernels import (
    DEFAULT_TILE,
    Stopped,
    max_similarity,
    near_max_pairs,
    surrogate_grad,
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

#: Up to this many multiply-adds per step (``R (N k)^2 d``) a CPU run uses one thread, and up
#: to :data:`_MEDIUM_WORK` at most :data:`_MEDIUM_THREADS`. On 2 cores, two threads run the
#: float32 exploration batches of the multi-start search 1.6x faster than one at 26 lines in
#: R^6 (256 starts, 1e6), 1.5x at 45 in R^7, 1.2x at 62 in R^5 and 100 in R^6 (2e6-4e6), and
#: only 1.0-1.1x from 1e4 to 5e5 (scratch timing of ``minimize_coherence``); in 10 s the search
#: of 45 lines in R^7 then runs 4 rounds instead of 2, of 62 in R^5 7 instead of 5. More than two
#: threads at these sizes were not measured, hence the cap.
_SMALL_WORK = 1e6
_MEDIUM_WORK = 2e7
_MEDIUM_THREADS = 2


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


def _step_work(Z: torch.Tensor) -> float:
    """Multiply-adds of one step, ``R (N k)^2 d``, for ``(R, N k, d)`` or ``(N k, d)``."""
    R, M, d = Z.shape if Z.ndim == 3 else (1, *Z.shape)
    return float(R) * M * M * d


def _cpu_threads_for(Z: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """Run tiny CPU problems on one thread and small ones on at most two: their matrix products
    are too small to share further, and thread hand-offs (worse on a loaded machine) would cost
    more than the work (see :data:`_SMALL_WORK`)."""
    work = _step_work(Z)
    if Z.device.type != "cpu" or work > _MEDIUM_WORK:
        return limit_threads(None)
    return limit_threads(1 if work <= _SMALL_WORK else _MEDIUM_THREADS)


#: A run on the clock (``time_budget``) with two CPU threads (the :data:`_MEDIUM_WORK` regime)
#: times this many steps on each of two threads and one, and goes on with the faster,
#: again every :data:`_PROBE_EVERY` seconds. On a quiet machine two threads are faster (1.5x
#: at 60 lines in R^6, 185 starts); with a second process busy on one of the two cores they
#: are 7-8x slower than one thread (18-22 against 2.5 ms a step: the thread hand-offs wait
#: for the descheduled thread), so that a search in 10 s ran 60 steps of its first round
#: instead of 1145 and ended 1.9e-2 above Sloane's table instead of at it. Runs on a step
#: budget keep their thread count: their result depends on the seed alone.
_PROBE_STEPS = 4
_PROBE_EVERY = 2.0


class _ThreadProbe:
    """Chooses, by timing steps, between two threads and one for a run on the clock."""

    def __init__(self, threads: int):
        self.options = (threads, 1)
        self.chosen = threads
        self.queue: list[int] = []
        self.times: dict[int, list[float]] = {}
        self.next_probe = 0.0
        self.current = threads
        self.t0 = 0.0

    def before(self, now: float) -> None:
        """Set the threads for the next step (``now``: seconds into the run)."""
        if not self.queue and not self.times and now >= self.next_probe:
            self.queue = [t for t in self.options for _ in range(_PROBE_STEPS)]
            self.times = {t: [] for t in self.options}
        self.current = self.queue.pop(0) if self.queue else self.chosen
        if torch.get_num_threads() != self.current:
            torch.set_num_threads(self.current)
        self.t0 = time.perf_counter()

    def restart(self, now: float) -> None:
        """Time both again from the next step on (the batch has changed: after narrowing),
        dropping the timings of a probe in progress."""
        self.queue, self.times, self.next_probe = [], {}, now

    def after(self, now: float) -> None:
        """Record the step's time while probing; choose once both are timed."""
        if not self.times:
            return
        self.times[self.current].append(time.perf_counter() - self.t0)
        if not self.queue:
            self.chosen = min(self.options, key=lambda t: statistics.median(self.times[t]))
            self.times = {}
            self.next_probe = now + _PROBE_EVERY


@contextlib.contextmanager
def limit_threads(limit: int | None) -> Iterator[None]:
    """torch on at most ``limit`` CPU threads inside the block (``None``: as it is), restored
    after it."""
    old = torch.get_num_threads()
    if limit is None or old <= limit:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
    beta: tuple[float | Sequence[float] | torch.Tensor, float] = (0.5, 2e3),
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
    narrow: Sequence[tuple[float, float]] = (),
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
    narrow
        ``(progress, fraction)`` pairs, progress increasing in ``(0, 1)`` and fraction in
        ``(0, 1]``: once the schedule reaches ``progress``, only the ``ceil(fraction * R')``
        of the ``R'`` packings still optimised with the smallest best maxima go on
        (:meth:`CoherenceAdam.narrow`, successive halving); the others keep their best
        iterate. ``R`` packings cost the steps before the first point, fewer after. The
        ranking is by the best maxima measured so far (each step measures the iterate it
        starts from), so a packing stopped keeps the best of its iterates before the last
        step. Default: none.

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
    narrow = _check_narrow(narrow)
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
                     history_every, should_stop, narrow)  # fmt: skip


def _check_narrow(narrow: Any) -> list[tuple[float, float]]:
    """``narrow`` as a list of ``(progress, fraction)``, else ValueError/TypeError."""
    try:
        points = [(p, f) for p, f in narrow]
    except (TypeError, ValueError):
        raise TypeError(
            f"narrow must be a sequence of (progress, fraction) pairs, got {narrow!r}"
        ) from None
    for pair in points:
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in pair):
            raise TypeError(
                f"narrow must hold (progress, fraction) pairs of real numbers, got {narrow!r}"
            )
    points = [(float(p), float(f)) for p, f in points]
    last = 0.0
    for p, f in points:
        if not (last < p < 1.0 and 0.0 < f <= 1.0):
            raise ValueError(
                "narrow must hold (progress, fraction) pairs with progress increasing in "
                f"(0, 1) and fraction in (0, 1], got {narrow!r}"
            )
        last = p
    return points


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
    narrow: list[tuple[float, float]],
) -> OptimizeResult:
    """The run of :func:`minimize_coherence`: budgets, stop requests, records, checkpoints,
    narrowing."""
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
    threads = torch.get_num_threads()
    probe = None
    if (
        time_budget is not None
        and opt.device.type == "cpu"
        and not opt.shard.distributed
        and threads == _MEDIUM_THREADS
        # the whole batch's work, as chose the threads (a resumed run may be narrowed)
        and _SMALL_WORK < _step_work(opt.state["best_Z"]) <= _MEDIUM_WORK
    ):
        probe = _ThreadProbe(threads)
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
            progress = max(by_steps, by_clock)
            while st["narrowed"] < len(narrow) and progress >= narrow[st["narrowed"]][0]:
                # (rounded first: 0.07 * 100 is 7.000000000000001, which would keep 8)
                opt.narrow(math.ceil(round(narrow[st["narrowed"]][1] * len(st["active"]), 9)))
                st = opt.state
                if probe is not None:
                    probe.restart(now)
            if probe is not None:
                probe.before(now)
            current = opt.step(progress, poll)
            if probe is not None:
                probe.after(now)
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
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
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
