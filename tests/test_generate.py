"""ebv_gen.generate: known optima, the optimiser alone, determinism, bounds, errors."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ebv_gen
import grassmann
from ebv_gen import EBVResult, generate

KNOWN = [
    (6, 3, "lines", 1 / math.sqrt(5)),
    (10, 5, "lines", 1 / 3),
    (16, 6, "lines", 1 / 3),
    (28, 7, "lines", 1 / 3),
    (3, 2, "lines", 1 / 2),
    (4, 3, "lines", 1 / 3),
    (6, 5, "lines", 1 / 5),
    (9, 8, "lines", 1 / 8),
    (12, 3, "sphere", 1 / math.sqrt(5)),
    (4, 3, "sphere", -1 / 3),
]


@pytest.mark.parametrize(("num", "dim", "mode", "target"), KNOWN)
def test_auto_reaches_known_optimum(num, dim, mode, target):
    res = generate(num, dim, mode=mode)
    assert abs(res.coherence - target) < 1e-12
    # small packings keep float64 (N^2 d <= 1e7), so that the optimum survives to the file
    assert res.vectors.dtype == torch.float64 and res.vectors.shape == (num, dim)


@pytest.mark.parametrize(
    ("num", "dim", "mode", "target"),
    [
        (6, 3, "lines", 1 / math.sqrt(5)),
        (10, 5, "lines", 1 / 3),
        (16, 6, "lines", 1 / 3),
        (28, 7, "lines", 1 / 3),
        (7, 6, "lines", 1 / 6),
        (4, 3, "sphere", -1 / 3),
        (12, 3, "sphere", 1 / math.sqrt(5)),
    ],
)
def test_optimizer_alone_reaches_known_optimum(num, dim, mode, target):
    res = generate(num, dim, mode=mode, method="lse")
    assert res.method == "lse"
    assert res.steps > 0
    assert abs(res.coherence - target) < 1e-6, res.report()


def test_closed_form_method_and_error_when_none_known():
    res = generate(6, 5, method="closed-form")
    assert res.method.startswith("closed-form") and res.steps == 0
    with pytest.raises(ValueError, match="closed-form"):
        generate(8, 4, method="closed-form")


MUB64 = "embedded_mubs (Kerdock, R^64)"


def test_auto_keeps_the_construction_when_the_search_does_worse():
    # 1000 lines in R^100: 15 unbiased bases of R^64 + the spare axes give exactly 1/8; the
    # search's 40 steps are far from that
    res = generate(1000, 100, steps=40)
    assert res.method == "construction" and res.coherence == 0.125
    assert res.extra["construction"]["name"] == MUB64
    assert "Calderbank" in res.extra["construction"]["reference"]
    lse, mub = res.extra["candidates"]["lse"], res.extra["candidates"][MUB64]
    assert mub == 0.125 < lse
    assert res.steps == 40 and res.history[-1][2] == 0.125
    assert [h[0] for h in res.history] == sorted({h[0] for h in res.history})  # one per step
    assert res.history[-2][2] >= lse - 1e-6  # the search's best so far, before the end


def test_auto_keeps_the_search_when_it_beats_every_construction():
    res = generate(100, 64, steps=300)  # MUB: 1/8; the search gets ~0.081 (Welch 0.0754)
    assert res.method == "lse"
    assert res.extra["candidates"][MUB64] == 0.125
    assert res.coherence == res.extra["candidates"]["lse"] < 0.1
    assert res.coherence <= min(res.extra["candidates"].values())


def test_auto_compares_sphere_codes_too():
    # 200 points on S^15: the antipodal doubling of 100 lines is a candidate
    res = generate(200, 16, mode="sphere", steps=50)
    assert res.coherence <= min(res.extra["candidates"].values()) + 1e-12
    assert any("antipodes" in name for name in res.extra["candidates"])


def test_auto_takes_a_near_optimal_construction_without_searching():
    # 2000 lines in R^64: 1/8 is within 2% of the Welch bound 0.12301
    res = generate(2000, 64)
    assert res.method == "construction" and res.steps == 0 and res.coherence == 0.125
    assert res.ratio < ebv_gen.generation.NEAR_OPTIMAL
    only = generate(1000, 100, method="mub")
    assert only.method == "mub" and only.steps == 0 and only.coherence == 0.125


def test_construction_method_returns_the_best_known_frame():
    res = generate(19, 5, method="construction")
    assert res.method == "construction" and res.steps == 0
    assert res.coherence == pytest.approx(0.5, abs=1e-15)
    assert res.extra["construction"]["name"] == "root_system(D5)"
    far = generate(40, 3, method="construction", mode="sphere")  # nothing better than a polygon
    assert far.extra["construction"]["family"] == "polygon" and far.coherence < 1


def test_same_seed_same_bytes_and_other_seed_differs():
    a = generate(40, 6, seed=3, steps=60)
    b = generate(40, 6, seed=3, steps=60)
    c = generate(40, 6, seed=4, steps=60)
    assert a.vectors.numpy().tobytes() == b.vectors.numpy().tobytes()
    assert a.vectors.numpy().tobytes() != c.vectors.numpy().tobytes()


def test_float32_search_beats_random_start_and_reports_history():
    res = generate(300, 16, steps=150, dtype=torch.float32, seed=1)
    start = grassmann.coherence(torch.nn.functional.normalize(torch.randn(300, 16), dim=1))
    assert res.coherence < 0.8 * start
    assert res.history[-1][0] == res.steps == 150
    assert all(
        h1[2] <= h0[2] + 1e-12 for h0, h1 in zip(res.history[:-1], res.history[1:], strict=True)
    )
    assert res.history[-1][2] == pytest.approx(res.coherence, abs=1e-6)


def test_threshold_method_reports_threshold():
    res = generate(20, 5, method="threshold", threshold=0.9, steps=2000)
    assert res.method == "threshold"
    assert res.extra["threshold"] == 0.9 and res.extra["threshold_reached"]
    assert res.coherence <= 0.9 + 1e-6


def test_time_budget_only_stops_in_time():
    res = generate(200, 10, time_budget=0.5, method="lse")
    assert 0 < res.seconds < 5
    assert res.coherence >= res.lower_bound


@pytest.mark.parametrize("num", [50, 3000])  # the multi-start search, one large run
def test_should_stop_marks_interrupted(num):
    n = []
    res = generate(num, 5, steps=10_000, should_stop=lambda: n.append(1) or len(n) > 3)
    assert res.interrupted and res.steps <= 3
    assert "INTERRUPTED" in res.report()


@given(
    num=st.integers(2, 14),
    dim=st.integers(1, 6),
    mode=st.sampled_from(["lines", "sphere"]),
)
def test_every_size_gives_valid_result_above_its_bound(num, dim, mode):
    res = generate(num, dim, mode=mode, steps=40)
    v = res.vectors.double()
    assert torch.isfinite(v).all()
    assert torch.allclose(v.norm(dim=1), torch.ones(num, dtype=torch.float64), atol=1e-6)
    assert res.coherence >= res.lower_bound - 1e-12
    assert res.lower_bound == grassmann.lower_bound(num, dim, mode).value
    assert res.gap == res.coherence - res.lower_bound


def test_report_and_as_dict_keys():
    res = generate(10, 3, steps=20)
    d = res.as_dict()
    for key in (
        "num",
        "dim",
        "mode",
        "coherence",
        "bound",
        "bound_name",
        "method",
        "seed",
        "steps",
        "seconds",
        "device",
        "version",
        "history",
        "gap",
        "ratio",
    ):
        assert key in d
    line = res.report()
    assert "\n" not in line and "coherence" in line and "bound" in line


def test_save_and_load_roundtrip(tmp_path):
    res = generate(12, 4, steps=30)
    path = tmp_path / "v.npy"
    digest = res.save(path)
    loaded = ebv_gen.load(path)
    assert torch.equal(loaded, res.vectors)
    meta = ebv_gen.io.read_sidecar(path)
    assert meta["sha256"] == digest and meta["shape"] == [12, 4]
    assert np.load(path).dtype == np.float64 and meta["dtype"] == "float64"
    big = generate(3000, 8, steps=2)  # N^2 d > 1e7: float32, and the sidecar says so
    big.save(tmp_path / "big.npy")
    assert np.load(tmp_path / "big.npy").dtype == np.float32
    assert ebv_gen.io.read_sidecar(tmp_path / "big.npy")["dtype"] == "float32"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"num": 0, "dim": 3}, ValueError, "num"),
        ({"num": 1, "dim": 3}, ValueError, "num must be >= 2"),
        ({"num": 2.5, "dim": 3}, TypeError, "num"),
        ({"num": 5, "dim": "3"}, TypeError, "dim"),
        ({"num": 5, "dim": 0}, ValueError, "dim"),
        ({"num": 5, "dim": 3, "mode": "plane"}, ValueError, "mode"),
        ({"num": 5, "dim": 3, "method": "sgd"}, ValueError, "method"),
        ({"num": 5, "dim": 3, "seed": -1}, ValueError, "seed"),
        ({"num": 5, "dim": 3, "steps": -2}, ValueError, "steps"),
        ({"num": 5, "dim": 3, "time_budget": float("nan")}, ValueError, "time_budget"),
        ({"num": 5, "dim": 3, "device": "tpu"}, ValueError, "device"),
        ({"num": 10**9, "dim": 10**5}, ValueError, "GiB"),
        ({"num": 5000, "dim": 100, "method": "mub"}, ValueError, "do not fit.*at most 2148.*'lse'"),
        ({"num": 5, "dim": 3, "method": "mub"}, ValueError, "need dim >= 4"),
        ({"num": 10**9, "dim": 10**5, "method": "mub"}, ValueError, "method='mub'.*GiB"),
        ({"num": 50, "dim": 16, "mode": "sphere", "method": "mub"}, ValueError, "mode='lines'"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        generate(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-CUDA message")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        generate(5, 3, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_run_is_valid_and_deterministic():
    a = generate(500, 32, device="cuda", steps=50)
    b = generate(500, 32, device="cuda", steps=50)
    assert a.vectors.device.type == "cpu"
    assert a.vectors.numpy().tobytes() == b.vectors.numpy().tobytes()
    assert a.coherence >= a.lower_bound


def test_result_type():
    assert isinstance(generate(3, 3), EBVResult)


def test_memory_is_checked_before_a_closed_form_is_built(monkeypatch):
    # review finding: generate(2000, 2000) used to build the orthonormal frame first
    from ebv_gen import resources

    monkeypatch.setattr(resources, "available_memory", lambda device: 1 << 20)
    with pytest.raises(ValueError, match=r"num=2000, dim=2000 needs about .* GiB on cpu"):
        ebv_gen.generate(2000, 2000)


@pytest.fixture
def bench_tables():
    """``benchmarks/bench_tables.py``'s namespace; skips without Sloane's table beside the
    repository."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    table = root.parents[1] / "shared" / "reference"
    if not (table / "line_packings_d3_d8.csv").exists():
        pytest.skip("Sloane's table is not beside the repository")
    return runpy.run_path(str(root / "bench_tables.py"), run_name="bench_tables")


