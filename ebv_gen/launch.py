"""Joining the process group that ``torchrun`` describes in the environment.

``torchrun --nproc-per-node P -m ebv_gen generate NUM DIM -o FILE.npy`` starts ``P`` processes
with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set (the
multi-node form adds ``--nnodes`` and a rendezvous endpoint). :func:`join_from_environment`
initialises the default group from them: NCCL when the run is on CUDA (each process on the GPU
of its ``LOCAL_RANK``), gloo on CPUs. Without ``WORLD_SIZE`` nothing happens and the run is an
ordinary single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

__all__ = ["Launch", "join_from_environment", "leave"]

#: How long a collective may wait for the other ranks before the group fails (instead of
#: hanging): a step of the largest problems takes minutes on one device.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Launch:
    """This process's place in the run: ``group`` is ``None`` for a single process."""

    group: Any = None
    rank: int = 0
    world: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and prints (rank 0)."""
        return self.rank == 0


def join_from_environment(device: str | None) -> Launch:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` set).

    ``device`` is the run's device option: ``"cuda"`` (or ``None`` with CUDA present) selects
    NCCL and the GPU of ``LOCAL_RANK``; anything else gloo.

    Raises
    ------
    ValueError
        ``WORLD_SIZE`` or ``RANK`` that are not integers, or CUDA asked for more local ranks
        than there are GPUs.
    """
    if "WORLD_SIZE" not in os.environ:
        return Launch()
    import torch.distributed as dist

    try:
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} and LOCAL_RANK="
            f"{os.environ.get('LOCAL_RANK')!r} must be integers (set by torchrun)"
        ) from None
    cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s): "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return Launch(dist.group.WORLD, dist.get_rank(), world, backend)


def leave(launch: Launch) -> None:
    """Destroy the process group of ``launch`` (nothing for a single process)."""
    if launch.group is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
