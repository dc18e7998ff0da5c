"""Argument checks shared by the generators (:func:`ebv_gen.generate`,
:func:`ebv_gen.generate_subspaces`): the budget, precision and checkpoint options of a run."""

from __future__ import annotations

from typing import Any

import torch

from grassmann._validation import check_float, check_int

__all__ = ["check_run_options"]


def check_run_options(
    *,
    seed: Any,
    steps: Any,
    time_budget: Any,
    checkpoint_every: Any,
    dtype: Any,
) -> tuple[int, int | None, float | None, float | None, torch.dtype | None]:
    """Validate the options every generator run takes; return them normalised.

    ``seed >= 0`` (int), ``steps >= 0`` (int or ``None``), ``time_budget >= 0`` (finite float or
    ``None``), ``checkpoint_every > 0`` (finite float or ``None``), ``dtype`` float32, float64 or
    ``None``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, the value and what is allowed.
    """
    seed = check_int("seed", seed, minimum=0)
    if steps is not None:
        steps = check_int("steps", steps, minimum=0)
    if time_budget is not None:
        time_budget = check_float("time_budget", time_budget, minimum=0.0)
    if checkpoint_every is not None:
        checkpoint_every = check_float(
            "checkpoint_every", checkpoint_every, minimum=0.0, strict_minimum=True
        )
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return seed, steps, time_budget, checkpoint_every, dtype
