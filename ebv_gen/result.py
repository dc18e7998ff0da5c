"""The results of :func:`ebv_gen.generate` and :func:`ebv_gen.generate_subspaces`: the array and
the report on its quality."""

from __future__ import annotations

import abc
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["EBVResult", "RunRecord"]


@dataclass(kw_only=True)
class RunRecord(abc.ABC):
    """What every generator result shares: how the run went, its JSON report and ``save``.

    The fields below are keyword-only in the subclasses' constructors. A subclass provides
    :meth:`_quality` (the keys of the report that describe the array) and :meth:`_array`
    (what :meth:`save` writes).

    Attributes
    ----------
    seed, device
        The seed and the device the search ran on.
    steps, seconds
        Optimisation steps and wall time (cumulative over resumed runs).
    history
        ``[(step, seconds, quality), ...]``: the best quality so far (coherence, or minimum
        distance for subspaces), recorded now and then; the sidecar writes each entry as an
        object (:func:`ebv_gen.sidecar.history_entries`).
    interrupted
        True when the run was stopped (Ctrl-C / SIGTERM) before its budget was spent; the
        array is then the best found so far.
    extra
        Further report entries (e.g. ``threshold`` for the threshold method).
    """

    seed: int
    device: str
    steps: int = 0
    seconds: float = 0.0
    history: list[tuple[int, float, float]] = field(default_factory=list)
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @abc.abstractmethod
    def _quality(self) -> dict[str, Any]:
        """The report entries that describe the array (coherence and bound, or distances)."""

    @abc.abstractmethod
    def _array(self) -> torch.Tensor:
        """The array :meth:`save` writes."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report (no array): the keys of the ``.json`` sidecar (schema in
        :mod:`ebv_gen.sidecar`) except ``schema_version``, ``sha256``, ``shape`` and
        ``dtype``."""
        from grassmann import __version__

        from .sidecar import history_entries

        out = self._quality()
        out.update(
            seed=self.seed,
            device=self.device,
            steps=self.steps,
            seconds=round(self.seconds, 4),
            interrupted=self.interrupted,
            version=__version__,
            history=history_entries(self.history, out["kind"]),
        )
        out.update(self.extra)
        return out

    def _run_summary(self) -> str:
        """``steps N  T s`` and the interruption flag, the tail of :meth:`report`."""
        flag = "  INTERRUPTED (best so far)" if self.interrupted else ""
        return f"steps {self.steps}  {self.seconds:.1f} s{flag}"

    def save(
        self,
        path: str | os.PathLike,
        *,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> str:
        """Write ``path`` (``.npy``: float32, or float64 for small packings) and its ``.json``
        sidecar, both atomically.

        Parameters
        ----------
        path
            The ``.npy`` file; its sidecar is ``path`` with the suffix ``.json``.
        extra
            Further sidecar entries.
        overwrite
            Replace an existing ``path``. Default ``False``: an existing file is refused, as
            ``ebv-gen`` refuses it without ``--force``.

        Returns
        -------
        str
            The sha256 of the ``.npy`` file. See :func:`ebv_gen.io.save_vectors`.

        Raises
        ------
        FileExistsError
            When ``path`` exists and ``overwrite`` is false.
        """
        from pathlib import Path

        from .io import save_vectors

        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
        if not overwrite and Path(path).exists():
            raise FileExistsError(f"path {str(path)!r} exists; pass overwrite=True to replace it")

        report = self.as_dict()
        if extra:
            report.update(extra)
        return save_vectors(path, self._array(), report)


@dataclass
class EBVResult(RunRecord):
    """``N`` unit vectors in ``R^d`` with their verified coherence and its lower bound.

    Attributes
    ----------
    vectors
        ``(N, d)`` float32 CPU tensor with unit rows.
    coherence
        ``max_{i != j} |<w_i, w_j>|`` (lines) or ``max <w_i, w_j>`` (sphere) of ``vectors``
        (the float32 values), computed in float64 by :func:`grassmann.coherence`.
    lower_bound, lower_bound_name
        The largest valid lower bound (:func:`grassmann.lower_bound`) and its name.
    mode
        ``"lines"`` or ``"sphere"``.
    method
        ``"closed-form:<bound>"`` (a construction meeting that bound: provably optimal),
        ``"mub"`` (real mutually unbiased bases, :func:`grassmann.embedded_mubs`), ``"lse"``
        (the optimiser) or ``"threshold"`` (the published algorithm).

    The run fields (``seed``, ``device``, ``steps``, ``seconds``, ``history`` of the best
    coherence, ``interrupted``, ``extra``) are those of :class:`RunRecord`.
    """

    vectors: torch.Tensor
    coherence: float
    lower_bound: float
    lower_bound_name: str
    mode: str
    method: str

    @property
    def num(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def gap(self) -> float:
        """``coherence - lower_bound`` (>= 0 up to rounding)."""
        return self.coherence - self.lower_bound

    @property
    def ratio(self) -> float | None:
        """``coherence / lower_bound`` when the bound is positive, else ``None``."""
        return self.coherence / self.lower_bound if self.lower_bound > 0 else None

    def _quality(self) -> dict[str, Any]:
        from .sidecar import vectors_quality

        out = vectors_quality(
            self.num, self.dim, self.mode, self.coherence, self.lower_bound, self.lower_bound_name
        )
        out["method"] = self.method
        return out

    def _array(self) -> torch.Tensor:
        return self.vectors

    def report(self) -> str:
        """One line: size, coherence, bound, ratio, method, steps and time."""
        ratio = self.ratio
        ratio_s = f" ratio {ratio:.4f}" if ratio is not None and math.isfinite(ratio) else ""
        return (
            f"{self.num} x {self.dim} {self.mode}: coherence {self.coherence:.6f}  "
            f"bound {self.lower_bound:.6f} ({self.lower_bound_name}) gap {self.gap:.2e}"
            f"{ratio_s}  method {self.method}  {self._run_summary()}"
        )
