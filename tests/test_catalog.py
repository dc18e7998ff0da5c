"""The frame catalog: stated coherence equals the built frame's, order, optimality, speed
(nothing is built while listing), the issue's sizes, and errors."""

from __future__ import annotations

import math
import runpy
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann import coherence, frame_candidates, known_optimal, lower_bound

# sizes chosen so that together they list every family of the catalog (checked below)
LINES = [(5, 5), (3, 1), (7, 6), (19, 5), (13, 6), (40, 8), (18, 9), (16, 10), (30, 20)]
LINES += [(100, 15), (100, 16), (120, 15), (100, 35), (200, 31), (200, 32), (300, 63)]
LINES += [(150, 25), (33, 4), (200, 49), (40, 6), (91, 7)]
SPHERE = [(4, 3), (6, 4), (3, 1), (12, 3), (40, 5), (72, 6), (126, 7), (240, 8), (40, 8)]
SPHERE += [(100, 15), (100, 31), (100, 63), (60, 20), (150, 25), (500, 49), (80, 6)]
SIZES = [(n, d, "lines") for n, d in LINES] + [(n, d, "sphere") for n, d in SPHERE]
# larger sizes where only one family is built: the dual BCH code beyond its Gold rows
TARGETED = [(1100, 31, "lines", "dual_bch"), (1100, 32, "lines", "dual_bch_extended")]
TARGETED += [(1100, 31, "sphere", "dual_bch_signed")]

FAMILIES = {
    "lines": {
        "orthonormal", "trivial", "simplex", "polygon", "triangular", "roots_D", "roots_E6",
        "roots_E7", "roots_E8", "paley", "steiner_pairs", "steiner_triples",
        "steiner_complement", "hadamard_identity", "kerdock", "kerdock_punctured", "gold",
        "gold_extended", "kasami_small", "kasami_large", "kasami_large_extended", "dual_bch",
        "dual_bch_extended", "devore", "triple_packing", "affine_plane", "root_weights_D6",
        "root_weights_E6", "root_weights_E7", "roots_H4",
    },
    "sphere": {
        "simplex", "orthoplex", "trivial", "polygon", "icosahedron", "roots_D", "roots_E6",
        "roots_E7", "roots_E8", "gold_signed", "kasami_small_signed", "kasami_large_signed",
        "dual_bch_signed", "kerdock_punctured_signed", "antipodal_gold_extended",
        "antipodal_kerdock", "antipodal_hadamard_identity", "antipodal_devore",
        "antipodal_triple_packing", "antipodal_affine_plane", "root_weights_D6",
        "root_weights_E6", "root_weights_E7", "roots_H4",
    },
}  # fmt: skip


def test_the_sizes_below_list_every_family():
    seen: dict[str, set[str]] = {"lines": set(), "sphere": set()}
    for num, dim, mode in SIZES:
        seen[mode] |= {c.family for c in frame_candidates(num, dim, mode)}
    for num, dim, mode, family in TARGETED:
        assert family in {c.family for c in frame_candidates(num, dim, mode)}
        seen[mode].add(family)
    assert FAMILIES["lines"] <= seen["lines"]
    assert FAMILIES["sphere"] <= seen["sphere"]


def _check(cand, num, dim, mode):
    frame = cand.build()
    assert frame.shape == (num, dim) and frame.dtype == torch.float64, cand.name
    assert torch.allclose(frame.norm(dim=1), torch.ones(num, dtype=torch.float64))
    assert abs(coherence(frame, mode=mode) - cand.coherence) <= 1e-12, cand.name
    assert cand.own_dim <= dim and cand.capacity >= num
    assert cand.optimal == (abs(cand.coherence - lower_bound(num, dim, mode).value) <= 1e-12)


@pytest.mark.parametrize(("num", "dim", "mode"), SIZES, ids=[f"{n}x{d}-{m}" for n, d, m in SIZES])
def test_stated_coherence_equals_the_built_frames(num, dim, mode):
    cands = frame_candidates(num, dim, mode)
    assert cands
    for cand in cands:
        _check(cand, num, dim, mode)


@pytest.mark.parametrize(("num", "dim", "mode", "family"), TARGETED)
def test_stated_coherence_equals_the_built_frame_of_larger_families(num, dim, mode, family):
    cand = next(c for c in frame_candidates(num, dim, mode) if c.family == family)
    _check(cand, num, dim, mode)


