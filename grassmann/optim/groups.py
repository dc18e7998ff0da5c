"""Parameter groups: Euclidean with weight decay, Euclidean without, and manifold parameters.

The usual recipe (ResNet, ViT, the GCR and EBV papers' mmpretrain configurations) decays the
weights of linear and convolution layers but not biases or the affine parameters of
normalisation layers; the class subspaces of :class:`grassmann.GrassmannHead` are never decayed
(weight decay means nothing on the Grassmann manifold) and, beside AdamW or LAMB, are trained
by their own Riemannian optimiser. :func:`split_parameters` makes that split once;
:meth:`ParameterSplit.groups` turns it into groups for :class:`grassmann.optim.GCRSGD` or
geoopt's optimisers (all three kinds) or for any torch optimiser (the Euclidean kinds only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geoopt
import torch
from torch import nn

from grassmann._validation import check_float

__all__ = ["NORM_LAYERS", "ParameterSplit", "is_no_decay", "param_groups", "split_parameters"]

#: Module types whose parameters (scale and shift) are never decayed.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def is_no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """The default rule of :func:`split_parameters`: no weight decay for biases, for every
    parameter of a normalisation layer (:data:`NORM_LAYERS`) and for any parameter with at most
    one dimension (biases, scales, a learned temperature)."""
    return param.ndim <= 1 or name.rsplit(".", 1)[-1] == "bias" or isinstance(module, NORM_LAYERS)


def _is_manifold(p: torch.Tensor) -> bool:
    manifold = getattr(p, "manifold", None)
    return manifold is not None and not isinstance(manifold, geoopt.Euclidean)


@dataclass
class ParameterSplit:
    """The trainable parameters of a model in three disjoint lists (model order).

    Attributes
    ----------
    decay
        Euclidean parameters that take weight decay (weights of linear and convolution layers).
    no_decay
        Euclidean parameters that do not (biases, normalisation layers, 0-D and 1-D tensors).
    manifold
        :class:`geoopt.ManifoldParameter` s on a non-Euclidean manifold (class subspaces).
    names
        The qualified name of every parameter above.
    """

    decay: list[nn.Parameter] = field(default_factory=list)
    no_decay: list[nn.Parameter] = field(default_factory=list)
    manifold: list[nn.Parameter] = field(default_factory=list)
    names: dict[nn.Parameter, str] = field(default_factory=dict, repr=False)

    def groups(
        self, weight_decay: float, *, manifold: bool = True, **manifold_options: Any
    ) -> list[dict[str, Any]]:
        """Parameter groups (non-empty ones only, in the order decay, no decay, manifold).

        Parameters
        ----------
        weight_decay
            Weight decay of the ``decay`` group (>= 0); the other groups get 0.
        manifold
            Include the manifold group: ``True`` for :class:`grassmann.optim.GCRSGD` and
            geoopt's ``RiemannianSGD`` / ``RiemannianAdam``; ``False`` for a torch optimiser
            (AdamW, LAMB ...) that trains only the Euclidean parameters, the subspaces then
            going to a second optimiser (see :class:`grassmann.optim.CombinedOptimizer`).
        **manifold_options
            Extra options of the manifold group only (e.g. ``lr_factor=0.2`` for GCRSGD,
            ``lr=...``).
        """
        weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
        if manifold_options and not manifold:
            raise ValueError(
                f"manifold options {sorted(manifold_options)} were given with manifold=False"
            )
        out: list[dict[str, Any]] = []
        if self.decay:
            out.append({"params": list(self.decay), "weight_decay": weight_decay})
        if self.no_decay:
            out.append({"params": list(self.no_decay), "weight_decay": 0.0})
        if manifold and self.manifold:
            out.append({"params": list(self.manifold), "weight_decay": 0.0, **manifold_options})
        if not out:
            raise ValueError("the model has no trainable parameters for these groups")
        return out


def split_parameters(
    model: nn.Module,
    *,
    no_decay: Callable[[str, nn.Parameter, nn.Module], bool] = is_no_decay,
) -> ParameterSplit:
    """Split the trainable parameters of ``model`` into decay / no-decay / manifold lists.

    Parameters
    ----------
    model
        Any module. Parameters with ``requires_grad=False`` are left out; a parameter shared by
        several modules is listed once (under its first name).
    no_decay
        ``no_decay(name, param, owner_module) -> bool`` decides, for a Euclidean parameter, that
        it takes no weight decay; default :func:`is_no_decay`.

    Examples
    --------
    >>> from grassmann import GrassmannHead
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4),
    ...                             GrassmannHead(4, 3, 2))
    >>> split = split_parameters(model)
    >>> [len(split.decay), len(split.no_decay), len(split.manifold)]
    [1, 3, 1]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    split = ParameterSplit()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for local, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            name = f"{module_name}.{local}" if module_name else local
            split.names[p] = name
            if _is_manifold(p):
                split.manifold.append(p)
            elif no_decay(name, p, module):
                split.no_decay.append(p)
            else:
                split.decay.append(p)
    return split


def param_groups(
    model: nn.Module, weight_decay: float, *, manifold: bool = True, **manifold_options: Any
) -> list[dict[str, Any]]:
    """``split_parameters(model).groups(weight_decay, manifold=..., **manifold_options)``."""
    return split_parameters(model).groups(weight_decay, manifold=manifold, **manifold_options)
