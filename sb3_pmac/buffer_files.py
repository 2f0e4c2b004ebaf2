"""
Files of PMAC's replay data: the real replay buffer with its policy versions and the model buffer, written by
``PMAC.save_replay_buffer`` and read by ``PMAC.load_replay_buffer``, the diagnostics CLI and the benchmark runner.

The file is a numpy ``.npz`` archive of plain arrays, read with ``np.load(..., allow_pickle=False)``: reading it cannot
execute code, and the buffer is rebuilt from the arrays. Files of earlier releases (and SB3's own replay buffer files)
are pickles, which execute code when read: they are only read with ``allow_pickle=True``. The format is told from the
file's content (an ``.npz`` archive is a zip file), not from its name.

An SB3 ``ReplayBuffer`` (e.g. from ``SAC.save_replay_buffer``, to warm-start PMAC with a SAC run's data) is converted
(:func:`sb3_buffer_arrays`): its transitions come from one outside source, so all of them get one policy version, 0,
the version of a new agent's warm-up, i.e. the oldest. As with PMAC's own files, the buffer gets the file's size, not
the agent's ``buffer_size`` (as SB3's ``load_replay_buffer`` does).

A path without a suffix gets ``.npz`` when saving; when loading, a path that does not exist is also looked for with
``.npz`` then ``.pkl`` appended (the name SB3 and earlier releases gave it), so that ``save_replay_buffer(path)`` and
``load_replay_buffer(path)`` take the same path. A path with a suffix is written exactly (e.g. the ``replay_buffer.pkl``
of SB3's ``CheckpointCallback`` and rl-zoo3 holds an ``.npz`` archive).
"""

import functools
import io
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl

from sb3_pmac.buffers import PolicyVersionedReplayBuffer
from sb3_pmac.model_buffer import ModelReplayBuffer

#: The ``format`` entry of a buffer file, and the newest version of the layout this module reads and writes
FORMAT = "sb3_pmac.replay_buffers"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
#: Arrays of SB3's ``ReplayBuffer`` (first axis: buffer position, second: env)
_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_POLICY_PARAMS = ("policy_means", "policy_log_stds")
_MODEL_PREFIX = "model_"
#: Entries every buffer file has
_REQUIRED = (
    *("buffer_size", "n_envs", "pos", "full", "handle_timeout_termination", "store_policy_params", "current_version"),
    *("n_written", "segment_versions", "segment_starts", "segment_ends", "policy_versions", *_BUFFER_ARRAYS),
    *("observation_low", "observation_high", "action_low", "action_high"),
)
#: Buffer arguments a file determines (an agent's ``replay_buffer_kwargs`` does not replace them)
_FILE_KWARGS = ("store_policy_params", "handle_timeout_termination", "optimize_memory_usage", "n_envs", "device")

PathOrFile = str | os.PathLike[str] | io.BufferedIOBase | IO[bytes]


def save_buffers(
    path: PathOrFile,
    replay_buffer: PolicyVersionedReplayBuffer,
    model_buffer: ModelReplayBuffer | None = None,
    verbose: int = 0,
) -> pathlib.Path | None:
    """
    Save the real replay buffer (policy versions included) and, if given, the model buffer in one ``.npz`` file.

    A path is written atomically (a temporary file in the same folder, then renamed): a crash while saving leaves an
    earlier file of that name intact. Positions the buffer never wrote (after ``pos`` when it is not full) are not
    stored: they are zeros when the file is read.

    :param path: file path (``.npz`` is appended when it has no suffix) or open binary file
    :param replay_buffer: the real replay buffer
    :param model_buffer: the model buffer (optional)
    :param verbose: verbosity level (SB3's): 2 prints the path written
    :return: the path written (None for an open file)
    """
    arrays = buffer_arrays(replay_buffer)
    if model_buffer is not None:
        for key, value in model_buffer.state_dict().items():
            arrays[_MODEL_PREFIX + key] = value.numpy() if isinstance(value, th.Tensor) else np.asarray(value)
    if not isinstance(path, str | os.PathLike):
        _write_npz(path, arrays)
        return None
    target = save_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:  # a file object: np.savez would append .npz to a name
            _write_npz(file, arrays)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if verbose >= 2:
        print(f"Saved the replay buffers to {target}")
    return target


