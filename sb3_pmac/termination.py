"""
Termination functions for model rollouts.

PMAC, like MBPO, trains the policy on short *model rollouts*: starting from real states, the learned dynamics model
predicts ``next_obs`` (and the reward) for the current policy's action, step after step. The model does not predict
``done``; instead, as in MBPO's "static" functions, ``done`` is computed from the predicted transition by a known,
hand-written *termination function* that mirrors the real environment's ``terminated`` flag (e.g. "the hopper fell").
A rollout branch stops at the first predicted termination, and the critic targets of the generated transitions are
not bootstrapped past it. A wrong termination function therefore biases the value estimates, so the functions here
read every relevant parameter from the env instance itself (``healthy_z_range``, ``terminate_when_unhealthy``,
``exclude_current_positions_from_observation``, the pole lengths of the MuJoCo model, ...) instead of copying the
default constants: envs made with custom kwargs are honoured.

A termination function has the signature :data:`TerminationFn`: ``fn(obs, action, next_obs) -> done`` on batches
``[N, obs_dim]``, ``[N, action_dim]``, ``[N, obs_dim]``, returning a boolean ``[N]``. The functions below accept
torch tensors (on any device; the result is a ``torch.bool`` tensor on the same device) and numpy arrays (the result
is then a numpy ``bool`` array). They only look at ``next_obs``. They are small picklable classes (not closures),
because they are saved with the agent.

Covered: the gymnasium MuJoCo ``v4`` and ``v5`` envs: Hopper, Walker2d, Ant, Humanoid (healthy ranges),
InvertedPendulum, InvertedDoublePendulum (pole-tip height) and HalfCheetah, Swimmer, Pusher, Reacher,
HumanoidStandup (never terminate). :func:`get_termination_fn` looks the function up by the env's base name (the id
without ``-vN``); :func:`register_termination_fn` adds your own. For an unknown env it warns and returns
:class:`NeverTerminate`. Anywhere a :data:`TerminationFn` is expected, any callable with that signature may be used.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

TerminationFn = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]
"""``fn(obs [N, o], action [N, a], next_obs [N, o]) -> done [N] (bool)``; numpy arrays in, numpy bool out."""

TerminationFactory = Callable[[gym.Env], TerminationFn]
"""Builds the termination function of an env from its *unwrapped* instance (to read the env's parameters)."""

ArrayT = TypeVar("ArrayT", th.Tensor, np.ndarray)


def _as_tensor(x: th.Tensor | np.ndarray) -> th.Tensor:
    return x if isinstance(x, th.Tensor) else th.as_tensor(np.asarray(x))


def _like_input(done: th.Tensor, like: th.Tensor | np.ndarray) -> Any:
    """Return ``done`` as a numpy bool array if the input was not a torch tensor."""
    if isinstance(like, th.Tensor):
        return done
    return done.cpu().numpy().astype(bool)


def _check_obs_dim(next_obs: th.Tensor, min_dim: int, name: str) -> None:
    if next_obs.shape[-1] < min_dim:
        raise ValueError(
            f"{name}: expected observations with at least {min_dim} entries in the last dimension, got shape "
            f"{tuple(next_obs.shape)}. Was the termination function built for another env or observation layout?"
        )


def _in_open_range(x: th.Tensor, low: float, high: float) -> th.Tensor:
    """``low < x < high`` elementwise (NaN -> False), as in the envs' ``is_healthy``."""
    return (x > low) & (x < high)


@dataclass
class NeverTerminate:
    """
    Termination function that never terminates (Pendulum, HalfCheetah, Swimmer, Pusher, Reacher, HumanoidStandup, envs
    made with ``terminate_when_unhealthy=False``; also the documented fallback for unknown envs).
    """

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        done = th.zeros(x.shape[:-1], dtype=th.bool, device=x.device)
        return _like_input(done, next_obs)


@dataclass
class HopperTermination:
    """
    Hopper (v4/v5): unhealthy (terminated) unless ``z`` is in ``healthy_z_range``, the torso angle in
    ``healthy_angle_range`` and every entry of the state ``qpos[2:], qvel`` in ``healthy_state_range`` (open
    intervals, as in the env).

    Observation: ``qpos[1:]`` (``qpos`` if positions are not excluded) followed by ``clip(qvel, -10, 10)``.
    The env checks the *unclipped* velocities, only the clipped ones are visible here. With the default
    ``healthy_state_range=(-100, 100)`` this only matters when a velocity exceeds 100 in magnitude (the env
    terminates, this function does not), which does not occur in practice; for ranges within [-10, 10] it is exact.

    :param healthy_z_range: The env's ``healthy_z_range``
    :param healthy_angle_range: The env's ``healthy_angle_range``
    :param healthy_state_range: The env's ``healthy_state_range``
    :param exclude_current_positions_from_observation: Whether the x position is left out of the observation
    :param state_dim: Size of the checked state ``qpos[2:], qvel`` (``nq - 2 + nv``)
    :param terminate_when_unhealthy: If False, never terminate
    """

    healthy_z_range: tuple[float, float] = (0.7, float("inf"))
    healthy_angle_range: tuple[float, float] = (-0.2, 0.2)
    healthy_state_range: tuple[float, float] = (-100.0, 100.0)
    exclude_current_positions_from_observation: bool = True
    state_dim: int = 10
    terminate_when_unhealthy: bool = True

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        offset = 0 if self.exclude_current_positions_from_observation else 1
        _check_obs_dim(x, offset + 1 + self.state_dim, type(self).__name__)
        if not self.terminate_when_unhealthy:
            return NeverTerminate()(obs, action, next_obs)
        z, angle = x[..., offset], x[..., offset + 1]
        state = x[..., offset + 1 : offset + 1 + self.state_dim]
        healthy = (
            _in_open_range(z, *self.healthy_z_range)
            & _in_open_range(angle, *self.healthy_angle_range)
            & _in_open_range(state, *self.healthy_state_range).all(dim=-1)
        )
        return _like_input(~healthy, next_obs)


@dataclass
class Walker2dTermination:
    """
    Walker2d (v4/v5): unhealthy (terminated) unless ``z`` is in ``healthy_z_range`` and the torso angle in
    ``healthy_angle_range`` (open intervals). Observation: ``qpos[1:]`` (or ``qpos``), then ``clip(qvel, -10, 10)``.

    :param healthy_z_range: The env's ``healthy_z_range``
    :param healthy_angle_range: The env's ``healthy_angle_range``
    :param exclude_current_positions_from_observation: Whether the x position is left out of the observation
    :param terminate_when_unhealthy: If False, never terminate
    """

    healthy_z_range: tuple[float, float] = (0.8, 2.0)
    healthy_angle_range: tuple[float, float] = (-1.0, 1.0)
    exclude_current_positions_from_observation: bool = True
    terminate_when_unhealthy: bool = True

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        offset = 0 if self.exclude_current_positions_from_observation else 1
        _check_obs_dim(x, offset + 2, type(self).__name__)
        if not self.terminate_when_unhealthy:
            return NeverTerminate()(obs, action, next_obs)
        healthy = _in_open_range(x[..., offset], *self.healthy_z_range) & _in_open_range(
            x[..., offset + 1], *self.healthy_angle_range
        )
        return _like_input(~healthy, next_obs)


@dataclass
class AntTermination:
    """
    Ant (v4/v5): unhealthy (terminated) unless the state is finite and the torso height is in the **closed** interval
    ``healthy_z_range``.

    Observation: ``qpos[2:]`` (or ``qpos``), ``qvel``, then optionally the clipped contact forces (v4:
    ``use_contact_forces=True``; v5: ``include_cfrc_ext_in_observation=True``, the default, 105 dims). So ``z`` is
    ``obs[0]`` (``obs[2]`` with positions included) and the finiteness check covers the first ``state_dim`` entries
    (with positions excluded the env also checks the x-y position, which the observation does not contain).

    :param healthy_z_range: The env's ``healthy_z_range``
    :param exclude_current_positions_from_observation: Whether the x-y position is left out of the observation
    :param state_dim: Number of leading observation entries holding ``qpos`` (minus x-y if excluded) and ``qvel``
    :param terminate_when_unhealthy: If False, never terminate
    """

    healthy_z_range: tuple[float, float] = (0.2, 1.0)
    exclude_current_positions_from_observation: bool = True
    state_dim: int = 27
    terminate_when_unhealthy: bool = True

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        _check_obs_dim(x, self.state_dim, type(self).__name__)
        if not self.terminate_when_unhealthy:
            return NeverTerminate()(obs, action, next_obs)
        z = x[..., 0 if self.exclude_current_positions_from_observation else 2]
        min_z, max_z = self.healthy_z_range
        healthy = th.isfinite(x[..., : self.state_dim]).all(dim=-1) & (z >= min_z) & (z <= max_z)
        return _like_input(~healthy, next_obs)


@dataclass
class HumanoidTermination:
    """
    Humanoid (v4/v5): unhealthy (terminated) unless the torso height ``qpos[2]`` is in ``healthy_z_range`` (open).

    ``z`` is ``obs[0]`` when the x-y position is excluded from the observation (the default), else ``obs[2]``. Only this
    entry is read, so the function works on the full observation (v4: 376 dims, v5: 348) as well as on MBPO's
    truncated 45-dim ``qpos[2:], qvel`` observation (v5 kwargs ``include_cinert_in_observation=False``,
    ``include_cvel_in_observation=False``, ``include_qfrc_actuator_in_observation=False``,
    ``include_cfrc_ext_in_observation=False``, or an observation wrapper for v4).

    :param healthy_z_range: The env's ``healthy_z_range``
    :param exclude_current_positions_from_observation: Whether the x-y position is left out of the observation
    :param terminate_when_unhealthy: If False, never terminate
    """

    healthy_z_range: tuple[float, float] = (1.0, 2.0)
    exclude_current_positions_from_observation: bool = True
    terminate_when_unhealthy: bool = True

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        index = 0 if self.exclude_current_positions_from_observation else 2
        _check_obs_dim(x, index + 1, type(self).__name__)
        if not self.terminate_when_unhealthy:
            return NeverTerminate()(obs, action, next_obs)
        healthy = _in_open_range(x[..., index], *self.healthy_z_range)
        return _like_input(~healthy, next_obs)


@dataclass
class InvertedPendulumTermination:
    """
    InvertedPendulum (v4/v5): terminated if any observation entry is not finite or the pole angle ``|obs[1]|``
    exceeds ``max_angle`` (0.2, hard-coded in the env). Observation: ``qpos`` (cart position, pole angle), ``qvel``.

    :param max_angle: Largest healthy absolute pole angle (radians)
    """

    max_angle: float = 0.2

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        _check_obs_dim(x, 2, type(self).__name__)
        done = ~th.isfinite(x).all(dim=-1) | (x[..., 1].abs() > self.max_angle)
        return _like_input(done, next_obs)


@dataclass
class InvertedDoublePendulumTermination:
    """
    InvertedDoublePendulum (v4/v5): terminated when the height ``y`` of the pole tip (the model's first site) is
    ``<= min_tip_height`` (1, hard-coded in the env).

    Observation: cart ``x``, ``sin(theta1), sin(theta2), cos(theta1), cos(theta2)``, clipped velocities and constraint
    forces. The hinges rotate about the y axis, so in the x-z plane an offset ``(px, pz)`` in a link's frame rotated by
    the absolute angle ``phi`` has height ``pz * cos(phi) - px * sin(phi)``, with ``phi1 = theta1`` and
    ``phi2 = theta1 + theta2``::

        y = base_height + (pole2_offset rotated by phi1) + (tip_offset rotated by phi2)

    The offsets are read from the env's MuJoCo model (defaults: the standard model, 0.6 m per pole, base at 0).
    Equal to the env's ``site_xpos`` up to floating-point rounding (~1e-16).

    :param base_height: World height of the first hinge (cart body + pole body offsets)
    :param pole2_offset: ``(x, z)`` position of the second hinge in the first pole's frame
    :param tip_offset: ``(x, z)`` position of the tip site in the second pole's frame
    :param min_tip_height: Terminate when the tip height is at most this
    """

    base_height: float = 0.0
    pole2_offset: tuple[float, float] = (0.0, 0.6)
    tip_offset: tuple[float, float] = (0.0, 0.6)
    min_tip_height: float = 1.0

    def tip_height(self, next_obs: th.Tensor) -> th.Tensor:
        """
        :param next_obs: Observations ``[..., obs_dim]`` (torch tensor)
        :return: The height of the pole tip ``[...]``
        """
        sin1, sin2, cos1, cos2 = (next_obs[..., i] for i in range(1, 5))
        # angle sum: phi2 = theta1 + theta2
        sin12 = sin1 * cos2 + cos1 * sin2
        cos12 = cos1 * cos2 - sin1 * sin2
        (px1, pz1), (px2, pz2) = self.pole2_offset, self.tip_offset
        return self.base_height + (pz1 * cos1 - px1 * sin1) + (pz2 * cos12 - px2 * sin12)

    def __call__(self, obs: ArrayT, action: ArrayT, next_obs: ArrayT) -> ArrayT:
        x = _as_tensor(next_obs)
        _check_obs_dim(x, 5, type(self).__name__)
        done = ~(self.tip_height(x) > self.min_tip_height)  # NaN -> terminated
        return _like_input(done, next_obs)


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
