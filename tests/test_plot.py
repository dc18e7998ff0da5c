"""ebv-gen plot / ebv_gen.plot_file: formats from the extension, fitted axes, subspace files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ebv_gen
from ebv_gen.cli import main
from ebv_gen.io import sidecar_path
from ebv_gen.plot import _fitted, figure_format

_MAGIC = {
    ".png": b"\x89PNG\r\n\x1a\n",
    ".pdf": b"%PDF",
    ".svg": b"<?xml",
    ".jpg": b"\xff\xd8\xff",
    ".jpeg": b"\xff\xd8\xff",
}


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("plot") / "v.npy"  # N d > 2048: one run, history per step
    assert main(["generate", "300", "16", "-o", str(p), "--steps", "60", "--quiet"]) == 0
    return p


@pytest.mark.parametrize("suffix", list(_MAGIC))
def test_the_extension_picks_the_format(tmp_path, capsys, vectors_file, suffix):
    fig = tmp_path / f"fig{suffix}"
    assert main(["plot", str(vectors_file), "-o", str(fig)]) == 0
    assert fig.read_bytes()[: len(_MAGIC[suffix])] == _MAGIC[suffix]
    assert [p.name for p in tmp_path.iterdir()] == [fig.name]  # no temporary left
    capsys.readouterr()


def test_an_unknown_extension_is_refused_before_loading(tmp_path, capsys):
    code = main(["plot", str(tmp_path / "absent.npy"), "-o", str(tmp_path / "fig.bmp")])
    _, err = capsys.readouterr()
    assert code == 2 and "has extension '.bmp'; expected .png, .pdf, .svg, .jpg, .jpeg" in err
    with pytest.raises(ValueError, match="extension '.gif'"):
        figure_format("x.gif")


def test_axes_are_fitted_to_the_values_and_the_marks():
    edges = np.linspace(0.0, 1.0, 10_001)
    counts = np.zeros(10_000, dtype=np.int64)
    counts[700:800] = 5  # values in [0.07, 0.08)
    e, c, (left, right) = _fitted(edges, counts, [0.075, 0.0754])
    assert c.sum() == counts.sum() and len(c) <= 100
    assert 0.06 < left < 0.07 and 0.08 < right < 0.09  # not [0, 1]
    one = np.zeros(10_000, dtype=np.int64)
    one[1250] = 4950  # every pair at one value (an ETF): still visible with the marks
    e, c, (left, right) = _fitted(edges, one, [0.125, 0.125])
    assert left < 0.125 < right and right - left < 0.01


def test_plot_of_a_subspace_file_and_of_a_sphere_file(tmp_path, capsys):
    sub = tmp_path / "s.npy"
    argv = ["generate-subspaces", "10", "5", "2", "-o", str(sub), "--steps", "20", "--quiet"]
    assert main(argv) == 0
    assert main(["plot", str(sub), "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == _MAGIC[".png"]
    sph = tmp_path / "p.npy"
    argv = ["generate", "8", "3", "--mode", "sphere", "-o", str(sph), "--steps", "20", "--quiet"]
    assert main(argv) == 0
    assert main(["plot", str(sph), "-o", str(tmp_path / "p.svg")]) == 0
    assert b"cos of a pair of points" in (tmp_path / "p.svg").read_bytes()
    capsys.readouterr()


def test_plot_labels_and_marks(tmp_path, vectors_file):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    real = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        shown.append(fig)
        return real(fig, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        ebv_gen.plot_file(vectors_file, tmp_path / "f.png")
    finally:
        plt.Figure.savefig = real
    side = json.loads(sidecar_path(vectors_file).read_text())
    hist, conv = shown[0].axes
    assert hist.get_xlabel() == "|cos| of a pair of lines" and hist.get_ylabel()
    labels = [t.get_text() for t in hist.get_legend().get_texts()]
    assert f"coherence {side['coherence']:.5f}" in labels
    assert f"{side['bound_name']} bound {side['bound']:.5f}" in labels
    left, right = hist.get_xlim()
    assert left < side["bound"] < right and left < side["coherence"] < right
    assert right < 1.0  # fitted, not the whole [0, 1]
    assert conv.get_xlabel() == "optimiser step" and conv.get_ylabel() == "best coherence"


def test_plot_errors_are_one_line(tmp_path, capsys):
    one = tmp_path / "one.npy"
    np.save(one, np.eye(3, dtype=np.float32)[:1])
    code = main(["plot", str(one), "-o", str(tmp_path / "f.png")])
    _, err = capsys.readouterr()
    assert code == 2 and "single vector" in err and len(err.strip().splitlines()) == 1
