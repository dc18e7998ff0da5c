"""``generate``: N unit vectors in R^d with small coherence, from a closed form or the optimiser."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import grassmann
from grassmann._validation import check_choice, check_float, check_int

from .io import checkpoint_writer, resume_checkpoint
from .optimize import (
    DEFAULT_TILE,
    default_restarts,
    default_steps,
    minimize_coherence,
    random_start,
    threshold_descent,
)
from .options import check_run_options
from .result import EBVResult

__all__ = [
    "DEFAULT_THRESHOLD",
    "METHODS",
    "available_memory",
    "check_memory",
    "generate",
    "required_memory",
    "resolve_device",
]

#: ``method`` values: ``"auto"`` (closed form when one is known, else ``"lse"`` and the better of
#: its result and ``"mub"``), ``"lse"`` (the optimiser), ``"closed-form"`` (error if none is
#: known), ``"mub"`` (real mutually unbiased bases, lines only), ``"threshold"`` (published EBV).
METHODS = ("auto", "lse", "closed-form", "mub", "threshold")

#: ``method="auto"`` takes the MUB packing without running the optimiser when its coherence is
#: within this factor of the lower bound (e.g. 100,000 lines in R^1024: ratio 1.005). The
#: optimiser comes within 5% of the bound only for N up to about 2d, where this ratio is >= 1.4.
MUB_NEAR_OPTIMAL = 1.05

#: The threshold of the published generator's script.
DEFAULT_THRESHOLD = 0.002

#: Problems with ``N^2 d`` up to this are searched in float64 by default (cheap; full accuracy).
_FLOAT64_WORK = 1e7


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available else CPU; ``"cuda"`` without CUDA -> ``ValueError``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def available_memory(device: torch.device) -> int:
    """Bytes available for new allocations: ``MemAvailable`` of ``/proc/meminfo`` (or
    ``os.sysconf``) on the CPU, ``torch.cuda.mem_get_info`` on CUDA."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


def required_memory(
    num: int, dim: int, *, restarts: int = 1, itemsize: int = 4, tile: int = DEFAULT_TILE
) -> int:
    """Bytes the optimiser needs: about 8 copies of the ``(R, N, d)`` state (iterate, best, two
    Adam moments, gradient, temporaries) plus a few ``R * tile^2`` tile buffers, plus the
    float64 copy used for the final verification."""
    state = 8 * restarts * num * dim * itemsize + 8 * num * dim
    t = min(tile, num)
    return int(state + 4 * restarts * t * t * itemsize)


