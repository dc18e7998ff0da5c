r"""``generate_subspaces``: ``N`` subspaces of dimension ``k`` in ``R^n``, as far apart as possible.

A packing of the Grassmannian ``Gr(n, k)`` (Conway, Hardin and Sloane 1996): ``N`` points
``span(X_i)``, ``X_i`` an ``n x k`` matrix with orthonormal columns, whose smallest pairwise
chordal distance

.. math:: d_c(X_i, X_j)^2 = k - \|X_i^\top X_j\|_F^2 = \sum_l \sin^2\theta_l(X_i, X_j)

is as large as we can make it. The search is the tiled engine of :mod:`ebv_gen.optimize` with
``block = k``: each point is stored as the ``k`` rows ``Z_i = X_i^T`` of ``Z`` (``(N k, n)``),
the pair similarity is ``s_ij = ||Z_i Z_j^T||_F^2 = k - d_c^2`` and the sharpened log-sum-exp of
the ``s_ij`` is minimised on the product of ``N`` Grassmannians: the gradient of each point is
projected on its horizontal space (``G - X (X^T G)``, :meth:`grassmann.Grassmann.proju`) and the
step is retracted by QR with a positive ``diag(R)`` (the QR retraction of
:class:`grassmann.Grassmann`). For ``k = 1`` this is exactly :func:`ebv_gen.generate` in lines
mode (``d_c^2 = 1 - cos^2``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import grassmann
from grassmann._validation import check_choice, check_int

from .generation import _FLOAT64_WORK, check_memory, resolve_device
from .kernels import DEFAULT_TILE
from .options import check_run_options
from .pipeline import Problem, run_search
from .result import RunRecord
from .search import default_search_steps, is_small, search_restarts

__all__ = [
    "METRICS",
    "SubspaceResult",
    "check_subspace_memory",
    "generate_subspaces",
    "random_min_distance",
    "to_bases",
]

#: ``metric`` values of :func:`generate_subspaces`.
METRICS = ("chordal",)

#: Checkpoint ``meta`` keys that must agree for ``resume=True``.
_RESUME_KEYS = ("kind", "num", "n", "k", "metric", "seed", "search", "dtype", "restarts")


def to_bases(Z: torch.Tensor, k: int) -> torch.Tensor:
    """Rows of the engine -> bases: ``(..., N k, n)`` -> ``(..., N, n, k)`` (a view)."""
    *lead, rows, n = Z.shape
    return Z.reshape(*lead, rows // k, k, n).transpose(-1, -2)


def random_min_distance(num: int, n: int, k: int, seed: int = 0) -> float:
    """Minimum chordal distance of ``num`` independent uniform (Haar) random points of
    ``Gr(n, k)`` drawn with ``seed`` (the baseline a packing should beat), in float64."""
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    bases = grassmann.Grassmann().random(num, n, k, dtype=torch.float64, generator=gen)
    return grassmann.subspace_coherence(bases.as_subclass(torch.Tensor)).min_chordal_distance


@dataclass
class SubspaceResult(RunRecord):
    """``N`` orthonormal bases of ``k``-dimensional subspaces of ``R^n`` and their packing quality.

    Attributes
    ----------
    bases
        ``(N, n, k)`` float32 CPU tensor with orthonormal columns (``X_i^T X_i = I_k`` to
        about ``1e-7``).
    min_distance
        ``min_{i != j} d_c(X_i, X_j)``, the chordal distance (not squared), of the float32
        ``bases``, computed in float64 by :func:`grassmann.subspace_coherence`.
    min_angle
        The smallest principal angle over all pairs (radians), computed the same way.
    bound, bound_name
        The upper bound on ``min_distance`` of :func:`grassmann.subspace_lower_bound` and its name
        (``"orthogonal"``, ``"rankin_simplex"`` or ``"rankin_orthoplex"``).
    metric
        ``"chordal"``.

    The run fields (``seed``, ``device``, ``steps``, ``seconds``, ``history`` of the best
    minimum distance, ``interrupted``, ``extra``) are those of :class:`ebv_gen.result.RunRecord`.
    """

    bases: torch.Tensor
    min_distance: float
    min_angle: float
    bound: float
    bound_name: str
    metric: str = "chordal"

    @property
    def num(self) -> int:
        """Number of subspaces ``N``."""
        return int(self.bases.shape[0])

    @property
    def n(self) -> int:
        """Ambient dimension ``n``."""
        return int(self.bases.shape[1])

    @property
    def k(self) -> int:
        """Subspace dimension ``k``."""
        return int(self.bases.shape[2])

    @property
    def gap(self) -> float:
        """``bound - min_distance`` (>= 0 up to rounding; 0 means provably optimal)."""
        return self.bound - self.min_distance

    @property
    def ratio(self) -> float:
        """``min_distance / bound`` (<= 1; 1 means provably optimal)."""
        return self.min_distance / self.bound

    def _quality(self) -> dict[str, Any]:
        from .sidecar import subspaces_quality

        return subspaces_quality(
            self.num, self.n, self.k, self.min_distance, self.min_angle, self.bound,
            self.bound_name, self.metric,
        )  # fmt: skip

    def _array(self) -> torch.Tensor:
        return self.bases

    def report(self) -> str:
        """One line: size, minimum distance and angle, bound, ratio, steps and time."""
        return (
            f"{self.num} x Gr({self.n}, {self.k}) {self.metric}: min distance "
            f"{self.min_distance:.6f} (min angle {math.degrees(self.min_angle):.4f} deg)  "
            f"bound {self.bound:.6f} ({self.bound_name}) gap {self.gap:.2e} "
            f"ratio {self.ratio:.4f}  {self._run_summary()}"
        )


def _check_sizes(num: Any, n: Any, k: Any) -> tuple[int, int, int]:
    num = check_int("num", num, minimum=1)
    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=1)
    if num < 2:
        raise ValueError(
            f"num must be >= 2 (the distance of a single subspace to the others is undefined), "
            f"got {num}"
        )
    if k >= n:
        raise ValueError(
            f"k must be < n (a k-dimensional subspace of R^n with k = n is R^n itself, k > n "
            f"does not exist), got k={k}, n={n}"
        )
    return num, n, k


def check_subspace_memory(
    num: int,
    n: int,
    k: int,
    device: torch.device,
    *,
    restarts: int = 1,
    dtype: torch.dtype = torch.float32,
    tile: int = DEFAULT_TILE,
) -> None:
    """Raise ``ValueError`` before allocating if the search cannot fit on ``device``: the
    engine's state is ``(restarts, N k, n)`` (:func:`ebv_gen.generation.required_memory` of
    ``N k`` rows)."""
    check_memory(
        num * k,
        n,
        device,
        what=f"num={num}, n={n}, k={k}",
        restarts=restarts,
        itemsize=dtype.itemsize,
        tile=tile,
    )


def generate_subspaces(
    num: int,
    n: int,
    k: int,
    *,
    metric: str = "chordal",
    seed: int = 0,
    device: str | torch.device | None = None,
    time_budget: float | None = None,
    steps: int | None = None,
    dtype: torch.dtype | None = None,
    restarts: int | None = None,
    tile: int | None = None,
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> SubspaceResult:
    r"""Pack ``num`` subspaces of dimension ``k`` in ``R^n`` as far apart as we can.

    Maximises the minimum chordal distance ``d_c = sqrt(k - ||X_i^T X_j||_F^2)`` by the search
    of :func:`ebv_gen.search.search` on the product of Grassmannians (see the module
    docstring): for ``N k n <= 2048`` rounds of many batched starts of the tiled log-sum-exp
    optimiser, each round's best finished by the minimax finish
    (:func:`ebv_gen.finish.minimax_finish`); above, one optimiser run and a short finish.
    Memory ``O(N n k + tile^2)``, one host sync per step.

    Parameters
    ----------
    num, n, k
        ``N >= 2`` subspaces of dimension ``1 <= k < n`` in ``R^n``.
    metric
        ``"chordal"`` (the only one implemented).
    seed
        Seeds every random start and perturbation (drawn on the CPU, so they are the same on
        every device). Same seed, device and ``steps`` => the same bytes.
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    time_budget, steps
        Stop after this many seconds / optimiser steps. Default: ``steps =``
        :func:`ebv_gen.search.default_search_steps` ``(num, n, k)`` (deterministic); with only
        ``time_budget`` the search follows the clock.
    dtype
        Search precision: float64 when ``(N k)^2 n <= 10^7``, else float32. The reported
        distances are always recomputed in float64.
    restarts
        Starts optimised side by side (default :func:`ebv_gen.search.search_restarts`
        ``(num, n, k)``).
    tile
        Tile edge in rows of ``Z`` (``tile / k`` subspaces; default 2048).
    callback
        ``callback(step, current min distance, best min distance)`` after each step (or round
        of the multi-start search).
    checkpoint_path, checkpoint_every, resume, should_stop
        As for :func:`ebv_gen.generate`: atomic checkpoints (periodic, or one per round of the
        multi-start search), resuming from one (sizes, metric, seed, search, precision and
        restarts must match), and a stop flag polled once per step.

    Returns
    -------
    SubspaceResult
        Bases (float32, CPU, ``(N, n, k)``), the float64-verified minimum distance and angle,
        and the bound of :func:`grassmann.subspace_lower_bound`. ``k = 1`` gives the same optimum as
        :func:`ebv_gen.generate` in lines mode (``min_distance^2 = 1 - coherence^2``).

    Raises
    ------
    TypeError, ValueError
        Bad arguments (naming the argument), an unavailable device, or a size that does not
        fit in memory (checked before allocating).

    References
    ----------
    J. H. Conway, R. H. Hardin, N. J. A. Sloane, "Packing lines, planes, etc.: packings in
    Grassmannian spaces", Experimental Mathematics 5 (1996).
    """
    num, n, k = _check_sizes(num, n, k)
    metric = check_choice("metric", metric, METRICS)
    seed, steps, time_budget, checkpoint_every, dtype = check_run_options(
        seed=seed,
        steps=steps,
        time_budget=time_budget,
        checkpoint_every=checkpoint_every,
        dtype=dtype,
    )
    tile = DEFAULT_TILE if tile is None else check_int("tile", tile, minimum=1)
    restarts = search_restarts(num, n, k) if restarts is None else restarts
    restarts = check_int("restarts", restarts, minimum=1)
    dev = resolve_device(device)
    bound = grassmann.subspace_lower_bound(num, n, k)
    if dtype is None:
        dtype = torch.float64 if float(num * k) ** 2 * n <= _FLOAT64_WORK else torch.float32
    check_subspace_memory(num, n, k, dev, restarts=restarts, dtype=dtype, tile=tile)
    if steps is None and time_budget is None:
        steps = default_search_steps(num, n, k)

    def distance(similarity: float) -> float:
        return math.sqrt(max(k - similarity, 0.0))

    meta = {
        "kind": "subspaces",
        "num": num,
        "n": n,
        "k": k,
        "metric": metric,
        "seed": seed,
        "search": "multistart" if is_small(num, n, k) else "single",
        "dtype": str(dtype),
        "restarts": restarts,
        "steps": steps,
        "time_budget": time_budget,
    }
    problem = Problem(
        num,
        n,
        k,
        "lines",
        meta,
        _RESUME_KEYS,
        target=k - bound.value**2 + 1e-12,  # nothing beats the bound: stop when it is met
        figure=distance,
    )
    found = run_search(
        problem,
        seed=seed,
        dtype=dtype,
        device=dev,
        restarts=restarts,
        steps=steps,
        time_budget=time_budget,
        tile=tile,
        callback=callback,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        resume=resume,
        should_stop=should_stop,
    )
    bases = grassmann.orthonormalize(to_bases(found.Z, k).to("cpu", torch.float64))
    bases = bases.to(torch.float32).contiguous()
    quality = grassmann.subspace_coherence(bases)
    return SubspaceResult(
        bases=bases,
        min_distance=quality.min_chordal_distance,
        min_angle=quality.min_angle,
        bound=float(bound.value),
        bound_name=str(bound.name),
        metric=metric,
        seed=seed,
        device=str(dev),
        extra=found.extra,
        **found.record(),
    )
