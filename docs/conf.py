"""Sphinx configuration. Built in CI with ``sphinx-build -W`` (warnings are errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "grassmann-ebv"
author = "grassmann-ebv developers"
copyright = "2026, grassmann-ebv developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# torch.nn.Module and geoopt.Manifold bring many inherited members; document our own only.
autodoc_inherit_docstrings = False
nitpicky = False

html_theme = "alabaster"
exclude_patterns = ["_build"]
