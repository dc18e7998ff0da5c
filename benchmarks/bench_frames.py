"""Algebraic frames for N >> d from the catalog: build time, coherence from theory, bound.

    .venv/bin/python benchmarks/bench_frames.py [--sizes 262143x511 ...] [--dtype float32]
        [--device cpu|cuda] [--verify]

For each size ``N x d`` it takes the best entry of :func:`grassmann.frame_candidates` (no
optimiser) and reports

* ``list (us)``: the time to list all candidates (nothing is built);
* ``build (s)`` and ``build / fill``: the time of :meth:`Candidate.build`, and its ratio to
  filling a preallocated ``N x d`` tensor of the same dtype with a constant, measured just
  before (the memory-write floor of any construction; the issue's bar is ``build < 10 s``);
* the coherence from theory, the best lower bound and their ratio, and the issue's bar;
* with ``--verify``: the float64 coherence of the built frame (tiled
  :func:`grassmann.coherence`, ``N^2 d`` flops: minutes at these sizes on a CPU), its
  difference from the theory, and its time against the matrix-product floor ``N^2 d / R``
  (``R`` the rate of one float64 tile product measured in the same run).

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import gemm_rate, median_time, open_device, sync

import grassmann
from grassmann.coherence import default_chunk_size

#: the issue's bars on the coherence (no optimiser, CPU, < 10 s)
BARS = {(262_143, 511): 0.0646, (100_000, 512): 0.0646, (32_736, 1023): 0.0323}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["262143x511", "100000x512", "32736x1023"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--verify", action="store_true", help="also compute the float64 coherence (slow)"
    )
    args = parser.parse_args(argv)
    device = open_device(args.device, args.threads)
    dtype = DTYPES[args.dtype]
    sizes = [tuple(int(x) for x in s.lower().split("x")) for s in args.sizes]

    print(f"build in {args.dtype}")
    print(
        "| N | d | construction | list (us) | build (s) | build / fill | coherence | bound "
        "| ratio | bar |"
    )
    print("|---:|---:|:---|---:|---:|---:|---:|:---|---:|:---|")
    for num, dim in sizes:
        cands = grassmann.frame_candidates(num, dim)
        listing = median_time(
            lambda num=num, dim=dim: grassmann.frame_candidates(num, dim), "cpu", 20
        )
        best = cands[0]
        buf = torch.empty(num, dim, dtype=dtype, device=device)
        fill = median_time(lambda buf=buf: buf.fill_(1.0), device, 3)
        del buf
        sync(device)
        t0 = time.perf_counter()
        frame = best.build(dtype=dtype, device=device)
        sync(device)
        build = time.perf_counter() - t0
        del frame
        bar = BARS.get((num, dim))
        verdict = "-" if bar is None else f"<= {bar}: {'yes' if best.coherence <= bar else 'NO'}"
        print(
            f"| {num} | {dim} | {best.name} | {listing * 1e6:.0f} | {build:.2f} | "
            f"{build / fill:.1f} | {best.coherence:.6f} | {best.bound:.6f} ({best.bound_name}) "
            f"| {best.ratio:.3f} | {verdict} |",
            flush=True,
        )

    if not args.verify:
        return
    print("\nfloat64 verification (tiled grassmann.coherence)")
    print("| N | d | theory | verified | difference | time (s) | time / GEMM floor |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for num, dim in sizes:
        best = grassmann.frame_candidates(num, dim)[0]
        frame = best.build(dtype=torch.float64, device=device)
        chunk = default_chunk_size(num, dim, device)
        rate = gemm_rate(chunk, chunk, dim, device, dtype=torch.float64)
        sync(device)
        t0 = time.perf_counter()
        mu = grassmann.coherence(frame)
        sync(device)
        elapsed = time.perf_counter() - t0
        floor = num * num * dim / rate
        print(
            f"| {num} | {dim} | {best.coherence:.15f} | {mu:.15f} | {abs(mu - best.coherence):.1e} "
            f"| {elapsed:.1f} | {elapsed / floor:.2f} |",
            flush=True,
        )
        del frame


if __name__ == "__main__":
    main()
