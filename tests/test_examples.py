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


@pytest.mark.slow
def test_train_digits_quick_run_prints_the_table_and_writes_the_plots(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| head | test accuracy (%) |" in proc.stdout
    rows = re.findall(r"^\| (\S+) \| ([0-9.]+) ± ([0-9.]+) \|", proc.stdout, flags=re.M)
    names = {name for name, _, _ in rows}
    assert {"linear", "ebv", "gcr-k1", "gcr-k4", "gcr-packed-k4", "gcr-fixed-k4"} <= names
    fixed = re.search(r"^\| gcr-fixed-k4 \|.*\| (\d+) \| (\d+) \|$", proc.stdout, flags=re.M)
    assert fixed is not None and fixed.groups() == ("0", str(10 * 64 * 4))  # nothing trainable
    best = max(float(acc) for _, acc, _ in rows)
    assert best > 80.0  # chance is 10 %
    for png in ("training_curves.png", "variability_vs_k.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert (out / "results.json").is_file()
