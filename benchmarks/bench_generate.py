"""Quality and speed of the EBV generator; prints markdown tables (one run).

    .venv/bin/python benchmarks/bench_generate.py [--budget 60] [--bisect-budget 60] [--quick]

1. Known optima: target coherence, reached, method, seconds (``auto`` and the optimiser alone).
2. (1000, 100) lines at equal time budget: ours (``lse``) vs the published threshold algorithm
   at the best threshold found by bisection (bisection budget separate), with the Welch bound.
3. Time per optimisation step as a ratio to the time of the matrix products it needs
   (``4 N^2 d`` flops at the GEMM rate measured on a tile-sized product in the same run), and
   the peak memory (RSS) of one (20000, 256) step on the CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time

import torch

import grassmann
from ebv_gen import generate
from ebv_gen.optimize import (
    DEFAULT_TILE,
    best_threshold,
    minimize_coherence,
    random_start,
    threshold_descent,
)


def known_optima() -> None:
    rows = [(6, 3, "lines"), (10, 5, "lines"), (16, 6, "lines"), (28, 7, "lines")]
    rows += [(d + 1, d, "lines") for d in (3, 8, 32)]
    rows += [(12, 3, "sphere"), (4, 3, "sphere")]
    print("## Known optima\n")
    print("| N | d | mode | target | method | reached | error | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for num, dim, mode in rows:
        target = grassmann.lower_bound(num, dim, mode).value
        for method in ("auto", "lse"):
            t0 = time.perf_counter()
            res = generate(num, dim, mode=mode, method=method)
            sec = time.perf_counter() - t0
            print(
                f"| {num} | {dim} | {mode} | {target:.9f} | {res.method} | {res.coherence:.9f} "
                f"| {abs(res.coherence - target):.1e} | {sec:.2f} |"
            )
    print()


def equal_budget(budget: float, bisect_budget: float) -> None:
    num, dim = 1000, 100
    bound = grassmann.lower_bound(num, dim, "lines")
    gen = torch.Generator().manual_seed(0)
    W0 = random_start(1, num, dim, generator=gen)[0]
    t0 = time.perf_counter()
    thr, _ = best_threshold(W0, time_budget=bisect_budget, low=bound.value, high=0.5, rounds=6)
    bis = time.perf_counter() - t0
    pub = threshold_descent(W0, thr, time_budget=budget)
    pub_mu = grassmann.coherence(pub.Z, mode="lines")
    ours = generate(num, dim, method="lse", time_budget=budget, device="cpu")
    print(f"## (1000, 100) lines, equal time budget {budget:g} s on the CPU\n")
    print(
        f"Bisection on the threshold: {bisect_budget:g} s budget ({bis:.0f} s used), best "
        f"reachable threshold found {thr:.4f}.\n"
    )
    print("| method | coherence | ratio to Welch | steps | seconds |")
    print("|---|---|---|---|---|")
    print(f"| Welch bound | {bound.value:.4f} | 1.000 | | |")
    print(
        f"| published threshold SGD (threshold {thr:.4f}, lr 1e-3) | {pub_mu:.4f} | "
        f"{pub_mu / bound.value:.3f} | {pub.steps} | {pub.seconds:.1f} |"
    )
    print(
        f"| ours (lse, float32) | {ours.coherence:.4f} | {ours.coherence / bound.value:.3f} | "
        f"{ours.steps} | {ours.seconds:.1f} |"
    )
    print()


def gemm_rate(d: int, tile: int) -> float:
    a = torch.randn(tile, d)
    b = torch.randn(tile, d)
    out = torch.empty(tile, tile)
    torch.mm(a, b.T, out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        torch.mm(a, b.T, out=out)
        reps += 1
    return 2.0 * tile * tile * d * reps / (time.perf_counter() - t0)


def step_speed(sizes) -> None:
    print("## Time per step vs the matrix products it needs (CPU, float32)\n")
    print("| N | d | GEMM rate (GFLOP/s) | 4 N^2 d / rate (s) | step (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for num, dim in sizes:
        tile = min(DEFAULT_TILE, num)
        rate = gemm_rate(dim, tile)
        gen = torch.Generator().manual_seed(0)
        Z0 = random_start(1, num, dim, generator=gen)
        minimize_coherence(Z0, steps=1)  # warm-up
        steps = 3 if num <= 5000 else 2
        t0 = time.perf_counter()
        res = minimize_coherence(Z0, steps=steps)
        # the engine also measures the start (one pass of Gram tiles) and the final iterate
        step = (time.perf_counter() - t0) / res.steps
        ideal = 4.0 * num * num * dim / rate
        print(
            f"| {num} | {dim} | {rate / 1e9:.1f} | {ideal:.3f} | {step:.3f} | {step / ideal:.2f} |"
        )
    print()
    print(
        "(step time includes the per-run overhead of measuring the start and the final iterate,"
        " about two extra Gram passes spread over the steps timed)\n"
    )


def peak_memory(num: int, dim: int) -> None:
    code = textwrap.dedent(
        f"""
        import resource, torch
        from ebv_gen.optimize import minimize_coherence, random_start
        Z0 = random_start(1, {num}, {dim}, generator=torch.Generator().manual_seed(0))
        minimize_coherence(Z0, steps=1)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    base_code = (
        "import resource, torch, ebv_gen; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    base = int(
        subprocess.run(
            [sys.executable, "-c", base_code], capture_output=True, text=True, check=True
        ).stdout
    )
    print(f"## Peak memory, one step of ({num}, {dim}) on the CPU\n")
    print("| peak RSS | of which torch + imports | N x N float32 Gram would be |")
    print("|---|---|---|")
    print(f"| {peak / 2**30:.2f} GiB | {base / 2**30:.2f} GiB | {num * num * 4 / 2**30:.2f} GiB |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="equal time budget (s)")
    ap.add_argument("--bisect-budget", type=float, default=60.0, help="threshold bisection (s)")
    ap.add_argument("--quick", action="store_true", help="smaller speed sizes")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    known_optima()
    equal_budget(args.budget, args.bisect_budget)
    step_speed([(2000, 128)] if args.quick else [(5000, 128), (20000, 256)])
    peak_memory(20000, 256)


if __name__ == "__main__":
    main()
