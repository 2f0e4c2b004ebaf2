"""Argument checks shared by the algorithm and its diagnostics."""

import numpy as np


def check_positive(**values: int | None) -> None:
    """
    Raise ``ValueError`` unless every value given by keyword is a positive int (``None`` is allowed: "not set").

    :param values: ``name=value`` pairs; the name is used in the message
    """
    for name, value in values.items():
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
