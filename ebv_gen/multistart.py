"""Multi-start search for small packings: many batched starts, the minimax finish on the best.

A single run of the surrogate optimiser ends in one basin, and for small packings (Sloane's
tables: tens of lines in R^3..R^8) the basins are many and their optima differ in the third
decimal. The search spends the budget in *rounds*. Each round optimises a batch of ``R`` starts
side by side with :func:`ebv_gen.optimize.minimize_coherence` (a short, full temperature
schedule: enough to pick the basin, not to solve it; each start anneals from a sharpness of its
own, :func:`start_sharpness`, to :data:`EXPLORE_BETA_END`), then polishes the best restart
(up to three distinct ones for at most 30 vectors, :func:`finishes_per_round`) with
:func:`ebv_gen.finish.minimax_finish`, which lands on the basin's exact optimum.
The starts of a round are

* structured starts given by the caller (first round only): e.g. subsets of known frames with
  more vectors, or known frames of fewer vectors filled up at random;
* perturbations of the best packing so far (from the second round on, half the batch): Gaussian
  noise of a random scale between 0.01 and 0.3 radians, retracted -- basin hopping (Wales &
  Doye 1997) around the incumbent;
* orbit starts (vectors only, :data:`ORBIT_SHARE` of the rest): random points with their
  orbits under a random rotation of finite order (:mod:`ebv_gen.symmetry`), which the
  optimiser keeps symmetric: many of the best packings are symmetric, and random starts
  rarely reach their basins;
* uniform random points (the rest);
* in one round (the second; packings of at most :data:`SUPERSET_MAX_POINTS` points),
  subsets in place of the uniform random points: random packings of :data:`SUPERSET_EXTRA`
  more points, explored as a batch of their own and then cut down to ``N`` by dropping one
  point at a time, an end of the largest pair (:func:`drop_points`). Some of the best
  packings are subsets of a rigid packing of a few more points that the search finds far more
  easily (33 and 34 lines in R^7: the 36-line frame of coherence 3/7).

The best packing over all rounds is returned. ``steps`` is the total number of optimiser steps
(each advances a whole batch): a round takes ``round_steps(N) + REFINE_STEPS`` of them, the
last one what is left; the result then depends only on the seed. With a time budget the round
size is first capped so that a whole exploration fits in a third of the budget (timed on a few
steps), and the first round sets the pace: a later round runs its whole schedule when it fits in
what is left (with its refine and finishes, at the last round's rates), else it is the last, with
fewer starts so that each still runs the whole schedule. Only the restarts that can still beat
the best packing are finished (:data:`_FINISH_REACH`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .adam import CoherenceAdam
from .finish import minimax_finish
from .kernels import DEFAULT_TILE, _similarities, max_similarity
from .optimize import _cpu_threads_for, minimize_coherence
from .product import random_start, retract
from .symmetry import orbit_start

__all__ = [
    "EXPLORE_BETA_CENTRE",
    "EXPLORE_BETA_END",
    "EXPLORE_NARROW",
    "FINISH_PER_ROUND",
    "FINISH_PER_ROUND_SMALL",
    "FINISH_SMALL_POINTS",
    "ORBIT_FIRST_ROUND",
    "ORBIT_ORDERS",
    "ORBIT_SHARE",
    "MAX_ROUND_SIZE",
    "MIN_ROUND_SIZE",
    "REFINE_STEPS",
    "SUPERSET_EXTRA",
    "SUPERSET_MAX_POINTS",
    "SUPERSET_ROUND",
    "SearchResult",
    "drop_points",
    "finishes_per_round",
    "multistart",
    "round_size",
    "round_steps",
    "start_sharpness",
]

#: Optimiser steps per round (the whole temperature schedule of one batch of starts):
#: ``ROUND_STEPS_PER_POINT * N`` rounded, between these bounds. Larger packings need a longer
#: schedule to settle into their basin before the basins can be told apart (at N = 80 in R^5,
#: 1200-step runs end 10x closer to the best known than 300-step runs of the same total cost).
ROUND_STEPS_PER_POINT = 25
ROUND_STEPS_MIN = 300
ROUND_STEPS_MAX = 2500

#: The restarts finished per round past :data:`FINISH_SMALL_POINTS` vectors: the best ones whose
#: similarities differ (distinct basins). One: a finish of a few dozen lines in R^5..R^7 takes 0.2-2
#: s (its linear programmes 40-100 ms each), and from a refined start it rarely changes the ranking
#: of the restarts, so that the time of the others goes to more starts. On 16 hard entries of
#: Sloane's table (33..80 lines in R^3..R^7, two seeds, 10 s each, in one session) one finish per
#: round matched 13 of the 32 runs, with 2 more than 1e-3 above, against 10 and 3 with three per
#: round.
FINISH_PER_ROUND = 1

#: Up to :data:`FINISH_SMALL_POINTS` vectors (``k = 1``) a round refines and finishes this many
#: instead, each if it is within reach (:data:`_FINISH_REACH`) and not in the basin of one finished
#: before it in the round (its refined similarity within :data:`_SAME_BASIN`: the refine often takes
#: several picked restarts into one basin). A finish is cheaper there (0.2-0.7 s for 16 and 17 lines
#: in R^7, 12-15 ms a linear programme; up to 1.3 s for 24 lines in R^8, 35-45 ms, where three
#: finishes took 3.4 s of a 4.6 s first round), and neither the exploration's nor the refine's
#: ranking tells the basins apart (of 32 refined restarts of 17 lines in R^7, the one whose finish
#: beat Sloane's table ranked sixth). On the 20 entries of Sloane's table with 16..30 lines in R^7
#: and R^8 that no construction meets (four seeds, 10 s each, in one session) three finishes a round
#: matched 44 of the 80 runs against 40 with one (never fewer for a seed), with 4 more than 1e-3
#: above either way; 16 lines in R^7 beat the table by 3.6e-7 in two. Six did no better (10 and 10
#: of 20 for the first two seeds, against 10 and 11 with three). Measured for lines in R^7 and R^8;
#: smaller dimensions and points on the sphere follow the same rule with fewer checks (12..28 lines
#: in R^3..R^6, one seed: 19 of 20 matched; the Tammes optima of 5..14 and 24 points: 11 of 11).
FINISH_PER_ROUND_SMALL = 3
FINISH_SMALL_POINTS = 30

#: The sharper surrogate run of the restarts to be finished: steps, sharpness and step sizes.
REFINE_STEPS = 1000
REFINE_BETA = (2e3, 1e5)
REFINE_LR = (1e-2, 1e-5)

#: Linear programmes per finish in the search (a finish from a refined start needs a few).
FINISH_ITERATIONS = 50

#: For subspaces (``k > 1``) the finish converges only linearly (their optima meet the
#: simplex bound with many pairs active) and its linear programmes are ``k^2`` times larger:
#: the best restart alone is finished per round, with this many linear programmes.
SUBSPACE_FINISH_ITERATIONS = 10

#: Two restarts whose similarities agree to this (relative) are taken for the same basin.
_SAME_BASIN = 1e-7

#: A refined restart is finished only if its similarity is within this many times the largest
#: decrease a finish has made so far in the search of the best packing: a finish only does the
#: last digits of its basin (from a refined start it lowered the maximum by 1e-5 to 1.2e-4 in
#: the 256 restarts of a round of 40 lines in R^6, whose ranking it never changed by more than
#: that), so the restarts further behind cannot win, and their finishes took half of each
#: round for 80 lines in R^7 and 100 in R^6 at 10 s (three finishes of about 1 s each).
_FINISH_REACH = 1.5

#: A packing within this of the target (the lower bound, which nothing beats) ends the search:
#: finishing the last digits of a non-isolated optimum converges only linearly.
_TARGET_SLACK = 1e-10

#: Work of one round, ``R * steps * (N k)^2 * d``. Past a few dozen points a few long runs
#: beat many short ones at the same cost. Sloane's sample (benchmarks/bench_tables.py, 10 s per
#: case, 2 cores): 6e10 (256 starts) matched 21 of 36 with 7 entries more than 1e-3 above the
#: table, 2e9 (13-65 starts past N = 60) 20 with 1, 6e9 23 with 1; small packings keep the
#: full batch either way.
_ROUND_WORK = 6e9

#: Starts per round: at least this many, at most :data:`MAX_ROUND_SIZE`.
MIN_ROUND_SIZE = 4
MAX_ROUND_SIZE = 256

#: With a time budget, the shares of what is left that one round's exploration, its sharper
#: run and each of its finishes may take: a long schedule is compressed to fit (the optimiser's
#: schedule follows whichever budget ends first), so that even the largest small problems get
#: several rounds.
_EXPLORE_SHARE = 1 / 3
_REFINE_SHARE = 1 / 8
_FINISH_SHARE = 1 / 6


#: With a time budget, once the next round's exploration would get less than this share of its
#: schedule (at the previous round's rate of steps), a round would only pick basins at random:
#: what is left goes first to finishing the best packing to convergence (at large N the
#: finishes of a round stop on their time share, short of their basin's optimum).
_TAIL = 0.25

#: Linear programmes of that last finish, per :data:`FINISH_ITERATIONS` of a round's.
_TAIL_ITERATIONS = 4

#: With a time budget, when what is left no longer holds a whole round (the last round's
#: exploration at its rate, and its refine and finishes), the next round is the last: it gets
#: all of it, with fewer starts so that each still runs the whole schedule; a start would only
#: pick a basin at random on a compressed one. Before, the rounds shrank geometrically at the
#: end of the budget (a third of what was left each time): 10 rounds of 921 steps down to one
#: took the last 2.8 s of 10 s for 40 lines in R^6. When what is left would give the last
#: round less than this share of a whole exploration, the search ends there.
_LAST_ROUND_MIN = 0.1


#: With a time budget, the round size is first capped so that a whole exploration fits in its
#: share of the budget (:data:`_EXPLORE_SHARE`), from the rate of this many steps of a batch
#: of random starts (after one warm-up step), instead of compressing the first round's
#: schedule to fit: at 10 s, 185 starts of 60 lines in R^6 ran half their schedule. On 16
#: hard entries of Sloane's table (two seeds, 10 s each, three finishes a round) the cap
#: matched 10 of the 32 runs with 3 more than 1e-3 above, against 12 and 6 without it.
#: ``_CALIBRATE = False`` compresses the schedule instead (for such comparisons).
_CALIBRATION_STEPS = 8
_CALIBRATE = True

#: Successive halving in each exploration (``narrow`` of
#: :func:`ebv_gen.optimize.minimize_coherence`), off by default. Halfway through the schedule
#: the rank of a start already tells much: in one exploration each of 33..100 lines in R^3..R^7
#: (60 to 256 starts), the start that ended best ranked in the better half (at worst 77th of
#: 256) at half the schedule and in the best 15% at 0.7. But halving at 0.5, 0.7 and 0.85 (an
#: exploration then costs 0.83 of its full batch's by ``_narrowed_cost``, so where the time
#: caps the batch it grows by a fifth) did no better on 16 hard entries of Sloane's table
#: (33..100 lines in R^3..R^7, two seeds, 10 s each): 12 of 32 matched to 1e-6 and 6 more than
#: 1e-3 above, against 13 and 5 without; 80 lines in R^5 and R^7 ended further above. So every
#: start runs its whole schedule.
EXPLORE_NARROW: tuple[tuple[float, float], ...] = ()


def _narrowed_cost(narrow: Sequence[tuple[float, float]]) -> float:
    """An exploration's cost with ``narrow`` per that of its whole batch: the mean of the
    linear share of the batch still running and 1 (steps of half the full batch's fixed
    cost: measured 30-35% at 45-60 lines in R^4..R^6, more for small batches)."""
    cost, last, share = 0.0, 0.0, 1.0
    for progress, fraction in narrow:
        cost += (progress - last) * share
        last, share = progress, share * fraction
    cost += (1.0 - last) * share
    return (1.0 + cost) / 2


def _calibrated_size(
    size: int,
    seconds: float,
    per_round: int,
    num: int,
    dim: int,
    block: int,
    mode: str,
    device: torch.device | str,
    tile: int,
) -> int:
    """The largest round size (at most ``size``) whose whole exploration of ``per_round``
    steps fits in ``seconds``, at rates timed on random starts (two timings at most: a smaller
    batch runs faster per step)."""
    for _ in range(2):
        Z0 = random_start(
            size, num, dim, block=block, dtype=torch.float32, generator=torch.Generator()
        ).to(device)
        opt = CoherenceAdam(
            Z0,
            block=block,
            mode=mode,
            beta=(start_sharpness(size, dim), EXPLORE_BETA_END),
            tile=tile,
        )
        with _cpu_threads_for(Z0):  # on the threads the exploration will have
            opt.step(0.0)  # warm-up: buffers
            t0 = time.perf_counter()
            for i in range(_CALIBRATION_STEPS):
                opt.step(i / per_round)  # each step synchronises with the host (its maxima)
            whole = per_round * (time.perf_counter() - t0) / _CALIBRATION_STEPS
            whole *= _narrowed_cost(EXPLORE_NARROW)
        if whole <= seconds or size <= MIN_ROUND_SIZE:
            break
        size = max(MIN_ROUND_SIZE, int(size * seconds / whole))
    return size


def _share(remaining: float | None, share: float) -> float | None:
    return None if remaining is None else remaining * share


def _refine_budget(remaining: float | None, last: bool, seconds: float) -> float | None:
    """Seconds for a round's refine: all that is left in the last round, else its share of
    what is left, or (a round planned to fit) a quarter more than a whole refine took."""
    if remaining is None or last:
        return remaining
    return min(remaining, max(remaining * _REFINE_SHARE, 1.25 * seconds))


#: The share of a round's fresh starts (from round :data:`ORBIT_FIRST_ROUND` on, vectors only)
#: that are orbits of a random rotation of finite order (:func:`ebv_gen.symmetry.orbit_start`),
#: the orders of :data:`ORBIT_ORDERS` taking turns (each only while it leaves two orbits).
#: Random starts rarely reach the basins of symmetric packings, and many of the best known
#: packings are symmetric. On 16 hard entries of Sloane's table (29 to 100 lines in R^5..R^8,
#: two seeds, 10 s each, in one session) half the fresh starts as orbits from the first round
#: on matched 5 of the 32 runs with 22 more than 1e-3 above, against 1 and 25 without: 90 lines
#: in R^6 reached 1.6e-5 below the table in both (2.7e-3 and 2.8e-3 above without), 85 lines in
#: R^7 1.4e-3 below, 60 lines in R^6 came within 1.6e-5 (8.6e-3 above without, one seed). On
#: the 36-entry stratified sample (one seed) it matched 27 against 25, with 1 entry more than
#: 1e-3 above against 2; 100 lines in R^5 and R^7 ended further above (2.1e-4 and 6.6e-4
#: against 3.8e-5 below and 1.5e-5 above).
ORBIT_SHARE = 0.5
ORBIT_FIRST_ROUND = 0
ORBIT_ORDERS: tuple[int, ...] = (3, 4, 5, 6)

#: Perturbation scales of basin hopping (radians), drawn log-uniformly.
_PERTURB = (0.01, 0.3)

#: The round (0-based) whose random starts are packings of :data:`SUPERSET_EXTRA` more
#: points, cut down to ``N`` after the exploration (vectors only, ``k = 1``): the second, so
#: that a search of one round is unchanged and the first round's structured starts come first;
#: its perturbed starts (half the batch) stay. With the whole batch made of subsets, 30 of the
#: 43 entries of Sloane's table for R^7 with N <= 50 matched at 10 s, against 34 without.
SUPERSET_ROUND = 1

#: Extra points of that round's packings. At 10 s per entry on 2 cores the search finds the
#: 36-line frame of coherence 3/7 in R^7 within its first round for 35 and 36 lines, but ends
#: 8e-3 and 1.6e-2 above it for 33 and 34 lines (Sloane's table: 3/7 for N = 33..36).
SUPERSET_EXTRA = 3

#: Only packings of at most this many points get that round. Larger ones run only a few
#: rounds in a time budget (2-3 for 100 lines in R^5..R^7 in 10 s), which the rounds of random
#: and perturbed starts may use better (in one run of Sloane's sample at 10 s per entry with
#: the round for every size, 100 lines in R^7 ended 7e-4 above the table, below it without).
SUPERSET_MAX_POINTS = 50

#: The exploration's starting sharpness (the optimiser's ``beta[0]``), one per start; every
#: start ends at :data:`EXPLORE_BETA_END`. From ``R^5`` on every start has the optimiser's
#: default :data:`EXPLORE_BETA_CENTRE`. Below, the starts spread log-evenly over a decade
#: either side of a centre ``sqrt(10)`` times larger per dimension (``0.16 .. 16`` in
#: ``R^4``, ``0.5 .. 50`` in ``R^3``; a golden-ratio sequence, so that every kind of start in
#: a batch gets the whole spread): in ``R^3`` the similarities of random lines crowd up to
#: the maximum, so that the default soft start spreads the points by the bulk of the pairs
#: instead of the closest ones; a sharper start does not. From one round of random starts
#: (the 8 best refined and finished, at the batch sizes of a 10 s budget), a start of 5
#: matched Sloane's 33, 56 and 81 lines in R^3 and 50 in R^4 and came within 4e-6 of 100 in
#: R^3, where 0.5 ended 6e-5 to 4e-4 above; 30 lines in R^3 wanted 50 (3e-6 against 2.7e-4)
#: and 81 in R^4 0.5. The columns of R^3 and R^4 at 10 s per entry matched 71 and 63 entries
#: instead of 57 each. In ``R^5 .. R^8`` no start did better than 0.5 throughout (0.05 matched
#: 40 lines in R^6 in one run; 5 ended 5.6e-3 above it and 50 was far worse), and the same
#: spread about 0.5 (``0.05 .. 5``) did no better at 10 s per entry: R^5 42 of 95 matched
#: (41 with 0.5 alone, an earlier run), R^6 35 of 94 with 27 more than 1e-3 above (0.5 alone:
#: 37 and 25 in the same session, 41 and 14 in an earlier one; its large packings are a
#: lottery over a few rounds). Measured for lines (``k = 1``); points on the sphere and
#: subspaces follow the same rule untested.
EXPLORE_BETA_CENTRE = 0.5
EXPLORE_BETA_END = 2e3

#: Sharpness of the soft maximum that picks the point to drop (relative to the distance of the
#: maximum to the end of the similarity range, as the optimiser's ``beta``).
_DROP_BETA = 200.0


def start_sharpness(count: int, dim: int) -> torch.Tensor:
    """Starting sharpnesses of ``count`` starts in ``R^dim`` (see :data:`EXPLORE_BETA_CENTRE`).

    From ``dim = 5`` on every start has ``c = 0.5``. Below, ``beta_i = c 10^{2 q_i - 1}`` with
    ``c = 0.5 * 10^{(5 - dim) / 2}`` and ``q_i = frac(1/2 + i / phi)`` (``phi`` the golden
    ratio): a low-discrepancy sequence, so that every contiguous run of starts spreads over
    the whole range.
    """
    if dim >= 5:
        return torch.full((count,), EXPLORE_BETA_CENTRE, dtype=torch.float64)
    centre = EXPLORE_BETA_CENTRE * 10 ** ((5 - dim) / 2)
    q = torch.remainder(0.5 + torch.arange(count, dtype=torch.float64) * (2 / (1 + 5**0.5)), 1.0)
    return centre * 10 ** (2 * q - 1)


def finishes_per_round(num: int, block: int = 1) -> int:
    """Restarts finished per round: :data:`FINISH_PER_ROUND_SMALL` for at most
    :data:`FINISH_SMALL_POINTS` vectors, :data:`FINISH_PER_ROUND` for more, one for
    subspaces (``block > 1``: see :data:`SUBSPACE_FINISH_ITERATIONS`)."""
    if block > 1:
        return 1
    return FINISH_PER_ROUND_SMALL if num <= FINISH_SMALL_POINTS else FINISH_PER_ROUND


def round_steps(num: int) -> int:
    """Optimiser steps per round for ``num`` points (see :data:`ROUND_STEPS_PER_POINT`)."""
    steps = round(ROUND_STEPS_PER_POINT * num, -2)
    return int(min(ROUND_STEPS_MAX, max(ROUND_STEPS_MIN, steps)))


def round_size(num: int, dim: int, block: int = 1) -> int:
    """Starts optimised side by side in one round: a round's work ``R * steps * (N k)^2 * d``
    of about :data:`_ROUND_WORK`, between :data:`MIN_ROUND_SIZE`
    and :data:`MAX_ROUND_SIZE`."""
    work = float(round_steps(num)) * float(num * block) ** 2 * dim
    return int(max(MIN_ROUND_SIZE, min(MAX_ROUND_SIZE, _ROUND_WORK // max(work, 1.0))))


@dataclass
class SearchResult:
    """Outcome of :func:`multistart`.

    Attributes
    ----------
    Z
        ``(N k, d)`` best packing (float64, on the search device).
    similarity
        Its exact ``max_{i<j} s_ij`` (float64).
    steps, seconds
        Optimiser steps over all rounds (each advances a whole batch) and wall time
        (cumulative over resumes).
    history
        ``[(step, seconds, best similarity), ...]``, one entry per round.
    interrupted
        True when ``should_stop`` or a ``KeyboardInterrupt`` ended the search early.
    rounds, starts, finishes
        Rounds run, starts optimised, finishes run.
    origin
        Where the best packing came from: ``"random"``, ``"perturbed"``, ``"subset of M"``
        (the round of subsets of ``M``-point packings) or the name of the structured start.
    """

    Z: torch.Tensor
    similarity: float
    steps: int
    seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)
    interrupted: bool = False
    rounds: int = 0
    starts: int = 0
    finishes: int = 0
    origin: str = "random"


def _perturbed(
    best: torch.Tensor, count: int, block: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` copies of ``best`` moved by Gaussian noise of log-uniform scales, retracted."""
    lo, hi = math.log(_PERTURB[0]), math.log(_PERTURB[1])
    scale = torch.exp(lo + (hi - lo) * torch.rand(count, 1, 1, generator=generator))
    noise = torch.randn(count, *best.shape, generator=generator, dtype=torch.float64)
    Z = best.detach().to("cpu", torch.float64).unsqueeze(0) + scale.double() * noise
    return retract(Z, block)


