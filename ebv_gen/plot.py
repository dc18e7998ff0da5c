"""Figures of a generated file (``ebv-gen plot``, :func:`plot_file`).

* Class vectors ``(N, d)``: the histogram of the pairwise ``|cos|`` (lines) or ``cos``
  (sphere) over the ``N (N - 1) / 2`` pairs, streamed in float64 by
  :func:`grassmann.coherence_report` (no ``N x N`` matrix), with the x-axis fitted to the values
  that occur, counts on a log scale when they span more than two decades, and the coherence and
  its lower bound marked.
* Subspace bases ``(N, n, k)``: histograms of the pairwise chordal distances
  ``sqrt(sum sin^2 theta)`` and of the smallest principal angle of each pair
  (:func:`grassmann.principal_angles`, accurate for small angles), with the minimum and the
  Rankin bound marked.
* With a sidecar history: the best coherence (minimum distance) against the step, and the bound.

The format follows the output's extension (:data:`FIGURE_FORMATS`); the file is written
atomically.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from grassmann.npyio import write_bytes_atomic

__all__ = ["FIGURE_FORMATS", "figure_format", "plot_file"]

#: Output extension -> matplotlib ``savefig`` format.
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}

#: Bars of a histogram after the occupied range is fitted.
_BARS = 80

#: Entries of the ``(block, N, n, k)`` buffer of the pairwise principal angles.
_ANGLE_BUFFER = 1 << 22

_COHERENCE_STYLE = {"color": "C3", "lw": 2.0}
_BOUND_STYLE = {"color": "C2", "lw": 2.0, "ls": "--"}


def figure_format(output: str | os.PathLike) -> str:
    """The ``savefig`` format of ``output`` from its extension.

    Raises
    ------
    ValueError
        For an extension outside :data:`FIGURE_FORMATS`, naming it and the allowed ones.
    """
    suffix = Path(output).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        got = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(
            f"output {str(output)!r} has {got}; expected one of {', '.join(FIGURE_FORMATS)}"
        )
    return FIGURE_FORMATS[suffix]


def plot_file(
    path: str | os.PathLike, output: str | os.PathLike, *, mode: str | None = None
) -> Path:
    """Draw the figure of the class vectors or subspace bases in ``path`` into ``output``.

    Parameters
    ----------
    path
        A ``.npy`` file of ``(N, d)`` unit rows or ``(N, n, k)`` orthonormal bases, checked as
        :func:`ebv_gen.load` checks it (and against its sidecar).
    output
        The figure; its extension picks the format (:data:`FIGURE_FORMATS`).
    mode
        ``"lines"`` or ``"sphere"`` for class vectors; default the sidecar's mode, else lines.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    ValueError
        An unknown extension, a file that does not load (:mod:`grassmann.npyio` errors), fewer
        than 2 vectors or subspaces, or a ``mode`` that contradicts the sidecar.
    """
    import torch

    from grassmann._validation import check_choice
    from grassmann.npyio import load_array, validate_bases

    from .io import check_sidecar, load

    out = Path(output)
    fmt = figure_format(out)
    if mode is not None:
        mode = check_choice("mode", mode, ("lines", "sphere"))
    array = load_array(path, ndim=(2, 3))
    if array.ndim == 3:
        if mode is not None:
            raise ValueError(
                f"mode={mode!r} applies to class vectors; {str(path)!r} holds subspaces"
            )
        bases = torch.from_numpy(np.ascontiguousarray(array))
        validate_bases(bases, name=f"bases in {str(path)!r}")
        side = check_sidecar(path, bases) or {}
        if bases.shape[0] < 2 or bases.shape[2] >= bases.shape[1]:
            raise ValueError(
                f"{str(path)!r} holds {bases.shape[0]} bases of shape {tuple(bases.shape[1:])}: "
                f"nothing to plot (needs 2 or more subspaces of dimension k < n)"
            )
        draw = _subspace_panels(bases.to(torch.float64), side)
    else:
        vectors = load(path)
        side = check_sidecar(path, vectors) or {}
        stated = side.get("mode")
        if mode is not None and stated in ("lines", "sphere") and stated != mode:
            raise ValueError(f"mode={mode!r} but the sidecar of {str(path)!r} says {stated!r}")
        mode = mode or (stated if stated in ("lines", "sphere") else "lines")
        if vectors.shape[0] < 2:
            raise ValueError(f"{str(path)!r} holds a single vector: nothing to plot")
        draw = _vector_panels(vectors, mode, side)
    _render(draw, side, out, fmt)
    return out


def _fitted(edges: np.ndarray, counts: np.ndarray, marks: list[float]) -> tuple[Any, Any, Any]:
    """The occupied part of a fine histogram merged into about :data:`_BARS` bars, and x-limits
    that hold the bars and ``marks`` with a margin."""
    nz = np.flatnonzero(counts)
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    group = max(1, (hi - lo) // _BARS)
    hi = lo + group * math.ceil((hi - lo) / group)
    padded = np.zeros(hi - lo, dtype=np.int64)
    part = counts[lo : min(hi, len(counts))]
    padded[: len(part)] = part
    merged = padded.reshape(-1, group).sum(axis=1)
    step = edges[1] - edges[0]
    new_edges = edges[lo] + step * group * np.arange(len(merged) + 1)
    left = min(new_edges[0], *marks)
    right = max(new_edges[-1], *marks)
    margin = max(0.06 * (right - left), 4 * step * group)
    return new_edges, merged, (left - margin, right + margin)


def _histogram(ax, edges, counts, marks: list[tuple[str, float, dict]], xlabel: str) -> None:
    e, c, xlim = _fitted(np.asarray(edges), np.asarray(counts), [m[1] for m in marks])
    # bars over the marks, so that a bar at the coherence stays visible
    ax.stairs(c, e, fill=True, color="C0", alpha=0.8, label="pairs", zorder=3)
    for label, value, style in marks:
        ax.axvline(value, label=label, zorder=2, **style)
    ax.set_xlim(*xlim)
    positive = c[c > 0]
    if positive.max() > 30 * positive.min():
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs per bar" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _vector_panels(vectors, mode: str, side: dict[str, Any]):
    import grassmann

    rep = grassmann.coherence_report(vectors, mode=mode)
    n, d = vectors.shape
    ratio = f", ratio {rep.coherence / rep.bound:.4f}" if rep.bound > 0 else ""
    title = (
        f"{n} x {d} {mode}: coherence {rep.coherence:.5f}, {rep.bound_name} bound "
        f"{rep.bound:.5f}{ratio}"
    )

    def draw(ax) -> None:
        edges, counts = rep.histogram
        _histogram(
            ax,
            edges,
            counts,
            [
                (f"coherence {rep.coherence:.5f}", rep.coherence, _COHERENCE_STYLE),
                (f"{rep.bound_name} bound {rep.bound:.5f}", rep.bound, _BOUND_STYLE),
            ],
            "|cos| of a pair of lines" if mode == "lines" else "cos of a pair of points",
        )
        ax.set_title(f"{n * (n - 1) // 2:,} pairs")

    return title, [draw], ("coherence", "best coherence", rep.bound)


def _pairwise_angles(bases):
    """All principal angles of the pairs ``i < j``, ``(pairs, k)`` float64 numpy, computed in
    row blocks (buffer of about :data:`_ANGLE_BUFFER` entries)."""
    import torch

    import grassmann

    num, n, k = bases.shape
    block = max(1, _ANGLE_BUFFER // max(1, num * n * k))
    out = []
    for start in range(0, num - 1, block):
        rows = bases[start : start + block]
        theta = grassmann.principal_angles(rows[:, None], bases[None, :], validate=False)
        i = torch.arange(start, start + rows.shape[0])[:, None]
        keep = i < torch.arange(num)[None, :]
        out.append(theta[keep])
    return torch.cat(out).numpy()


def _subspace_panels(bases, side: dict[str, Any]):
    import grassmann

    num, n, k = bases.shape
    quality = grassmann.subspace_coherence(bases)
    bound = grassmann.subspace_lower_bound(num, n, k)
    theta = _pairwise_angles(bases)
    distance = np.sqrt(np.sum(np.sin(theta) ** 2, axis=1))
    smallest = np.degrees(theta.min(axis=1))
    dmin, amin = quality.min_chordal_distance, math.degrees(quality.min_angle)
    title = (
        f"{num} subspaces of Gr({n}, {k}): min chordal distance {dmin:.5f}, {bound.name} bound "
        f"{bound.value:.5f}, ratio {dmin / bound.value:.4f}"
    )
    d_edges = np.linspace(0.0, math.sqrt(k), 4001)
    a_edges = np.linspace(0.0, 90.0, 4001)

    def draw_distance(ax) -> None:
        counts, _ = np.histogram(distance, bins=d_edges)
        _histogram(
            ax,
            d_edges,
            counts,
            [
                (f"min distance {dmin:.5f}", dmin, _COHERENCE_STYLE),
                (f"{bound.name} bound {bound.value:.5f}", bound.value, _BOUND_STYLE),
            ],
            "chordal distance of a pair, sqrt(sum sin^2 theta)",
        )
        ax.set_title(f"{len(distance):,} pairs")

    def draw_angle(ax) -> None:
        counts, _ = np.histogram(smallest, bins=a_edges)
        _histogram(
            ax,
            a_edges,
            counts,
            [(f"min angle {amin:.3f} deg", amin, _COHERENCE_STYLE)],
            "smallest principal angle of a pair (degrees)",
        )
        ax.set_title("smallest principal angles")

    panels = [draw_distance, draw_angle]
    return title, panels, ("min_distance", "best min distance", bound.value)


def _history_panel(side: dict[str, Any], key: str, label: str, bound: float):
    """The convergence panel from the sidecar's ``history`` objects, or ``None``."""
    history = [h for h in side.get("history") or [] if isinstance(h, dict) and key in h]
    if len(history) < 2:  # one point (the final result) shows no convergence
        return None
    steps = np.array([h["step"] for h in history], dtype=float)
    values = np.array([h[key] for h in history], dtype=float)

    def draw(ax) -> None:
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, color="C0", label=label)
        ax.axhline(bound, label=f"bound {bound:.5f}", **_BOUND_STYLE)
        lo, hi = min(values.min(), bound), max(values.max(), bound)
        pad = max(0.06 * (hi - lo), 1e-3 * max(abs(hi), 1e-12))
        ax.set_ylim(lo - pad, hi + pad)
        if steps.min() > 0 and steps.max() > 100 * steps.min():
            ax.set_xscale("log")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(label)
        ax.set_title("convergence")
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)

    return draw


def _render(draw, side: dict[str, Any], out: Path, fmt: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, panels, (key, label, bound) = draw
    history = _history_panel(side, key, label, bound)
    if history is not None:
        panels = [*panels, history]
    width = max(8.0, 5.5 * len(panels))  # room for the title over a single panel
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        panel(ax)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=110)
    finally:
        plt.close(fig)
    write_bytes_atomic(out, buf.getvalue())
