"""The Equiangular Basis Vector generator.

N unit vectors in R^d with mutual coherence as small as possible, and packings of
subspaces for Grassmann class heads, written as ``.npy`` files with a JSON report.
"""

from grassmann import __version__

from . import optimize
from .generation import METHODS, generate
from .io import load
from .optimize import minimize_coherence, threshold_descent
from .plot import plot_file
from .result import EBVResult

# --- subspace packings (subspaces.py) ---
from .subspaces import SubspaceResult, generate_subspaces
from .verify import verify_file

__all__ = [
    "EBVResult",
    "METHODS",
    "SubspaceResult",
    "generate",
    "generate_subspaces",
    "load",
    "minimize_coherence",
    "optimize",
    "plot_file",
    "threshold_descent",
    "verify_file",
    "__version__",
]
