"""The Equiangular Basis Vector generator.

N unit vectors in R^d with mutual coherence as small as possible, and packings of
subspaces for Grassmann class heads, written as ``.npy`` files with a JSON report.
"""

from grassmann import __version__

from . import optimize
from .generation import METHODS, generate
from .io import load
from .optimize import minimize_coherence, threshold_descent
from .result import EBVResult

# --- subspace packings (subspaces.py) ---
from .subspaces import SubspaceResult, generate_subspaces

__all__ = [
    "EBVResult",
    "METHODS",
    "SubspaceResult",
    "generate",
    "generate_subspaces",
    "load",
    "minimize_coherence",
    "optimize",
    "threshold_descent",
    "__version__",
]
