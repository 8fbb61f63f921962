"""Sphinx configuration for the lupusbayes documentation.

Build (what ``make docs`` and CI run; warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html -q docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

# Autodoc imports the source tree, not whatever copy of lupusbayes happens to be installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

project = "lupusbayes"
author = "lupusbayes developers"
copyright = "lupusbayes developers"  # noqa: A001 - Sphinx's name for the setting

try:
    from lupusbayes import __version__ as release
except ImportError:  # pragma: no cover - the docs are built from a working install
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {
    ".md": "markdown",
    ".rst": "restructuredtext",
}
root_doc = "index"

# examples/ holds spec files read by the tests (TOML, not pages); validation/ holds the stored
# simulation-based-calibration tables written by `make validate`.
exclude_patterns = ["_build", "examples", "validation/*.csv", "Thumbs.db", ".DS_Store"]

# MyST: ::: fences for directives, $...$ and $$...$$ for maths, anchors on headings h1-h3 so
# pages can link to sections as [text](page.md#section-title).
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# Docstrings are numpydoc.
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

# `.. automodule:: x` with `:members:` documents the names in the module's __all__, in source
# order; type hints stay in the signature.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# No suppress_warnings: the build runs with -W and every warning is fixed at its source.

html_theme = "alabaster"
html_title = f"lupusbayes {release}"
html_theme_options = {
    "description": "Bayesian dose-toxicity and dose-efficacy models for NK / CAR-NK trials in lupus",
    "fixed_sidebar": True,
}


# ---- the plot gallery (gallery.md) -------------------------------------------------------------
# The gallery's pictures are drawn from real fits by scripts/make_gallery.py into
# docs/_generated/gallery/ before Sphinx reads any page (they must exist for `-W`). The script
# skips the work when its stamp (a hash of the package's source and data) is unchanged.


def _make_gallery(app) -> None:
    import subprocess

    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "make_gallery.py")
    out = os.path.join(app.srcdir, "_generated", "gallery")
    subprocess.run([sys.executable, script, "--out", out], check=True)


def _console_lexer():
    """Pygments' console lexer, with ``$ `` as the only prompt: the docs' console blocks (and
    tests/test_docs_commands.py) write commands after ``$ `` only, and output lines that start with
    ``#`` (``lupusbayes construct-prior`` prints TOML comments) are output, not root commands."""
    import re

    from pygments.lexers.shell import BashSessionLexer

    class DollarPromptSessionLexer(BashSessionLexer):
        name = "Console ($ prompt)"
        aliases = ["console"]
        _ps1rgx = re.compile(r"^(\$\s)(.*\n?)")

    return DollarPromptSessionLexer


def setup(app):
    app.connect("builder-inited", _make_gallery)
    app.add_lexer("console", _console_lexer())
    return {"parallel_read_safe": True}
