"""
Files of PMAC's replay data: the real replay buffer with its policy versions and the model buffer, written by
``PMAC.save_replay_buffer`` and read by ``PMAC.load_replay_buffer``, the diagnostics CLI and the benchmark runner.
"""

import io
import pathlib
from typing import Any

from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.model_buffer import ModelReplayBuffer


def save_buffers(
    path: str | pathlib.Path | io.BufferedIOBase,
    replay_buffer: PolicyVersionedReplayBuffer,
    model_buffer: ModelReplayBuffer | None = None,
    verbose: int = 0,
) -> None:
    """
    Save the real replay buffer (policy versions included) and, if given, the model buffer in one file.

    :param path: file path or open binary file
    :param replay_buffer: the real replay buffer
    :param model_buffer: the model buffer (optional)
    :param verbose: verbosity level (SB3's)
    """
    if model_buffer is not None:
        replay_buffer.model_buffer_state = model_buffer.state_dict()  # type: ignore[attr-defined]
    try:
        save_to_pkl(path, replay_buffer, verbose)
    finally:
        replay_buffer.__dict__.pop("model_buffer_state", None)


def load_buffers(
    path: str | pathlib.Path | io.BufferedIOBase, verbose: int = 0
) -> tuple[PolicyVersionedReplayBuffer, dict[str, Any] | None]:
    """
    Read a file written by :func:`save_buffers`.

    :param path: file path or open binary file
    :param verbose: verbosity level (SB3's)
    :return: the real replay buffer and the model buffer's state (``None`` if the file has none)
    """
    buffer = load_from_pkl(path, verbose)
    if not isinstance(buffer, PolicyVersionedReplayBuffer):
        raise TypeError(f"PMAC needs a PolicyVersionedReplayBuffer, the file holds {type(buffer).__name__}")
    return buffer, buffer.__dict__.pop("model_buffer_state", None)
