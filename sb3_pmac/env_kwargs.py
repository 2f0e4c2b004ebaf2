"""
rl-zoo3's ``--env-kwargs KEY:VALUE ...`` items, read as rl-zoo3 reads them (the key up to the first ``:``, the value a
Python expression), for the command lines of this package that take them (``python -m sb3_pmac.zoo train`` checks the
env before rl-zoo3 makes it; ``python -m sb3_pmac.diagnostics`` makes the training env again).

rl-zoo3 evaluates the value as code; here only literals are read (``2.0``, ``True``, ``'rgb_array'``, ``(1, 2)``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


def parse_env_kwarg(item: str, text_fallback: bool = False) -> tuple[str, Any]:
    """
    One ``KEY:VALUE`` item.

    :param item: the item, e.g. ``"g:2.0"``
    :param text_fallback: a value that is not a Python literal is kept as text (``render_mode:rgb_array``) instead of
        being refused (rl-zoo3 would fail to evaluate it)
    :return: the key and the value
    :raises ValueError: when ``item`` has no ``:`` or no key, or (without ``text_fallback``) when the value is not a
        Python literal
    """
    key, sep, text = item.partition(":")
    if not sep or not key:
        raise ValueError(f"--env-kwargs takes KEY:VALUE pairs, got {item!r}")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text_fallback:
            return key, text
        raise ValueError(f"--env-kwargs {item!r}: the value {text!r} is not a Python literal") from None


def parse_env_kwargs(items: Iterable[str], text_fallback: bool = False) -> dict[str, Any]:
    """
    All items as one dict (a repeated key: the last value, as rl-zoo3 keeps it).

    :param items: the ``KEY:VALUE`` items
    :param text_fallback: see :func:`parse_env_kwarg`
    :return: the keyword arguments
    :raises ValueError: for an item :func:`parse_env_kwarg` refuses
    """
    return dict(parse_env_kwarg(item, text_fallback) for item in items)
