"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``).

Every benchmark reports ratios measured in the same run (an operation against a reference
operation timed just before or after it), so a noisy or slow machine shifts both and the ratio
stays meaningful. Timings belong here, never in test assertions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["best_time", "gemm_rate", "median_time", "open_device", "sync"]


def open_device(device: str, threads: int | None = None) -> torch.device:
    """Set torch's CPU threads (when given), check that ``device`` exists and print the header
    line every table starts with (device name, torch version, threads); return the device."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    return dev


def sync(device: torch.device | str) -> None:
    """Wait for queued kernels, so that wall-clock timing covers the work (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _times(fn: Callable[[], object], device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def median_time(
    fn: Callable[[], object], device: torch.device | str, repeats: int, warmup: int = 1
) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    return statistics.median(_times(fn, device, repeats, warmup))


def best_time(
    fn: Callable[[], object], device: torch.device | str, repeats: int, warmup: int = 1
) -> float:
    """Fastest wall time of ``fn()`` in seconds: the rate the hardware can reach."""
    return min(_times(fn, device, repeats, warmup))


def gemm_rate(
    rows: int,
    cols: int,
    inner: int,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
) -> float:
    """Flop rate (flop/s) of one ``(rows x inner) @ (inner x cols)`` product, best of repeats.

    This is the reference a tiled algorithm is judged against: a tile-sized ``torch.mm`` into a
    preallocated output, ``2 * rows * cols * inner`` flops.
    """
    a = torch.randn(rows, inner, device=device, dtype=dtype)
    b = torch.randn(cols, inner, device=device, dtype=dtype)
    out = torch.empty(rows, cols, device=device, dtype=dtype)
    seconds = best_time(lambda: torch.mm(a, b.T, out=out), device, repeats)
    return 2.0 * rows * cols * inner / seconds
