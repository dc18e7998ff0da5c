"""Time per optimiser step at large N against its matrix products, with peak memory.

    .venv/bin/python benchmarks/bench_steps.py --device cuda --sizes 100000x512 1000000x512 [--tf32]
    .venv/bin/python benchmarks/bench_steps.py --batches 256x30x4 185x60x6 66x80x7

With ``--batches R x N x d`` it times instead the steps of the multi-start search's batches (``R``
small packings side by side, float32, on the CPU) with the surrogate's gradient summed as it is
and transposed (:func:`ebv_gen.kernels.surrogate_parts`), alternately, and prints the ratio.

For each size ``N x d`` (float32 rows, one packing) it measures the GEMM rate ``R`` of one
tile-sized product (``tile x d`` by ``d x tile``, the same dtype and matmul precision) and then
times ``--steps`` steps of :class:`ebv_gen.optimize.CoherenceAdam` after one warm-up step. A step
needs ``3 N^2 d`` flops (three products per tile pair over the ``N^2 / 2`` pairs: the tile, and
the gradient of both row blocks), so ``floor = 3 N^2 d / R`` and ``ratio = step / floor``
(1.0: everything but the products is free). ``--tf32`` allows TF32 tile products on CUDA
(float32 accumulation; the verification of a result stays float64). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import gemm_rate, open_device, sync

from ebv_gen import kernels
from ebv_gen.kernels import DEFAULT_TILE
from ebv_gen.optimize import CoherenceAdam
from ebv_gen.product import random_start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sizes", nargs="+", default=["20000x256"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--tile", type=int, default=DEFAULT_TILE)
    p.add_argument("--tf32", action="store_true", help="TF32 tile products on CUDA")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batches", nargs="+", metavar="RxNxD", help="time the search's batches")
    args = p.parse_args(argv)
    dev = open_device(args.device, args.threads)
    if args.batches:
        return _batches(args.batches, args.steps, dev)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    print("| N | d | tile | GEMM rate (TFLOP/s) | floor (s) | step (s) | ratio | peak (GB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        num, dim = (int(x) for x in size.lower().split("x"))
        rate = gemm_rate(args.tile, args.tile, dim, dev)
        gen = torch.Generator().manual_seed(0)
        Z0 = random_start(1, num, dim, dtype=torch.float32, device=dev, generator=gen)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        opt = CoherenceAdam(Z0, tile=args.tile)
        opt.step(0.0)  # warm-up: buffers, kernels
        sync(dev)
        t0 = time.perf_counter()
        for i in range(args.steps):
            opt.step((i + 1) / (args.steps + 1))
        sync(dev)
        per = (time.perf_counter() - t0) / args.steps
        floor = 3.0 * num * num * dim / rate
        peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else float("nan")
        print(f"| {num} | {dim} | {args.tile} | {rate / 1e12:.1f} | {floor:.3f} | {per:.3f} | "
              f"{per / floor:.2f} | {peak:.2f} |", flush=True)  # fmt: skip


def _batches(sizes: list[str], steps: int, dev: torch.device) -> None:
    """Steps of ``R`` small packings with the gradient summed as it is and transposed."""
    print("| R | N | d | plain (ms/step) | transposed (ms/step) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        R, num, dim = (int(x) for x in size.lower().split("x"))
        gen = torch.Generator().manual_seed(0)
        Z0 = random_start(R, num, dim, dtype=torch.float32, device=dev, generator=gen)
        per = {False: [], True: []}
        for _ in range(3):  # alternately, so that a disturbance hits both
            for flag in (False, True):
                kernels._TRANSPOSED_GRADIENT = flag
                opt = CoherenceAdam(Z0)
                opt.step(0.0)
                sync(dev)
                t0 = time.perf_counter()
                for i in range(steps):
                    opt.step((i + 1) / (steps + 1))
                sync(dev)
                per[flag].append((time.perf_counter() - t0) / steps)
        kernels._TRANSPOSED_GRADIENT = True
        plain, trans = min(per[False]), min(per[True])
        print(f"| {R} | {num} | {dim} | {plain * 1e3:.2f} | {trans * 1e3:.2f} | "
              f"{plain / trans:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
