"""Tiled coherence time against the matrix-product floor measured in the same run.

    .venv/bin/python benchmarks/bench_coherence.py [--device cpu|cuda] [--sizes 10000x128 ...]

For each size ``N x d`` (random float32 rows) it times :func:`grassmann.coherence` and reports

* ``floor``: the time the matrix products alone need. The tiled search multiplies only the
  upper-triangular block pairs, i.e. ``N^2 d`` flops (``N (N - 1) / 2`` dot products of length
  ``d``, 2 flops each, rounded to ``N^2 d``). ``floor = N^2 d / R`` where ``R`` (flop/s) is the
  rate of one ``torch.mm(A, B.T, out=T)`` with ``A, B`` of shape ``chunk x d`` and the same
  dtype and chunk as the search, best of several repetitions, measured just before.
* ``ratio = time / floor``: 1.0 would mean the tiling, reductions, normalisation and float64
  verification cost nothing on top of the products.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import gemm_rate, open_device, sync

from grassmann.coherence import coherence, default_chunk_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["10000x128", "10000x512", "50000x128", "50000x512"],
        help="N x d pairs, e.g. 10000x128",
    )
    parser.add_argument("--chunk", type=int, default=None, help="rows per block (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    device = open_device(args.device, args.threads)
    print("| N | d | chunk | GEMM rate (GFLOP/s) | floor (s) | time (s) | ratio | coherence |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        n, d = (int(x) for x in size.lower().split("x"))
        chunk = args.chunk or default_chunk_size(n, d, device)
        gen = torch.Generator(device="cpu").manual_seed(0)
        W = torch.randn(n, d, generator=gen).to(device)
        coherence(W[: min(n, 2 * chunk)], chunk_size=chunk)  # warm-up
        rate = gemm_rate(chunk, chunk, d, device)
        floor = n * n * d / rate
        sync(device)
        t0 = time.perf_counter()
        mu = coherence(W, chunk_size=chunk)
        sync(device)
        elapsed = time.perf_counter() - t0
        print(
            f"| {n} | {d} | {chunk} | {rate / 1e9:.1f} | {floor:.3f} | {elapsed:.3f} | "
            f"{elapsed / floor:.2f} | {mu:.6f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
