"""The search of a generator run: the multi-start search (:mod:`ebv_gen.multistart`) for small
problems, one run of the optimiser and a short minimax finish for large ones, in one process or
over the ranks of a process group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .finish import minimax_finish
from .kernels import DEFAULT_TILE
from .multistart import (
    MAX_ROUND_SIZE,
    MIN_ROUND_SIZE,
    REFINE_STEPS,
    SearchResult,
    multistart,
    round_size,
    round_steps,
)
from .optimize import default_restarts, default_steps, minimize_coherence
from .product import random_start

__all__ = [
    "MAX_ROUND_SIZE",
    "MIN_ROUND_SIZE",
    "REFINE_STEPS",
    "SMALL_PROBLEM",
    "SearchOutcome",
    "SearchResult",
    "default_search_steps",
    "is_small",
    "multistart",
    "round_size",
    "round_steps",
    "search",
    "search_restarts",
]

#: Problems with ``N k d`` up to this (all of Sloane's tables up to R^8, N = 100) get the
#: multi-start search: rounds of many batched starts and the minimax finish, whose linear
#: programmes stay small (at most ``2 N k d`` variables). Larger ones get one run of the
#: optimiser (:func:`ebv_gen.optimize.minimize_coherence`) and a short finish.
SMALL_PROBLEM = 2048

#: The default budget of the multi-start search, in rounds.
DEFAULT_ROUNDS = 4

#: The finish of a single large run: at most this share of the time budget (when there is
#: one), this many linear programmes, and this many pairs and variables in each. Far from a
#: local optimum (large packings are never solved to the last digit) it polishes a little, at a
#: bounded cost, and it is deterministic without a time budget.
LARGE_FINISH_SHARE = 0.1
LARGE_FINISH_ITERATIONS = 10
LARGE_FINISH_PAIRS = 2000
LARGE_FINISH_VARIABLES = 4000


# ----------------------------------------------------------------------------------------------
# the search of a generator run: multi-start for small problems, one run for large ones


def is_small(num: int, dim: int, block: int = 1) -> bool:
    """Whether ``(N, d, k)`` gets the multi-start search (``N k d <=`` :data:`SMALL_PROBLEM`)."""
    return num * block * dim <= SMALL_PROBLEM


def search_restarts(num: int, dim: int, block: int = 1) -> int:
    """Starts side by side: :func:`round_size` per round for small problems, else
    :func:`ebv_gen.optimize.default_restarts`."""
    if is_small(num, dim, block):
        return round_size(num, dim, block)
    return default_restarts(num, dim, block)


def default_search_steps(num: int, dim: int, block: int = 1) -> int:
    """Default optimiser steps: :data:`DEFAULT_ROUNDS` rounds for small problems, else
    :func:`ebv_gen.optimize.default_steps` (deterministic either way)."""
    if is_small(num, dim, block):
        return DEFAULT_ROUNDS * (round_steps(num) + REFINE_STEPS)
    return default_steps(num, dim, block)


@dataclass
class SearchOutcome:
    """What :func:`search` found: the packing (``(N k, d)``, on the search device) and the
    run record of the result (``steps``, ``seconds``, ``history`` of the best similarity,
    ``interrupted``) with the report entries that describe the search (``extra``)."""

    Z: torch.Tensor
    steps: int
    seconds: float
    history: list[tuple[int, float, float]]
    interrupted: bool
    extra: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The keyword arguments of a result record (``steps``, ``seconds``, ``history``,
        ``interrupted``)."""
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "history": self.history,
            "interrupted": self.interrupted,
        }


