"""Grassmann and Stiefel geometry, coherence and its bounds, and torch heads.

Built on `geoopt <https://github.com/geoopt/geoopt>`_ manifolds so that
``geoopt.optim.RiemannianSGD`` and ``RiemannianAdam`` train the class subspaces.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grassmann-ebv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# --- geometry (manifold.py, stiefel.py, angles.py) ---
# --- coherence, bounds, constructions (coherence.py, bounds.py, constructions.py) ---
# --- heads (heads.py) ---

__all__ = ["__version__"]
