"""Subspace packings against the Rankin bounds and against random subspaces.

    .venv/bin/python benchmarks/bench_subspaces.py [--device cpu|cuda] [--time-budget SEC]
                                                   [--seed S] [--only literature|gcr]

For each ``(N, n, k)`` it runs :func:`ebv_gen.generate_subspaces` with its defaults (the small
literature cases with the default step count, the GCR-sized ones with ``--time-budget``) and
prints a markdown table:

* ``min d_c``: the minimum chordal distance reached (float64, on the saved float32 bases);
* ``bound``: the upper bound of :func:`grassmann.subspace_lower_bound` and which one
  (``orthogonal`` when ``N min(k, n - k) <= n``, else the Rankin simplex or orthoplex bound of
  Conway, Hardin and Sloane 1996); ``ratio = min d_c / bound`` (1: provably optimal);
* ``known``: the best packing known in the literature where this script is sure of it (the
  optimal lines in ``R^3``: 90, 70.53, 63.43, 63.43 degrees for ``N = 3 .. 6``; otherwise
  the bound when the search meets it, which proves optimality), else ``-``;
* ``random``: the minimum chordal distance of ``N`` Haar-random subspaces (same seed), the
  starting quality a packing should improve on;
* ``steps``, ``seconds``: of the search.
"""

from __future__ import annotations

import argparse
import math

from _timing import open_device

from ebv_gen import generate_subspaces
from ebv_gen.subspaces import random_min_distance

#: Small cases from Conway, Hardin and Sloane (1996): lines in R^3, planes in R^4 and R^5.
LITERATURE = [
    *[(num, 3, 1) for num in range(3, 7)],
    *[(num, 4, 2) for num in range(3, 15)],
    *[(num, 5, 2) for num in range(3, 8)],
]

#: Sizes of Grassmann class heads (classes, feature width, subspace dimension).
GCR = [(10, 64, 4), (10, 64, 8), (100, 128, 8), (1000, 512, 8)]

#: Optimal minimum chordal distances^2 of lines in R^3 (classical: orthonormal, cube diagonals,
#: icosahedron diagonals without one, icosahedron diagonals).
KNOWN_D2 = {(3, 3, 1): 1.0, (4, 3, 1): 8 / 9, (5, 3, 1): 4 / 5, (6, 3, 1): 4 / 5}


def run(num: int, n: int, k: int, args: argparse.Namespace, budget: float | None) -> str:
    res = generate_subspaces(num, n, k, seed=args.seed, device=args.device, time_budget=budget)
    rand = random_min_distance(num, n, k, seed=args.seed)
    known = KNOWN_D2.get((num, n, k))
    if known is not None:
        known_s = f"{math.sqrt(known):.6f}"
    elif res.gap <= 1e-6:
        known_s = "= bound"
    else:
        known_s = "-"
    return (
        f"| {num} | {n} | {k} | {res.min_distance:.6f} | {res.bound:.6f} ({res.bound_name}) | "
        f"{res.ratio:.4f} | {known_s} | {rand:.4f} | {res.steps} | {res.seconds:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        metavar="SEC",
        help="time budget of each GCR-sized case (default 30 s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["literature", "gcr"], default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    open_device(args.device, args.threads)
    print("| N | n | k | min d_c | bound | ratio | known | random | steps | seconds |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    cases = []
    if args.only in (None, "literature"):
        cases += [(c, None) for c in LITERATURE]
    if args.only in (None, "gcr"):
        # the small heads finish with the default step count; budget only the larger ones
        cases += [(c, None if c[0] * c[2] * c[1] <= 10**4 else args.time_budget) for c in GCR]
    for (num, n, k), budget in cases:
        print(run(num, n, k, args, budget), flush=True)


if __name__ == "__main__":
    main()
