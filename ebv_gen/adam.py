"""The optimiser of the generator: :class:`CoherenceAdam`, a Riemannian Adam step on the
sharpened log-sum-exp surrogate of the largest similarity (:func:`ebv_gen.kernels.surrogate_grad`)
of ``R`` packings at once.

Its state lives in ``optimizer.state`` (tensors of this process's rows and plain numbers), as
geoopt keeps an optimiser's state in ``self.state[p]``; :meth:`CoherenceAdam.state_dict` and
:meth:`CoherenceAdam.load_state_dict` are the checkpoint format, so resuming is
``load_state_dict``. With a :class:`ebv_gen.sharding.Shard` of a process group each rank holds
and updates its own rows and walks its share of the tiles.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from grassmann._validation import check_choice, check_int, check_tensor

from .kernels import (
    DEFAULT_TILE,
    MODES,
    max_similarity,
    surrogate_finish,
    surrogate_grad,
    surrogate_parts,
)
from .product import project, retract
from .sharding import Shard

__all__ = ["STATE_FORMAT", "CoherenceAdam"]

#: Version of :meth:`CoherenceAdam.state_dict`; on load, other versions but the one before
#: (:data:`_UNNARROWED_FORMAT`) are refused.
STATE_FORMAT = "ebv_gen.CoherenceAdam/3"
#: The format before :meth:`CoherenceAdam.narrow` (no ``active``/``narrowed``): still read.
_UNNARROWED_FORMAT = "ebv_gen.CoherenceAdam/2"

#: Safe window for ``t * (max - shift)``: outside it the pass is redone with the exact maximum.
_WINDOW = {torch.float32: (-20.0, 40.0), torch.float64: (-20.0, 600.0)}


def _positive(value: Any, what: str) -> float:
    """``value`` as a positive finite float (any real number but a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"beta's {what} must be a positive finite number, got {value!r}")
    out = float(value)
    if not 0 < out < math.inf:
        raise ValueError(f"beta's {what} must be a positive finite number, got {value!r}")
    return out


def _check_beta(beta: Any, restarts: int) -> tuple[float | torch.Tensor, float]:
    """``beta`` as ``(start, end)``: ``end`` a positive number, ``start`` one or (a float64
    CPU tensor of) ``restarts`` positive numbers, one per packing."""
    try:
        start, end = beta
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a pair (start, end), got {beta!r}") from None
    end = _positive(end.item() if isinstance(end, torch.Tensor) and end.ndim == 0 else end, "end")
    if isinstance(start, numbers.Real):  # a bool too: refused by _positive
        return _positive(start, "start"), end
    try:
        first = torch.as_tensor(start, dtype=torch.float64).detach().to("cpu").clone()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"beta's start must be a number or one number per packing, got {start!r}"
        ) from None
    if first.ndim == 0:
        return _positive(float(first), "start"), end
    if first.shape != (restarts,):
        raise ValueError(
            f"beta's start must be a number or {restarts} numbers (one per packing), got "
            f"shape {tuple(first.shape)}"
        )
    if not bool(torch.all((first > 0) & torch.isfinite(first))):
        raise ValueError(f"beta's start must be positive and finite, got {first.tolist()}")
    return first, end