def check_memory(
    num: int, dim: int, device: torch.device, *, what: str | None = None, **kwargs: Any
) -> None:
    """Raise ``ValueError`` before allocating if ``num`` rows of ``R^dim`` cannot be optimised on
    ``device`` (see :func:`required_memory`; ``kwargs`` go to it). ``what`` names the request in
    the message (default ``"num=..., dim=..."``)."""
    need = required_memory(num, dim, **kwargs)
    have = available_memory(device)
    if need > have:
        what = what or f"num={num}, dim={dim}"
        raise ValueError(
            f"{what} needs about {need / 2**30:.3g} GiB on {device} but only "
            f"{have / 2**30:.3g} GiB is available; use a smaller size or another device"
        )


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
        Seeds the random start (drawn on the CPU, so the start is the same on every device).
        Same seed, device and ``steps`` => the same bytes.
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    time_budget, steps
        Stop after this many seconds / steps. Default: ``steps =``
        :func:`ebv_gen.optimize.default_steps` (3000 for small problems, down to 200 for large
        ones; deterministic). With only ``time_budget`` the schedule follows the clock (and the
        result depends on the machine's speed).
    method
        ``"auto"``: a provably optimal closed form from :func:`grassmann.known_optimal` when one
        exists; else, in lines mode, the packing of real mutually unbiased bases
        (:func:`grassmann.embedded_mubs`) when it is within 5% of the bound; else the optimiser,
        whose result is compared with that MUB packing (when ``N`` lines fit) and the better
        one returned (``.method`` says which; ``extra["candidates"]`` gives both coherences).
        ``"lse"``: the optimiser alone. ``"closed-form"``: error when none is known. ``"mub"``:
        the MUB packing alone (lines mode; error when ``N`` exceeds its capacity).
        ``"threshold"``: the published EBV algorithm, for comparison.
    threshold
        For ``method="threshold"``: the hinge threshold (default
        :data:`DEFAULT_THRESHOLD`, the published script's value).
    dtype
        Search precision: default float64 for tiny problems (``N^2 d <= 10^7``), else float32.
        The reported coherence is always recomputed in float64.
    restarts
        Independent starts optimised side by side, best kept (default
        :func:`ebv_gen.optimize.default_restarts`: 16 for tiny problems, 1 from ``N d >= 4096``).
    tile
        Tile edge of the streamed Gram matrix (default 2048).
    callback
        ``callback(step, current coherence, best coherence)`` after each step.
    checkpoint_path, checkpoint_every
        Save the optimiser state to ``checkpoint_path`` every ``checkpoint_every`` seconds (and
        when interrupted); the file is removed when the run finishes.
    resume
        Continue from ``checkpoint_path`` when it exists (its size, mode, seed, method and
        precision must match).
    should_stop
        Polled once per step; True stops the run as if interrupted.

    Returns
    -------
    EBVResult
        Vectors (float32, CPU) and the float64-verified coherence with its lower bound.

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
    bound = grassmann.lower_bound(num, dim, mode)

    def finish(vectors: torch.Tensor, method_name: str, **kw: Any) -> EBVResult:
        v64 = vectors.detach().to("cpu", torch.float64)
        v64 = v64 / torch.linalg.vector_norm(v64, dim=1, keepdim=True)
        v32 = v64.to(torch.float32).contiguous()
        mu = grassmann.coherence(v32, mode=mode)
        return EBVResult(
            vectors=v32,
            coherence=mu,
            lower_bound=float(bound.value),
            lower_bound_name=str(bound.name),
            mode=mode,
            method=method_name,
            seed=seed,
            device=str(dev),
            **kw,
        )

    if method == "mub":
        return _mub_only(num, dim, mode, tile or DEFAULT_TILE, finish)
    if restarts is None:
        restarts = default_restarts(num, dim) if method != "threshold" else 1
    restarts = check_int("restarts", restarts, minimum=1)
    if method == "threshold":
        restarts = 1
    if dtype is None:
        dtype = torch.float64 if float(num) * num * dim <= _FLOAT64_WORK else torch.float32
    tile = tile or DEFAULT_TILE
    # before anything is allocated, closed forms included (they build float64 frames)
    check_memory(num, dim, dev, restarts=restarts, itemsize=dtype.itemsize, tile=tile)

    if method in ("auto", "closed-form"):
        frame = grassmann.known_optimal(num, dim, mode)
        if frame is not None:
            return finish(frame, f"closed-form:{bound.name}")
        if method == "closed-form":
            raise ValueError(
                f"method='closed-form' but no closed-form optimal frame is known for num={num}, "
                f"dim={dim}, mode={mode!r}; use method='auto' or 'lse'"
            )
    mub_mu = grassmann.mub_coherence(num, dim) if mode == "lines" else None
    if method == "auto" and mub_mu is not None and mub_mu <= MUB_NEAR_OPTIMAL * bound.value:
        return finish(grassmann.embedded_mubs(num, dim), "mub")
    if steps is None and time_budget is None:
        steps = default_steps(num, dim)

    gen = torch.Generator().manual_seed(seed)
    Z0 = random_start(restarts, num, dim, dtype=dtype, device=dev, generator=gen)

    coh_cb = None
    if callback is not None:

        def coh_cb(step: int, cur: float, best: float) -> None:
            callback(step, _to_coherence(cur, mode), _to_coherence(best, mode))

    if method == "threshold":
        thr = DEFAULT_THRESHOLD if threshold is None else threshold
        res = threshold_descent(
            Z0[0],
            thr,
            steps=steps,
            time_budget=time_budget,
            tile=tile,
            callback=callback,
            should_stop=should_stop,
        )
        return finish(
            res.Z,
            "threshold",
            steps=res.steps,
            seconds=res.seconds,
            history=res.history,
            interrupted=res.interrupted,
            extra={"threshold": thr, "threshold_reached": res.reached},
        )

    meta = {
        "num": num,
        "dim": dim,
        "mode": mode,
        "seed": seed,
        "method": "lse",
        "dtype": str(dtype),
        "restarts": restarts,
        "steps": steps,
        "time_budget": time_budget,
    }
    state = None
    resumed_from = None
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt is not None:
        state = resume_checkpoint(
            ckpt, meta, ("num", "dim", "mode", "seed", "method", "dtype", "restarts")
        )
        if state is not None:
            resumed_from = int(state["step"])
    save_ckpt = checkpoint_writer(ckpt, meta, gen) if ckpt is not None else None

    # nothing can go below the bound: stop as soon as it is met (ETFs, simplices ...)
    target = _to_similarity(bound.value, mode)
    res = minimize_coherence(
        Z0,
        mode=mode,
        steps=steps,
        time_budget=time_budget,
        tile=tile,
        target=target + 1e-12,
        callback=coh_cb,
        checkpoint=save_ckpt,
        checkpoint_every=checkpoint_every if ckpt is not None else None,
        state=state,
        should_stop=should_stop,
    )
    history = [(s, sec, _to_coherence(b, mode)) for s, sec, b in res.history]
    extra: dict[str, Any] = {"restarts": restarts, "dtype": str(dtype).replace("torch.", "")}
    if resumed_from is not None:
        extra["resumed_from_step"] = resumed_from
    out = finish(
        res.Z,
        "lse",
        steps=res.steps,
        seconds=res.seconds,
        history=history,
        interrupted=res.interrupted,
        extra=extra,
    )
    if ckpt is not None and not res.interrupted and ckpt.exists():
        ckpt.unlink()
    if method == "auto" and mub_mu is not None:
        out = _better_of(out, finish, num, dim)
    return out


def _mub_only(
    num: int, dim: int, mode: str, tile: int, finish: Callable[..., EBVResult]
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
    return finish(frame, "mub")


def _better_of(out: EBVResult, finish: Callable[..., EBVResult], num: int, dim: int) -> EBVResult:
    """The optimiser's result ``out`` or the MUB packing, whichever has the smaller coherence;
    the report keeps both figures (``extra["candidates"]``) and the optimiser's run record. When
    the MUB packing wins, the last history entry (the optimiser's final best) becomes its
    coherence, so the history stays the best so far, one entry per step."""
    mub = finish(grassmann.embedded_mubs(num, dim), "mub")
    candidates = {"lse": out.coherence, "mub": mub.coherence}
    if mub.coherence >= out.coherence:
        out.extra["candidates"] = candidates
        return out
    history = [*out.history[:-1], (out.steps, round(out.seconds, 4), mub.coherence)]
    return dataclasses.replace(
        mub,
        steps=out.steps,
        seconds=out.seconds,
        history=history,
        interrupted=out.interrupted,
        extra={**out.extra, "candidates": candidates},
    )
