"""Checkpoints of a run: one file in one process, one shard per rank plus a manifest across a
process group.

* One process: ``FILE.ckpt.pt`` holds ``{"meta", "state", "rng"}``
  (:func:`ebv_gen.io.save_checkpoint`, atomic).
* A process group (:mod:`ebv_gen.sharding`): each rank writes its optimiser state (its own
  rows) with ``meta`` to ``FILE.ckpt.pt.<step>.rank<r>-of-<P>`` (atomic); after a barrier rank
  0 writes the manifest ``FILE.ckpt.pt`` (atomic): ``meta`` and
  ``{"world", "backend", "step", "shards"}``; after a second barrier each rank removes its
  shard of the previous checkpoint. A kill at any moment leaves the last manifest and the
  shards it names intact. ``--resume`` needs the same world size; every rank reads the manifest
  and its own shard, so across machines the checkpoint must be on a shared file system.

The multi-start search of a small problem is not shared: each rank runs its own
(:func:`ebv_gen.search.search_seed`) and checkpoints it after each of its rounds, rank 0 to
``FILE.ckpt.pt`` as one process does, rank ``r > 0`` to ``FILE.ckpt.pt.search.rank<r>-of-<P>``
(:func:`search_path`; atomic). The ranks' rounds are not in step, so neither are their files;
each resumes from its own last one (with or without rank 0's), and a rank whose file is
missing (or that did not exist when the checkpoint was written) starts its search again from
its seed. The end of an uninterrupted run removes the own searches' files of any world size.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .io import checkpoint_writer as _single_writer
from .io import load_checkpoint, save_checkpoint
from .io import resume_checkpoint as _single_resume

__all__ = [
    "checkpoint_writer",
    "remove_checkpoint",
    "resume_checkpoint",
    "search_path",
    "shard_path",
]


def _rank_world(group: Any) -> tuple[int, int]:
    if group is None:
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(group), dist.get_world_size(group)


def _barrier(group: Any) -> None:
    if group is not None:
        import torch.distributed as dist

        dist.barrier(group=group)


def shard_path(path: str | os.PathLike, step: int, rank: int, world: int) -> Path:
    """The shard of ``rank`` of the checkpoint at ``path`` taken at ``step``."""
    p = Path(path)
    return p.with_name(f"{p.name}.{step}.rank{rank}-of-{world}")


def search_path(path: str | os.PathLike, rank: int, world: int) -> Path:
    """The checkpoint of rank ``rank``'s own multi-start search (``rank > 0``; rank 0 writes
    ``path`` itself)."""
    p = Path(path)
    return p.with_name(f"{p.name}.search.rank{rank}-of-{world}")


def checkpoint_writer(
    path: str | os.PathLike,
    meta: dict[str, Any],
    generator: torch.Generator,
    group: Any = None,
) -> Callable[[dict[str, Any]], None]:
    """The ``checkpoint=`` callback of the search: one file, or shards and a manifest.

    Across a process group every rank must call it at the same step (the optimiser's loop
    agrees on when, see :func:`ebv_gen.optimize.minimize_coherence`).
    """
    rank, world = _rank_world(group)
    single = _single_writer(path, meta, generator)
    if world == 1:
        return single
    own = single if rank == 0 else _single_writer(search_path(path, rank, world), meta, generator)
    backend = _backend(group)
    # a resumed run replaces the shards of the checkpoint it resumed from
    previous: list[Path] = []
    if Path(path).exists():
        manifest = load_checkpoint(path).get("manifest")
        if manifest is not None and manifest.get("world") == world:
            previous.append(Path(path).with_name(manifest["shards"][rank]))

    def write(state: dict[str, Any]) -> None:
        if state.get("kind") == "multistart":  # this rank's own search: its own file
            own(state)
            return
        step = int(state["step"])
        mine = shard_path(path, step, rank, world)
        save_checkpoint(mine, {"meta": meta, "state": state})
        _barrier(group)
        if rank == 0:
            manifest = {
                "world": world,
                "backend": backend,
                "step": step,
                "shards": [shard_path(path, step, r, world).name for r in range(world)],
            }
            save_checkpoint(path, {"meta": meta, "manifest": manifest})
        _barrier(group)
        for old in previous:
            if old != mine:
                old.unlink(missing_ok=True)
        previous[:] = [mine]

    return write


def _backend(group: Any) -> str:
    import torch.distributed as dist

    return str(dist.get_backend(group))


def resume_checkpoint(
    path: str | os.PathLike,
    meta: dict[str, Any],
    keys: Sequence[str],
    group: Any = None,
) -> dict[str, Any] | None:
    """The state to resume from at ``path`` (this rank's shard or own search across a group),
    or ``None``.

    Across a group the ranks agree: when any rank cannot resume, every rank raises (naming
    that rank), instead of one rank failing while the others wait for it in a collective.

    Raises
    ------
    ValueError
        A checkpoint of a different run (names the first differing key) or of another world
        size.
    grassmann.npyio.UnusableFileError
        A file that is not a readable checkpoint, or a manifest whose shard is missing.
    """
    rank, world = _rank_world(group)
    if world == 1:
        return _resume_rank(Path(path), meta, keys, 0, 1)
    import torch.distributed as dist

    state: dict[str, Any] | None = None
    error: ValueError | None = None
    try:
        state = _resume_rank(Path(path), meta, keys, rank, world)
    except ValueError as exc:  # UnusableFileError included
        error = exc
    everyone: list[Any] = [None] * world
    dist.all_gather_object(everyone, None if error is None else str(error), group=group)
    if error is not None:
        try:
            raise error
        finally:
            # this frame holds the exception and its traceback holds this frame: a cycle that
            # kept the group alive until the garbage collector ran, at interpreter exit as
            # likely as not, where gloo's destructor aborts the process (exit code -6 after a
            # clean refusal, about once in 60 runs on 2 ranks)
            del error
    failed = [r for r, msg in enumerate(everyone) if msg is not None]
    if failed:
        raise ValueError(f"rank {failed[0]} cannot resume: {everyone[failed[0]]}")
    return state


def _resume_rank(
    p: Path, meta: dict[str, Any], keys: Sequence[str], rank: int, world: int
) -> dict[str, Any] | None:
    """What rank ``rank`` of ``world`` resumes from (see :func:`resume_checkpoint`)."""
    own = search_path(p, rank, world) if rank > 0 else None
    if not p.exists():
        # rank 0 has not checkpointed yet; a rank's own search may have
        return None if own is None else _single_resume(own, meta, keys)
    manifest = load_checkpoint(p).get("manifest")
    if manifest is None:
        state = _single_resume(p, meta, keys)
        if world > 1 and state is not None and state.get("kind") != "multistart":
            raise ValueError(
                f"cannot resume from {str(p)!r}: it was written by one process, this run "
                f"has {world} ranks (resume with the world size that wrote it)"
            )
        return state if own is None else _single_resume(own, meta, keys)
    if manifest["world"] != world:
        raise ValueError(
            f"cannot resume from {str(p)!r}: it was written by {manifest['world']} ranks, "
            f"this run has {world} (resume with the same world size)"
        )
    # each shard carries the run's meta: the same checks as a single file
    return _single_resume(p.with_name(manifest["shards"][rank]), meta, keys)


def remove_checkpoint(path: str | os.PathLike, group: Any = None) -> None:
    """Remove the checkpoint at ``path`` and, across a group, the shards its manifest names."""
    rank, world = _rank_world(group)
    p = Path(path)
    _barrier(group)
    if rank > 0:
        search_path(p, rank, world).unlink(missing_ok=True)
    if rank == 0:  # the own searches' files of runs of any world size
        for stale in p.parent.glob(f"{glob.escape(p.name)}.search.rank*-of-*"):
            stale.unlink(missing_ok=True)
    if p.exists() and world > 1:
        saved = load_checkpoint(p)
        manifest = saved.get("manifest")
        if manifest is not None:
            p.with_name(manifest["shards"][rank]).unlink(missing_ok=True)
    _barrier(group)
    if rank == 0:
        p.unlink(missing_ok=True)