def load_buffers(
    path: PathOrFile,
    observation_space: spaces.Space | None = None,
    action_space: spaces.Space | None = None,
    device: th.device | str = "auto",
    verbose: int = 0,
    *,
    allow_pickle: bool = False,
    buffer_class: type[PolicyVersionedReplayBuffer] | None = None,
    buffer_kwargs: dict[str, Any] | None = None,
) -> tuple[PolicyVersionedReplayBuffer, dict[str, Any] | None]:
    """
    Read a file written by :func:`save_buffers`.

    :param path: file path (see :func:`find_buffer_file`) or open binary file
    :param observation_space: the agent's observation space (default: a ``Box`` with the bounds, shape and dtype
        saved in the file); the file's observations must have its shape and dtype
    :param action_space: the agent's action space (default: as saved); the file's actions must fit it
    :param device: PyTorch device of the buffer
    :param verbose: verbosity level (SB3's)
    :param allow_pickle: also read a pickle (the files of earlier releases, and SB3's replay buffer files, converted by
        :func:`sb3_buffer_arrays`). Reading a pickle executes the code it holds: only for files you trust
    :param buffer_class: class of the buffer to rebuild (default: :class:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer`)
    :param buffer_kwargs: further keyword arguments of ``buffer_class`` (those the file determines are ignored)
    :return: the real replay buffer and the model buffer's state (``None`` if the file has none), the latter for
        :meth:`~sb3_pmac.model_buffer.ModelReplayBuffer.load_state_dict`
    """
    if isinstance(path, str | os.PathLike):
        file_path = find_buffer_file(path)
        with open(file_path, "rb") as file:
            return _load_from_file(file, str(file_path), observation_space, action_space, device, verbose,
                                   allow_pickle, buffer_class, buffer_kwargs)  # fmt: skip
    return _load_from_file(path, "the file object", observation_space, action_space, device, verbose, allow_pickle,
                           buffer_class, buffer_kwargs)  # fmt: skip


def save_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """The path :func:`save_buffers` writes: ``path``, with ``.npz`` appended when it has no suffix."""
    path = pathlib.Path(path)
    return path if path.suffix else path.with_name(path.name + ".npz")