class CoherenceAdam:
    """Riemannian Adam on the log-sum-exp surrogate of ``R`` packings' largest similarity.

    Parameters
    ----------
    Z0
        ``(R, N k, d)`` starting packings (all rows, on every rank); the dtype and device of
        the search are those of ``Z0``.
    block
        ``k``: rows per point (1 for vectors; ``k > 1`` packs ``k``-dim subspaces).
    mode
        ``"lines"`` or ``"sphere"`` (``k = 1`` only).
    lr
        ``(start, end)`` step size, decayed geometrically with the schedule's progress ``p``:
        the rotation (radians) of the point with the largest gradient in one step.
    beta
        ``(start, end)`` sharpness, geometric in ``p``. The temperature is ``t = beta / scale``
        where ``scale`` is the distance of the current maximum to the nearer end of the
        similarity range (``[0, k]`` for lines, ``[-1, 1]`` for sphere), so ``beta`` is
        scale-free. ``start`` may be one positive number per packing (a sequence or tensor of
        ``R``): the packings then anneal from different sharpnesses to the same end, which
        is how :func:`ebv_gen.multistart.multistart` spreads its starts over the schedules
        that suit different problems.
    betas
        Adam's moment decay rates.
    tile
        Tile edge in rows of ``Z``.
    shard
        The rows and tiles of this process (default: everything, one process).

    Notes
    -----
    One host synchronisation per step (the ``(R,)`` maxima), none inside the tile loops. The
    step is Adam-like (Kingma and Ba 2015) on the Riemannian gradient (projection of the
    Euclidean gradient onto the tangent space of each point) with one change: the second
    moment is summed over each point's coordinates and the largest point's value normalises
    every point, so the most active point turns by about ``lr`` radians and points that carry
    no weight in the soft maximum do not move (per-coordinate Adam would move them by ``lr``
    too, which adds noise). The update is projected again and retracted (row normalisation, or
    QR of each ``k``-block). The iterate with the smallest exact maximum is kept in
    ``state["best_Z"]``, so the surrogate's bias never costs quality.
    """

    def __init__(
        self,
        Z0: torch.Tensor,
        *,
        block: int = 1,
        mode: str = "lines",
        lr: tuple[float, float] = (0.1, 1e-3),
        beta: tuple[float | Sequence[float] | torch.Tensor, float] = (0.5, 2e3),
        betas: tuple[float, float] = (0.9, 0.99),
        tile: int = DEFAULT_TILE,
        shard: Shard | None = None,
    ) -> None:
        check_tensor("Z0", Z0, ndim=3)
        self.block = check_int("block", block, minimum=1)
        self.mode = check_choice("mode", mode, MODES)
        if self.mode == "sphere" and self.block != 1:
            raise ValueError(f"mode='sphere' needs block=1, got block={block}")
        self.tile = check_int("tile", tile, minimum=1)
        R, M, _ = Z0.shape
        if M % self.block:
            raise ValueError(f"Z0 has {M} rows, not a multiple of block={block}")
        self.num = M // self.block
        b0, b1 = _check_beta(beta, R)
        if isinstance(b0, torch.Tensor):  # on the search's device once, not a copy per step
            b0 = b0.to(device=Z0.device, dtype=Z0.dtype)
        self.lr, self.beta, self.betas = lr, (b0, b1), betas
        self._start_beta = b0  # every packing's, also after :meth:`narrow`
        self.shard = shard if shard is not None else Shard.create(self.num, self.block, tile)
        self.dtype, self.device = Z0.dtype, Z0.device
        self.lo, self.hi = (0.0, float(self.block)) if self.mode == "lines" else (-1.0, 1.0)
        self._workspace: dict[str, torch.Tensor] = {}
        own = self.shard.own(Z0).clone()
        self.state: dict[str, Any] = {
            "Z": own,  # Z, m1, m2 and shift: the active packings'; best_Z and best: all
            "best_Z": own.clone(),
            "best": [math.inf] * R,
            "m1": torch.zeros_like(own),
            "m2": torch.zeros_like(own),
            "step": 0,
            "elapsed": 0.0,
            # the packings still optimised (indices into the batch; see :meth:`narrow`)
            "active": list(range(R)),
            "narrowed": 0,  # the calls of :meth:`narrow` so far
            "history": [],
            "shift": self._max(Z0),
        }

    # -- the pieces of a step ------------------------------------------------------------------

    def _max(self, Z_full: torch.Tensor, poll: Callable[[], bool] | None = None) -> torch.Tensor:
        """Exact maximum similarity (working precision) of every packing, over all ranks."""
        s = max_similarity(
            Z_full, block=self.block, mode=self.mode, tiles=self.shard.tiles, poll=poll
        )
        return self.shard.max_(s)

    def _surrogate(self, Z_full, t, shift, poll):
        if not self.shard.distributed:
            return surrogate_grad(
                Z_full,
                t,
                shift,
                block=self.block,
                mode=self.mode,
                tile=self.tile,
                workspace=self._workspace,
                poll=poll,
            )
        total, emax, grad = surrogate_parts(
            Z_full,
            t,
            shift,
            block=self.block,
            mode=self.mode,
            tiles=self.shard.tiles,
            workspace=self._workspace,
            poll=poll,
        )
        self.shard.sum_(total)
        self.shard.max_(emax)
        self.shard.sum_(grad)
        return surrogate_finish(total, emax, self.shard.own(grad), t, shift, self.mode)

    def step(self, progress: float, poll: Callable[[], bool] | None = None) -> list[float]:
        """One step at schedule position ``progress`` in ``[0, 1]``.

        Returns the exact maximum similarity of every active packing (all of them unless
        :meth:`narrow` was called; in the order of ``state["active"]``) *before* the step
        (the one host synchronisation), after recording the improvements in ``state["best"]`` and
        ``state["best_Z"]``. ``poll`` is checked between tiles: True raises
        :class:`ebv_gen.kernels.Stopped` and leaves the state as it was before the step.
        """
        st = self.state
        Z, shift = st["Z"], st["shift"]
        p = min(1.0, max(0.0, progress))
        b0, b1 = self.beta
        beta_now = b0 * (b1 / b0) ** p
        lr_now = self.lr[0] * (self.lr[1] / self.lr[0]) ** p
        scale = torch.clamp(torch.minimum(shift - self.lo, self.hi - shift), min=1e-9)
        t = beta_now / scale
        Z_full = self.shard.gather(Z)
        value, eg, smax = self._surrogate(Z_full, t, shift, poll)
        R = Z.shape[0]
        lo, hi = _WINDOW.get(self.dtype, _WINDOW[torch.float32])
        x = t * (smax - shift)
        ok = (x >= lo) & (x <= hi)
        packed = torch.cat([smax, ok.to(self.dtype)]).cpu()  # the one host sync of the step
        smax_h = packed[:R].tolist()
        if not all(v > 0.5 for v in packed[R:].tolist()):
            value, eg, smax = self._surrogate(Z_full, t, smax, poll)
        self._record(Z, smax_h)
        st["shift"] = smax
        rg = project(Z, eg, self.block)
        st["step"] += 1
        b1, b2 = self.betas
        m1, m2 = st["m1"], st["m2"]
        m1.mul_(b1).add_(rg, alpha=1 - b1)
        m2.mul_(b2).addcmul_(rg, rg, value=1 - b2)
        c1 = 1 - b1 ** st["step"]
        c2 = 1 - b2 ** st["step"]
        # Adam-like, but the second moment is pooled per point and then the largest point's is
        # used for all: the most active point turns by about lr radians per step, the others in
        # proportion to their gradient (inactive points stay put).
        vmax = self.shard.max_(m2.sum(dim=-1).amax(dim=-1))
        upd = (m1 / c1) / (vmax / c2).sqrt_().add_(1e-30).view(-1, 1, 1)
        upd = project(Z, upd, self.block)
        st["Z"] = retract(Z - lr_now * upd, self.block)
        return smax_h

    def _record(self, Z: torch.Tensor, values: list[float]) -> None:
        """Keep the iterates ``Z`` of the active packings whose exact maxima ``values`` improve
        their best."""
        st = self.state
        best, active = st["best"], st["active"]
        improved = [i for i, v in enumerate(values) if v < best[active[i]]]
        if not improved:
            return
        if len(improved) == len(best):  # every packing active and improved
            st["best_Z"].copy_(Z)
        else:
            rows = [active[i] for i in improved]
            idx = torch.tensor(improved, device=self.device)
            st["best_Z"][torch.tensor(rows, device=self.device)] = Z[idx]
        for i in improved:
            best[active[i]] = values[i]

    def measure(self, poll: Callable[[], bool] | None = None) -> None:
        """Measure the current iterate exactly and keep it where it improves the best."""
        Z = self.state["Z"]
        self._record(Z, self._max(self.shard.gather(Z), poll).cpu().tolist())

    def narrow(self, count: int) -> None:
        """Go on optimising only the ``count`` active packings with the smallest best maxima
        so far (successive halving, Jamieson & Talwalkar 2016): the others stop where they
        are, their best iterates kept in ``state["best_Z"]``, so later steps cost only the
        packings that can still win. Deterministic (ties go to the lower index), so every rank
        of a group narrows alike."""
        count = check_int("count", count, minimum=1)
        st = self.state
        active = st["active"]
        if count < len(active):
            order = sorted(range(len(active)), key=lambda i: (st["best"][active[i]], i))
            keep = sorted(order[:count])
            idx = torch.tensor(keep, device=self.device)
            # the new state is built first and set in one update, so that an interrupt
            # (whose checkpoint is written from the state) never sees half of it
            new = {key: st[key][idx] for key in ("Z", "m1", "m2", "shift")}
            new["active"] = [active[i] for i in keep]
            new["narrowed"] = st["narrowed"] + 1
            st.update(new)
            self._narrow_beta()
        else:
            st["narrowed"] += 1

    def _narrow_beta(self) -> None:
        """The starting sharpnesses of the active packings."""
        b0 = self._start_beta
        if isinstance(b0, torch.Tensor):
            b0 = b0[torch.tensor(self.state["active"], device=b0.device)]
        self.beta = (b0, self.beta[1])

    def best(self) -> tuple[torch.Tensor, list[float], int]:
        """``(best_Z, best, k)``: every packing's best iterate (all rows), their similarities,
        and the index of the best packing."""
        best = list(self.state["best"])
        k = min(range(len(best)), key=lambda i: best[i])
        return self.shard.gather(self.state["best_Z"]), best, k

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state as CPU tensors and numbers (this rank's rows when sharded)."""
        out: dict[str, Any] = {"format": STATE_FORMAT, "block": self.block, "mode": self.mode}
        out["rank"], out["world"] = self.shard.rank, self.shard.world
        for key, value in self.state.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.detach().cpu().clone()
            elif isinstance(value, list):
                out[key] = list(value)
            else:
                out[key] = value
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same sizes, mode and world size).

        Raises
        ------
        ValueError
            A state of another format (a checkpoint of a version before format 2), size, mode
            or world size.
        """
        fmt = state.get("format")
        if fmt == _UNNARROWED_FORMAT:  # the release before narrowing: every packing active
            state = {**state, "active": list(range(len(state["best"]))), "narrowed": 0}
        elif fmt != STATE_FORMAT:
            raise ValueError(
                f"state has format {fmt!r}, this version reads {STATE_FORMAT!r} and "
                f"{_UNNARROWED_FORMAT!r} (a checkpoint of an older version): start the run "
                "again without resuming"
            )
        mine = (self.block, self.mode, self.shard.rank, self.shard.world)
        theirs = (state["block"], state["mode"], state["rank"], state["world"])
        if mine != theirs:
            raise ValueError(
                f"state is for (block, mode, rank, world) = {theirs}, this optimiser is {mine}"
            )
        if tuple(state["best_Z"].shape) != tuple(self.state["best_Z"].shape):
            raise ValueError(
                f"state holds packings of shape {tuple(state['best_Z'].shape)}, this optimiser "
                f"{tuple(self.state['best_Z'].shape)}"
            )
        R, active = len(self.state["best"]), list(state["active"])
        if (
            active != sorted(set(active))
            or not all(0 <= i < R for i in active)
            or any(state[key].shape[0] != len(active) for key in ("Z", "m1", "m2", "shift"))
        ):
            raise ValueError(
                f"state's active packings {active} do not fit its {R} packings and the rows "
                "of its iterates (a damaged checkpoint)"
            )
        for key in self.state:
            value = state[key]
            if isinstance(value, torch.Tensor):
                self.state[key] = value.to(device=self.device, dtype=self.dtype)
            elif key == "history":
                self.state[key] = [tuple(h) for h in value]
            elif isinstance(value, list):
                self.state[key] = list(value)
            else:
                self.state[key] = value
        self._narrow_beta()
