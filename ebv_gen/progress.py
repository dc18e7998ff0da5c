"""Progress of a generator run on the command line: a tqdm bar on a terminal, periodic one-line
reports in logs (:class:`Progress`, the ``callback`` of :func:`ebv_gen.generate`)."""

from __future__ import annotations

import sys
import time

from .plan import format_duration

__all__ = ["Progress"]


class Progress:
    """The generator's ``callback(step, current, best)``: a tqdm bar with total and ETA when
    stderr is a terminal (over the steps, or over the seconds of a time budget when no step
    count is known); otherwise one line every ``log_every`` seconds (the first at the first
    callback), for log files and cluster jobs; nothing with ``enabled=False``."""

    def __init__(
        self,
        *,
        steps: int | None,
        time_budget: float | None,
        bound: float,
        label: str,
        enabled: bool,
        log_every: float,
        prog: str = "ebv-gen",
    ) -> None:
        self.prog = prog
        self.clock = time.perf_counter
        self.t0 = self.clock()
        self.steps, self.budget, self.bound, self.label = steps, time_budget, bound, label
        self.enabled, self.log_every = enabled, log_every
        self.last_log: float | None = None
        self.done: float = 0
        self.bar = None
        self.by_time = by_time = steps is None and time_budget is not None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=time_budget if by_time else steps,
                unit="s" if by_time else "step",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format=(
                    "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]{postfix}"
                    if by_time
                    else None
                ),
            )

    def _fraction(self, step: int, elapsed: float) -> float | None:
        fractions = []
        if self.steps:
            fractions.append(step / self.steps)
        if self.budget:
            fractions.append(elapsed / self.budget)
        return min(1.0, max(fractions)) if fractions else None

    def __call__(self, step: int, current: float, best: float) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.t0
        status = f"{self.label} {current:.5f} best {best:.5f} bound {self.bound:.5f}"
        if self.bar is not None:
            done = min(elapsed, self.budget) if self.by_time else step
            self.bar.update(done - self.done)
            self.done = done
            self.bar.set_postfix_str(
                f"step {step} {status}" if self.by_time else status, refresh=False
            )
            return
        if self.last_log is not None and elapsed - self.last_log < self.log_every:
            return
        self.last_log = elapsed
        frac = self._fraction(step, elapsed)
        where = f"step {step}" + (f"/{self.steps}" if self.steps else "")
        if frac is not None and frac > 0:
            eta = elapsed * (1.0 - frac) / frac
            where += f" ({100 * frac:.0f}%, ETA {format_duration(eta)})"
        print(
            f"{self.prog}: {where}  {format_duration(elapsed)}  {status}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
