"""The search of a generator run: the multi-start search (:mod:`ebv_gen.multistart`) for small
problems, one run of the optimiser and a short minimax finish for large ones, in one process or
over the ranks of a process group.

Across a process group the two kinds share the work differently. A large problem's optimiser is
sharded (every rank holds its share of the rows, :mod:`ebv_gen.sharding`). A small problem is
too small to share, so each rank runs a multi-start search of its own from its own random
stream (:func:`search_seed`: rank 0 searches what one process does) and the best packing over
the ranks is returned on every rank: ``P`` ranks try ``P`` times the starts in the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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
    "search_seed",
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


def search_seed(seed: int, num: int, dim: int, block: int = 1, group: Any = None) -> int:
    """The seed of this rank's search.

    ``seed`` itself in one process, on rank 0, and on every rank of a large problem (whose
    ranks share one optimiser and must start from the same packing). For a small problem
    (:func:`is_small`) rank ``r > 0`` of a group gets an independent stream, a 63-bit seed
    drawn from numpy's ``SeedSequence((seed, r))`` (its hashing of the pair into independent
    streams), so that the ranks search different starts. Rank 0 searches what one process
    does, so with the same seed and steps the best over the ranks is never worse than one
    process's result.
    """
    rank = 0 if group is None else _rank(group)
    if rank == 0 or not is_small(num, dim, block):
        return seed
    state = np.random.SeedSequence([seed, rank]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


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
    (:mod:`ebv_gen.sharding`) and the finish runs on rank 0, whose packing every rank returns.
    A small one runs a search of its own on every rank (``generator`` seeded by
    :func:`search_seed`) and the best over the ranks is returned everywhere (the lowest rank
    on a tie); ``extra["search"]`` then sums the rounds, starts and finishes of all ranks and
    names the ``ranks`` and the ``best_rank``.
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
        info: dict[str, Any] = {"kind": "multistart"}
        if group is not None:
            res, ranks, best_rank = _best_over_ranks(res, group)
            info.update(ranks=ranks, best_rank=best_rank)
        info.update(rounds=res.rounds, starts=res.starts, finishes=res.finishes, origin=res.origin)
        extra = {"search": info}
        return SearchOutcome(res.Z, res.steps, res.seconds, res.history, res.interrupted, extra)
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
    return SearchOutcome(_from_rank(Z, group), res.steps, seconds, history, res.interrupted, extra)


def _rank(group: Any) -> int:
    import torch.distributed as dist

    return dist.get_rank(group)


def _best_over_ranks(res: SearchResult, group: Any) -> tuple[SearchResult, int, int]:
    """The best of the ranks' own multi-start searches, on every rank: ``(result, ranks, best
    rank)``. The result is the best rank's packing, similarity, steps, history and origin; its
    rounds, starts and finishes are summed over the ranks, its seconds are the longest rank's,
    and it counts as interrupted when any rank was."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    figures = [res.similarity, res.seconds, float(res.interrupted)]
    figures += [float(res.rounds), float(res.starts), float(res.finishes), float(res.steps)]
    mine = torch.tensor(figures, dtype=torch.float64, device=res.Z.device)
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine, group=group)
    table = torch.stack(everyone).cpu()
    best = min(range(world), key=lambda r: (float(table[r, 0]), r))
    Z = _from_rank(res.Z, group, best)
    told: list[Any] = [res.history, res.origin]
    dist.broadcast_object_list(told, src=_global_rank(group, best), group=group)
    rounds, starts, finishes = (int(v) for v in table[:, 3:6].sum(dim=0).tolist())
    merged = SearchResult(
        Z,
        float(table[best, 0]),
        int(table[best, 6]),
        float(table[:, 1].max()),
        [tuple(h) for h in told[0]],
        bool(table[:, 2].max() > 0),
        rounds,
        starts,
        finishes,
        str(told[1]),
    )
    return merged, world, best


def _global_rank(group: Any, rank: int) -> int:
    """The global rank of ``rank`` of ``group`` (what the collectives' ``src`` takes)."""
    import torch.distributed as dist

    return rank if group is dist.group.WORLD else dist.get_global_rank(group, rank)


def _from_rank(Z: torch.Tensor, group: Any, rank: int = 0) -> torch.Tensor:
    """Rank ``rank``'s packing (float64) on every rank of ``group`` (``Z`` itself without a
    group)."""
    if group is None:
        return Z
    import torch.distributed as dist

    out = Z.detach().to(torch.float64).contiguous().clone()
    dist.broadcast(out, src=_global_rank(group, rank), group=group)
    return out
