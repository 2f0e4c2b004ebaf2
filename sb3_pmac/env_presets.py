"""
Per-environment presets of the paper's six tasks (Table 1 and Appendix D.1) and MBPO's truncated observations.

``PMAC("Hopper-v4")`` looks the env id up here: the rollout horizon schedule and, for Ant and Humanoid, how to build
MBPO's "modified" environments (positions and velocities only: Ant 27-dim, Humanoid 45-dim observations).
Explicit constructor arguments always override a preset.
"""

import dataclasses
import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_pmac.horizon import HorizonSchedule


class TruncateObservation(gym.ObservationWrapper):
    """
    Keep only the first ``size`` entries of a flat Box observation (MBPO's truncated Humanoid-v4: qpos[2:] + qvel).

    :param env: environment with a 1-D Box observation space
    :param size: number of leading observation entries to keep
    """

    #: the kept entries are the leading ones of the raw observation: termination rules read them unchanged
    keeps_termination_inputs = True

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1 or space.shape[0] < size:
            raise ValueError(f"Cannot truncate observation space {space} to {size} entries")
        self.size = size
        self.observation_space = spaces.Box(space.low[:size], space.high[:size], dtype=space.dtype)  # type: ignore[arg-type]

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """
        :param observation: an observation of the wrapped env
        :return: its first ``size`` entries
        """
        return observation[: self.size]


@dataclasses.dataclass(frozen=True)
class EnvPreset:
    """
    Defaults for one task.

    :param horizon_schedule: PMAC's ``rollout_horizon``: ``(a, b, x, y)`` or a fixed horizon (Table 1, read as MBPO's)
    :param env_kwargs: keyword arguments for ``gym.make`` per major version (``"v4"``, ``"v5"``)
    :param truncate_observation: observation size to keep with :class:`TruncateObservation` per version
    :param total_timesteps: the paper's training budget (Figure 2)
    """

    horizon_schedule: HorizonSchedule
    env_kwargs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    truncate_observation: dict[str, int] = dataclasses.field(default_factory=dict)
    total_timesteps: int = 100_000

    def truncated_size(self, env_id: str) -> int | None:
        """The observation size kept by MBPO's truncation for this id's version, or None."""
        _, version = split_env_id(env_id)
        return self.truncate_observation.get(version) if version is not None else None


HUMANOID_V5_TRUNCATED = {
    "include_cinert_in_observation": False,
    "include_cvel_in_observation": False,
    "include_qfrc_actuator_in_observation": False,
    "include_cfrc_ext_in_observation": False,
}

#: Presets by environment name (without version). Horizons: Hopper 1 -> 15 over epochs 20 -> 100, Ant 1 -> 25 over
#: 20 -> 100, Humanoid 1 -> 25 over 20 -> 300, the others 1 (MBPO's schedules, which the paper's Table 1 reuses).
ENV_PRESETS: dict[str, EnvPreset] = {
    "Hopper": EnvPreset(horizon_schedule=(20, 100, 1, 15), total_timesteps=125_000),
    "Walker2d": EnvPreset(horizon_schedule=1, total_timesteps=300_000),
    "HalfCheetah": EnvPreset(horizon_schedule=1, total_timesteps=400_000),
    "Ant": EnvPreset(
        horizon_schedule=(20, 100, 1, 25),
        env_kwargs={"v5": {"include_cfrc_ext_in_observation": False}},  # Ant-v4 is already 27-dim
        total_timesteps=300_000,
    ),
    "Humanoid": EnvPreset(
        horizon_schedule=(20, 300, 1, 25),
        env_kwargs={"v5": HUMANOID_V5_TRUNCATED},
        truncate_observation={"v4": 45},
        total_timesteps=300_000,
    ),
    "Pusher": EnvPreset(horizon_schedule=1, total_timesteps=125_000),
}


def split_env_id(env_id: str) -> tuple[str, str | None]:
    """``"ALE/Foo-v5"`` -> (``"Foo"``, ``"v5"``); ``"Hopper"`` -> (``"Hopper"``, None)."""
    name = env_id.split("/")[-1]
    match = re.fullmatch(r"(.+)-(v\d+)", name)
    if match is None:
        return name, None
    return match.group(1), match.group(2)


#: How to install what gymnasium's MuJoCo envs need, with the bounds sb3-pmac is tested with
MUJOCO_EXTRA = "pip install 'sb3-pmac[mujoco]'"


