"""Where a run goes and whether it fits: the device and the memory checks made before anything
is allocated."""

from __future__ import annotations

import os
from typing import Any

import torch

from .kernels import DEFAULT_TILE

__all__ = ["available_memory", "check_memory", "required_memory", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available else CPU; ``"cuda"`` without CUDA -> ``ValueError``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def available_memory(device: torch.device) -> int:
    """Bytes available for new allocations: ``MemAvailable`` of ``/proc/meminfo`` (or
    ``os.sysconf``) on the CPU, ``torch.cuda.mem_get_info`` on CUDA."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


def required_memory(
    num: int, dim: int, *, restarts: int = 1, itemsize: int = 4, tile: int = DEFAULT_TILE
) -> int:
    """Bytes the optimiser needs: about 8 copies of the ``(R, N, d)`` state (iterate, best, two
    Adam moments, gradient, temporaries) plus a few ``R * tile^2`` tile buffers, plus the
    float64 copy used for the final verification."""
    state = 8 * restarts * num * dim * itemsize + 8 * num * dim
    t = min(tile, num)
    return int(state + 4 * restarts * t * t * itemsize)


def check_memory(
    num: int, dim: int, device: torch.device, *, what: str | None = None, **kwargs: Any
) -> None:
    """Raise ``ValueError`` before allocating if ``num`` rows of ``R^dim`` cannot be optimised on
    ``device`` (see :func:`required_memory`; ``kwargs`` go to it). ``what`` names the request in
    the message (default ``"num=..., dim=..."``)."""
    need = required_memory(num, dim, **kwargs)
    have = available_memory(device)
    if need > have:
        what = what or f"num={num}, dim={dim}"
        raise ValueError(
            f"{what} needs about {need / 2**30:.3g} GiB on {device} but only "
            f"{have / 2**30:.3g} GiB is available; use a smaller size or another device"
        )