def search(
    num: int,
    dim: int,
    *,
    block: int = 1,
    mode: str = "lines",
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
    restarts: int,
    steps: int | None,
    time_budget: float | None,
    tile: int = DEFAULT_TILE,
    target: float | None = None,
    structured: Sequence[tuple[str, torch.Tensor]] = (),
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: float | None = None,
    state: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    group: Any = None,
) -> SearchOutcome:
    """The search of :func:`ebv_gen.generate` and :func:`ebv_gen.generate_subspaces`.

    Small problems (:func:`is_small`): :func:`multistart` with the ``structured`` starts, one
    checkpoint per round. Large ones: one run of :func:`ebv_gen.optimize.minimize_coherence`
    from ``restarts`` random starts (checkpointed every ``checkpoint_every`` seconds), then a
    short :func:`ebv_gen.finish.minimax_finish` of its best iterate (see
    :data:`LARGE_FINISH_SHARE`). ``state`` resumes either kind from its checkpoint.

    With a process group (``group``), a large problem's optimiser is shared over its ranks
    (:mod:`ebv_gen.sharding`) and the finish runs on rank 0, whose packing every rank returns;
    a small one runs whole on every rank (the same seed gives the same search) and rank 0's
    packing is returned everywhere.
    """
    if is_small(num, dim, block):
        res = multistart(
            num,
            dim,
            block=block,
            mode=mode,
            generator=generator,
            dtype=dtype,
            device=device,
            steps=steps,
            time_budget=time_budget,
            restarts=restarts,
            tile=tile,
            target=target,
            structured=structured if state is None else (),
            callback=callback,
            checkpoint=checkpoint,
            state=state,
            should_stop=should_stop,
        )
        extra = {
            "search": {
                "kind": "multistart",
                "rounds": res.rounds,
                "starts": res.starts,
                "finishes": res.finishes,
                "origin": res.origin,
            }
        }
        Z = _from_rank0(res.Z, group)
        return SearchOutcome(Z, res.steps, res.seconds, res.history, res.interrupted, extra)
    Z0 = random_start(
        restarts, num, dim, block=block, dtype=dtype, device=device, generator=generator
    )
    res = minimize_coherence(
        Z0,
        block=block,
        mode=mode,
        steps=steps,
        time_budget=None if time_budget is None else time_budget * (1.0 - LARGE_FINISH_SHARE),
        tile=tile,
        target=target,
        callback=callback,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        state=state,
        should_stop=should_stop,
        group=group,
    )
    history = list(res.history)
    extra: dict[str, Any] = {"search": {"kind": "single"}}
    Z, seconds = res.Z, res.seconds
    rank0 = group is None or _rank(group) == 0
    if not res.interrupted and rank0:
        fin = minimax_finish(
            res.Z,
            block=block,
            mode=mode,
            tile=tile,
            max_iter=LARGE_FINISH_ITERATIONS,
            max_pairs=LARGE_FINISH_PAIRS,
            max_variables=LARGE_FINISH_VARIABLES,
            time_budget=None if time_budget is None else max(0.0, time_budget - res.seconds),
            should_stop=should_stop,
        )
        seconds += fin.seconds
        extra["finish"] = {
            "start_similarity": fin.start_similarity,
            "similarity": fin.similarity,
            "iterations": fin.iterations,
            "seconds": round(fin.seconds, 4),
            "reason": fin.reason,
        }
        if fin.similarity < res.similarity:
            Z = fin.Z
            # the finish belongs to the last step: its entry replaces the search's
            if history and history[-1][0] == res.steps:
                history.pop()
            history.append((res.steps, round(seconds, 4), fin.similarity))
    return SearchOutcome(_from_rank0(Z, group), res.steps, seconds, history, res.interrupted, extra)


def _rank(group: Any) -> int:
    import torch.distributed as dist

    return dist.get_rank(group)


def _from_rank0(Z: torch.Tensor, group: Any) -> torch.Tensor:
    """Rank 0's packing on every rank of ``group`` (``Z`` itself without a group)."""
    if group is None:
        return Z
    import torch.distributed as dist

    out = Z.detach().to(torch.float64).contiguous().clone()
    dist.broadcast(out, src=0, group=group)
    return out
