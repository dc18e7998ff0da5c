"""The minimax finish with HiGHS's primal simplex against its dual simplex, in the same run.

    .venv/bin/python benchmarks/bench_finish.py [--cases 26x6 62x5 45x7] [--starts 4]

For each ``N x d`` it draws ``--starts`` random packings of ``N`` lines in ``R^d``, runs the
search's exploration and sharper run on them (as :func:`ebv_gen.multistart.multistart` does
before a finish), and then times :func:`ebv_gen.finish.minimax_finish` from the same starts
twice: with the primal simplex the finish uses (``ebv_gen.finish._PRIMAL_SIMPLEX``) and with
scipy's default, the dual simplex. It prints both times, their ratio, and the largest
difference between the two runs' coherences (the same steps: 0 up to rounding).
``--simplex-nnz`` changes the size above which both go to the interior-point solver instead
(``ebv_gen.finish._SIMPLEX_NNZ``).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _timing import open_device

import ebv_gen.finish as finish
from ebv_gen.multistart import (
    EXPLORE_BETA_END,
    REFINE_BETA,
    REFINE_LR,
    REFINE_STEPS,
    round_steps,
    start_sharpness,
)
from ebv_gen.optimize import minimize_coherence
from ebv_gen.product import random_start


def _starts(num: int, dim: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Z0 = random_start(count, num, dim, dtype=torch.float64, generator=g).float()
    beta = (start_sharpness(count, dim), EXPLORE_BETA_END)
    explored = minimize_coherence(Z0, steps=round_steps(num), beta=beta).restart_Z.double()
    return minimize_coherence(
        explored, steps=REFINE_STEPS, beta=REFINE_BETA, lr=REFINE_LR
    ).restart_Z


def _finish_all(starts: torch.Tensor, max_iter: int) -> tuple[float, list[float]]:
    t = time.perf_counter()
    out = [math.sqrt(finish.minimax_finish(Z, max_iter=max_iter).similarity) for Z in starts]
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["26x6", "62x5", "45x7"])
    p.add_argument("--starts", type=int, default=4)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--simplex-nnz", type=int, default=finish._SIMPLEX_NNZ)
    args = p.parse_args(argv)
    open_device("cpu", args.threads)
    print("| N | d | starts | primal s | dual s | dual / primal | max coherence difference |")
    print("|---|---|---|---|---|---|---|")
    primal, nnz = dict(finish._PRIMAL_SIMPLEX), finish._SIMPLEX_NNZ
    for case in args.cases:
        num, dim = (int(x) for x in case.split("x"))
        starts = _starts(num, dim, args.starts, args.seed)
        try:
            finish._SIMPLEX_NNZ = args.simplex_nnz
            finish._PRIMAL_SIMPLEX = primal
            t_primal, c_primal = _finish_all(starts, args.max_iter)
            finish._PRIMAL_SIMPLEX = {}
            t_dual, c_dual = _finish_all(starts, args.max_iter)
        finally:
            finish._PRIMAL_SIMPLEX, finish._SIMPLEX_NNZ = primal, nnz
        diff = max(abs(a - b) for a, b in zip(c_primal, c_dual, strict=True))
        print(
            f"| {num} | {dim} | {args.starts} | {t_primal:.2f} | {t_dual:.2f} "
            f"| {t_dual / t_primal:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
