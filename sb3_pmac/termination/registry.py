"""
Which termination rule an env gets: the factories that build a rule from an env's parameters, the registry by env base
name, and the lookup from an env id, a gymnasium env or a VecEnv (:func:`get_termination_fn`).
"""

import warnings
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_pmac.termination.rules import (
    AntTermination,
    HopperTermination,
    HumanoidTermination,
    InvertedDoublePendulumTermination,
    InvertedPendulumTermination,
    NeverTerminate,
    TerminationFactory,
    TerminationFn,
    Walker2dTermination,
)


# ---------------------------------------------------------------------------------------------------- factories
def _range(env: gym.Env, name: str) -> tuple[float, float]:
    low, high = getattr(env, name)
    return float(low), float(high)


def _exclude_positions(env: gym.Env) -> bool:
    return bool(getattr(env, "_exclude_current_positions_from_observation", True))


def _terminate_when_unhealthy(env: gym.Env) -> bool:
    return bool(getattr(env, "_terminate_when_unhealthy", True))


def _make_hopper(env: gym.Env) -> TerminationFn:
    model = env.model  # type: ignore[attr-defined]
    return HopperTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        healthy_angle_range=_range(env, "_healthy_angle_range"),
        healthy_state_range=_range(env, "_healthy_state_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        state_dim=int(model.nq - 2 + model.nv),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_walker2d(env: gym.Env) -> TerminationFn:
    return Walker2dTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        healthy_angle_range=_range(env, "_healthy_angle_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_ant(env: gym.Env) -> TerminationFn:
    # The contact forces (v4: `_use_contact_forces`, v5: `_include_cfrc_ext_in_observation`) come after the state,
    # so only the size of the state part matters.
    model = env.model  # type: ignore[attr-defined]
    exclude = _exclude_positions(env)
    return AntTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        exclude_current_positions_from_observation=exclude,
        state_dim=int(model.nq + model.nv - 2 * exclude),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_humanoid(env: gym.Env) -> TerminationFn:
    return HumanoidTermination(
        healthy_z_range=_range(env, "_healthy_z_range"),
        exclude_current_positions_from_observation=_exclude_positions(env),
        terminate_when_unhealthy=_terminate_when_unhealthy(env),
    )


def _make_inverted_pendulum(env: gym.Env) -> TerminationFn:
    return InvertedPendulumTermination()


def _xz(vec: Any) -> tuple[float, float]:
    return float(vec[0]), float(vec[2])


def _make_inverted_double_pendulum(env: gym.Env) -> TerminationFn:
    model = getattr(env, "model", None)
    if model is None or model.nq != 3 or model.nsite < 1:
        warnings.warn(
            f"Unexpected InvertedDoublePendulum model in {env}; using the standard geometry for the termination function"
        )
        return InvertedDoublePendulumTermination()
    # Kinematic chain world -> cart (slider) -> pole (hinge) -> pole2 (hinge2) -> tip site (the env's site 0)
    tip_body = int(model.site_bodyid[0])
    pole2_body = tip_body
    pole_body = int(model.body_parentid[pole2_body])
    base_height = 0.0
    body = pole_body
    while body != 0:  # the slider only moves along x: the hinge height is the sum of the body z offsets
        base_height += float(model.body_pos[body][2])
        body = int(model.body_parentid[body])
    return InvertedDoublePendulumTermination(
        base_height=base_height,
        pole2_offset=_xz(model.body_pos[pole2_body]),
        tip_offset=_xz(model.site_pos[0]),
    )


def _make_never(env: gym.Env) -> TerminationFn:
    return NeverTerminate()


_REGISTRY: dict[str, TerminationFactory] = {
    "Hopper": _make_hopper,
    "Walker2d": _make_walker2d,
    "Ant": _make_ant,
    "Humanoid": _make_humanoid,
    "InvertedPendulum": _make_inverted_pendulum,
    "InvertedDoublePendulum": _make_inverted_double_pendulum,
    "Pendulum": _make_never,
    "HalfCheetah": _make_never,
    "Swimmer": _make_never,
    "Pusher": _make_never,
    "Reacher": _make_never,
    "HumanoidStandup": _make_never,
}


# ---------------------------------------------------------------------------------------------------- lookup
def env_base_name(env_id: str) -> str:
    """
    The registry key of an env id: the name without namespace and version, e.g. ``"Hopper-v5" -> "Hopper"``.

    :param env_id: A gymnasium env id (``"Hopper-v4"``, ``"ns/Name-v0"``) or a base name
    :return: The base name
    """
    try:
        _, name, _ = gym.envs.registration.parse_env_id(env_id)
    except gym.error.Error:
        name = env_id.rsplit("/", 1)[-1]
    return name


def register_termination_fn(env_name: str, factory: TerminationFactory) -> None:
    """
    Register (or replace) the termination function of an env.

    :param env_name: The env's base name (``"MyEnv"``); a full id (``"MyEnv-v1"``) is reduced to its base name, so the
        function applies to every version.
    :param factory: Called with the *unwrapped* env instance, returns the :data:`TerminationFn` (read the env's
        parameters there). The returned callable should be picklable (a module-level class, not a closure) if the agent
        is to be saved.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable (env -> termination function), got {factory!r}")
    _REGISTRY[env_base_name(env_name)] = factory


def registered_termination_envs() -> list[str]:
    """:return: The base names of the envs with a registered termination function"""
    return sorted(_REGISTRY)


def _unknown(name: str, warn: bool) -> NeverTerminate:
    if warn:
        warnings.warn(
            f"No termination function known for {name!r}; model rollouts will never terminate. "
            "Pass termination_fn=... (a callable (obs, action, next_obs) -> bool [N]) or register one with "
            "sb3_pmac.termination.register_termination_fn().",
            UserWarning,
            stacklevel=3,
        )
    return NeverTerminate()


def _env_names(env: gym.Env, spec: Any = None) -> list[str]:
    """
    Names to look the env up by: the base name of its spec id, else its class name as it is and without an ``Env``
    suffix (``HopperEnv`` -> ``Hopper``), so that an env made without ``gym.make`` is found under either.
    """
    for candidate in (spec, getattr(env, "spec", None), getattr(env.unwrapped, "spec", None)):
        if candidate is not None and getattr(candidate, "id", None):
            return [env_base_name(candidate.id)]
    cls_name = type(env.unwrapped).__name__
    names = [cls_name]
    if cls_name.endswith("Env") and len(cls_name) > 3:
        names.append(cls_name[: -len("Env")])
    return names


def observation_wrappers(env: gym.Env) -> list[str]:
    """
    The observation wrappers between ``env`` and its unwrapped env that change what a termination rule reads (a
    termination function reads the unwrapped env's raw observations; wrappers marked ``keeps_termination_inputs``,
    like the presets' truncation, are left out).
    """
    found = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.ObservationWrapper) and not getattr(env, "keeps_termination_inputs", False):
            found.append(type(env).__name__)
        env = env.env
    return found


def _from_gym_env(env: gym.Env, warn: bool, spec: Any = None) -> TerminationFn:
    names = _env_names(env, spec)
    name = next((name for name in names if name in _REGISTRY), None)
    if name is None:
        return _unknown(names[0], warn)
    wrappers = observation_wrappers(env)
    if wrappers:
        raise ValueError(
            f"The {name} env is wrapped in observation wrappers ({', '.join(wrappers)}): its termination rule reads raw "
            "observations, so model rollouts would terminate on transformed ones. Pass termination_fn=... that works "
            "on the wrapped observations (e.g. sb3_pmac.termination.NeverTerminate()), or normalize with "
            "VecNormalize, whose raw observations PMAC keeps for the model."
        )
    return _REGISTRY[name](env.unwrapped)


def termination_fn_from_env_id(env_id: str, env_kwargs: dict[str, Any] | None = None, warn: bool = True) -> TerminationFn:
    """
    Termination function of a registered env id: the env is built with ``gym.make(env_id, **env_kwargs)`` to read its
    parameters, then closed. Unknown names warn and return :class:`NeverTerminate` without building the env.

    :param env_id: A gymnasium env id, e.g. ``"Hopper-v5"``
    :param env_kwargs: Keyword arguments of the env (``healthy_z_range``, ``terminate_when_unhealthy``, ...)
    :param warn: Emit a ``UserWarning`` for unknown envs
    :return: The termination function
    """
    name = env_base_name(env_id)
    if name not in _REGISTRY:
        return _unknown(env_id, warn)
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        return _REGISTRY[name](env.unwrapped)
    finally:
        env.close()


def get_termination_fn(
    env: str | gym.Env | VecEnv,
    env_kwargs: dict[str, Any] | None = None,
    warn: bool = True,
) -> TerminationFn:
    """
    Termination function of an env, for model rollouts (see the module docstring).

    Looked up in the registry by the env's base name (id without namespace and ``-vN``: ``"Hopper-v4"`` and
    ``"Hopper-v5"`` both map to ``"Hopper"``), then built from the *unwrapped* env instance, whose parameters it reads.

    :param env: An env id (the env is made with ``env_kwargs`` and closed again), a gymnasium env (possibly wrapped)
        or a Stable-Baselines3 ``VecEnv`` (its first sub-env is used; with ``SubprocVecEnv`` a pickled copy of it).
    :param env_kwargs: Env keyword arguments, only used when ``env`` is an id
    :param warn: Emit a ``UserWarning`` when no termination function is known
    :return: The termination function; :class:`NeverTerminate` (with a warning) for unknown envs
    """
    if isinstance(env, str):
        return termination_fn_from_env_id(env, env_kwargs, warn)
    if isinstance(env, VecEnv):
        venv = env.unwrapped
        if isinstance(venv, DummyVecEnv):
            return _from_gym_env(venv.envs[0], warn)
        # e.g. SubprocVecEnv: the sub-env is pickled (MuJoCo envs are re-created from their constructor kwargs)
        spec = venv.get_attr("spec", indices=[0])[0]
        sub_env = venv.get_attr("unwrapped", indices=[0])[0]
        try:
            return _from_gym_env(sub_env, warn, spec)
        finally:
            sub_env.close()
    if isinstance(env, gym.Env):
        return _from_gym_env(env, warn)
    raise TypeError(f"Expected an env id, a gymnasium.Env or a VecEnv, got {type(env).__name__}")
