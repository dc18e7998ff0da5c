"""The run that :func:`ebv_gen.generate` and :func:`ebv_gen.generate_subspaces` share:
seeded start -> resume -> search -> finish -> record, with checkpoints and their clean-up.

The callers differ only in what they report: a coherence for vectors, a chordal distance for
subspaces. Each gives a :class:`Problem` with the map from the engine's similarity to its
figure; the verification of the result and the report stay with the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoints import checkpoint_writer, remove_checkpoint, resume_checkpoint
from .search import SearchOutcome, search, search_seed

__all__ = ["Problem", "run_search"]


@dataclass(frozen=True)
class Problem:
    """What to search: ``num`` points of ``block`` rows in ``R^dim`` in ``mode``.

    Attributes
    ----------
    meta
        The run's description, saved with every checkpoint; a resume must agree with it on
        ``resume_keys``.
    target
        Similarity at which the search stops (the bound: nothing beats it).
    figure
        Maps a similarity to the figure the caller reports (coherence or distance).
    """

    num: int
    dim: int
    block: int
    mode: str
    meta: dict[str, Any]
    resume_keys: tuple[str, ...]
    target: float
    figure: Callable[[float], float]


def run_search(
    problem: Problem,
    *,
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
    restarts: int,
    steps: int | None,
    time_budget: float | None,
    tile: int,
    structured: Callable[[torch.Generator], Sequence[tuple[str, torch.Tensor]]] | None = None,
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    group: Any = None,
) -> SearchOutcome:
    """Search ``problem`` from the seed (or its checkpoint) and describe the run: the
    :class:`ebv_gen.search.SearchOutcome` with its history and finish in the caller's figure.

    ``structured(generator)`` gives the structured starts of the first round (drawn after the
    resume, so that a resumed run draws what the uninterrupted one did). ``callback`` receives
    figures, not similarities. The checkpoint is removed once the run ends uninterrupted.
    ``group`` shares a large problem's optimiser over the ranks of a process group (one
    checkpoint shard per rank, see :mod:`ebv_gen.checkpoints`) and gives each rank a search of
    its own for a small one (seeded by :func:`ebv_gen.search.search_seed`).
    """
    gen = torch.Generator().manual_seed(
        search_seed(seed, problem.num, problem.dim, problem.block, group)
    )
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    state = None
    if resume and ckpt is not None:
        state = resume_checkpoint(ckpt, problem.meta, problem.resume_keys, group=group)
    writer = None if ckpt is None else checkpoint_writer(ckpt, problem.meta, gen, group=group)
    fig = problem.figure
    found = search(
        problem.num,
        problem.dim,
        block=problem.block,
        mode=problem.mode,
        generator=gen,
        dtype=dtype,
        device=device,
        restarts=restarts,
        steps=steps,
        time_budget=time_budget,
        tile=tile,
        target=problem.target,
        structured=structured(gen) if structured is not None and state is None else (),
        callback=None
        if callback is None
        else lambda step, cur, best: callback(step, fig(cur), fig(best)),
        checkpoint=writer,
        checkpoint_every=checkpoint_every if ckpt is not None else None,
        state=state,
        should_stop=should_stop,
        group=group,
    )
    extra = found.extra
    if "finish" in extra:
        fin = extra["finish"]
        fin["start"] = fig(fin.pop("start_similarity"))
        fin["end"] = fig(fin.pop("similarity"))
    extra.update(restarts=restarts, search_dtype=str(dtype).replace("torch.", ""))
    resumed = None if state is None else int(state.get("step", state.get("steps", 0)))
    if group is not None and "ranks" in extra.get("search", {}):
        # each rank resumed its own search (or none): the same report on every rank
        import torch.distributed as dist

        everyone: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(everyone, resumed, group=group)
        if any(r is not None for r in everyone):
            extra["search"]["resumed_from_steps"] = everyone
        resumed = everyone[0]
    if resumed is not None:
        extra["resumed_from_step"] = resumed
    if ckpt is not None and not found.interrupted:
        remove_checkpoint(ckpt, group=group)
    history = [(s, sec, fig(b)) for s, sec, b in found.history]
    return SearchOutcome(found.Z, found.steps, found.seconds, history, found.interrupted, extra)
