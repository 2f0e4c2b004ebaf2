"""Sphinx configuration of sb3-pmac."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_pmac", "version.txt")) as file_handler:
    release = file_handler.read().strip()

project = "sb3-pmac"
author = "sb3-pmac developers"
copyright = "2026, sb3-pmac developers"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
nitpicky = False
suppress_warnings = ["myst.header"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"sb3-pmac {release}"
