"""Snapshots of the process-wide random generators (numpy, python, torch and CUDA) that SB3 and PMAC draw from."""

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th


def get_global_rng_states(device: th.device | str = "cpu") -> dict[str, Any]:
    """
    The states of numpy's, python's and torch's global generators (and CUDA's when ``device`` is a CUDA device).

    :param device: the device whose CUDA generator is also saved
    """
    states: dict[str, Any] = {"numpy": np.random.get_state(), "python": random.getstate(), "torch": th.get_rng_state()}
    device = th.device(device)
    if device.type == "cuda":
        states["cuda"] = (device, th.cuda.get_rng_state(device))
    return states


def set_global_rng_states(states: dict[str, Any], device: th.device | str | None = None) -> None:
    """
    Restore states returned by :func:`get_global_rng_states`.

    :param states: the states
    :param device: the CUDA device to restore the saved CUDA state to (None: the device it was saved from); the CUDA
        state is left alone when ``device`` is not a CUDA device (an agent saved on a GPU, loaded on a CPU)
    """
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    th.set_rng_state(states["torch"])
    if "cuda" in states:
        saved_device, state = states["cuda"]
        target = th.device(saved_device if device is None else device)
        if target.type == "cuda":
            th.cuda.set_rng_state(state, target)


@contextlib.contextmanager
def preserved_rng_states(device: th.device | str = "cpu") -> Iterator[None]:
    """
    Save the global random states (:func:`get_global_rng_states`) and restore them on exit.

    :param device: the device whose CUDA generator is also saved
    """
    states = get_global_rng_states(device)
    try:
        yield
    finally:
        set_global_rng_states(states)
