r"""The minimax finish: polish a packing on the exact objective by sequential linear programming.

The log-sum-exp surrogate of :mod:`ebv_gen.optimize` is smooth, so it cannot land exactly on a
minimax optimum: there the maximum is attained by many pairs at once and only a step that lowers
all of them together makes progress. The finish solves

.. math:: \min_{Z,\, t} \; t \quad \text{subject to} \quad s_{ij}(Z) \le t \quad (i < j)

on the product of spheres (``k = 1``) or Grassmannians (``k > 1``) by sequential linear
programming with a trust region, Madsen's method for minimax problems (K. Madsen, "An algorithm
for minimax solution of overdetermined systems of non-linear equations", J. Inst. Math. Appl. 16,
1975; R. Fletcher, "Practical Methods of Optimization", 2nd ed., 1987, Sec. 14.6). Each iteration

1. takes the pairs within a margin of the current maximum ``s_max`` (the pairs a step inside the
   trust region can make the largest),
2. linearises each of them in the horizontal (tangent) space of its two points,
   :math:`s_{ij} + \langle \nabla_i s_{ij}, D_i\rangle + \langle \nabla_j s_{ij}, D_j\rangle`,
   with :math:`\nabla_i s_{ij} = 2 M_{ij} Z_j` for lines (:math:`M_{ij} = Z_i Z_j^\top`, so
   ``s_ij = ||M_ij||_F^2``) or :math:`z_j` for the signed sphere mode, each projected on the
   horizontal space :math:`U - (U Z_i^\top) Z_i`,
3. solves the linear programme :math:`\max w` subject to
   :math:`g_a \cdot u + w \le (s_{\max} - s_a) / \Delta` over those pairs ``a`` and
   :math:`\|u\|_\infty \le 1` (the step is :math:`D = \Delta u`; the scaling keeps every number
   of order one, so HiGHS's feasibility tolerance is far below the predicted decrease) with
   HiGHS (:func:`scipy.optimize.linprog`, Huangfu & Hall 2018): its primal simplex for small
   programmes, its interior-point solver for large ones,
4. retracts (row normalisation, or QR with a positive diagonal for ``k > 1``) and evaluates the
   exact maximum over *all* pairs: the step is accepted only if it decreases, so the finish can
   never make a packing worse. The ratio of the actual to the predicted decrease steers the trust
   region (doubled above 0.75 when the step reached its boundary, quartered below 0.25 or on
   rejection).

Where the optimum is a vertex of the linearised problem (as many active pairs as degrees of
freedom, the usual case for rigid packings) the iteration converges quadratically and lands on
the optimum to the last digits of float64 in a few dozen iterations; in a valley (fewer active
pairs, non-isolated optimum) it converges linearly and stops on stagnation.

Only the points that occur in a near-active pair are variables; the similarity scans are tiled
(:func:`ebv_gen.optimize.near_max_pairs`), so memory is ``O(N k d + tile^2)`` plus the linear
programme, whose size is capped by ``max_pairs``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import OptimizeWarning, linprog

from grassmann._validation import check_choice, check_float, check_int, check_tensor

from .kernels import DEFAULT_TILE, MODES, near_max_pairs
from .optimize import _cpu_threads_for
from .product import project, retract

__all__ = ["FinishResult", "minimax_finish"]

#: Initial trust-region radius (max-norm of the step per coordinate): a surrogate run ends well
#: inside it; a larger one would only be cut back after a rejected step.
_DELTA0 = 1e-3

#: Below this radius a step no longer changes the float64 coordinates in a useful way.
_DELTA_MIN = 1e-13

#: Stop when the maximum decreased by less than this (relative) over ``_STALL`` iterations.
_STALL_TOL = 1e-13
_STALL = 25

#: Price of ``|u|_1`` in the linear programme (its objective ``w`` is of order one).
_STEP_PRICE = 1e-6

#: Linear programmes with more non-zeros than this go to the interior-point solver. Both
#: simplex methods stall on the large degenerate programmes: four finishes of 45 lines in R^7
#: (programmes of 9,000-20,000 non-zeros) took 135 s (dual) and 590 s (primal) with the
#: simplex up to 20,000 non-zeros, 26 s with this bound, 17 s once the interior-point solver
#: runs without its crossover (:data:`_IPM`; `bench_finish.py --simplex-nnz`). A lower bound
#: saves a little more there but matched no more of Sloane's entries in 10 s (4,000 with the
#: crossover: 20 of 36 against 23; 3,000 without: 24 against 25).
_SIMPLEX_NNZ = 8000

#: HiGHS tolerances for the scaled problem (all its numbers are of order one).
_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}

#: HiGHS's option for its *primal* simplex (``simplex_strategy = 4``, not one of scipy's
#: named options: scipy hands it to HiGHS as it is). On these programmes (few constraints,
#: twice as many bounded variables, highly degenerate, at most :data:`_SIMPLEX_NNZ`
#: non-zeros) it mostly needs fewer iterations than the dual simplex scipy chooses: the same
#: steps in 1.3-1.7x less time on 26 lines in R^6, 62 in R^5 and 45 in R^7
#: (``benchmarks/bench_finish.py``).
_PRIMAL_SIMPLEX = {"simplex_strategy": 4}

#: The interior-point solver without HiGHS's crossover to a vertex (``run_crossover``, passed
#: through like :data:`_PRIMAL_SIMPLEX`). Any optimal point is as good a step as the vertex,
#: and the crossover stalls on the degenerate programme of a converged packing: the last
#: programme of a finish of 100 lines in R^6 (758 pairs) took 16 s with it and 0.2 s
#: without, about as long as each of the nine before it. Without the vertex, the solution is
#: only as reproducible as the solver's tolerance: at HiGHS's default (1e-8) a sharded run and
#: a single process, whose inputs differ by rounding, ended 1e-6 apart; at 1e-12 they agree
#: to 1e-9, as with the crossover, for a few more interior-point iterations.
_IPM = {"run_crossover": "off", "ipm_optimality_tolerance": 1e-12}

#: Predicted decreases (relative) below which a step counts as no decrease: the simplex's
#: vertex solutions are exact to rounding, the interior-point solver's only to its optimality
#: tolerance; below about 1e-11 its steps only chase that tolerance (the same finish of 100
#: lines in R^6 took forty more such steps, each 0.25 s and lowering the maximum by ~5e-12).
_NO_DECREASE = {"highs-ds": 1e-16, "highs-ipm": 1e-11}


@dataclass
class FinishResult:
    """Outcome of :func:`minimax_finish`.

    Attributes
    ----------
    Z
        ``(N k, d)`` float64 packing (on the input's device), never worse than the start.
    similarity, start_similarity
        Exact ``max_{i<j} s_ij`` after and before, in float64.
    iterations, accepted
        Linear programmes solved, and steps accepted.
    seconds
        Wall time.
    reason
        Why it stopped: ``"converged"`` (no predicted decrease, or the trust region shrank below
        float64 resolution, or stagnation), ``"iterations"``, ``"time"``, ``"stopped"`` (by
        ``should_stop``) or ``"lp-failed"``.
    """

    Z: torch.Tensor
    similarity: float
    start_similarity: float
    iterations: int
    accepted: int
    seconds: float
    reason: str


class _OutOfTime(Exception):
    """HiGHS stopped on the time limit of the finish before solving a linear programme."""


class _Pairs:
    """Near-maximal pairs of an iterate: point indices ``i < j``, similarities, the maximum."""

    def __init__(self, smax: float, i: torch.Tensor, j: torch.Tensor, s: torch.Tensor):
        self.smax, self.i, self.j, self.s = smax, i, j, s

    @classmethod
    def scan(
        cls, Z: torch.Tensor, margin: float, block: int, mode: str, tile: int, limit: int
    ) -> _Pairs:
        """All pairs within ``margin`` of the maximum; one more than ``limit`` at most, so that
        a capped scan shows as more than ``limit`` pairs."""
        return cls(*near_max_pairs(Z, margin, block=block, mode=mode, tile=tile, limit=limit + 1))

    def within(self, margin: float) -> _Pairs:
        """The pairs within ``margin`` of the maximum (a subset: no rescan)."""
        keep = self.s >= self.smax - margin
        return _Pairs(self.smax, self.i[keep], self.j[keep], self.s[keep])

    def largest(self, count: int) -> _Pairs:
        """The ``count`` largest pairs."""
        keep = torch.topk(self.s, count).indices
        return _Pairs(self.smax, self.i[keep], self.j[keep], self.s[keep])


def _gradients(
    Z: torch.Tensor, i: torch.Tensor, j: torch.Tensor, block: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal gradients ``(m, k, d)`` of ``s_ij`` with respect to ``Z_i`` and ``Z_j``."""
    M, d = Z.shape
    P = Z.view(M // block, block, d)
    Zi, Zj = P[i], P[j]
    if mode == "lines":
        Mij = Zi @ Zj.transpose(1, 2)  # (m, k, k)
        gi = 2.0 * Mij @ Zj
        gj = 2.0 * Mij.transpose(1, 2) @ Zi
    else:
        gi, gj = Zj.clone(), Zi.clone()
    gi = gi - (gi @ Zi.transpose(1, 2)) @ Zi
    gj = gj - (gj @ Zj.transpose(1, 2)) @ Zj
    return gi, gj


def _margin(delta: float, smax: float, block: int, dim: int, mode: str) -> float:
    """Gap below the maximum within which a step of radius ``delta`` can make a pair the
    largest: twice the largest first-order change ``(||g_i|| + ||g_j||) delta sqrt(k d)``, with
    ``||g|| <= 2 sqrt(s)`` (lines) or ``1`` (sphere), plus the second-order term."""
    gscale = 2.0 * math.sqrt(max(smax, 0.0)) if mode == "lines" else 1.0
    r = delta * math.sqrt(block * dim)
    return 4.0 * gscale * r + 4.0 * r * r


def _lp_step(
    Z: torch.Tensor,
    pairs: _Pairs,
    delta: float,
    block: int,
    mode: str,
    time_limit: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float, float] | None:
    """Solve the scaled linear programme; return ``(points, step, predicted decrease, |u|,
    no decrease)``, the last the relative decrease below which the solver's answer is noise
    (:data:`_NO_DECREASE`).

    ``points`` are the indices of the points that move and ``step`` their ``(P, k, d)`` step
    ``delta * u`` (not yet projected); ``None`` if HiGHS reports a failure. Raises
    :class:`_OutOfTime` when HiGHS stops on ``time_limit``.
    """
    gi, gj = _gradients(Z, pairs.i, pairs.j, block, mode)
    d = Z.shape[1]
    kd = block * d
    pi = pairs.i.cpu().numpy()
    pj = pairs.j.cpu().numpy()
    points, inv = np.unique(np.concatenate([pi, pj]), return_inverse=True)
    m = pi.size
    vi, vj = inv[:m], inv[m:]
    nvar = points.size * kd
    cols = np.concatenate(
        [vi[:, None] * kd + np.arange(kd), vj[:, None] * kd + np.arange(kd), np.full((m, 1), nvar)],
        axis=1,
    )
    g = np.concatenate(
        [
            gi.reshape(m, kd).cpu().numpy(),
            gj.reshape(m, kd).cpu().numpy(),
            np.ones((m, 1)),
        ],
        axis=1,
    )
    rows = np.repeat(np.arange(m), 2 * kd + 1)
    A = sp.csr_matrix((g.ravel(), (rows, cols.ravel())), shape=(m, nvar + 1))
    s = pairs.s.cpu().numpy()
    b = (pairs.smax - s) / delta
    # u = p - q with p, q in [0, 1] and a small price on |u|: among the steps that lower the
    # maximum most, the shortest (no motion along directions no constraint sees, whose
    # second-order effect would otherwise spoil the linear model)
    A_pq = sp.hstack([A[:, :nvar], -A[:, :nvar], A[:, nvar:]], format="csr")
    c = np.full(2 * nvar + 1, _STEP_PRICE)
    c[-1] = -1.0
    bounds = np.empty((2 * nvar + 1, 2))
    bounds[: 2 * nvar] = (0.0, 1.0)
    bounds[-1] = (-np.inf, np.inf)
    # HiGHS's simplex is fastest on small programmes but stalls for thousands of iterations
    # on the large, highly degenerate ones; its interior-point solver (without the crossover
    # to a vertex, which stalls the same way) is then an order of magnitude faster.
    method = "highs-ds" if A_pq.nnz <= _SIMPLEX_NNZ else "highs-ipm"
    options = dict(_LP_OPTIONS)
    if method == "highs-ds":
        options.update(_PRIMAL_SIMPLEX)
    else:
        options.update(_IPM)
    if time_limit is not None:
        options["time_limit"] = max(time_limit, 1e-3)
    with warnings.catch_warnings():
        # scipy passes HiGHS's own option names through, with a warning that it does
        warnings.simplefilter("ignore", OptimizeWarning)
        res = linprog(c, A_ub=A_pq, b_ub=b, bounds=bounds, method=method, options=options)
    if res.status == 1 and time_limit is not None:
        raise _OutOfTime
    if res.status != 0 or res.x is None:
        return None
    u = res.x[:nvar] - res.x[nvar : 2 * nvar]
    # the model's decrease, from the solution itself (not from w: HiGHS meets the constraints
    # only to its tolerance)
    lin = s + delta * (A[:, :nvar] @ u)
    pred = pairs.smax - float(lin.max())
    step = (delta * u).reshape(points.size, block, d)
    return points, step, pred, float(np.abs(u).max()), _NO_DECREASE[method]


def minimax_finish(
    Z: torch.Tensor,
    *,
    block: int = 1,
    mode: str = "lines",
    max_iter: int = 300,
    time_budget: float | None = None,
    max_pairs: int = 10_000,
    max_variables: int = 20_000,
    tile: int = DEFAULT_TILE,
    should_stop: Callable[[], bool] | None = None,
) -> FinishResult:
    r"""Polish a packing on the exact maximum similarity (see the module docstring).

    Parameters
    ----------
    Z
        ``(N k, d)`` packing: ``N`` points of ``k`` orthonormal rows each (unit rows for
        ``k = 1``). Computed in float64 on ``Z``'s device.
    block
        ``k``, the rows per point.
    mode
        ``"lines"`` (``s_ij = ||Z_i Z_j^T||_F^2``) or ``"sphere"`` (``s_ij = <z_i, z_j>``,
        ``k = 1``).
    max_iter
        At most this many linear programmes.
    time_budget
        Stop after this many seconds (checked between iterations).
    max_pairs, max_variables
        At most this many pairs, and at most this many variables (two per coordinate of the
        points they involve), enter one linear programme: when more lie within the margin, the
        largest pairs are kept and the trust region shrinks to match (pairs left out may then
        block a step, which is rejected: the finish does less, never harm).
    tile
        Tile edge of the similarity scans.
    should_stop
        Polled between iterations; True stops with the best packing so far.

    Returns
    -------
    FinishResult
        The best packing (never worse than ``Z``) and how the finish went.
    """
    check_tensor("Z", Z, ndim=2)
    block = check_int("block", block, minimum=1)
    mode = check_choice("mode", mode, MODES)
    if mode == "sphere" and block != 1:
        raise ValueError(f"mode='sphere' needs block=1, got block={block}")
    if Z.shape[0] % block:
        raise ValueError(f"Z has {Z.shape[0]} rows, not a multiple of block={block}")
    max_iter = check_int("max_iter", max_iter, minimum=0)
    max_pairs = check_int("max_pairs", max_pairs, minimum=1)
    max_variables = check_int("max_variables", max_variables, minimum=1)
    tile = check_int("tile", tile, minimum=1)
    if time_budget is not None:
        time_budget = check_float("time_budget", time_budget, minimum=0.0)
    with _cpu_threads_for(Z):
        return _finish(
            Z, block, mode, max_iter, time_budget, max_pairs, max_variables, tile, should_stop
        )


def _finish(
    Z: torch.Tensor,
    block: int,
    mode: str,
    max_iter: int,
    time_budget: float | None,
    max_pairs: int,
    max_variables: int,
    tile: int,
    should_stop: Callable[[], bool] | None,
) -> FinishResult:
    """The iteration of :func:`minimax_finish` (arguments checked)."""
    start = time.perf_counter()
    Z = retract(Z.detach().to(torch.float64).unsqueeze(0), block)[0]
    n, d = Z.shape[0] // block, Z.shape[1]
    delta = _DELTA0

    def margin(radius: float, smax: float) -> float:
        return _margin(radius, smax, block, d, mode)

    smax0 = near_max_pairs(Z, 0.0, block=block, mode=mode, tile=tile, limit=1)[0]
    if n < 2:
        return FinishResult(Z, smax0, smax0, 0, 0, 0.0, "converged")
    pairs = _Pairs.scan(Z, margin(delta, smax0), block, mode, tile, max_pairs)
    recent = [pairs.smax]
    iterations = accepted = 0
    reason = "iterations"
    while iterations < max_iter:
        if should_stop is not None and should_stop():
            reason = "stopped"
            break
        if time_budget is not None and time.perf_counter() - start >= time_budget:
            reason = "time"
            break
        keep = _fitting(pairs, max_pairs, max(1, max_variables // (2 * block * d)))
        if keep < pairs.s.numel():  # too many: the largest, and a radius to match
            pairs = pairs.largest(keep)
            gap = pairs.smax - float(pairs.s.min())
            while delta > _DELTA_MIN and margin(delta, pairs.smax) > gap:
                delta *= 0.5
        left = None if time_budget is None else time_budget - (time.perf_counter() - start)
        try:
            out = _lp_step(Z, pairs, delta, block, mode, left)
        except _OutOfTime:
            reason = "time"
            break
        iterations += 1
        if out is None:
            reason = "lp-failed"
            break
        points, step, pred, umax, floor = out
        if not pred > floor * max(1.0, abs(pairs.smax)):
            reason = "converged"
            break
        Zn = _moved(Z, points, step, block)
        # one scan per iteration, wide enough for the largest radius the next one can have
        trial = _Pairs.scan(Zn, margin(2.0 * delta, pairs.smax), block, mode, tile, max_pairs)
        rho = (pairs.smax - trial.smax) / pred
        if trial.smax < pairs.smax:
            Z = Zn
            accepted += 1
            if rho > 0.75 and umax > 0.99:
                delta *= 2.0
            elif rho < 0.25:
                delta *= 0.25
            pairs = trial.within(margin(delta, trial.smax))
            recent.append(pairs.smax)
            stall = recent[-_STALL - 1] - recent[-1] if len(recent) > _STALL else math.inf
            if stall <= _STALL_TOL * max(1.0, abs(recent[-1])):
                reason = "converged"
                break
        else:
            delta *= 0.25
            pairs = pairs.within(margin(delta, pairs.smax))
        if delta < _DELTA_MIN:
            reason = "converged"
            break
    seconds = time.perf_counter() - start
    return FinishResult(Z, pairs.smax, smax0, iterations, accepted, seconds, reason)


def _fitting(pairs: _Pairs, max_pairs: int, max_points: int) -> int:
    """How many of the largest pairs to keep: at most ``max_pairs``, involving at most
    ``max_points`` distinct points (at least one pair, the largest)."""
    m = min(pairs.s.numel(), max_pairs)
    order = torch.argsort(pairs.s, descending=True)[:m]
    ends = torch.stack([pairs.i[order], pairs.j[order]], dim=1).reshape(-1)
    if torch.unique(ends).numel() <= max_points:
        return m
    # the number of distinct points grows with the prefix: bisect on it
    lo, hi = 1, m
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if torch.unique(ends[: 2 * mid]).numel() <= max_points:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _moved(Z: torch.Tensor, points: np.ndarray, step: np.ndarray, block: int) -> torch.Tensor:
    """``Z`` with the given points moved by their projected step and retracted."""
    M, d = Z.shape
    idx = torch.as_tensor(points, device=Z.device)
    P = Z.view(M // block, block, d)
    X = P[idx]
    D = torch.as_tensor(step, dtype=Z.dtype, device=Z.device)
    D = project(X.reshape(1, -1, d), D.reshape(1, -1, d), block)
    new = retract(X.reshape(1, -1, d) + D, block).view(-1, block, d)
    out = P.clone()
    out[idx] = new
    return out.view(M, d)
