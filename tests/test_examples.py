"""The example scripts run end to end at a small size."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _run_example(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_digits_quick_run_prints_the_table_and_writes_the_plots(tmp_path):
    out = tmp_path / "out"
    proc = _run_example("train_digits.py", tmp_path, "--quick", "--out", str(out))
    assert "| head | test accuracy (%) |" in proc.stdout
    rows = re.findall(r"^\| (\S+) \| ([0-9.]+) ± ([0-9.]+) \|", proc.stdout, flags=re.M)
    names = {name for name, _, _ in rows}
    assert {"linear", "ebv", "gcr-k1", "gcr-k4", "gcr-packed-k4", "gcr-fixed-k4"} <= names
    assert {"gcr-exact-k4", "gcr-adamw-k4"} <= names  # GCRSGD alone, AdamW + GCRSGD
    fixed = re.search(r"^\| gcr-fixed-k4 \|.*\| (\d+) \| (\d+) \|$", proc.stdout, flags=re.M)
    assert fixed is not None and fixed.groups() == ("0", str(10 * 64 * 4))  # nothing trainable
    best = max(float(acc) for _, acc, _ in rows)
    assert best > 80.0  # chance is 10 %
    for png in ("training_curves.png", "variability_vs_k.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert (out / "results.json").is_file()


@pytest.mark.slow
def test_train_digits_cnn_quick_run_puts_each_head_on_a_cnn(tmp_path):
    out = tmp_path / "cnn"
    proc = _run_example(
        "train_digits_cnn.py", tmp_path, "--quick", "--epochs", "3", "--out", str(out)
    )
    assert "digits, CNN, 3 epochs" in proc.stdout
    rows = re.findall(r"^\| (\S+) \| ([0-9.]+) ± ([0-9.]+) \|", proc.stdout, flags=re.M)
    accuracy = {name: float(acc) for name, acc, _ in rows}
    assert set(accuracy) == {"linear", "ebv", "gcr-k4", "gcr-mixed"}
    assert min(accuracy.values()) > 60.0 and max(accuracy.values()) > 85.0  # chance is 10 %
    mixed = re.search(r"^\| gcr-mixed \|.*\| (\d+) \| (\d+) \|$", proc.stdout, flags=re.M)
    assert mixed is not None and mixed.groups() == (str(64 * (5 * 2 + 5 * 6)), "0")
    data = (out / "training_curves.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert (out / "results.json").is_file()
