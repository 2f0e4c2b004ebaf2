"""Agents saved by earlier releases: what their files lack, and the values that keep them on their behaviour."""

import io
import json
import math
import pathlib
import zipfile
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.save_util import open_path

#: Attributes added after the first release, with the value that keeps an agent saved without them on its behaviour.
LEGACY_DEFAULTS: dict[str, Any] = {
    "model_training": "full",  # bounded model training came later
    "_user_termination_fn": True,  # whether the saved termination function was the user's is unknown: keep it
}

#: Attributes added after the first release whose keeping value follows from what the agent saved.
LEGACY_DERIVED_DEFAULTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    # non-finite data handling came later: every model training of an earlier release produced a model
    "_model_rounds_trained": lambda saved: int(saved.get("_n_model_steps", 0)),
}


def saved_data(path: str | pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """
    The ``data`` entry of a saved agent's zip file as stored: JSON, with SB3's ``{":serialized:": ...}`` records for
    the values it pickled (nothing is unpickled, no tensor is read); ``{}`` when the file has none. An open file is
    left at the position it had.
    """
    file = open_path(path, "r", verbose=0, suffix="zip")
    position = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            return dict(json.loads(archive.read("data")))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return {}
    finally:
        if isinstance(path, io.BufferedIOBase):
            file.seek(position)
        else:
            file.close()


def legacy_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """
    The :data:`LEGACY_DEFAULTS` and :data:`LEGACY_DERIVED_DEFAULTS` missing from a saved agent's data.

    :param saved: the agent file's ``data`` as stored (:func:`saved_data`: read without loading its tensors)
    """
    if not saved:
        return {}  # SB3's load reports what is wrong with the file
    defaults = {key: value for key, value in LEGACY_DEFAULTS.items() if key not in saved}
    defaults.update({key: derive(saved) for key, derive in LEGACY_DERIVED_DEFAULTS.items() if key not in saved})
    return defaults


#: Fields of the policy mixtures pickled by earlier releases, which kept their own list of versions with their weights
#: (the versions are the replay buffer's now, and the weights follow from the ids).
LEGACY_MIXTURE_FIELDS = ("_versions", "_stored", "_start", "_end", "_offset", "_next_version")


def upgrade_mixture_state(state: dict[str, Any]) -> dict[str, Any]:
    """
    The pickled state of a :class:`~sb3_pmac.policy_mixture.PolicyMixture` or
    :class:`~sb3_pmac.tv_mixture.TVPolicyMixture` in the current form; a state of an earlier release loses its version
    list, keeps its current version for :func:`legacy_policy_version`, and (TV mixture) its measured distances.
    """
    if "_next_version" not in state:
        return state
    upgraded = {key: value for key, value in state.items() if key not in LEGACY_MIXTURE_FIELDS}
    upgraded["_legacy_current_version"] = int(state["_next_version"]) - 1
    if state.get("mode") == "tv":  # the TV mixture stored each held version's distance (NaN: not measured)
        held = slice(int(state["_start"]), int(state["_end"]))
        upgraded["_distances"] = measured_distances(state["_versions"][held], state["_stored"][held])
    return upgraded


def measured_distances(versions: Any, distances: Any) -> dict[int, float]:
    """``{version: distance}`` of the versions whose distance is not NaN (earlier releases' TV mixture states)."""
    return {int(v): float(d) for v, d in zip(versions, distances, strict=True) if not math.isnan(d)}


def legacy_policy_version(mixture: Any) -> int:
    """
    The current policy version of an agent saved by an earlier release, which did not save it itself: its policy
    mixture counted the versions (``ValueError`` if the mixture was not pickled by such a release).
    """
    version = mixture.__dict__.pop("_legacy_current_version", None)
    if version is None:
        raise ValueError("The saved agent holds neither a policy version nor a policy mixture of an earlier release")
    return int(version)
