"""Figures of a generated file (``ebv-gen plot``, :func:`plot_file`): the histogram of the
pairwise ``|cos|`` with the coherence and its bound marked, and the convergence curve from the
sidecar's history."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["plot_file"]


def plot_file(path: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Draw the figure of the class vectors in ``path`` into ``output`` (PNG), atomically.

    Raises
    ------
    ValueError
        When the file is not loadable (see :func:`ebv_gen.load`) or holds a single vector.
    """
    import grassmann

    from .io import load, read_sidecar

    out = Path(output)
    vectors = load(path)
    side = read_sidecar(path) or {}
    mode = side.get("mode", "lines") if side.get("mode") in ("lines", "sphere") else "lines"
    if vectors.shape[0] < 2:
        raise ValueError(f"{str(path)!r} holds a single vector: nothing to plot")
    rep = grassmann.coherence_report(vectors, mode=mode)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = side.get("history") or []
    ncols = 2 if history else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    edges, counts = rep.histogram
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    ax.axvline(rep.coherence, color="C3", label=f"coherence {rep.coherence:.4f}")
    ax.axvline(rep.bound, color="C2", ls="--", label=f"{rep.bound_name} bound {rep.bound:.4f}")
    ax.set_xlabel("|cos|" if mode == "lines" else "cos")
    ax.set_ylabel("pairs")
    ax.set_title(f"{vectors.shape[0]} x {vectors.shape[1]} {mode}")
    ax.legend()
    if history:
        ax2 = axes[0, 1]
        steps = [h[0] for h in history]
        coh = [h[2] for h in history]
        ax2.plot(steps, coh, label="best coherence")
        ax2.axhline(rep.bound, color="C2", ls="--", label="bound")
        ax2.set_xlabel("step")
        ax2.set_ylabel("coherence")
        ax2.set_yscale("log" if min(coh) > 0 else "linear")
        ax2.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out
