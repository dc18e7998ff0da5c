"""The Equiangular Basis Vector generator.

N unit vectors in R^d with mutual coherence as small as possible, and packings of
subspaces for Grassmann class heads, written as ``.npy`` files with a JSON report.
"""

from grassmann import __version__

# --- generator (optimize.py, result.py, io.py) ---
# --- subspace packings (subspaces.py) ---

__all__ = ["__version__"]