def test_bench_tables_runs_on_one_case(bench_tables, capsys):
    # the benchmark script cannot rot: one entry of Sloane's table, a short budget
    bench = bench_tables
    assert bench["main"](["--cases", "1", "--dims", "3", "--budget", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "Sloane's line packings: 1 cases, matched to 1e-06: 1 (100.0%)" in out


def test_bench_tables_runs_chosen_entries_and_refuses_unknown_ones(bench_tables, capsys):
    bench = bench_tables
    assert bench["main"](["--only", "5x3", "--budget", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "Sloane's line packings: 1 cases" in out and "\n   5  3 " in out
    assert bench["main"](["--only", "5x2"]) == 2
    assert "--only: not in the table: [(5, 2)]" in capsys.readouterr().err
    assert bench["main"](["--only", "five"]) == 2
    assert "--only takes entries NxD" in capsys.readouterr().err


def test_bench_tables_summary_breaks_the_table_down_by_dimension(bench_tables, capsys):
    # synthetic results: the summary's arithmetic, without running the generator
    rows = [
        {"N": 5, "d": 3, "excess": 0.0, "ok": True, "seconds": 1.0},
        {"N": 6, "d": 3, "excess": -2e-6, "ok": True, "seconds": 1.0},
        {"N": 7, "d": 4, "excess": 2e-3, "ok": False, "seconds": 2.0},
    ]
    bench_tables["summary"](rows, "T")
    out = capsys.readouterr().out
    assert "T: 3 cases, matched to 1e-06: 2 (66.7%), beat the reference: 1" in out
    assert "above 1e-3: 1" in out
    assert "  d = 3: matched 2 of 2, beat 1, above 1e-3 0" in out
    assert "  d = 4: matched 0 of 1, beat 0, above 1e-3 1" in out
    assert "  beat: N=6 d=3 by 2.00e-06" in out
    # one dimension: no breakdown
    bench_tables["summary"](rows[:2], "T")
    assert "d = 3:" not in capsys.readouterr().out
