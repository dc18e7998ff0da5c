"""The benchmark scripts of issue 12 run on a tiny size, so that they cannot rot (their figures
are not asserted: timings belong in the scripts' output, not in tests)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "benchmarks"


def _main(monkeypatch, name):
    # imported, not run from its path: the spawned ranks import the worker by module name
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module(name).main


def test_bench_steps_prints_a_ratio_to_the_products(monkeypatch, capsys):
    _main(monkeypatch, "bench_steps")(["--sizes", "300x16", "--steps", "2", "--tile", "64"])
    out = capsys.readouterr().out
    assert "| 300 | 16 | 64 |" in out


@pytest.mark.slow
def test_bench_distributed_times_two_ranks_and_prints_the_cost_model(monkeypatch, capsys):
    _main(monkeypatch, "bench_distributed")(["--sizes", "400x16", "--steps", "2"])
    out = capsys.readouterr().out
    assert "| 400 | 16 | 2 |" in out and "pays off from N > R s / B = 3,556" in out


def test_bench_finish_times_both_simplex_methods(monkeypatch, capsys):
    _main(monkeypatch, "bench_finish")(["--cases", "8x3", "--starts", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "| 8 | 3 | 1 |" in out
