"""Agents saved by earlier releases: what their files lack, and the values that keep them on their behaviour."""

import io
import json
import pathlib
import zipfile
from typing import Any

from stable_baselines3.common.save_util import open_path

#: Attributes added after the first release, with the value that keeps an agent saved without them on its behaviour.
LEGACY_DEFAULTS: dict[str, Any] = {
    "model_training": "full",  # bounded model training came later
    "_user_termination_fn": True,  # whether the saved termination function was the user's is unknown: keep it
}


def legacy_defaults(path: str | pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """The :data:`LEGACY_DEFAULTS` missing from a saved agent's data (read without loading its tensors)."""
    file = open_path(path, "r", verbose=0, suffix="zip")
    position = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            saved = json.loads(archive.read("data"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return {}  # SB3's load reports what is wrong with the file
    finally:
        if isinstance(path, io.BufferedIOBase):
            file.seek(position)
        else:
            file.close()
    return {key: value for key, value in LEGACY_DEFAULTS.items() if key not in saved}
