"""Grassmann and Stiefel geometry, coherence and its bounds, and torch heads.

Built on `geoopt <https://github.com/geoopt/geoopt>`_ manifolds so that
``geoopt.optim.RiemannianSGD`` and ``RiemannianAdam`` train the class subspaces, as does
:class:`grassmann.optim.GCRSGD`, the exact update of the GCR paper.

Note that ``grassmann.coherence`` is the *function* :func:`grassmann.coherence.coherence`; the
module of the same name is still importable as ``from grassmann.coherence import ...``.
"""

from importlib.metadata import PackageNotFoundError, version

from grassmann import bounds, catalog, constructions, designs, mubs, npyio, optim, sequences
from grassmann.angles import SUBSPACE_METRICS, karcher_mean, principal_angles, subspace_distance
from grassmann.bounds import Bound, lower_bound, subspace_lower_bound
from grassmann.catalog import Candidate, frame_candidates
from grassmann.coherence import (
    CoherenceReport,
    SubspaceCoherence,
    coherence,
    coherence_report,
    subspace_coherence,
)
from grassmann.constructions import known_optimal
from grassmann.designs import (
    affine_plane_frame,
    devore_frame,
    hadamard,
    steiner_etf,
    triple_packing,
    triple_packing_frame,
)
from grassmann.heads import EBVHead, FixedClassifierHead, GrassmannHead, reorthonormalize_
from grassmann.manifold import Grassmann
from grassmann.mubs import (
    embedded_mubs,
    mub_coherence,
    mub_dimension,
    punctured_mubs,
    real_mubs,
)
from grassmann.sequences import dual_bch, gold, kasami
from grassmann.stiefel import (
    Stiefel,
    cayley_retraction,
    orthonormalize,
    polar_retraction,
    qr_retraction,
)

try:
    __version__ = version("grassmann-ebv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    # geometry
    "Grassmann",
    "Stiefel",
    "orthonormalize",
    "qr_retraction",
    "polar_retraction",
    "cayley_retraction",
    "principal_angles",
    "subspace_distance",
    "SUBSPACE_METRICS",
    "karcher_mean",
    # coherence, bounds, constructions
    "coherence",
    "coherence_report",
    "CoherenceReport",
    "subspace_coherence",
    "SubspaceCoherence",
    "Bound",
    "lower_bound",
    "subspace_lower_bound",
    "known_optimal",
    "real_mubs",
    "embedded_mubs",
    "mub_coherence",
    "mub_dimension",
    "punctured_mubs",
    # algebraic frames and their catalog
    "frame_candidates",
    "Candidate",
    "gold",
    "kasami",
    "dual_bch",
    "steiner_etf",
    "triple_packing",
    "triple_packing_frame",
    "affine_plane_frame",
    "hadamard",
    "devore_frame",
    "bounds",
    "catalog",
    "constructions",
    "designs",
    "mubs",
    "sequences",
    # heads
    "EBVHead",
    "FixedClassifierHead",
    "GrassmannHead",
    "reorthonormalize_",
    # optimisers for the heads: GCRSGD, CombinedOptimizer, parameter groups
    "optim",
    # safe .npy input/output
    "npyio",
    "__version__",
]
