"""Optimisers for the class subspaces of :class:`grassmann.GrassmannHead`.

* :class:`GCRSGD`: the exact update of the GCR paper (Euclidean momentum, projection when
  used, exact geodesic, sign-fixed QR every ``reorth_every`` steps), with torch's SGD for every
  other parameter.
* :class:`CombinedOptimizer`: e.g. AdamW for the backbone and GCRSGD for the subspaces, driven
  as one optimiser (one scheduler, one ``GradScaler.step``).
* :func:`split_parameters` / :func:`param_groups`: Euclidean parameters with and without weight
  decay, and manifold parameters, for either optimiser family.

geoopt's :class:`geoopt.optim.RiemannianSGD` and :class:`geoopt.optim.RiemannianAdam` train the
same heads (see the "Training" section of the heads documentation for how they differ).
"""

from grassmann.optim.combined import CombinedOptimizer
from grassmann.optim.gcr import GCRSGD, gcr_geodesic_step
from grassmann.optim.groups import (
    NORM_LAYERS,
    ParameterSplit,
    is_no_decay,
    param_groups,
    split_parameters,
)

__all__ = [
    "GCRSGD",
    "NORM_LAYERS",
    "CombinedOptimizer",
    "ParameterSplit",
    "gcr_geodesic_step",
    "is_no_decay",
    "param_groups",
    "split_parameters",
]
