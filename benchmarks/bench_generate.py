"""Quality and speed of the EBV generator; prints markdown tables (one run).

    .venv/bin/python benchmarks/bench_generate.py [--budget 60] [--baseline-long 0] [--quick]

1. Known optima: target coherence, reached, method, seconds (``auto`` and the optimiser alone).
2. (1000, 100) lines at an equal time budget: ours (``auto``: the optimiser's result and the real
   mutually unbiased bases packing, the better returned; both shown) against the published threshold
   algorithm given the same total time for its whole threshold search (bisection; each trial
   stops when it reaches its threshold or stalls), reported both as the smallest threshold it
   reached and as the best ``max |cos|`` any trial reached; optionally also with a longer
   budget for the baseline alone (``--baseline-long``). The Welch bound for reference.
3. Time per optimisation step as a ratio to the time of the matrix products it needs
   (``4 N^2 d`` flops at the GEMM rate measured on a tile-sized product in the same run):
   steady state (median step after warm-up, start and final passes excluded) and end to end
   (a whole short run, divided by its steps).
4. Peak memory (RSS) of one (20000, 256) step on the CPU, against the RSS after the imports
   (same subprocess, high-water mark reset after the imports; Linux ``/proc``).

Timings depend on the machine's load: the ``load`` column is ``os.getloadavg()[0]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time

import torch

import grassmann
from ebv_gen import generate
from ebv_gen.optimize import (
    DEFAULT_TILE,
    ThresholdResult,
    best_threshold,
    default_steps,
    minimize_coherence,
    random_start,
)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def known_optima() -> None:
    rows = [(6, 3, "lines"), (10, 5, "lines"), (16, 6, "lines"), (28, 7, "lines")]
    rows += [(d + 1, d, "lines") for d in (3, 8, 32)]
    rows += [(12, 3, "sphere"), (4, 3, "sphere"), (144, 16, "lines")]
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


def _baseline(W0: torch.Tensor, budget: float, low: float) -> tuple[float, list[ThresholdResult]]:
    trials: list[ThresholdResult] = []
    thr, _ = best_threshold(W0, time_budget=budget, low=low, high=0.5, rounds=64, trials=trials)
    return thr, trials


def _baseline_row(label: str, thr: float, trials: list[ThresholdResult], welch: float) -> str:
    best = min(trials, key=lambda r: r.coherence)
    mu = grassmann.coherence(best.Z, mode="lines")
    steps = sum(r.steps for r in trials)
    sec = sum(r.seconds for r in trials)
    reached = sum(r.reached for r in trials)
    return (
        f"| {label}: {len(trials)} trials ({reached} reached), smallest threshold reached "
        f"{thr:.4f} | {mu:.4f} | {mu / welch:.3f} | {steps} | {sec:.1f} |"
    )


def equal_budget(budget: float, long_budget: float) -> None:
    num, dim = 1000, 100
    welch = grassmann.lower_bound(num, dim, "lines").value
    gen = torch.Generator().manual_seed(0)
    W0 = random_start(1, num, dim, generator=gen)[0]
    load0 = _load()
    thr, trials = _baseline(W0, budget, welch)
    load1 = _load()
    ours = generate(num, dim, method="auto", time_budget=budget, device="cpu")
    load2 = _load()
    print(f"## (1000, 100) lines, equal time budget {budget:g} s on the CPU\n")
    print(
        "The published algorithm (plain SGD, lr 1e-3, summed hinge) gets the whole budget for "
        "its threshold search: bisection from [Welch, 0.5], every trial from the same start, "
        "stopping when it reaches its threshold (+1e-4, as the script) or stalls (100 steps "
        "without progress). Its coherence is the best max |cos| any trial reached.\n"
    )
    print("| method | coherence | ratio to Welch | steps | seconds |")
    print("|---|---|---|---|---|")
    print(f"| Welch bound | {welch:.4f} | 1.000 | | |")
    print(_baseline_row("published threshold SGD, bisection", thr, trials, welch))
    lse = ours.extra["candidates"]["lse"]
    mub = ours.extra["candidates"]["mub"]
    print(
        f"| ours, optimiser alone (lse, float32) | {lse:.4f} | {lse / welch:.3f} | "
        f"{ours.steps} | {ours.seconds:.1f} |"
    )
    print(f"| ours, unbiased bases alone (mub) | {mub:.4f} | {mub / welch:.3f} | 0 | |")
    print(
        f"| **ours, auto** (returns {ours.method}) | **{ours.coherence:.4f}** | "
        f"{ours.coherence / welch:.3f} | {ours.steps} | {ours.seconds:.1f} |"
    )
    if long_budget > 0:
        load3 = _load()
        thr_l, trials_l = _baseline(W0, long_budget, welch)
        print(
            _baseline_row(
                f"published, {long_budget:g} s bisection (load {load3})", thr_l, trials_l, welch
            )
        )
    print(f"\n(load average: {load0} before, {load1} after the baseline, {load2} after ours)\n")
    print("Baseline trials (threshold, reached, stalled, steps, best max |cos|, seconds):\n")
    for r in trials:
        how = "reached" if r.reached else "stalled" if r.stalled else "timeout"
        print(f"    {r.threshold:.4f} {how} {r.steps:5d} {r.coherence:.4f} {r.seconds:5.1f}")
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
    print(
        "| N | d | GEMM rate (GFLOP/s) | 4 N^2 d / rate (s) | steady step (s) | ratio "
        "| end-to-end step (s) | ratio | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for num, dim in sizes:
        tile = min(DEFAULT_TILE, num)
        gen = torch.Generator().manual_seed(0)
        Z0 = random_start(1, num, dim, generator=gen)
        minimize_coherence(Z0, steps=1)  # warm-up
        steps = 6 if num <= 5000 else 3
        stamps: list[float] = []

        def stamp(*_: float, stamps: list[float] = stamps) -> None:
            stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        # the schedule of a full default run (beta and lr change slowly), cut after ``steps``:
        # a run of only ``steps`` steps would compress the schedule into a few huge jumps
        res = minimize_coherence(
            Z0,
            steps=default_steps(num, dim),
            callback=stamp,
            should_stop=lambda stamps=stamps, steps=steps: len(stamps) >= steps,
        )
        end_to_end = (time.perf_counter() - t0) / res.steps
        # steady state: one step = the interval between two callbacks (gradient pass, host
        # sync, update); the first interval is dropped as warm-up
        steady = statistics.median(b - a for a, b in zip(stamps[1:-1], stamps[2:], strict=True))
        rate = gemm_rate(dim, tile)
        ideal = 4.0 * num * num * dim / rate
        print(
            f"| {num} | {dim} | {rate / 1e9:.1f} | {ideal:.3f} | {steady:.3f} | "
            f"{steady / ideal:.2f} | {end_to_end:.3f} | {end_to_end / ideal:.2f} | {_load()} |"
        )
    print()
    print(
        "(end to end includes measuring the start and the final iterate, two extra Gram "
        "passes spread over the steps timed; the GEMM rate is measured after the steps)\n"
    )


def peak_memory(num: int, dim: int) -> None:
    # ru_maxrss cannot be reset and the imports alone set a transient high-water mark above
    # what one step needs, so read VmRSS after the imports, reset VmHWM (Linux: write "5" to
    # /proc/self/clear_refs) and read VmHWM after the step
    code = textwrap.dedent(
        f"""
        import torch
        from ebv_gen.optimize import minimize_coherence, random_start
        def status(key):
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        base = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        Z0 = random_start(1, {num}, {dim}, generator=torch.Generator().manual_seed(0))
        minimize_coherence(Z0, steps=1)
        print(base, status("VmHWM"))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = (int(x) for x in out.stdout.split()[-2:])
    gib = 2**30
    tile = min(DEFAULT_TILE, num)
    print(f"## Peak memory, one step of ({num}, {dim}) on the CPU\n")
    print(
        "| peak RSS | RSS after imports | peak - imports | N x d float32 | tile^2 float32 "
        "| N x N float32 Gram would be |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {peak / gib:.3f} GiB | {base / gib:.3f} GiB | {(peak - base) / gib:.3f} GiB "
        f"| {num * dim * 4 / gib:.3f} GiB | {tile * tile * 4 / gib:.3f} GiB "
        f"| {num * num * 4 / gib:.2f} GiB |"
    )
    print()