def find_buffer_file(path: str | os.PathLike[str]) -> pathlib.Path:
    """
    The file :func:`load_buffers` reads: ``path`` if it exists, else ``path`` with ``.npz``, then ``.pkl``
    appended (the names :func:`save_buffers`, SB3 and earlier releases give a path without a suffix).

    :param path: the path given to ``save_replay_buffer``
    """
    path = pathlib.Path(path)
    candidates = [path] if path.suffix else [path, save_path(path), path.with_name(path.name + ".pkl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"No replay buffer file at {' or '.join(map(str, candidates))}")


# ---------------------------------------------------------------------------------------------- arrays of a buffer
def buffer_arrays(buffer: PolicyVersionedReplayBuffer) -> dict[str, np.ndarray]:
    """
    The state of a real replay buffer as plain arrays (no object arrays): SB3's arrays (the written positions), the
    write position, the policy versions and their segments, the optional policy parameters and the spaces' bounds.

    :param buffer: the real replay buffer
    """
    segments = (buffer._segment_versions, buffer._segment_starts, buffer._segment_ends)
    arrays = _layout_arrays(
        buffer, buffer.policy_versions, buffer.current_version, buffer.n_written, segments, buffer.store_policy_params
    )
    rows = len(arrays["policy_versions"])
    if buffer.policy_means is not None and buffer.policy_log_stds is not None:
        arrays["policy_means"] = buffer.policy_means[:rows]
        arrays["policy_log_stds"] = buffer.policy_log_stds[:rows]
    return arrays


def sb3_buffer_arrays(buffer: ReplayBuffer, version: int = 0) -> dict[str, np.ndarray]:
    """
    The arrays of :func:`buffer_arrays` for a replay buffer of SB3 (e.g. written by ``SAC.save_replay_buffer``), which
    holds no policy versions: all its transitions get ``version``. The default 0 is the version of a new agent's
    warm-up, the oldest: the data comes from one outside source, collected before any policy of the agent that loads
    it. One segment covers the stored positions, as if they had been written once in order (``n_written`` is
    ``pos``, or ``buffer_size + pos`` once full), so the policy mixture weighs them as one version.

    :param buffer: SB3's ``ReplayBuffer`` with ``Box`` spaces (not a ``DictReplayBuffer``, nor one with
        ``optimize_memory_usage=True``, which stores no separate next observations)
    :param version: the policy version of the transitions
    :raises TypeError: for a ``DictReplayBuffer`` or spaces other than ``Box``
    :raises ValueError: for a buffer with ``optimize_memory_usage=True``
    """
    if isinstance(buffer, DictReplayBuffer):
        raise TypeError(f"PMAC's buffers hold Box observations, not the dict observations of a {type(buffer).__name__}")
    if getattr(buffer, "optimize_memory_usage", False):
        raise ValueError(
            "The SB3 replay buffer was made with optimize_memory_usage=True (no separate next observations), "
            "which PMAC's buffer does not support"
        )
    n_written = buffer.buffer_size + buffer.pos if buffer.full else buffer.pos
    segments = ([version], [0], [n_written]) if n_written > 0 else ([], [], [])
    versions = np.full(buffer.buffer_size, version, dtype=np.int64)
    return _layout_arrays(buffer, versions, version, n_written, segments, store_policy_params=False)


def _layout_arrays(
    buffer: ReplayBuffer,
    policy_versions: np.ndarray,
    current_version: int,
    n_written: int,
    segments: tuple[list[int], list[int], list[int]],
    store_policy_params: bool,
) -> dict[str, np.ndarray]:
    """
    The entries of a buffer file but the policy parameters: SB3's arrays (the written positions), the buffer's layout,
    the version bookkeeping given and the spaces' bounds.

    :param buffer: the replay buffer (``Box`` spaces)
    :param policy_versions: the policy version of each buffer position (those written are kept)
    :param current_version: the version of the transitions added next
    :param n_written: positions written since the buffer was created
    :param segments: the versions and their ranges of absolute positions ``[start, end)``
    :param store_policy_params: whether the buffer stores the collecting policy's parameters
    """
    observation_space, action_space = buffer.observation_space, buffer.action_space
    if not isinstance(observation_space, spaces.Box) or not isinstance(action_space, spaces.Box):
        raise TypeError(f"Buffer files hold Box spaces only, got {observation_space} and {action_space}")
    rows = buffer.buffer_size if buffer.full else buffer.pos
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "buffer_size": np.array(buffer.buffer_size),
        "n_envs": np.array(buffer.n_envs),
        "pos": np.array(buffer.pos),
        "full": np.array(buffer.full),
        "handle_timeout_termination": np.array(buffer.handle_timeout_termination),
        "store_policy_params": np.array(store_policy_params),
        "current_version": np.array(current_version),
        "n_written": np.array(n_written),
        "segment_versions": np.asarray(segments[0], dtype=np.int64),
        "segment_starts": np.asarray(segments[1], dtype=np.int64),
        "segment_ends": np.asarray(segments[2], dtype=np.int64),
        "policy_versions": policy_versions[:rows],
        "observation_low": observation_space.low,
        "observation_high": observation_space.high,
        "action_low": action_space.low,
        "action_high": action_space.high,
    }
    for name in _BUFFER_ARRAYS:
        arrays[name] = getattr(buffer, name)[:rows]
    return arrays


def buffer_from_arrays(
    arrays: Mapping[str, np.ndarray],
    observation_space: spaces.Space | None = None,
    action_space: spaces.Space | None = None,
    device: th.device | str = "auto",
    buffer_class: type[PolicyVersionedReplayBuffer] | None = None,
    buffer_kwargs: dict[str, Any] | None = None,
) -> PolicyVersionedReplayBuffer:
    """
    Rebuild the buffer of :func:`buffer_arrays`; ``ValueError`` if the arrays do not fit the spaces or each other.

    :param arrays: the arrays of :func:`buffer_arrays` (or the open archive: each array is read once)
    :param observation_space: observation space of the buffer (default: the saved ``Box``)
    :param action_space: action space of the buffer (default: the saved ``Box``)
    :param device: PyTorch device of the buffer
    :param buffer_class: class of the buffer (default: :class:`~sb3_pmac.buffers.PolicyVersionedReplayBuffer`)
    :param buffer_kwargs: further keyword arguments of ``buffer_class`` (those the file determines are ignored)
    """
    store_policy_params = "store_policy_params" in arrays and bool(arrays["store_policy_params"])
    missing = [key for key in (*_REQUIRED, *(_POLICY_PARAMS if store_policy_params else ())) if key not in arrays]
    if missing:
        raise ValueError(f"not a complete PMAC replay buffer file: it has no {', '.join(missing)}")
    buffer_size, n_envs, pos = (_int(arrays, key) for key in ("buffer_size", "n_envs", "pos"))
    full = bool(arrays["full"])
    if observation_space is None:
        observation_space = _saved_box(arrays, "observation")
    if action_space is None:
        action_space = _saved_box(arrays, "action")
    kwargs = {key: value for key, value in (buffer_kwargs or {}).items() if key not in _FILE_KWARGS}
    buffer = (buffer_class or PolicyVersionedReplayBuffer)(
        buffer_size * n_envs,  # SB3 keeps buffer_size // n_envs positions
        observation_space,
        action_space,
        device=device,
        n_envs=n_envs,
        handle_timeout_termination=bool(arrays["handle_timeout_termination"]),
        store_policy_params=store_policy_params,
        **kwargs,
    )
    if buffer.buffer_size != buffer_size or not 0 <= pos < buffer_size:
        raise ValueError(f"Inconsistent buffer file: buffer_size {buffer_size}, n_envs {n_envs}, pos {pos}")
    rows = buffer_size if full else pos
    names = [*_BUFFER_ARRAYS, "policy_versions", *(_POLICY_PARAMS if store_policy_params else ())]
    for name in names:
        stored, value = getattr(buffer, name), arrays[name]
        if value.shape != (rows, *stored.shape[1:]) or value.dtype != stored.dtype:
            raise ValueError(
                f"The buffer file's {name} have shape {value.shape} and dtype {value.dtype}, the buffer for these "
                f"spaces needs shape {(rows, *stored.shape[1:])} and dtype {stored.dtype}"
            )
        stored[:rows] = value
    segments = [arrays[key].astype(np.int64).tolist() for key in ("segment_versions", "segment_starts", "segment_ends")]
    n_written = _int(arrays, "n_written")
    written_ok = n_written >= buffer_size if full else n_written == pos
    if len({len(segment) for segment in segments}) != 1 or n_written % buffer_size != pos or not written_ok:
        raise ValueError(f"Inconsistent buffer file: segments of lengths {[len(s) for s in segments]}, "
                         f"n_written {n_written}, pos {pos}")  # fmt: skip
    buffer._segment_versions, buffer._segment_starts, buffer._segment_ends = segments
    buffer.pos, buffer.full, buffer._n_written = pos, full, n_written
    buffer.current_version = _int(arrays, "current_version")
    return buffer


def model_state_from_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    """The model buffer's state saved by :func:`save_buffers` (torch tensors), None if the file has none."""
    state: dict[str, Any] = {}
    for key in arrays:
        if key.startswith(_MODEL_PREFIX):
            name, value = key[len(_MODEL_PREFIX) :], arrays[key]
            state[name] = bool(value) if name == "full" else int(value) if value.ndim == 0 else th.from_numpy(value)
    return state or None


# ---------------------------------------------------------------------------------------------- writing and reading
def _write_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    np.savez(file, **arrays)  # type: ignore[arg-type]  # (numpy's stubs: a key could be savez's allow_pickle)


def _saved_box(arrays: Mapping[str, np.ndarray], name: str) -> spaces.Box:
    low, high = arrays[f"{name}_low"], arrays[f"{name}_high"]
    return spaces.Box(low, high, dtype=low.dtype)


def _int(arrays: Mapping[str, np.ndarray], key: str) -> int:
    return int(arrays[key])


def _load_from_file(
    file: Any,
    name: str,
    observation_space: spaces.Space | None,
    action_space: spaces.Space | None,
    device: th.device | str,
    verbose: int,
    allow_pickle: bool,
    buffer_class: type[PolicyVersionedReplayBuffer] | None,
    buffer_kwargs: dict[str, Any] | None,
) -> tuple[PolicyVersionedReplayBuffer, dict[str, Any] | None]:
    if not file.seekable():
        file = io.BytesIO(file.read())
    start = file.tell()
    magic = file.read(len(_ZIP_MAGIC))
    file.seek(start)
    rebuild = functools.partial(buffer_from_arrays, observation_space=observation_space, action_space=action_space,
                                device=device, buffer_class=buffer_class, buffer_kwargs=buffer_kwargs)  # fmt: skip
    if magic != _ZIP_MAGIC:
        return _load_pickle(file, name, verbose, allow_pickle, rebuild)
    with np.load(file, allow_pickle=False) as archive:  # read lazily: each array once, straight into the buffer
        if "format" not in archive or str(archive["format"]) != FORMAT:
            raise ValueError(f"{name} is an .npz archive but not a PMAC replay buffer file (no format {FORMAT!r})")
        if _int(archive, "format_version") > FORMAT_VERSION:
            raise ValueError(f"{name} has format version {int(archive['format_version'])}: this release reads up "
                             f"to {FORMAT_VERSION}, upgrade sb3_pmac")  # fmt: skip
        try:
            buffer = rebuild(archive)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        return buffer, model_state_from_arrays(archive)


def _load_pickle(
    file: Any,
    name: str,
    verbose: int,
    allow_pickle: bool,
    rebuild: Callable[[Mapping[str, np.ndarray]], PolicyVersionedReplayBuffer],
) -> tuple[PolicyVersionedReplayBuffer, dict[str, Any] | None]:
    """
    A buffer pickled by an earlier release, with the model buffer's state it carries as an attribute, or SB3's
    ``ReplayBuffer`` converted (:func:`sb3_buffer_arrays`: one policy version); both are rebuilt from their arrays by
    ``rebuild`` (the agent's spaces and buffer class, as for the ``.npz`` files).
    """
    if not allow_pickle:
        raise ValueError(
            f"{name} is not an .npz replay buffer file: it may be a pickle (the replay buffer files of earlier "
            "sb3_pmac versions and of SB3, whose transitions load as one policy version), and reading a pickle "
            "executes the code it holds. If you trust the file, load it with allow_pickle=True "
            "(load_replay_buffer(path, allow_pickle=True); --allow-pickle on the command lines of "
            "python -m sb3_pmac.diagnostics and of python -m sb3_pmac.zoo train -i); "
            "save_replay_buffer then writes it again as .npz"
        )
    buffer = load_from_pkl(file, verbose)
    if isinstance(buffer, PolicyVersionedReplayBuffer):
        # rebuilt from its arrays like a .npz file: checked against the agent's spaces, in the agent's buffer class
        model_state = buffer.__dict__.pop("model_buffer_state", None)
        try:
            return rebuild(buffer_arrays(buffer)), model_state
        except (TypeError, ValueError) as error:
            raise type(error)(f"{name}: {error}") from None
    if not isinstance(buffer, ReplayBuffer):
        raise TypeError(f"PMAC needs a replay buffer, {name} holds {type(buffer).__name__}")
    try:
        converted = rebuild(sb3_buffer_arrays(buffer))
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name} holds SB3's {type(buffer).__name__}: {error}") from None
    return converted, None
