"""Several optimisers over disjoint parameters, driven as one torch optimiser.

The GCR recipes for transformers and the RSB schedules train the backbone with AdamW or LAMB and
the class subspaces with an inner momentum SGD along geodesics at ``lr * lr_factor``. Two
optimisers stepped by hand miss two things: a learning-rate scheduler sees only one of them,
and :class:`torch.amp.GradScaler` unscales only the gradients of the optimiser it is given
(the official AdamW wrapper hands 65536-times scaled gradients to its inner step).
:class:`CombinedOptimizer` is a :class:`torch.optim.Optimizer` whose ``param_groups`` are the
groups of its parts (the same dicts), so schedulers, ``GradScaler.unscale_`` /
``GradScaler.step`` and ``zero_grad`` reach every parameter, and ``step`` steps every part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["CombinedOptimizer"]


class _StateView(Mapping):
    """Read-only union of the parts' ``state`` (a lookup never inserts into a defaultdict)."""

    def __init__(self, optimizers: tuple[torch.optim.Optimizer, ...]) -> None:
        self._optimizers = optimizers

    def __getitem__(self, key: torch.Tensor) -> Any:
        for opt in self._optimizers:
            if key in opt.state:
                return opt.state[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for opt in self._optimizers:
            yield from opt.state

    def __len__(self) -> int:
        return sum(len(opt.state) for opt in self._optimizers)


class CombinedOptimizer(torch.optim.Optimizer):
    """Drive several optimisers over disjoint parameters as one.

    ``param_groups`` is the list of the parts' groups (the very same dicts, in order), so that

    * a learning-rate scheduler built on the combined optimiser schedules every group: each
      group follows the schedule from its own initial ``lr`` (a GCRSGD group keeps its
      ``lr_factor``, so the subspaces move at ``lr_t * lr_factor`` as in the official wrappers);
    * ``GradScaler.step(combined)`` unscales the gradients of every part before any part steps,
      and skips every part when one gradient is not finite;
    * ``zero_grad`` clears every gradient.

    Schedulers that cycle the momentum (:class:`torch.optim.lr_scheduler.OneCycleLR`,
    ``CyclicLR``) find it when every part has it under the same name (SGD and GCRSGD:
    ``momentum``); for AdamW (``betas``) beside GCRSGD (``momentum``) pass
    ``cycle_momentum=False``.

    ``step`` calls each part's ``step`` in order; ``state_dict`` holds the parts' state dicts.

    Parameters
    ----------
    *optimizers
        Two or more torch optimisers (e.g. :class:`torch.optim.AdamW` for the Euclidean
        parameters and :class:`grassmann.optim.GCRSGD` for the subspaces) with no parameter in
        common.

    Examples
    --------
    >>> from grassmann import GrassmannHead
    >>> from grassmann.optim import GCRSGD, split_parameters
    >>> model = torch.nn.Sequential(torch.nn.Linear(32, 16), GrassmannHead(16, 10, 4))
    >>> split = split_parameters(model)
    >>> opt = CombinedOptimizer(
    ...     torch.optim.AdamW(split.groups(0.05, manifold=False), lr=1e-3),
    ...     GCRSGD(split.manifold, lr=1e-3, momentum=0.9, reorth_every=1, lr_factor=0.2),
    ... )
    >>> sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    """

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        if len(optimizers) < 2:
            raise ValueError(
                f"CombinedOptimizer needs at least 2 optimizers, got {len(optimizers)}"
            )
        for i, opt in enumerate(optimizers):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    f"optimizers[{i}] must be a torch.optim.Optimizer, got {type(opt).__name__}"
                )
            if isinstance(opt, CombinedOptimizer):
                raise TypeError(f"optimizers[{i}] is itself a CombinedOptimizer: pass its parts")
        seen: dict[int, int] = {}
        for i, opt in enumerate(optimizers):
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) in seen and seen[id(p)] != i:
                        raise ValueError(
                            f"a parameter of shape {tuple(p.shape)} is in optimizers[{seen[id(p)]}]"
                            f" and optimizers[{i}]: each parameter must belong to one optimizer"
                        )
                    seen[id(p)] = i
        # The base class sets up the hooks and the step patching that schedulers rely on; its
        # groups are shallow copies, replaced at once by the parts' own group dicts.
        # ``defaults``: the options every part has (the first part's values). Schedulers read
        # it: OneCycleLR and CyclicLR cycle "momentum" or "betas" only when it names one.
        first = optimizers[0].defaults
        common = {k: v for k, v in first.items() if all(k in o.defaults for o in optimizers)}
        super().__init__([dict(g) for opt in optimizers for g in opt.param_groups], common)
        self.optimizers: tuple[torch.optim.Optimizer, ...] = tuple(optimizers)
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]
        self.state = _StateView(self.optimizers)  # type: ignore[assignment]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Refused after construction: add the group to one of the parts instead (``
        combined.optimizers[i].add_param_group``) and build a new CombinedOptimizer."""
        if not hasattr(self, "optimizers"):  # called by the base class's __init__
            super().add_param_group(param_group)
            return
        raise TypeError(
            "CombinedOptimizer.add_param_group: add the group to one of its parts "
            "(combined.optimizers[i].add_param_group) and build a new CombinedOptimizer"
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Step every part in order; ``closure`` (optional) is evaluated once, before."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``zero_grad`` of every part."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizers": [part.state_dict() for each part]}``."""
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` of a CombinedOptimizer with the same number of parts."""
        parts = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            got = len(parts) if isinstance(parts, list) else type(state_dict).__name__
            raise ValueError(
                f"state_dict must come from a CombinedOptimizer of {len(self.optimizers)} parts, "
                f"got {got}"
            )
        for opt, part in zip(self.optimizers, parts, strict=True):
            opt.load_state_dict(part)
        # load_state_dict of a part replaces its group dicts: share the new ones
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]

    def __repr__(self) -> str:
        inner = "\n".join("    " + repr(opt).replace("\n", "\n    ") for opt in self.optimizers)
        return f"{type(self).__name__}(\n{inner}\n)"