@given(
    num=st.integers(2, 400),
    dim=st.integers(1, 48),
    mode=st.sampled_from(["lines", "sphere"]),
)
def test_every_candidate_of_any_size_builds_with_its_stated_coherence(num, dim, mode):
    # beyond the hand-picked sizes: whatever (N, d) the catalog is asked, each entry builds
    # (N, d) unit rows whose float64 coherence is the stated one, and the list is sorted
    cands = frame_candidates(num, dim, mode)
    assert cands
    mus = [round(c.coherence, 12) for c in cands]
    assert mus == sorted(mus)
    for cand in cands:
        _check(cand, num, dim, mode)


def test_sorted_best_first_one_entry_per_family():
    for num, dim, mode in SIZES:
        cands = frame_candidates(num, dim, mode)
        mus = [round(c.coherence, 12) for c in cands]  # ties within 1e-12 go by cost
        assert mus == sorted(mus)
        assert len({c.family for c in cands}) == len(cands)
        assert all(c.bound == cands[0].bound and c.num == num and c.mode == mode for c in cands)


def test_the_issue_sizes_from_theory():
    best = frame_candidates(262_143, 511)[0]
    assert best.family == "gold" and best.coherence == 33 / 511 <= 0.0646
    assert best.bound == 0.0625 and abs(best.ratio - 1.0333) < 1e-4
    best = frame_candidates(100_000, 512)[0]
    assert best.family == "gold_extended" and best.coherence == 1 / 16
    best = frame_candidates(32_736, 1023)[0]
    assert best.coherence == 33 / 1023 <= 0.0323 and abs(best.ratio - 1.048) < 1e-3
    assert best.family in ("kasami_small", "kerdock_punctured")
    # ~1000 classes in R^500: a subset of the Steiner ETF (1024, 496), 1/31 (Welch 0.0316)
    best = frame_candidates(1000, 500)[0]
    assert best.family == "steiner_pairs" and best.coherence == 1 / 31
    best = frame_candidates(1_000_000, 1024)[0]
    assert best.family == "kasami_large_extended" and best.coherence == 1 / 16


def test_listing_forms_no_frame(monkeypatch):
    # a million vectors in R^1024 (a frame would take 4 GB): no tensor is made and the
    # Python/numpy allocations stay small
    frame_candidates(10**6, 1024)  # warm the cached tables of sizes

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was made while listing")

    for name in ("empty", "zeros", "ones", "full", "tensor", "as_tensor", "from_numpy"):
        monkeypatch.setattr(torch, name, refuse)
    tracemalloc.start()
    try:
        for mode in ("lines", "sphere"):
            cands = frame_candidates(10**6, 1024, mode)
            assert len(cands) > 3 and cands[0].num == 10**6
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_known_optimal_goes_through_the_catalog():
    # new optimal entries: lines of E6, E7 (Levenstein) and D4 (orthoplex)
    for num, dim in ((36, 6), (63, 7), (12, 4), (120, 8), (16, 6), (28, 21), (64, 28)):
        frame = known_optimal(num, dim)
        assert frame is not None and frame.shape == (num, dim)
        assert abs(coherence(frame) - lower_bound(num, dim).value) <= 1e-12
        assert frame_candidates(num, dim)[0].optimal
    assert known_optimal(37, 6) is None and not frame_candidates(37, 6)[0].optimal


def test_subsets_of_known_frames_are_structured_starts():
    # Sloane's table: 13 lines in R^6 and 6 in R^4 at 1/3, 19 lines in R^5 at 1/2
    for num, dim, mu, owner in ((13, 6, 1 / 3, 15), (6, 4, 1 / 3, 6), (19, 5, 0.5, 20)):
        best = frame_candidates(num, dim)[0]
        assert abs(best.coherence - mu) < 1e-15 and best.capacity == owner
    # in a smaller dimension, zero-padded
    cand = next(c for c in frame_candidates(100, 40) if c.family == "steiner_triples")
    assert cand.own_dim == 35 and cand.coherence == 1 / 7
    frame = cand.build()
    assert frame[:, 35:].abs().max() == 0.0


def test_sphere_mode_antipodes_and_signed_families():
    lines = {c.family: c.coherence for c in frame_candidates(50, 20)}
    for c in frame_candidates(100, 20, "sphere"):
        if c.family.startswith("antipodal_"):
            assert c.coherence == lines[c.family.removeprefix("antipodal_")]
    best = frame_candidates(262_143, 511, "sphere")[0]
    assert best.family == "gold_signed" and best.coherence == 31 / 511


