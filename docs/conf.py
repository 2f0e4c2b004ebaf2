"""Sphinx configuration of sb3-pmac (``make doc``; ``tests/test_docs.py`` builds it with warnings as errors)."""

import importlib.util
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_pmac", "version.txt")) as file_handler:
    release = file_handler.read().strip()

project = "sb3-pmac"
author = "sb3-pmac developers"
copyright = "2026, sb3-pmac developers"
version = release

# No sphinx.ext.intersphinx (nor any other extension that fetches inventories): the build must not need the network.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Type aliases written as names in annotations (``from __future__ import annotations``), linked to their documentation
autodoc_type_aliases = {"BatchSource": "sb3_pmac.fast_sac.updates.BatchSource"}
# The rl-zoo3 modules import optuna at module level; it comes with the [zoo] extra. Mock it when it is missing so that
# a docs-only install ([docs]) still builds.
autodoc_mock_imports: list[str] = [name for name in ("optuna",) if importlib.util.find_spec(name) is None]
nitpicky = False
suppress_warnings = ["myst.header"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"sb3-pmac {release}"


def _protect_attribute_docstrings(app, what, name, obj, options, lines):
    """
    Napoleon reads the first line of an attribute, data or property docstring as ``type: description`` when it holds a
    colon ("A horizon schedule: an int or ..." would render as "Type: A horizon schedule"). The package writes reST,
    not Google-style, docstrings: an empty reST comment in front hides the first line from that rule.
    """
    if what in ("attribute", "data", "property") and lines:
        lines[:0] = ["..", ""]


_SELF_TYPEVAR = re.compile(r"\b(sb3_pmac(?:\.\w+)*)\.Self(\w+)\b")


def _drop_self_annotations(app, domain, objtype, contentnode):
    """
    With ``autodoc_typehints = "description"``, autodoc lists every annotated parameter, so SB3's annotated ``self:
    SelfPMAC`` (``learn``) and ``cls: type[SelfPMAC]`` (``load``) would appear as parameters. This drops them from
    autodoc's record before it writes the field list, and shows the ``Self...`` type variables of the return types as
    the class they are bound to (``SelfPMAC`` -> ``PMAC``).
    """
    if domain != "py" or not contentnode.parent.children:
        return
    signature = contentnode.parent[0]
    try:
        fullname = f"{signature['module']}.{signature['fullname']}" if signature["module"] else signature["fullname"]
    except KeyError:
        return
    document = getattr(app.env, "current_document", None)  # Sphinx >= 8.2; earlier: temp_data
    annotations = getattr(document, "autodoc_annotations", None)
    if annotations is None:
        annotations = app.env.temp_data.get("annotations", {})
    record = annotations.get(fullname)
    if not record:
        return
    for name in ("self", "cls"):
        record.pop(name, None)
    for name, value in record.items():
        record[name] = _SELF_TYPEVAR.sub(r"\1.\2", value)


def setup(app):
    # before napoleon's own handler (default priority 500)
    app.connect("autodoc-process-docstring", _protect_attribute_docstrings, priority=400)
    # before autodoc's handler that writes the types into the description (default priority 500)
    app.connect("object-description-transform", _drop_self_annotations, priority=400)
