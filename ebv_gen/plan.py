"""What a generator run will do, said before it starts: the size, device, method, budget,
search precision, memory and an estimate of the time per optimiser step.

The estimate is the work of one step, ``4 (N k)^2 d`` flops (the Gram tiles and the gradient,
design notes "What good looks like"), divided by the matrix-product rate measured on the device
in a fraction of a second (one ``512 x d`` by ``d x 512`` product, repeated); it is skipped (as
negligible) for steps under ``10^9`` flops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

__all__ = ["RunPlan", "format_duration", "gemm_rate", "plan_run"]

#: Steps with less work than this are not timed: they take milliseconds.
_TIMED_WORK = 1e9


def gemm_rate(dim: int, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Flops per second of a ``512 x dim`` by ``dim x 512`` matrix product on ``device``
    (the best of a few repeats after a warm-up)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(512, dim, generator=gen, dtype=dtype).to(device)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        (a @ a.T).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 512 * 512 * dim / max(best, 1e-9)


@dataclass(frozen=True)
class RunPlan:
    """A run's settings as the generator will choose them (see :func:`plan_run`).

    Attributes
    ----------
    what
        ``"5000 x 128 lines"`` or ``"200 subspaces of Gr(24, 4)"``.
    device, method
        Where it runs and the method asked for.
    steps, time_budget
        The step budget (``None`` when only the clock limits the run) and the time budget.
    default_steps
        Whether ``steps`` is the size-scaled default.
    dtype
        The search precision.
    memory
        Bytes the search needs (:func:`ebv_gen.generation.required_memory`).
    step_seconds
        Seconds of the matrix products of one optimiser step at the measured rate (a lower
        bound on the step's time), ``None`` when negligible.
    """

    what: str
    device: torch.device
    method: str
    steps: int | None
    time_budget: float | None
    default_steps: bool
    dtype: torch.dtype
    memory: int
    step_seconds: float | None

    def describe(self) -> str:
        """One line for the log."""
        budget = []
        if self.steps is not None:
            budget.append(f"{self.steps} steps" + (" (default)" if self.default_steps else ""))
        if self.time_budget is not None:
            budget.append(f"{self.time_budget:g} s")
        per_step = (
            ""
            if self.step_seconds is None
            else f", matrix products ~{format_duration(self.step_seconds)}/step"
        )
        return (
            f"{self.what} on {self.device}, method {self.method}, budget "
            f"{' or '.join(budget)}, search in {str(self.dtype).replace('torch.', '')}, "
            f"memory ~{_size(self.memory)}{per_step}"
        )


def plan_run(
    num: int,
    dim: int,
    *,
    block: int = 1,
    mode: str = "lines",
    device: torch.device,
    method: str,
    steps: int | None,
    time_budget: float | None,
    what: str,
) -> RunPlan:
    """The plan of :func:`ebv_gen.generate` (``block = 1``) or
    :func:`ebv_gen.generate_subspaces` (``block = k``; ``dim`` is ``n``) with these options and
    their defaults (restarts, precision, steps)."""
    from .generation import _FLOAT64_WORK, NEAR_OPTIMAL, required_memory
    from .search import default_search_steps, search_restarts

    if method == "auto" and block == 1:
        # auto returns a construction at once when one is optimal or near the bound (the
        # catalog is read in microseconds): no search to announce
        import grassmann

        best = (grassmann.frame_candidates(num, dim, mode) or [None])[0]
        if best is not None and (best.optimal or best.ratio <= NEAR_OPTIMAL):
            method = "construction"
    rows = num * block
    dtype = torch.float64 if float(rows) ** 2 * dim <= _FLOAT64_WORK else torch.float32
    restarts = 1 if method == "threshold" else search_restarts(num, dim, block)
    default = steps is None and time_budget is None
    if default:
        steps = default_search_steps(num, dim, block)
    work = 4.0 * rows * rows * dim * restarts
    step_seconds = None
    if work >= _TIMED_WORK:
        step_seconds = work / gemm_rate(dim, device, dtype)
    return RunPlan(
        what=what,
        device=device,
        method=method,
        steps=steps,
        time_budget=time_budget,
        default_steps=default,
        dtype=dtype,
        memory=required_memory(rows, dim, restarts=restarts, itemsize=dtype.itemsize),
        step_seconds=step_seconds,
    )


def _size(nbytes: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while nbytes >= 1024 and i < len(units) - 1:
        nbytes /= 1024
        i += 1
    return f"{nbytes:.3g} {units[i]}"


def format_duration(seconds: float) -> str:
    """``0.12 s``, ``42 s``, ``7m 05s``, ``2h 13m``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
