"""
The termination rules of the gymnasium MuJoCo tasks for model rollouts: ``fn(obs, action, next_obs) -> done``, small
picklable classes that read the env's own parameters (see :mod:`sb3_pmac.termination`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th

TerminationFn = Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]
"""``fn(obs [N, o], action [N, a], next_obs [N, o]) -> done [N] (bool)``; numpy arrays in, numpy bool out."""

TerminationFactory = Callable[[gym.Env], TerminationFn]
"""Builds the termination function of an env from its *unwrapped* instance (to read the env's parameters)."""

ArrayT = TypeVar("ArrayT", th.Tensor, np.ndarray)


def terminations(termination_fn: TerminationFn, obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    ``termination_fn(obs, action, next_obs)`` as a bool tensor ``[N]`` on ``obs``'s device, or a ``ValueError`` that
    says what the function returned when it does not give one value per transition (e.g. ``done.any()``, or a
    per-dimension ``[N, obs_dim]`` mask).

    :param termination_fn: the rule
    :param obs: observations ``[N, o]``
    :param action: actions ``[N, a]``, scaled to [-1, 1] (the replay buffer's and the model's scale)
    :param next_obs: next observations ``[N, o]``
    """
    done = th.as_tensor(termination_fn(obs, action, next_obs), device=obs.device)
    if done.numel() != len(obs):
        raise ValueError(
            f"The termination function {termination_fn!r} returned shape {tuple(done.shape)} for {len(obs)} "
            f"transitions: it must return one bool per transition ([N] or [N, 1])"
        )
    return done.reshape(-1).bool()


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


#: Hopper's observation clips the velocities to this magnitude
HOPPER_VELOCITY_CLIP = 10.0


@dataclass
class HopperTermination:
    """
    Hopper (v4/v5): unhealthy (terminated) unless ``z`` is in ``healthy_z_range``, the torso angle in
    ``healthy_angle_range`` and every entry of the state ``qpos[2:], qvel`` in ``healthy_state_range`` (open
    intervals, as in the env).

    Observation: ``qpos[1:]`` (``qpos`` if positions are not excluded) followed by ``clip(qvel, -10, 10)``
    (:data:`HOPPER_VELOCITY_CLIP`).
    The env checks the *unclipped* velocities, only the clipped ones are visible here. With the default
    ``healthy_state_range=(-100, 100)`` this only matters when a velocity exceeds 100 in magnitude (the env
    terminates, this function does not), which does not occur in practice; for ranges within [-10, 10] it is exact.
    A range between 10 and 100 with the z and angle checks turned off (``healthy_z_range``/``healthy_angle_range``
    infinite) lets the hopper spin fast enough to cross it: this rule then misses those terminations (316 of 316 in
    5000 random steps at ``(-12, 12)``); with the default z and angle ranges the hopper falls first.

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

    The offsets are read from the env's MuJoCo model (defaults: the standard model, 0.6 m per pole, base at 0). This
    is the tip height of the final joint positions; the env tests ``site_xpos`` as computed during the step, which
    with MuJoCo's RK4 integrator lags by one integration stage: the two differ by up to ~6e-5 on the standard model
    (one step in about 5000 random steps lands between them at the threshold).

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
