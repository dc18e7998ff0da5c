"""Distributed generation on CPU ranks (gloo): time per step against ranks, bytes moved per
step, and a cost model for GPUs (when a second GPU or a second machine pays off).

    .venv/bin/python benchmarks/bench_distributed.py [--sizes 4000x128 8000x128] [--ranks 1 2]

For each size ``N x d`` and each world size ``P`` the script spawns ``P`` processes (one CPU
thread each), joins them in a gloo group on 127.0.0.1 and times ``--steps`` optimiser steps of
``ebv_gen.optimize.minimize_coherence(..., group=...)`` (float32, one packing), after one
warm-up step. Printed per row: seconds per step, speed-up against ``P = 1`` in the same run, and
the bytes each rank sends and receives per step, counted from the collectives the step makes:

* all-gather of the rows: ``N d s (P - 1) / P`` in and out per rank (``s`` bytes per number),
* all-reduce of the gradient (a ring: ``2 N d s (P - 1) / P``), and a few scalars.

Cost model (printed after the measurements; no GPU needed). One step multiplies three
``N x N x d`` halves (the tile products, ``grad_I += A Z_J`` and ``grad_J += A^T Z_I``), so
``compute = 3 N^2 d / (P R)`` at a GEMM rate ``R``, and moves ``comm = 3 N d s (P - 1) / P / B``
over a link of bandwidth ``B``, not overlapped (the worst case). A second GPU pays off when
``compute(1) > compute(2) + comm(2)``, i.e. from ``N > R s / B``. The figures assumed for an
8-GPU H200 machine: ``R`` = 400 TFLOP/s (TF32 tiles, float32 accumulation; about 40% of the
989 TFLOP/s dense BF16 peak), NVLink 450 GB/s per direction, and 50 GB/s (400 Gb/s
InfiniBand) between machines. They are assumptions, not measurements: ``benchmarks/gpu_check.sh``
measures ``R`` on a real GPU.

Run on a quiet machine: with 2 cores, 2 ranks are the most that can show a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebv_gen.optimize import minimize_coherence  # noqa: E402
from ebv_gen.product import random_start  # noqa: E402
from tests._spawn import init_gloo, spawn  # noqa: E402

GPU_RATE = 4e14
NVLINK = 4.5e11
INFINIBAND = 5e10


def _worker(rank, world, port, out, num, dim, steps):
    init_gloo(rank, world, port)
    try:
        Z0 = random_start(1, num, dim, generator=torch.Generator().manual_seed(0))
        kw = {"steps": steps + 1, "group": dist.group.WORLD, "tile": 1024}
        marks: list[float] = []
        minimize_coherence(Z0, callback=lambda *a: marks.append(time.perf_counter()), **kw)
        per_step = (marks[-1] - marks[0]) / max(1, len(marks) - 1)
        if rank == 0:
            Path(out).write_text(json.dumps({"per_step": per_step}))
    finally:
        dist.destroy_process_group()


def bytes_per_step(num: int, dim: int, world: int, itemsize: int = 4) -> float:
    """Bytes each rank sends (and receives) per step: the all-gather of the rows and the ring
    all-reduce of the gradient (the scalar reductions are negligible)."""
    return 3.0 * num * dim * itemsize * (world - 1) / world


def cost_model(dim: int = 512, itemsize: int = 4) -> None:
    print(f"\nCost model, d = {dim}, float32 rows, R = {GPU_RATE / 1e12:.0f} TFLOP/s per GPU")
    print("| N | 1 GPU step (s) | 8 GPUs NVLink (s) | speed-up | 2 machines x 8 (s) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for num in (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000):
        one = 3.0 * num * num * dim / GPU_RATE
        p8 = one / 8 + bytes_per_step(num, dim, 8, itemsize) / NVLINK
        p16 = one / 16 + bytes_per_step(num, dim, 16, itemsize) / INFINIBAND
        print(f"| {num:,} | {one:.3g} | {p8:.3g} | {one / p8:.1f} | {p16:.3g} | {one / p16:.1f} |")
    for name, bw in (("NVLink", NVLINK), ("InfiniBand", INFINIBAND)):
        print(
            f"a second GPU over {name} pays off from N > R s / B = {GPU_RATE * itemsize / bw:,.0f}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["4000x128", "8000x128"])
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    print(
        f"torch {torch.__version__}, gloo on 127.0.0.1, 1 thread per rank, {os.cpu_count()} cores\n"
    )
    print("| N | d | ranks | s/step | speed-up | MB per rank per step |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        num, dim = (int(x) for x in size.lower().split("x"))
        base = None
        for world in args.ranks:
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "t.json")
                codes = spawn(_worker, world, out, num, dim, args.steps)
                if codes != [0] * world:
                    raise SystemExit(f"ranks exited with {codes}")
                per = json.loads(Path(out).read_text())["per_step"]
            base = per if base is None else base
            mb = bytes_per_step(num, dim, world) / 1e6
            print(
                f"| {num} | {dim} | {world} | {per:.3f} | {base / per:.2f} | {mb:.2f} |", flush=True
            )
    cost_model()


if __name__ == "__main__":
    main()
