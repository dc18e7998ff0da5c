"""ebv_gen.finish: the minimax finish lands on known optima, never makes a packing worse."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ebv_gen.finish as finish
from ebv_gen.finish import minimax_finish
from ebv_gen.optimize import max_similarity, minimize_coherence, near_max_pairs, random_start

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
SLOANE = REFERENCE / "line_packings_d3_d8.csv"


def sloane(num: int, dim: int) -> float:
    """The coherence of Sloane's table (12 decimals) for ``num`` lines in ``R^dim``."""
    if not SLOANE.exists():
        pytest.skip(f"reference table {SLOANE} is not here")
    with SLOANE.open() as fh:
        for row in csv.DictReader(fh):
            if (int(row["N"]), int(row["d"])) == (num, dim):
                return float(row["coherence"])
    raise KeyError((num, dim))


def surrogate_end(num: int, dim: int, mode: str, seed: int, steps: int = 1500) -> torch.Tensor:
    """Where the log-sum-exp optimiser ends from one random start (float64)."""
    g = torch.Generator().manual_seed(seed)
    Z0 = random_start(1, num, dim, dtype=torch.float64, generator=g)
    return minimize_coherence(Z0, mode=mode, steps=steps).Z


def coherence(similarity: float, mode: str) -> float:
    return math.sqrt(similarity) if mode == "lines" else similarity