def test_build_dtype_device_and_properties(device):
    cand = frame_candidates(200, 32)[0]
    frame = cand.build(dtype=torch.float32, device=device)
    assert frame.shape == (200, 32) and frame.dtype == torch.float32
    assert frame.device.type == device.type
    assert cand.ratio == cand.coherence / cand.bound
    ortho = frame_candidates(5, 8)
    assert [c.family for c in ortho] == ["orthonormal"] and ortho[0].ratio == 1.0
    assert ortho[0].optimal and ortho[0].cost == "O(N d)"


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num must be >= 2, got 1"):
        frame_candidates(1, 5)
    with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
        frame_candidates(5, 0)
    with pytest.raises(ValueError, match="mode must be one of 'lines', 'sphere', got 'cube'"):
        frame_candidates(5, 3, "cube")
    with pytest.raises(TypeError, match="num must be an integer"):
        frame_candidates(5.0, 3)
    # a non-floating dtype would round the unit vectors to integers (zeros, or +-1 rows)
    for num, dim in ((200, 32), (20, 5), (100, 16)):
        with pytest.raises(TypeError, match="dtype must be a real floating dtype.*torch.int64"):
            frame_candidates(num, dim)[0].build(dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype, got 'float32'"):
        frame_candidates(20, 5)[0].build(dtype="float32")


def test_bench_frames_runs_on_a_small_size(monkeypatch, capsys):
    # the benchmark script cannot rot: one small size, with the float64 verification
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(root))
    bench = runpy.run_path(str(root / "bench_frames.py"), run_name="bench_frames")
    bench["main"](["--sizes", "1000x31", "--verify"])
    out = capsys.readouterr().out
    assert "gold(m=5), punctured + basis" in out and "| 0.290322580645161 |" in out


def test_triple_packings_give_29_to_32_lines_in_r8_at_one_third():
    for num in (29, 32):
        best = frame_candidates(num, 8)[0]
        assert best.family == "triple_packing" and best.coherence == 1 / 3
        assert best.own_dim == 8 and best.capacity == 32
    assert "triple_packing" not in {c.family for c in frame_candidates(33, 8)}
    # on all the points (a subset as a start spans R^dim): 29 lines in R^20 on 20 points
    best = {c.family: c for c in frame_candidates(29, 20)}["triple_packing"]
    assert best.own_dim == 20 and best.capacity == 4 * 60
    assert coherence(best.build()) == pytest.approx(1 / 3, abs=1e-15)


def test_affine_planes_are_the_best_construction_for_hundreds_of_lines_in_r49():
    best = frame_candidates(448, 49)[0]
    assert best.family == "affine_plane" and best.coherence == 1 / 7 and best.capacity == 448
    assert "affine_plane" not in {c.family for c in frame_candidates(449, 49)}
    # the largest plane that fits: q = 11 from R^121 on
    assert frame_candidates(1000, 130)[0].name == "affine_plane_frame(11)"


def test_roots_with_weights_are_the_best_construction_for_their_sizes():
    assert frame_candidates(46, 6)[0].name == "root_weight_lines('D6')"
    assert frame_candidates(63, 6)[0].name == "root_weight_lines('E6')"
    best = frame_candidates(91, 7)[0]
    assert best.name == "root_weight_lines('E7')" and best.coherence == 1 / math.sqrt(3)
    assert frame_candidates(150, 7, "sphere")[0].name == "root_weight_lines('E7')"


def test_the_600_cell_gives_120_points_on_s3_and_60_lines_in_r4():
    best = frame_candidates(120, 4, "sphere")[0]
    assert best.name == "six_hundred_cell" and best.coherence == math.cos(math.pi / 5)
    assert abs(coherence(best.build(), mode="sphere") - math.cos(math.pi / 5)) <= 1e-15
    assert frame_candidates(60, 4)[0].name == "six_hundred_cell"
    assert "roots_H4" not in {c.family for c in frame_candidates(61, 4)}


def test_the_catalog_packs_triples_on_at_most_triple_limit_points():
    from grassmann.catalog import TRIPLE_LIMIT

    big = {c.family: c for c in frame_candidates(10**7, 5000)}["triple_packing"]
    assert big.own_dim == TRIPLE_LIMIT and big.capacity >= 10**7
