"""``generate``: N unit vectors in R^d with small coherence, from a closed form or the optimiser."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import grassmann
from grassmann._validation import check_choice, check_float, check_int

from .kernels import DEFAULT_TILE
from .options import check_run_options
from .pipeline import Problem, run_search
from .product import random_start
from .resources import available_memory, check_memory, required_memory, resolve_device
from .result import EBVResult
from .search import default_search_steps, is_small, search_restarts
from .sharding import Shard
from .threshold import threshold_descent

__all__ = [
    "DEFAULT_THRESHOLD",
    "METHODS",
    "NEAR_OPTIMAL",
    "available_memory",
    "check_memory",
    "generate",
    "required_memory",
    "resolve_device",
]

#: ``method`` values: ``"auto"`` (the best known construction when it is provably optimal or
#: within :data:`NEAR_OPTIMAL` of the bound; else the search, and the better of its result and
#: the best construction), ``"lse"`` (the search alone: the surrogate optimiser and the minimax
#: finish), ``"closed-form"`` (a provably optimal construction; error if none is known),
#: ``"construction"`` (the best known construction; error if none fits), ``"mub"`` (real
#: mutually unbiased bases, lines only), ``"threshold"`` (the published EBV algorithm).
METHODS = ("auto", "lse", "closed-form", "construction", "mub", "threshold")

#: ``method="auto"`` returns the best construction of :func:`grassmann.frame_candidates` without
#: searching when its coherence is within this factor of the lower bound (e.g. 262,143 lines in
#: R^511 from the Gold family: 1.033 x Levenstein; 100,000 lines in R^1024 from unbiased bases:
#: 1.005 x Welch). The search comes within 5% of the bound only for N up to about 2d.
NEAR_OPTIMAL = 1.05

#: The threshold of the published generator's script.
DEFAULT_THRESHOLD = 0.002

#: Problems with ``N^2 d`` up to this are searched in float64 by default (cheap; full accuracy),
#: and their vectors are returned (and saved) in float64, so that a packing found to the last
#: digit keeps them; larger ones in float32.
_FLOAT64_WORK = 1e7


def _to_coherence(sim: float, mode: str) -> float:
    return math.sqrt(max(sim, 0.0)) if mode == "lines" else sim


def _to_similarity(coh: float, mode: str) -> float:
    return coh * coh if mode == "lines" else coh


def generate(
    num: int,
    dim: int,
    *,
    mode: str = "lines",
    seed: int = 0,
    device: str | torch.device | None = None,
    time_budget: float | None = None,
    steps: int | None = None,
    method: str = "auto",
    threshold: float | None = None,
    dtype: torch.dtype | None = None,
    restarts: int | None = None,
    tile: int | None = None,
    callback: Callable[[int, float, float], None] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    group: Any = None,
) -> EBVResult:
    """Generate ``num`` unit vectors in ``R^dim`` whose coherence is as small as we can make it.

    Parameters
    ----------
    num, dim
        ``N >= 2`` vectors (the coherence of a single vector is undefined, so ``N = 1`` is an
        error) in ``R^d``, ``d >= 1``.
    mode
        ``"lines"``: minimise ``max_{i != j} |<w_i, w_j>|`` (EBV); ``"sphere"``: minimise the
        signed ``max <w_i, w_j>`` (spherical codes).
    seed
        Seeds every random start and perturbation (drawn on the CPU, so the starts are the same
        on every device). Same seed, device and ``steps`` => the same bytes.
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    time_budget, steps
        Stop after this many seconds / optimiser steps. Default: ``steps =``
        :func:`ebv_gen.search.default_search_steps` (4 rounds of the multi-start search for
        small problems, ``N d <= 2048``; :func:`ebv_gen.optimize.default_steps` for larger ones,
        3000 down to 200; deterministic). With only ``time_budget`` the search follows the clock
        (and the result depends on the machine's speed).
    method
        ``"auto"``: the best construction of :func:`grassmann.frame_candidates` (closed forms,
        unbiased bases, Gold/Kasami/dual-BCH sequences, Steiner ETFs, root systems, ..., each
        with its coherence from theory) when it is provably optimal or within
        :data:`NEAR_OPTIMAL` (5%) of the bound; else the search (:func:`ebv_gen.search.search`:
        many batched starts, structured ones from known frames included, and the minimax finish
        for ``N d <= 2048``; one optimiser run and a short finish above), whose result is
        compared with the best construction and the better one returned. ``.method`` is
        ``"closed-form:<bound>"`` (a construction meeting that bound), ``"construction"`` or
        ``"lse"``; ``extra["construction"]`` names the construction and its reference,
        ``extra["candidates"]`` lists the coherences compared. ``"lse"``: the search alone.
        ``"closed-form"``: a provably optimal construction, error when none is known.
        ``"construction"``: the best known construction. ``"mub"``: the MUB packing alone
        (:func:`grassmann.embedded_mubs`; lines mode; error when ``N`` exceeds its capacity).
        ``"threshold"``: the published EBV algorithm, for comparison.
    threshold
        For ``method="threshold"``: the hinge threshold (default
        :data:`DEFAULT_THRESHOLD`, the published script's value).
    dtype
        Search precision, and the precision of the returned vectors: default float64 for
        small problems (``N^2 d <= 10^7``), else float32. The reported coherence is always
        computed in float64 from the returned values.
    restarts
        Starts optimised side by side (default :func:`ebv_gen.search.search_restarts`: up to
        256 per round of the multi-start search, 1 for large problems).
    tile
        Tile edge of the streamed Gram matrix (default 2048).
    callback
        ``callback(step, current coherence, best coherence)`` after each optimiser step (large
        problems) or each round (the multi-start search).
    checkpoint_path, checkpoint_every
        Save the search state to ``checkpoint_path`` every ``checkpoint_every`` seconds (large
        problems) or after every round (the multi-start search), and when interrupted; the file
        is removed when the run finishes.
    resume
        Continue from ``checkpoint_path`` when it exists (its size, mode, seed, method and
        precision must match).
    should_stop
        Polled between steps, between the tiles of a step and per iteration of the finish;
        True stops the run as if interrupted (within one tile, whatever the size).
    group
        A ``torch.distributed`` process group (e.g. ``torch.distributed.group.WORLD`` under
        ``torchrun``): the search of a large problem is shared over its ranks
        (:mod:`ebv_gen.sharding`; checkpoints sharded, :mod:`ebv_gen.checkpoints`) and the
        float64 verification too; a small one (the multi-start search) runs a search of its
        own on every rank and returns the best (:func:`ebv_gen.search.search_seed`). Every
        rank must call with the same arguments and gets the same result; only rank 0 should
        save it. ``extra["world_size"]`` and ``extra["backend"]`` record the group. Under a
        group a stop request is honoured at the next step; in the search of a small problem
        each rank honours its own (``torchrun`` passes a signal to every rank) and then waits
        for the others.

    Returns
    -------
    EBVResult
        Vectors (CPU; float64 for small problems, see ``dtype``) and their float64-verified
        coherence with its lower bound.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, an unavailable device, or a size that does not fit in memory (checked
        before allocating).
    """
    num = check_int("num", num, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    if num < 2:
        raise ValueError(
            f"num must be >= 2 (the coherence of a single vector is undefined), got {num}"
        )
    mode = check_choice("mode", mode, ("lines", "sphere"))
    method = check_choice("method", method, METHODS)
    seed, steps, time_budget, checkpoint_every, dtype = check_run_options(
        seed=seed,
        steps=steps,
        time_budget=time_budget,
        checkpoint_every=checkpoint_every,
        dtype=dtype,
    )
    if threshold is not None:
        threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
    if tile is not None:
        tile = check_int("tile", tile, minimum=1)
    dev = resolve_device(device)
    shard = Shard.create(num, 1, tile or DEFAULT_TILE, group)  # refuses a group larger than num
    if group is not None:
        _check_same_arguments(
            group, num, dim, mode, seed, method, steps, time_budget, restarts, tile, dtype
        )
    bound = grassmann.lower_bound(num, dim, mode)
    tile = tile or DEFAULT_TILE
    out_dtype = dtype or (
        torch.float64 if float(num) * num * dim <= _FLOAT64_WORK else torch.float32
    )

    def verified(vectors: torch.Tensor, method_name: str, **kw: Any) -> EBVResult:
        """The result for ``vectors``: unit rows in the output precision, coherence verified
        in float64 on exactly those values (each rank its share of the tiles in a group)."""
        v = vectors.detach().to("cpu", torch.float64)
        v = (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(out_dtype).contiguous()
        if group is not None:
            extra = dict(kw.pop("extra", {}))
            extra.update(world_size=shard.world, backend=_backend(group))
            kw["extra"] = extra
        return EBVResult(
            vectors=v,
            coherence=shard.coherence(v, mode),
            lower_bound=float(bound.value),
            lower_bound_name=str(bound.name),
            mode=mode,
            method=method_name,
            seed=seed,
            device=str(dev),
            **kw,
        )

    if method == "mub":
        return _mub_only(num, dim, mode, tile, verified)
    if method == "threshold":
        restarts = 1
    if restarts is None:
        restarts = search_restarts(num, dim)
    restarts = check_int("restarts", restarts, minimum=1)
    if dtype is None:
        dtype = torch.float64 if float(num) * num * dim <= _FLOAT64_WORK else torch.float32
    # before anything is allocated, constructions included (they build float64 frames)
    check_memory(num, dim, dev, restarts=restarts, itemsize=dtype.itemsize, tile=tile)
    if steps is None and time_budget is None and method in ("auto", "lse", "threshold"):
        steps = default_search_steps(num, dim)
    request = _Request(
        num, dim, mode, seed, dev, dtype, restarts, steps, time_budget, tile, threshold,
        callback, checkpoint_path, checkpoint_every, resume, should_stop, group, verified,
    )  # fmt: skip
    return _METHOD_TABLE[method](request)


@dataclass
class _Request:
    """A checked call of :func:`generate`, as the functions of :data:`_METHOD_TABLE` take it."""

    num: int
    dim: int
    mode: str
    seed: int
    device: torch.device
    dtype: torch.dtype
    restarts: int
    steps: int | None
    time_budget: float | None
    tile: int
    threshold: float | None
    callback: Callable[[int, float, float], None] | None
    checkpoint_path: str | os.PathLike | None
    checkpoint_every: float | None
    resume: bool
    should_stop: Callable[[], bool] | None
    group: Any
    verified: Callable[..., EBVResult]

    def candidates(self) -> list[grassmann.Candidate]:
        return grassmann.frame_candidates(self.num, self.dim, self.mode)


def _closed_form(req: _Request) -> EBVResult:
    optimal = [c for c in req.candidates() if c.optimal]
    if not optimal:
        raise ValueError(
            f"method='closed-form' but no closed-form optimal frame is known for num={req.num}, "
            f"dim={req.dim}, mode={req.mode!r}; use method='auto' or 'lse'"
        )
    return _construction_result(optimal[0], req.verified)


def _construction(req: _Request) -> EBVResult:
    # the catalog always has one (a polygon in R^2 at worst)
    return _construction_result(req.candidates()[0], req.verified)


def _auto(req: _Request) -> EBVResult:
    candidates = req.candidates()
    best_known = candidates[0] if candidates else None
    if best_known is not None and (best_known.optimal or best_known.ratio <= NEAR_OPTIMAL):
        return _construction_result(best_known, req.verified)
    out = _lse(req)
    return _better_of(out, candidates, req.verified) if candidates else out


def _lse(req: _Request) -> EBVResult:
    num, dim, mode = req.num, req.dim, req.mode
    small = is_small(num, dim)
    meta = {
        "num": num,
        "dim": dim,
        "mode": mode,
        "seed": req.seed,
        "method": "lse",
        "search": "multistart" if small else "single",
        "dtype": str(req.dtype),
        "restarts": req.restarts,
        "steps": req.steps,
        "time_budget": req.time_budget,
    }
    problem = Problem(
        num,
        dim,
        1,
        mode,
        meta,
        ("num", "dim", "mode", "seed", "method", "search", "dtype", "restarts"),
        # nothing can go below the bound: stop as soon as it is met (ETFs, simplices ...)
        target=_to_similarity(grassmann.lower_bound(num, dim, mode).value, mode) + 1e-12,
        figure=lambda sim: _to_coherence(sim, mode),
    )
    run = run_search(
        problem,
        seed=req.seed,
        dtype=req.dtype,
        device=req.device,
        restarts=req.restarts,
        steps=req.steps,
        time_budget=req.time_budget,
        tile=req.tile,
        structured=(lambda gen: _structured_starts(num, dim, mode, gen)) if small else None,
        callback=req.callback,
        checkpoint_path=req.checkpoint_path,
        checkpoint_every=req.checkpoint_every,
        resume=req.resume,
        should_stop=req.should_stop,
        group=req.group,
    )
    return req.verified(run.Z, "lse", extra=run.extra, **run.record())


def _threshold(req: _Request) -> EBVResult:
    if req.group is not None:
        raise ValueError("method='threshold' (the published baseline) runs in one process only")
    gen = torch.Generator().manual_seed(req.seed)
    Z0 = random_start(1, req.num, req.dim, dtype=req.dtype, device=req.device, generator=gen)
    thr = DEFAULT_THRESHOLD if req.threshold is None else req.threshold
    res = threshold_descent(
        Z0[0],
        thr,
        steps=req.steps,
        time_budget=req.time_budget,
        tile=req.tile,
        callback=req.callback,
        should_stop=req.should_stop,
    )
    return req.verified(
        res.Z,
        "threshold",
        steps=res.steps,
        seconds=res.seconds,
        history=res.history,
        interrupted=res.interrupted,
        extra={"threshold": thr, "threshold_reached": res.reached},
    )


#: ``method`` -> the function that produces its result (``"mub"`` is handled before memory
#: checks: it builds on the host).
_METHOD_TABLE: dict[str, Callable[[_Request], EBVResult]] = {
    "auto": _auto,
    "lse": _lse,
    "closed-form": _closed_form,
    "construction": _construction,
    "threshold": _threshold,
}


def _backend(group: Any) -> str:
    import torch.distributed as dist

    return str(dist.get_backend(group))


def _check_same_arguments(group: Any, *args: Any) -> None:
    """Refuse a call whose arguments differ between the ranks of ``group`` (one message, the
    same on every rank, instead of a hang or silently different shares)."""
    import torch.distributed as dist

    mine = repr(args)
    everyone: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, mine, group=group)
    differ = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
    if differ:
        raise ValueError(
            f"generate() was called with different arguments on ranks {differ} than on rank 0 "
            f"of the process group: rank 0 has {everyone[0]}, rank {differ[0]} has "
            f"{everyone[differ[0]]}"
        )


def _construction_result(
    candidate: grassmann.Candidate, verified: Callable[..., EBVResult], **kw: Any
) -> EBVResult:
    """The result for a construction of :func:`grassmann.frame_candidates`: ``method`` is
    ``"closed-form:<bound>"`` when it meets the bound, else ``"construction"``; the report
    names it (``extra["construction"]``)."""
    name = f"closed-form:{candidate.bound_name}" if candidate.optimal else "construction"
    extra = dict(kw.pop("extra", {}))
    extra["construction"] = {
        "name": candidate.name,
        "family": candidate.family,
        "reference": candidate.reference,
        "coherence_from_theory": candidate.coherence,
    }
    return verified(candidate.build(), name, extra=extra, **kw)


def _better_of(
    out: EBVResult, candidates: list[grassmann.Candidate], verified: Callable[..., EBVResult]
) -> EBVResult:
    """The search's result ``out`` or the best construction, whichever has the smaller
    coherence (the construction's from theory, so it is only built when it wins); the report
    lists the search's and the best few constructions' coherences (``extra["candidates"]``) and
    keeps the search's run record. When the construction wins, the last history entry (the
    search's final best) becomes its coherence, so the history stays the best so far."""
    listed = {"lse": out.coherence}
    for c in candidates[:_LISTED_CANDIDATES]:
        listed[c.name] = c.coherence
    best = candidates[0]
    if best.coherence >= out.coherence:
        out.extra["candidates"] = listed
        return out
    history = [*out.history[:-1], (out.steps, round(out.seconds, 4), best.coherence)]
    won = _construction_result(
        best,
        verified,
        steps=out.steps,
        seconds=out.seconds,
        history=history,
        interrupted=out.interrupted,
        extra={**out.extra, "candidates": listed},
    )
    won.history[-1] = (out.steps, round(out.seconds, 4), won.coherence)
    return won


#: How many constructions ``extra["candidates"]`` lists beside the search.
_LISTED_CANDIDATES = 3


def _structured_starts(
    num: int, dim: int, mode: str, generator: torch.Generator
) -> list[tuple[str, torch.Tensor]]:
    """Starts for the search from known frames: every construction that fits (a subset or an
    embedding of a frame with at least ``num`` vectors), and the best one for ``num - j``
    vectors (``j = 1 .. 4``) completed by random unit vectors. A subset of a larger known frame
    is often the best known packing (e.g. 13 lines in R^6 from the 16 of the Clebsch ETF)."""
    out: list[tuple[str, torch.Tensor]] = []
    for c in grassmann.frame_candidates(num, dim, mode)[:_STRUCTURED]:
        out.append((c.name, c.build()))
    for j in range(1, min(5, num - 1)):
        cands = grassmann.frame_candidates(num - j, dim, mode)
        if not cands:
            continue
        c = cands[0]
        fill = torch.randn(j, dim, generator=generator, dtype=torch.float64)
        fill = fill / torch.linalg.vector_norm(fill, dim=1, keepdim=True)
        out.append((f"{c.name} + {j} random", torch.cat([c.build(), fill])))
    return out


#: At most this many constructions of the requested size serve as structured starts.
_STRUCTURED = 8


def _mub_only(
    num: int, dim: int, mode: str, tile: int, verified: Callable[..., EBVResult]
) -> EBVResult:
    """``method="mub"``: the packing of :func:`grassmann.embedded_mubs`, built and verified on
    the host (memory checked there first: float64 and float32 copies and the verification)."""
    if mode != "lines":
        raise ValueError(f"method='mub' needs mode='lines', got mode={mode!r}")
    cpu = torch.device("cpu")
    check_memory(num, dim, cpu, what=f"method='mub' with num={num}, dim={dim}", tile=tile)
    try:
        frame = grassmann.embedded_mubs(num, dim)
    except ValueError as err:
        raise ValueError(f"method='mub': {err}; use method='auto' or 'lse'") from None
    return verified(frame, "mub")
