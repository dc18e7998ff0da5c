"""Sphinx configuration. Built in CI with ``sphinx-build -W`` (warnings are errors).

The pages need no network: MathJax 3 is served from the build itself (``_static/mathjax``),
copied from the ``django-static-mathjax`` wheel (the official MathJax distribution packaged for
PyPI, an extra of ``grassmann-ebv[dev]``), not from a CDN.
"""

import importlib.util
import os
import shutil
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


def _mathjax_dir() -> str:
    spec = importlib.util.find_spec("mathjax")
    es5 = None
    if spec is not None and spec.submodule_search_locations:
        es5 = os.path.join(spec.submodule_search_locations[0], "static", "mathjax", "es5")
    if es5 is None or not os.path.isfile(os.path.join(es5, "tex-mml-chtml.js")):
        raise RuntimeError(
            "the docs serve MathJax locally from the django-static-mathjax package; install it "
            'with pip install -e ".[dev]"'
        )
    return es5


_MATHJAX = _mathjax_dir()
# relative to _static of the built pages
mathjax_path = "mathjax/tex-mml-chtml.js"


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        target = os.path.join(app.outdir, "_static", "mathjax")
        shutil.copytree(_MATHJAX, target, dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