def mujoco_installed() -> bool:
    """Whether the ``mujoco`` package imports (gymnasium's MuJoCo envs need it)."""
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """
    ``gym.make(env_id, **kwargs)``; when the env needs MuJoCo and MuJoCo is not installed, gymnasium's
    ``DependencyNotInstalled`` error says to install sb3-pmac's ``[mujoco]`` extra.
    """
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        if not mujoco_installed():
            raise gym.error.DependencyNotInstalled(
                f"{env_id} needs MuJoCo, which is not installed: install sb3-pmac's MuJoCo extra, {MUJOCO_EXTRA} "
                f"(or pip install -e '.[mujoco]' in a source checkout). gymnasium said: {error}"
            ) from error
        raise


def get_preset(env_id: str) -> EnvPreset | None:
    """
    The preset of an env id (any version), or ``None``. The presets are those of gymnasium's own MuJoCo tasks: an id
    with a namespace (``"my_ns/Humanoid-v4"``, another package's env) has none, whatever its name.
    """
    if "/" in env_id:
        return None
    name, _ = split_env_id(env_id)
    return ENV_PRESETS.get(name)


def make_preset_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **make_kwargs: Any) -> gym.Env:
    """
    ``gym.make(env_id)`` with the preset's env kwargs and observation truncation (user ``env_kwargs`` win; with
    ``exclude_current_positions_from_observation=False`` the truncation keeps the two x, y positions too: Humanoid-v4
    47 entries, ``qpos`` and ``qvel``).

    Use the same function for training and evaluation envs so that both see the same observations.

    :param env_id: registered environment id
    :param env_kwargs: extra keyword arguments for ``gym.make`` (override the preset's)
    :param make_kwargs: further keyword arguments for ``gym.make`` (e.g. ``render_mode``)
    """
    preset = get_preset(env_id)
    _, version = split_env_id(env_id)
    kwargs: dict[str, Any] = {}
    if preset is not None and version is not None:
        kwargs.update(preset.env_kwargs.get(version, {}))
    kwargs.update(env_kwargs or {})
    kwargs.update(make_kwargs)
    env = make_env(env_id, **kwargs)
    if preset is not None and version is not None and version in preset.truncate_observation:
        size = preset.truncate_observation[version]
        if kwargs.get("exclude_current_positions_from_observation") is False:
            size += 2  # the x, y positions come first: still every position and velocity, none of the rest
        env = TruncateObservation(env, size)
    return env


def env_spec_id(env: Any) -> str | None:
    """The spec id of a gymnasium env (possibly wrapped) or of a VecEnv's first env, if it has one."""
    try:
        spec = env.get_attr("spec", indices=[0])[0] if hasattr(env, "get_attr") else getattr(env, "spec", None)
    except (AttributeError, IndexError):
        return None
    return getattr(spec, "id", None)


def apply_presets(
    algo_name: str, env: Any, rollout_horizon: HorizonSchedule | None, use_presets: bool, verbose: int
) -> tuple[Any, str | None, HorizonSchedule]:
    """
    The env and horizon schedule PMAC's constructor uses: an env id is made with its preset (:func:`make_preset_env`)
    when ``use_presets``, and the rollout horizon defaults to the preset's schedule of the env's task (id given as a
    string or the spec id of the env passed), else 1. With ``verbose >= 1`` it prints what was applied.

    :param algo_name: the algorithm's name, for the message
    :param env: an env id, an env, or None
    :param rollout_horizon: the user's horizon schedule (``None``: the preset's)
    :param use_presets: apply the task's preset when its id is known
    :param verbose: 1 or more prints the presets applied
    :return: the env (made when an id was given), the id given as a string (else None) and the horizon schedule
    """
    env_id = env if isinstance(env, str) else None
    known_id = env_id if env_id is not None else env_spec_id(env)
    preset = get_preset(known_id) if known_id is not None and use_presets else None
    if env_id is not None:
        if verbose >= 1:
            print(f"Creating environment from the given name '{env_id}'")  # (SB3's line)
        make = make_preset_env if use_presets else make_env
        try:  # as SB3 makes an env id: rendered to arrays, so that the training env can be recorded (VecVideoRecorder)
            env = make(env_id, render_mode="rgb_array")
        except TypeError:  # an env without render modes
            env = make(env_id)
    applied = []
    if rollout_horizon is None:
        rollout_horizon = preset.horizon_schedule if preset is not None else 1
        if preset is not None:
            applied.append(f"rollout_horizon={rollout_horizon}")
    if preset is not None and env_id is not None and preset.truncated_size(env_id) is not None:
        applied.append(f"observations truncated to {preset.truncated_size(env_id)} entries (MBPO's)")
    if verbose >= 1 and preset is not None:
        summary = ", ".join(applied) or "none"
        print(f"{algo_name}: presets of {known_id} applied: {summary} (use_presets=False to turn off)")
    return env, env_id, rollout_horizon