def drop_points(Z: torch.Tensor, count: int, mode: str = "lines") -> torch.Tensor:
    """Cut each of the ``(R, N, d)`` packings ``Z`` down to ``N - count`` points.

    ``count`` times, every packing drops one end of its largest pair: the end whose removal
    leaves the smaller maximum, and on a tie (a rigid packing, where many pairs attain the
    maximum) the end with the larger weight in the soft maximum
    :math:`w_i = \\sum_{j \\ne i} e^{t (s_{ij} - s_{\\max})}` (``t`` as the optimiser's
    temperature at sharpness :data:`_DROP_BETA`), the point in most of the pairs at or near
    the maximum. Any subset keeps the maximum or lowers it. One ``(R, N, N)`` Gram matrix per
    dropped point (small packings only).
    """
    R, N, d = Z.shape
    if not 0 <= count < N:
        raise ValueError(f"count must be in [0, {N}) for packings of N = {N}, got {count}")
    lo, hi = (0.0, 1.0) if mode == "lines" else (-1.0, 1.0)
    rows = torch.arange(R, device=Z.device)
    for _ in range(count):
        n = Z.shape[1]
        S = _similarities(Z @ Z.transpose(1, 2), 1, mode, diagonal=True)
        smax, flat = S.reshape(R, -1).max(dim=1)
        ends = torch.stack([flat // n, flat % n], dim=1)  # (R, 2): the largest pair
        scale = torch.clamp(torch.minimum(smax - lo, hi - smax), min=1e-9)
        w = torch.exp((_DROP_BETA / scale)[:, None, None] * (S - smax[:, None, None])).sum(2)
        left = []  # the maximum without each end
        for e in range(2):
            gone = torch.zeros(R, n, dtype=torch.bool, device=Z.device)
            gone[rows, ends[:, e]] = True
            mask = gone[:, :, None] | gone[:, None, :]
            left.append(S.masked_fill(mask, -math.inf).reshape(R, -1).amax(dim=1))
        tie = (left[0] - left[1]).abs() <= 1e-12 * smax.abs().clamp(min=1.0)
        heavier = (w[rows, ends[:, 1]] > w[rows, ends[:, 0]]).long()
        which = torch.where(tie, heavier, (left[1] < left[0]).long())
        worst = ends[rows, which]
        keep = torch.ones(R, n, dtype=torch.bool, device=Z.device)
        keep[rows, worst] = False
        Z = Z[keep].view(R, n - 1, d)
    return Z


def _orbit_starts(
    fresh: int, num: int, dim: int, block: int, done: int, generator: torch.Generator
) -> list[tuple[str, torch.Tensor]]:
    """The orbit starts among a round's ``fresh`` ones (:data:`ORBIT_SHARE`): one group per
    order of :data:`ORBIT_ORDERS` that leaves at least two orbits, the orders taking turns."""
    orders = [m for m in ORBIT_ORDERS if num >= 2 * m and (dim, m) != (2, 2)]
    if block != 1 or done < ORBIT_FIRST_ROUND or not orders or dim < 2:
        return []
    count = int(fresh * ORBIT_SHARE)
    out = []
    for i, m in enumerate(orders):
        share = len(range(i, count, len(orders)))
        if share:
            out.append(
                (f"orbit of order {m}", orbit_start(share, num, dim, m, generator=generator))
            )
    return out


def _same_basin(a: float, b: float) -> bool:
    """Whether two similarities agree to :data:`_SAME_BASIN` (relative): the same basin."""
    return abs(a - b) <= _SAME_BASIN * max(1.0, abs(a))


def _reached(best: float, target: float | None) -> bool:
    """Whether ``best`` is within :data:`_TARGET_SLACK` of the target (nothing beats it)."""
    return target is not None and best <= target + _TARGET_SLACK


def _distinct_best(similarities: Sequence[float], count: int) -> list[int]:
    """Indices of the ``count`` smallest similarities, at most one per basin."""
    order = sorted(range(len(similarities)), key=lambda i: similarities[i])
    picked: list[int] = []
    for i in order:
        s = similarities[i]
        if not math.isfinite(s):
            continue
        if not any(_same_basin(s, similarities[j]) for j in picked):
            picked.append(i)
        if len(picked) == count:
            break
    return picked


def multistart(
    num: int,
    dim: int,
    *,
    block: int = 1,
    mode: str = "lines",
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    time_budget: float | None = None,
    steps_per_round: int | None = None,
    restarts: int | None = None,
    tile: int = DEFAULT_TILE,
    target: float | None = None,
    structured: Sequence[tuple[str, torch.Tensor]] = (),
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    state: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Search packings of ``num`` points (``block`` rows each) in ``R^dim`` by rounds of
    batched starts and the minimax finish (see the module docstring).

    Parameters
    ----------
    num, dim, block, mode
        The problem: ``N`` points of ``k = block`` orthonormal rows in ``R^d``; ``"lines"`` or
        ``"sphere"``.
    generator
        Draws every random start and perturbation (CPU, float64; the same on every device).
    dtype, device
        Precision of the sharper run of the restarts to be finished (the exploration runs in
        float32, the finish in float64), and the device of both.
    steps, time_budget
        Total optimiser steps over all rounds, and/or seconds; at least one is required.
    steps_per_round
        Steps per round (one full temperature schedule; default :func:`round_steps`).
    restarts
        Starts per round (default :func:`round_size`). With a time budget, at most this many:
        fewer when a whole exploration of that many would not fit in a third of the budget
        (timed on a few steps first).
    tile
        Tile edge of the streamed Gram matrix.
    target
        Stop once the best similarity is ``<= target`` (the lower bound: nothing beats it).
    structured
        ``(name, Z)`` starts of shape ``(N k, d)`` for the first round.
    callback
        ``callback(step, current, best)`` after every round (similarities).
    checkpoint
        ``checkpoint(state)`` after every round, with a dict from which ``state=`` resumes.
    state
        A dict produced by ``checkpoint``: the search continues with the next round.
    should_stop
        Polled by the optimiser (every step) and the finish (every iteration); True ends the
        search with the best packing so far.

    Returns
    -------
    SearchResult
    """
    if steps is None and time_budget is None:
        raise ValueError("give steps or time_budget (or both), got neither")
    R = restarts if restarts is not None else round_size(num, dim, block)
    per_round = steps_per_round if steps_per_round is not None else round_steps(num)
    finish_iterations = FINISH_ITERATIONS if block == 1 else SUBSPACE_FINISH_ITERATIONS
    best_Z: torch.Tensor | None = None
    best = math.inf
    origin = "random"
    done_rounds = starts = finishes = total_steps = 0
    elapsed0 = 0.0
    history: list[tuple[int, float, float]] = []
    # the largest decrease of a finish so far (none before the first: it always runs)
    reach = 0.0
    if state is not None:
        best_Z = state["best_Z"].to(device=device, dtype=torch.float64)
        best = float(state["best"])
        origin = str(state["origin"])
        done_rounds, starts, finishes = state["rounds"], state["starts"], state["finishes"]
        reach = float(state.get("finish_reach", 0.0))
        total_steps = int(state["steps"])
        elapsed0 = float(state["seconds"])
        history = [tuple(h) for h in state["history"]]
        generator.set_state(state["rng"])
        R = int(state.get("restarts", R))
    start = time.perf_counter()
    if _CALIBRATE and time_budget is not None and state is None:
        R = _calibrated_size(
            R, time_budget * _EXPLORE_SHARE, per_round, num, dim, block, mode, device, tile
        )

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - start

    def remaining() -> float | None:
        return None if time_budget is None else max(0.0, time_budget - elapsed())

    interrupted = False
    # whether the best packing's finish may still improve it (it did not converge), and the
    # exploration's steps per second in the last round
    unfinished = state is not None
    explore_rate: float | None = None
    # seconds the last round took after its exploration (its refine and finishes)
    post_seconds = 0.0
    # seconds the last refine would take for all its steps (none before the first)
    refine_seconds = 0.0
    while True:
        left = None if steps is None else steps - total_steps
        if left is not None and left <= 0:
            break
        if time_budget is not None and remaining() <= 0:
            break
        if _reached(best, target):
            break
        if should_stop is not None and should_stop():
            interrupted = True
            break
        if (
            unfinished
            and explore_rate is not None
            and _share(remaining(), _EXPLORE_SHARE) * explore_rate < _TAIL * per_round
        ):
            unfinished = False
            fin = minimax_finish(
                best_Z,
                block=block,
                mode=mode,
                tile=tile,
                max_iter=_TAIL_ITERATIONS * finish_iterations,
                time_budget=remaining(),
                should_stop=should_stop,
            )
            finishes += 1
            if fin.similarity < best:
                best, best_Z = fin.similarity, fin.Z
            if fin.reason == "stopped":
                interrupted = True
                break
            continue
        size, explore_budget = R, _share(remaining(), _EXPLORE_SHARE)
        last = False  # the last round: its refine and finishes may take all that is left
        if explore_rate is not None and explore_budget is not None:
            whole = per_round / explore_rate  # seconds of a whole exploration of R starts
            room = remaining() - post_seconds  # what is left for the exploration
            if room >= whole:  # a whole one fits (timing noise aside)
                explore_budget = max(explore_budget, min(1.25 * whole, room))
            else:
                last = True
                explore_budget = room
                if explore_budget < _LAST_ROUND_MIN * whole:
                    break
                size = max(MIN_ROUND_SIZE, min(R, int(R * explore_budget / whole)))
        names: list[str] = []
        batch: list[torch.Tensor] = []
        superset = done_rounds == SUPERSET_ROUND and block == 1 and num <= SUPERSET_MAX_POINTS
        if done_rounds == 0:
            for name, Z in list(structured)[:size]:
                names.append(name)
                batch.append(Z.detach().to("cpu", torch.float64).unsqueeze(0))
        if best_Z is not None:
            count = max(0, min(size // 2, size - len(names)))
            names += ["perturbed"] * count
            batch.append(_perturbed(best_Z, count, block, generator))
        fresh = size - len(names)
        # the exploration only picks basins: float32 is twice as fast and precise enough; in
        # the subset round the fresh starts have more points, so they are a batch of their own
        groups: list[tuple[torch.Tensor, bool]] = []
        if fresh > 0 and superset:
            names += [f"subset of {num + SUPERSET_EXTRA}"] * fresh
            more = random_start(
                fresh, num + SUPERSET_EXTRA, dim, dtype=torch.float64, generator=generator
            )
            groups.append((more, True))
        elif fresh > 0:
            orbits = _orbit_starts(fresh, num, dim, block, done_rounds, generator)
            for name, Zo in orbits:
                names += [name] * len(Zo)
                batch.append(Zo)
            plain = fresh - sum(len(Zo) for _, Zo in orbits)
            names += ["random"] * plain
            batch.append(
                random_start(plain, num, dim, block=block, dtype=torch.float64, generator=generator)
            )
        if batch:
            groups.insert(0, (torch.cat(batch), False))
        explore_start = time.perf_counter()
        explored = []
        for Zg, cut in groups:
            part = minimize_coherence(
                Zg.to(device=device, dtype=torch.float32),
                block=block,
                mode=mode,
                steps=per_round if left is None else min(per_round, left),
                time_budget=None if explore_budget is None else explore_budget * len(Zg) / size,
                beta=(start_sharpness(len(Zg), dim), EXPLORE_BETA_END),
                tile=tile,
                target=target,
                should_stop=should_stop,
                narrow=EXPLORE_NARROW,
            )
            if cut:
                # cut the larger packings down to N points, measured exactly (an interrupted
                # exploration still hands on valid N-point packings)
                part.restart_Z = drop_points(part.restart_Z, SUPERSET_EXTRA, mode)
                part.restart_similarity = max_similarity(part.restart_Z, mode=mode).tolist()
            explored.append(part)
        # the groups of a round run side by side in the schedule: its steps are the longest's
        explore_steps = max(part.steps for part in explored)
        restart_Z = torch.cat([part.restart_Z for part in explored])
        restart_similarity = [v for part in explored for v in part.restart_similarity]
        total_steps += explore_steps
        explore_end = time.perf_counter()
        if time_budget is not None and explore_steps and len(groups) == 1 and size == R:
            explore_rate = explore_steps / max(explore_end - explore_start, 1e-9)
        if any(part.interrupted for part in explored):
            interrupted = True
        starts += size
        done_rounds += 1
        round_best = min(restart_similarity)
        picked = _distinct_best(restart_similarity, finishes_per_round(num, block))
        refine = REFINE_STEPS if steps is None else min(REFINE_STEPS, steps - total_steps)
        if not interrupted and picked and refine > 0:
            # the surrogate picked the basins; a sharper run of the few best takes each close
            # enough to its optimum that the finish only has the last digits to do
            ref = minimize_coherence(
                restart_Z[picked].to(dtype),
                block=block,
                mode=mode,
                steps=refine,
                time_budget=_refine_budget(remaining(), last, refine_seconds),
                beta=REFINE_BETA,
                lr=REFINE_LR,
                tile=tile,
                target=target,
                should_stop=should_stop,
            )
            total_steps += ref.steps
            if ref.steps:  # seconds of all its steps, at the rate of these
                refine_seconds = (time.perf_counter() - explore_end) * refine / ref.steps
            interrupted = interrupted or ref.interrupted
            candidates = [
                (ref.restart_Z[r], ref.restart_similarity[r], picked[r]) for r in range(len(picked))
            ]
        else:
            candidates = [(restart_Z[i], restart_similarity[i], i) for i in picked]
        # a finish from a start the refine did not reach is slow and rarely lands: with a step
        # budget too small for a full round, the surrogate's best is kept as it is
        unrefined = steps is not None and refine < REFINE_STEPS
        # the similarities of the refined restarts finished this round: the refine often takes
        # several picked restarts into one basin, whose finish would only be repeated
        finished: list[float] = []
        for Zc, sc, idx in sorted(candidates, key=lambda c: c[1]):
            if _reached(best, target):
                break  # the bound is reached: nothing can beat it
            if reach and sc > best + _FINISH_REACH * reach:
                continue  # too far behind for its finish to win (:data:`_FINISH_REACH`)
            if interrupted or unrefined or (time_budget is not None and remaining() <= 0):
                # no time left to finish: the surrogate's best still counts
                if sc < best:
                    best, best_Z, origin = sc, Zc.to(torch.float64), names[idx]
                    unfinished = True
                continue
            if any(_same_basin(sc, f) for f in finished):
                continue  # the basin of a restart already finished this round
            finished.append(sc)
            fin = minimax_finish(
                Zc,
                block=block,
                mode=mode,
                tile=tile,
                max_iter=finish_iterations,
                time_budget=_share(remaining(), 1.0 if last else _FINISH_SHARE),
                should_stop=should_stop,
            )
            finishes += 1
            reach = max(reach, fin.start_similarity - fin.similarity)
            if fin.reason == "stopped":
                interrupted = True
            if fin.similarity < best:
                best, best_Z, origin = fin.similarity, fin.Z, names[idx]
                unfinished = fin.reason != "converged"
        post_seconds = time.perf_counter() - explore_end
        history.append((total_steps, round(elapsed(), 4), best))
        if callback is not None:
            callback(total_steps, round_best, best)
        if checkpoint is not None and best_Z is not None:
            checkpoint(
                {
                    "kind": "multistart",
                    "best_Z": best_Z.detach().cpu(),
                    "best": best,
                    "origin": origin,
                    "rounds": done_rounds,
                    "starts": starts,
                    "finishes": finishes,
                    "finish_reach": reach,
                    "restarts": R,
                    "steps": total_steps,
                    "seconds": elapsed(),
                    "history": list(history),
                    "rng": generator.get_state(),
                }
            )
        if interrupted:
            break
    if best_Z is None:  # no round ran (zero budget): the first start, measured
        Z0 = random_start(1, num, dim, block=block, dtype=torch.float64, generator=generator)
        fin = minimax_finish(Z0[0].to(device), block=block, mode=mode, tile=tile, max_iter=0)
        best_Z, best = fin.Z, fin.similarity
    return SearchResult(
        best_Z,
        best,
        total_steps,
        elapsed(),
        history,
        interrupted,
        done_rounds,
        starts,
        finishes,
        origin,
    )