def duel(num: int, dim: int, budget: float, device: str) -> None:
    """(N, d) on ``device``: the optimiser alone (``lse``) and ``auto`` against the published
    algorithm (bisection on its threshold), each given ``budget`` seconds."""
    welch = grassmann.lower_bound(num, dim, "lines").value
    W0 = random_start(1, num, dim, generator=torch.Generator().manual_seed(0))[0].to(device)
    thr, trials = _baseline(W0, budget, welch)
    lse = generate(num, dim, method="lse", time_budget=budget, device=device)
    auto = generate(num, dim, method="auto", time_budget=budget, device=device)
    print(f"## ({num}, {dim}) lines, {budget:g} s each on {device}\n")
    print("| method | coherence | ratio to Welch | steps | seconds |")
    print("|---|---|---|---|---|")
    print(f"| Welch bound | {welch:.4f} | 1.000 | | |")
    print(_baseline_row("published threshold SGD, bisection", thr, trials, welch))
    for name, res in (("ours, optimiser (lse)", lse), (f"ours, auto ({auto.method})", auto)):
        print(f"| {name} | {res.coherence:.4f} | {res.coherence / welch:.3f} | {res.steps} | "
              f"{res.seconds:.1f} |")  # fmt: skip
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="equal time budget (s)")
    ap.add_argument(
        "--baseline-long", type=float, default=0.0, help="also give the baseline this long (s)"
    )
    ap.add_argument("--quick", action="store_true", help="smaller speed sizes")
    ap.add_argument(
        "--only", choices=("optima", "budget", "speed", "memory"), help="run one section"
    )
    ap.add_argument("--device", default="cpu", help="device of the duel")
    ap.add_argument("--duel", metavar="NxD", help="only the equal-budget duel at this size")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {_load()}\n")
    if args.duel:
        num, dim = (int(x) for x in args.duel.lower().split("x"))
        duel(num, dim, args.budget, args.device)
        return
    if args.only in (None, "optima"):
        known_optima()
    if args.only in (None, "budget"):
        equal_budget(args.budget, args.baseline_long)
    if args.only in (None, "speed"):
        step_speed([(2000, 128)] if args.quick else [(5000, 128), (20000, 256)])
    if args.only in (None, "memory"):
        peak_memory(20000, 256)


if __name__ == "__main__":
    main()