# Lines in R^3 (Sloane's table) and the Tammes problem for N = 8, 9 (square antiprism,
# cos = (2 sqrt 2 - 1) / 7; 70.53 degrees, cos = 1/3), from the surrogate's end in their basin.
@pytest.mark.parametrize(
    ("num", "dim", "mode", "seed"),
    [(8, 3, "lines", 0), (9, 3, "lines", 0), (10, 3, "lines", 0), (8, 3, "sphere", 2),
     (9, 3, "sphere", 0)],
)  # fmt: skip
def test_finish_lands_on_the_known_optimum_to_1e_9(num, dim, mode, seed):
    target = {
        "lines": lambda: sloane(num, dim),
        "sphere": lambda: {8: (2 * math.sqrt(2) - 1) / 7, 9: 1 / 3}[num],
    }[mode]()
    Z = surrogate_end(num, dim, mode, seed)
    start = coherence(float(max_similarity(Z, mode=mode)), mode)
    assert start - target > 1e-6  # the surrogate alone stops short
    res = minimax_finish(Z, mode=mode)
    assert res.reason == "converged" and res.iterations < 60
    assert abs(coherence(res.similarity, mode) - target) < 1e-9
    # the reported value is the exact maximum of the returned packing
    assert res.similarity == pytest.approx(float(max_similarity(res.Z, mode=mode)), abs=1e-15)
    assert torch.allclose(res.Z.norm(dim=1), torch.ones(num, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize(("num", "seed"), [(8, 0), (10, 0)])
def test_finish_with_the_interior_point_solver_lands_and_stops(num, seed, monkeypatch):
    # every programme to HiGHS's interior-point solver (large programmes go there): its
    # answers are optimal only to its tolerance, which must not cost the optimum (that the
    # finish stops on it is the next test's, which needs a large programme)
    monkeypatch.setattr(finish, "_SIMPLEX_NNZ", 0)
    Z = surrogate_end(num, 3, "lines", seed)
    res = minimax_finish(Z)
    assert res.reason == "converged" and res.iterations < 60
    assert abs(math.sqrt(res.similarity) - sloane(num, 3)) < 1e-9


def test_finish_of_a_large_programme_stops_once_the_solver_only_chases_its_tolerance():
    # 100 lines in R^6: programmes of hundreds of pairs, for the interior-point solver. Its
    # optimal points are exact only to its tolerance; taken for real decreases, they kept
    # this finish stepping (each step lowering the maximum by ~1e-12) to its iteration limit
    Z = surrogate_end(100, 6, "lines", 0, steps=1500)
    res = minimax_finish(Z, max_iter=60)
    assert res.reason == "converged" and res.iterations < 60
    assert res.similarity < res.start_similarity - 1e-4


@settings(max_examples=12, deadline=None)
@given(
    num=st.integers(3, 12),
    dim=st.integers(2, 5),
    mode=st.sampled_from(["lines", "sphere"]),
    seed=st.integers(0, 2**16),
    iters=st.integers(0, 6),
)
def test_finish_never_makes_a_packing_worse(num, dim, mode, seed, iters):
    g = torch.Generator().manual_seed(seed)
    Z = random_start(1, num, dim, dtype=torch.float64, generator=g)[0]
    before = float(max_similarity(Z, mode=mode))
    res = minimax_finish(Z, mode=mode, max_iter=iters)
    assert res.start_similarity == pytest.approx(before, abs=1e-15)
    assert res.similarity <= before + 1e-15
    assert res.similarity == pytest.approx(float(max_similarity(res.Z, mode=mode)), abs=1e-14)
    assert res.iterations <= iters and res.accepted <= res.iterations


def test_finish_of_subspaces_raises_the_minimum_chordal_distance():
    # 6 planes in R^4 (block = 2): s_ij = ||X_i^T X_j||_F^2 = k - d_c^2
    g = torch.Generator().manual_seed(0)
    Z0 = random_start(1, 6, 4, block=2, dtype=torch.float64, generator=g)
    Z = minimize_coherence(Z0, block=2, steps=60).Z
    res = minimax_finish(Z, block=2)
    assert res.start_similarity > 0.8 + 1e-4  # the short surrogate run stops short
    blocks = res.Z.view(6, 2, 4)
    eye = torch.eye(2, dtype=torch.float64)
    assert torch.allclose(blocks @ blocks.transpose(1, 2), eye.expand(6, 2, 2), atol=1e-13)
    # Conway-Hardin-Sloane: 6 planes in R^4 meet the simplex bound d_c^2 = 2 * 2/4 * 6/5 = 6/5
    assert 2 - res.similarity == pytest.approx(6 / 5, abs=1e-9)


def test_finish_with_block_one_is_the_lines_finish():
    Z = surrogate_end(9, 3, "lines", 0, steps=600)
    a = minimax_finish(Z)
    b = minimax_finish(Z, block=1, mode="lines")
    assert torch.equal(a.Z, b.Z)


def test_caps_on_the_linear_programme_keep_it_small_and_safe():
    # a far-from-optimal start: many near-active pairs; capped programmes still never worsen
    g = torch.Generator().manual_seed(3)
    Z = random_start(1, 60, 6, dtype=torch.float64, generator=g)[0]
    res = minimax_finish(Z, max_iter=5, max_pairs=20, max_variables=120)
    assert res.similarity <= res.start_similarity


def test_budget_and_stop_flag_end_the_finish():
    Z = surrogate_end(10, 3, "lines", 0, steps=300)
    assert minimax_finish(Z, time_budget=0.0).reason == "time"
    stopped = minimax_finish(Z, should_stop=lambda: True)
    assert stopped.reason == "stopped" and stopped.iterations == 0
    assert torch.allclose(stopped.Z, Z.to(torch.float64), rtol=0, atol=1e-15)


def test_a_linear_programme_cut_short_by_the_budget_ends_the_finish_on_time():
    # a large programme (100 lines in R^6 at the surrogate's end: hundreds of near-active
    # pairs, a solve of a tenth of a second) and a budget far below one solve: HiGHS stops on
    # its time limit, which is "time", not a failure, and the start comes back untouched
    Z = surrogate_end(100, 6, "lines", 0, steps=1500)
    res = minimax_finish(Z, time_budget=0.02)
    assert res.reason == "time" and res.iterations == 0
    assert torch.allclose(res.Z, Z.to(torch.float64), rtol=0, atol=1e-15)


def test_near_max_pairs_lists_exactly_the_pairs_within_the_margin():
    g = torch.Generator().manual_seed(1)
    Z = random_start(1, 50, 4, dtype=torch.float64, generator=g)[0]
    S = (Z @ Z.T) ** 2
    iu = torch.triu_indices(50, 50, 1)
    s = S[iu[0], iu[1]]
    smax, i, j, vals = near_max_pairs(Z, 0.05, tile=7)  # several tiles, diagonal ones included
    assert smax == float(s.max())
    want = {(int(a), int(b)) for a, b, v in zip(iu[0], iu[1], s, strict=True) if v >= smax - 0.05}
    assert {(int(a), int(b)) for a, b in zip(i, j, strict=True)} == want
    # the tiles' products round differently from the whole one's by the thread count (one
    # thread: in the last bit), so the values agree to rounding, not bit for bit
    torch.testing.assert_close(vals, S[i, j], rtol=0, atol=1e-15)
    top = near_max_pairs(Z, 1.0, tile=7, limit=5)
    assert top[3].numel() == 5 and float(top[3].min()) >= float(torch.topk(s, 5).values.min())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"Z": torch.ones(3)}, ValueError, "Z must be a 2-D"),
        ({"mode": "plane"}, ValueError, "mode"),
        ({"mode": "sphere", "block": 2}, ValueError, "block=1"),
        ({"block": 4}, ValueError, "multiple of block"),
        ({"max_iter": -1}, ValueError, "max_iter"),
        ({"max_pairs": 0}, ValueError, "max_pairs"),
        ({"time_budget": -1.0}, ValueError, "time_budget"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, exc, match):
    args = {"Z": torch.eye(6, 3, dtype=torch.float64)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        minimax_finish(args.pop("Z"), **args)
