"""
Termination functions must reproduce the real env's ``terminated`` flag on every step.

The agreement tests run random actions in the real MuJoCo envs (v4 and v5, 10^4 steps each), collect
``(obs, action, next_obs, terminated)`` and apply the termination function to the whole batch at the end.
"""

import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch as th
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from gymnasium.wrappers import DtypeObservation, FlattenObservation, NormalizeObservation, TransformObservation
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    VecMonitor,
    VecNormalize,
)
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from sb3_pmac import termination
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.termination import (
    AntTermination,
    HopperTermination,
    HumanoidTermination,
    InvertedDoublePendulumTermination,
    InvertedPendulumTermination,
    NeverTerminate,
    Walker2dTermination,
    env_base_name,
    get_termination_fn,
    observation_wrappers,
    register_termination_fn,
    termination_fn_from_env_id,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date.*", "ignore::DeprecationWarning")

N_STEPS = 10_000
EXPECTED_CLASS = {
    "Hopper": HopperTermination,
    "Walker2d": Walker2dTermination,
    "Ant": AntTermination,
    "Humanoid": HumanoidTermination,
    "InvertedPendulum": InvertedPendulumTermination,
    "InvertedDoublePendulum": InvertedDoublePendulumTermination,
    "HalfCheetah": NeverTerminate,
}
# Humanoid-v5 with MBPO's truncated observation qpos[2:], qvel (45 dims)
HUMANOID_45_KWARGS = {
    "include_cinert_in_observation": False,
    "include_cvel_in_observation": False,
    "include_qfrc_actuator_in_observation": False,
    "include_cfrc_ext_in_observation": False,
}


def make(env_id: str, **kwargs: Any) -> gym.Env:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return gym.make(env_id, **kwargs)


def collect(env: gym.Env, n_steps: int, seed: int = 0, max_episode_steps: int = 1000) -> dict[str, np.ndarray]:
    """Random actions in the real env (the unwrapped one, for speed: it computes ``terminated`` itself)."""
    env.action_space.seed(seed)
    space = env.action_space
    actions = np.random.default_rng(seed).uniform(space.low, space.high, size=(n_steps, *space.shape))
    u = env.unwrapped
    obs, _ = u.reset(seed=seed)
    data = {
        "obs": np.empty((n_steps, obs.shape[0])),
        "action": actions,
        "next_obs": np.empty((n_steps, obs.shape[0])),
        "terminated": np.empty(n_steps, dtype=bool),
    }
    episode_steps = 0
    for i in range(n_steps):
        data["obs"][i] = obs
        obs, _, terminated, _, _ = u.step(actions[i])
        data["next_obs"][i] = obs
        data["terminated"][i] = terminated
        episode_steps += 1
        if terminated or episode_steps >= max_episode_steps:
            obs, _ = u.reset()
            episode_steps = 0
    env.close()
    return data


def apply(fn: Any, data: dict[str, np.ndarray], obs_slice: slice = slice(None)) -> np.ndarray:
    """Apply ``fn`` to torch and numpy versions of the batch; both must give the same answer."""
    obs, next_obs = data["obs"][:, obs_slice], data["next_obs"][:, obs_slice]
    done_np = fn(obs, data["action"], next_obs)
    done_th = fn(th.as_tensor(obs), th.as_tensor(data["action"]), th.as_tensor(next_obs))
    assert isinstance(done_np, np.ndarray) and done_np.dtype == bool and done_np.shape == (len(obs),)
    assert isinstance(done_th, th.Tensor) and done_th.dtype == th.bool and done_th.shape == (len(obs),)
    np.testing.assert_array_equal(done_np, done_th.numpy())
    return done_np


def assert_agrees(fn: Any, data: dict[str, np.ndarray], obs_slice: slice = slice(None)) -> np.ndarray:
    done = apply(fn, data, obs_slice)
    mismatch = np.flatnonzero(done != data["terminated"])
    assert len(mismatch) == 0, (
        f"{fn} disagrees with the env on {len(mismatch)}/{len(done)} steps, first: {mismatch[:5]} "
        f"(fn={done[mismatch[:5]]}, env={data['terminated'][mismatch[:5]]})"
    )
    return done


@pytest.mark.parametrize("version", ["v4", "v5"])
@pytest.mark.parametrize("name", list(EXPECTED_CLASS))
def test_agrees_with_env(name: str, version: str) -> None:
    env_id = f"{name}-{version}"
    env = make(env_id)
    fn = get_termination_fn(env)
    assert type(fn) is EXPECTED_CLASS[name]
    data = collect(env, N_STEPS)
    assert_agrees(fn, data)
    n_terminated = data["terminated"].sum()
    if name == "HalfCheetah":
        assert n_terminated == 0
    else:
        assert n_terminated >= 10, f"too few terminations in {env_id} to test anything: {n_terminated}"


# ---------------------------------------------------------------------------------------------------- env kwargs
def test_hopper_custom_healthy_z_range() -> None:
    kwargs = {"healthy_z_range": (1.2, float("inf"))}
    fn = get_termination_fn("Hopper-v5", env_kwargs=kwargs)
    assert fn.healthy_z_range == (1.2, float("inf"))
    data = collect(make("Hopper-v5", **kwargs), 3000)
    done = assert_agrees(fn, data)
    # the default function would miss terminations: the kwargs matter
    default_done = apply(get_termination_fn("Hopper-v5"), data)
    assert (done & ~default_done).sum() > 0
    assert not (default_done & ~done).any()


def test_hopper_custom_state_and_angle_range() -> None:
    # a state range inside [-10, 10] is checked exactly despite the velocity clipping of the observation
    kwargs = {"healthy_state_range": (-5.0, 5.0), "healthy_angle_range": (-0.1, 0.3)}
    data = collect(make("Hopper-v5", **kwargs), 3000)
    done = assert_agrees(get_termination_fn("Hopper-v5", env_kwargs=kwargs), data)
    assert (done != apply(get_termination_fn("Hopper-v5"), data)).any()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v4", "Ant-v5", "Humanoid-v4"])
def test_terminate_when_unhealthy_false(env_id: str) -> None:
    kwargs = {"terminate_when_unhealthy": False}
    fn = get_termination_fn(env_id, env_kwargs=kwargs)
    data = collect(make(env_id, **kwargs), 2000 if env_id.startswith("Hopper") else 500)
    done = assert_agrees(fn, data)
    assert not done.any()
    if env_id.startswith("Hopper"):
        # the same states are unhealthy: only the flag prevents termination
        assert apply(get_termination_fn(env_id), data).any()


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Hopper-v5", "Walker2d-v5", "Ant-v4", "Ant-v5", "Humanoid-v5"])
def test_positions_included(env_id: str) -> None:
    kwargs: dict[str, Any] = {"exclude_current_positions_from_observation": False}
    if env_id.startswith("Ant"):
        kwargs["healthy_z_range"] = (0.3, 0.9)  # more terminations with random actions
    env = make(env_id, **kwargs)
    n_skipped = 1 if env_id.startswith(("Hopper", "Walker")) else 2
    default_env = make(env_id)
    assert env.observation_space.shape[0] == default_env.observation_space.shape[0] + n_skipped
    default_env.close()
    fn = get_termination_fn(env)
    assert fn.exclude_current_positions_from_observation is False
    data = collect(env, 2000 if env_id.startswith("Humanoid") else 3000)
    assert_agrees(fn, data)
    assert data["terminated"].sum() >= 5


def test_walker_custom_ranges() -> None:
    kwargs = {"healthy_z_range": (0.9, 1.5), "healthy_angle_range": (-0.5, 0.5)}
    data = collect(make("Walker2d-v5", **kwargs), 3000)
    done = assert_agrees(get_termination_fn("Walker2d-v5", env_kwargs=kwargs), data)
    assert (done & ~apply(get_termination_fn("Walker2d-v5"), data)).any()


@pytest.mark.parametrize(
    "env_id, kwargs, obs_dim",
    [
        ("Ant-v5", {"include_cfrc_ext_in_observation": False}, 27),
        ("Ant-v5", {"include_cfrc_ext_in_observation": True}, 105),
        ("Ant-v4", {"use_contact_forces": True}, 111),
        ("Ant-v4", {}, 27),
    ],
)
def test_ant_observation_layouts(env_id: str, kwargs: dict[str, Any], obs_dim: int) -> None:
    kwargs = {**kwargs, "healthy_z_range": (0.3, 0.8)}  # tighter: more terminations with random actions
    env = make(env_id, **kwargs)
    assert env.observation_space.shape == (obs_dim,)
    fn = get_termination_fn(env)
    assert fn.healthy_z_range == (0.3, 0.8) and fn.state_dim == 27
    data = collect(env, 3000)
    assert_agrees(fn, data)
    assert data["terminated"].sum() >= 5
    # a non-finite state entry terminates, a non-finite entry after the state part (contact forces) is ignored
    next_obs = np.zeros((3, obs_dim))
    next_obs[:, 0] = 0.5
    next_obs[1, 26] = np.nan
    if obs_dim > 27:
        next_obs[2, 27] = np.inf
    np.testing.assert_array_equal(fn(next_obs, None, next_obs), [False, True, False])


def test_humanoid_truncated_observation() -> None:
    # v5: MBPO's 45-dim observation through env kwargs
    env = make("Humanoid-v5", **HUMANOID_45_KWARGS)
    assert env.observation_space.shape == (45,)
    fn = get_termination_fn("Humanoid-v5", env_kwargs={**HUMANOID_45_KWARGS, "healthy_z_range": (1.1, 2.0)})
    data = collect(make("Humanoid-v5", **HUMANOID_45_KWARGS, healthy_z_range=(1.1, 2.0)), 2000)
    assert_agrees(fn, data)
    assert data["terminated"].sum() >= 10
    # v4 has no such kwargs: the first 45 entries of its full observation are qpos[2:], qvel (what a wrapper keeps)
    data = collect(make("Humanoid-v4"), 2000, seed=1)
    fn = get_termination_fn("Humanoid-v4")
    assert_agrees(fn, data, obs_slice=slice(0, 45))
    assert_agrees(fn, data)


def test_inverted_double_pendulum_geometry_from_model(tmp_path: Path) -> None:
    """Pole lengths and base height are read from the MuJoCo model: a model with other lengths still agrees."""
    xml = (Path(gym.envs.mujoco.__file__).parent / "assets" / "inverted_double_pendulum.xml").read_text()
    xml = xml.replace('<body name="cart" pos="0 0 0">', '<body name="cart" pos="0 0 0.1">')
    xml = xml.replace('<body name="pole2" pos="0 0 0.6">', '<body name="pole2" pos="0 0 0.55">')
    xml = xml.replace('<site name="tip" pos="0 0 .6"', '<site name="tip" pos="0.05 0 .7"')
    path = tmp_path / "idp.xml"
    path.write_text(xml)
    env = make("InvertedDoublePendulum-v5", xml_file=str(path))
    fn = get_termination_fn(env)
    assert fn.base_height == pytest.approx(0.1)
    assert fn.pole2_offset == pytest.approx((0.0, 0.55)) and fn.tip_offset == pytest.approx((0.05, 0.7))
    # the tip height matches MuJoCo's forward kinematics for arbitrary angles
    model = env.unwrapped.model
    mj_data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    for _ in range(20):
        mj_data.qpos[:] = rng.uniform(-np.pi, np.pi, size=3)
        mujoco.mj_kinematics(model, mj_data)
        obs = np.concatenate([mj_data.qpos[:1], np.sin(mj_data.qpos[1:]), np.cos(mj_data.qpos[1:])])
        assert fn.tip_height(th.as_tensor(obs)).item() == pytest.approx(mj_data.site_xpos[0][2], abs=1e-12)
    data = collect(env, 3000)
    assert_agrees(fn, data)
    assert data["terminated"].sum() >= 10
    assert (apply(InvertedDoublePendulumTermination(), data) != data["terminated"]).any()


@pytest.mark.parametrize(
    "old, new, problem",
    [
        (
            '<joint axis="0 1 0" name="hinge2" pos="0 0 0"',
            '<joint axis="0 1 0" name="hinge2" pos="0 0 -0.2"',
            "not at its origin",
        ),
        ('<body name="pole" pos="0 0 0">', '<body name="pole" pos="0 0 0" euler="0 20 0">', "rotated body"),
        ('<joint axis="0 1 0" name="hinge2"', '<joint axis="0 -1 0" name="hinge2"', "other than \\+y"),
    ],
)
def test_inverted_double_pendulum_geometry_the_rule_cannot_read_warns(tmp_path: Path, old, new, problem) -> None:
    """A model whose hinges or bodies the planar rule does not describe: said at once (it disagrees with the env)."""
    import gymnasium.envs.mujoco  # noqa: F401  (gym.envs.mujoco below)

    xml = (Path(gym.envs.mujoco.__file__).parent / "assets" / "inverted_double_pendulum.xml").read_text()
    assert old in xml
    (tmp_path / "idp.xml").write_text(xml.replace(old, new))
    env = make("InvertedDoublePendulum-v5", xml_file=str(tmp_path / "idp.xml"))
    with pytest.warns(UserWarning, match=f"InvertedDoublePendulum model .* with .*{problem}.*termination_fn="):
        fn = get_termination_fn(env)
    data = collect(env, 2000)
    assert (apply(fn, data) != data["terminated"]).sum() > 20  # what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_termination_fn(make("InvertedDoublePendulum-v5"))  # the standard model: no warning


# ---------------------------------------------------------------------------------------------------- API
class UnknownToyEnv(PendulumEnv):
    """A continuous env no termination function is registered for."""


def test_unknown_env_warns_and_never_terminates() -> None:
    gym.register("UnknownToy-v0", entry_point=UnknownToyEnv, max_episode_steps=200)
    message = "No termination function known for 'UnknownToy-v0'.*never terminate.*termination_fn="
    with pytest.warns(UserWarning, match=message):
        fn = get_termination_fn("UnknownToy-v0")
    assert isinstance(fn, NeverTerminate)
    np.testing.assert_array_equal(fn(np.zeros((4, 3)), np.zeros((4, 1)), np.full((4, 3), np.nan)), np.zeros(4, dtype=bool))
    # also for an env instance, and silently with warn=False
    env = make("UnknownToy-v0")
    with pytest.warns(UserWarning, match="UnknownToy"):
        assert isinstance(get_termination_fn(env), NeverTerminate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(get_termination_fn(env, warn=False), NeverTerminate)
    with pytest.raises(TypeError):
        get_termination_fn(42)  # type: ignore[arg-type]


class _CountingEnv(gym.Env):
    """A custom env: terminated when the observation exceeds ``limit``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,))
    action_space = gym.spaces.Box(-1, 1, shape=(1,))

    def __init__(self, limit: float = 3.0) -> None:
        self.limit = limit


class _LimitTermination:
    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> Any:
        return next_obs[..., 0] > self.limit


def test_register_user_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(termination.registry, "_REGISTRY", dict(termination.registry._REGISTRY))
    env_id = "PmacTestCountingEnv-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_CountingEnv)
    with pytest.warns(UserWarning):
        assert isinstance(get_termination_fn(env_id), NeverTerminate)

    seen = []

    def factory(env: gym.Env) -> _LimitTermination:
        seen.append(env)
        return _LimitTermination(env.limit)

    register_termination_fn("PmacTestCountingEnv-v3", factory)  # any version: registered under the base name
    assert "PmacTestCountingEnv" in termination.registered_termination_envs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fn = get_termination_fn(env_id, env_kwargs={"limit": 1.5})
    assert isinstance(seen[-1], _CountingEnv)  # the unwrapped env
    assert fn.limit == 1.5
    np.testing.assert_array_equal(fn(None, None, np.array([[1.0], [2.0]])), [False, True])
    # without a spec: found through the class name (_CountingEnv -> "_Counting")
    register_termination_fn("_Counting", factory)
    assert get_termination_fn(_CountingEnv(limit=7.0)).limit == 7.0
    # replacing a built-in function
    register_termination_fn("Hopper", lambda env: NeverTerminate())
    assert isinstance(get_termination_fn("Hopper-v5"), NeverTerminate)
    with pytest.raises(TypeError):
        register_termination_fn("Foo", 3)  # type: ignore[arg-type]


def test_namespaced_rules_apply_to_their_namespace_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(termination.registry, "_REGISTRY", dict(termination.registry._REGISTRY))
    assert termination.registry.registry_keys("pmac_ns/Hopper-v0") == ["pmac_ns/Hopper", "Hopper"]
    assert termination.registry.registry_keys("Hopper-v5") == ["Hopper"]
    assert termination.registry.registry_keys("pmac_ns/Hopper") == ["pmac_ns/Hopper", "Hopper"]
    for namespace in ("pmac_ns", "pmac_other_ns"):
        if f"{namespace}/Hopper-v0" not in gym.registry:
            gym.register(f"{namespace}/Hopper-v0", entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv")
    register_termination_fn("pmac_ns/Hopper-v0", lambda env: _LimitTermination(1.0))
    assert "pmac_ns/Hopper" in termination.registered_termination_envs()
    # the namespace's rule: for its ids (by id and by env instance), not for MuJoCo's Hopper (replaced it before)
    assert isinstance(get_termination_fn("pmac_ns/Hopper-v0"), _LimitTermination)
    env = gym.make("pmac_ns/Hopper-v0")
    assert isinstance(get_termination_fn(env), _LimitTermination)
    env.close()
    assert isinstance(get_termination_fn("Hopper-v5"), HopperTermination)
    # another namespace without a rule of its own: the bare name's
    assert isinstance(get_termination_fn("pmac_other_ns/Hopper-v0"), HopperTermination)


@pytest.mark.parametrize(
    "class_name, task, factory", [("HopperEnv", "Hopper", "_make_hopper"), ("AntEnv", "Ant", "_make_ant")]
)
def test_env_class_named_like_a_task_without_its_parameters_counts_as_unknown(
    class_name: str, task: str, factory: str
) -> None:
    """
    An env of the user's own named like a MuJoCo task (``HopperEnv`` -> ``"Hopper"``) whose parameters that task's rule
    cannot read: the rule was found only through the class name, so the env counts as unknown (it failed with an
    AttributeError from the rule's factory, ``env.model``).
    """
    cls = type(class_name, (_CountingEnv,), {})
    message = (
        f"No termination function known for '{class_name}'.*never terminate.*"
        + re.escape(
            f"rule for '{task}' (sb3_pmac.termination.registry.{factory}), found under the key '{task}' (the class name "
            f"'{class_name}' without its 'Env' suffix), does not fit this env ({class_name}"
        )
        + f".*AttributeError: '{class_name}' object has no attribute 'model'.*registered under '{class_name}'.*"
        "termination_fn=.*register_termination_fn"
    )
    for env in (cls(), _dummy(cls)):
        with pytest.warns(UserWarning, match=message):
            assert type(get_termination_fn(env)) is NeverTerminate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(get_termination_fn(cls(), warn=False)) is NeverTerminate


def test_namespaced_id_named_like_a_task_without_its_parameters_counts_as_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespaced id whose bare name is a MuJoCo task's but whose env is another: the bare name's rule does not fit."""
    monkeypatch.setattr(termination.registry, "_REGISTRY", dict(termination.registry._REGISTRY))
    env_id = "myrobots/Walker2d-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_CountingEnv)
    rule = re.escape(
        "rule for 'Walker2d' (sb3_pmac.termination.registry._make_walker2d), found under the key 'Walker2d' (the bare "
        "name of the namespaced 'myrobots/Walker2d'), does not fit this env (_CountingEnv"
    )
    reason = f"{rule}.*AttributeError: '_CountingEnv' object has no attribute '_healthy_z_range'"
    remedy = "registered under 'myrobots/Walker2d' is looked up first.*termination_fn=.*register_termination_fn"
    with pytest.warns(UserWarning, match=f"No termination function known for 'myrobots/Walker2d-v0'.*{reason}.*{remedy}"):
        assert type(get_termination_fn(env_id)) is NeverTerminate
    for env in (make(env_id), _dummy(lambda: make(env_id)), _subproc(lambda: make(env_id))):
        with pytest.warns(UserWarning, match=f"No termination function known for 'myrobots/Walker2d'.*{reason}.*{remedy}"):
            assert type(get_termination_fn(env)) is NeverTerminate
        env.close()
    # the remedy: a rule of the namespace's own
    register_termination_fn(env_id, lambda env: _LimitTermination(env.limit))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_termination_fn(env_id, env_kwargs={"limit": 2.0}).limit == 2.0


def test_mujoco_tasks_found_through_a_fallback_keep_their_rules() -> None:
    """Namespaced re-registrations of MuJoCo's tasks and their unregistered instances get the task's rule, silently."""
    from gymnasium.envs.mujoco.ant_v4 import AntEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    env_id = "pmac_mujoco_ns/Hopper-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv", kwargs={"healthy_z_range": (0.8, 3.0)})
    expected = HopperTermination(healthy_z_range=(0.8, 3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert get_termination_fn(env_id) == expected
        for env in (make(env_id), _dummy(lambda: make(env_id)), HopperEnv(healthy_z_range=(0.8, 3.0))):
            assert get_termination_fn(env) == expected
            env.close()
        ant = AntEnv(healthy_z_range=(0.3, 1.5))
        assert get_termination_fn(ant) == AntTermination(healthy_z_range=(0.3, 1.5))
        ant.close()


def _broken_factory(env: gym.Env) -> _LimitTermination:
    return _LimitTermination(env.missing_parameter)  # type: ignore[attr-defined]


def test_rule_registered_under_the_envs_own_key_that_fails_to_build_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory registered for this very env that raises is a bug to fix: a clear error, not the unknown-env fallback."""
    monkeypatch.setattr(termination.registry, "_REGISTRY", dict(termination.registry._REGISTRY))
    for env_id in ("PmacTestBrokenRule-v0", "myrobots/Walker2d-v0"):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=_CountingEnv)
    register_termination_fn("PmacTestBrokenRule", _broken_factory)
    register_termination_fn("myrobots/Walker2d", _broken_factory)  # wins over Walker2d's rule, and fails
    register_termination_fn("_CountingEnv", _broken_factory)
    for env, key in (
        ("PmacTestBrokenRule-v0", "PmacTestBrokenRule"),
        (make("PmacTestBrokenRule-v0"), "PmacTestBrokenRule"),
        (_dummy(lambda: make("myrobots/Walker2d-v0")), "myrobots/Walker2d"),
        ("myrobots/Walker2d-v0", "myrobots/Walker2d"),
        (_CountingEnv(), "_CountingEnv"),
    ):
        message = (
            re.escape(f"Building the termination rule registered under '{key}' (")
            + r"[\w.]*\._broken_factory\) from the env \(_CountingEnv\) failed with AttributeError: "
            + r".*'missing_parameter'.*termination_fn=.*"
            + re.escape(f"register_termination_fn('{key}', ...)")
        )
        with pytest.raises(ValueError, match=message) as raised:
            get_termination_fn(env)  # type: ignore[arg-type]
        assert isinstance(raised.value.__cause__, AttributeError)


def test_env_base_name() -> None:
    assert env_base_name("Hopper-v4") == "Hopper"
    assert env_base_name("Hopper-v5") == "Hopper"
    assert env_base_name("Hopper") == "Hopper"
    assert env_base_name("my_ns/MyEnv-v12") == "MyEnv"
    assert env_base_name("InvertedDoublePendulum-v5") == "InvertedDoublePendulum"


def test_lookup_from_env_instances_and_vec_envs() -> None:
    kwargs = {"healthy_z_range": (0.5, 2.0), "terminate_when_unhealthy": True}
    expected = termination_fn_from_env_id("Hopper-v5", kwargs)
    assert expected.healthy_z_range == (0.5, 2.0)
    wrapped = gym.wrappers.RecordEpisodeStatistics(make("Hopper-v5", **kwargs))
    assert get_termination_fn(wrapped) == expected
    venv = DummyVecEnv([lambda: make("Hopper-v5", **kwargs)])
    assert get_termination_fn(venv) == expected
    assert get_termination_fn(VecNormalize(venv)) == expected
    venv.close()
    # unregistered instance of a known class (no spec): found through the class name
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

    walker = Walker2dEnv(healthy_z_range=(0.5, 1.5))
    assert get_termination_fn(walker) == Walker2dTermination(healthy_z_range=(0.5, 1.5))
    walker.close()


def test_lookup_from_subproc_vec_env() -> None:
    venv = SubprocVecEnv([lambda: make("Hopper-v5", healthy_angle_range=(-0.3, 0.3))], start_method="fork")
    try:
        fn = get_termination_fn(venv)
    finally:
        venv.close()
    assert isinstance(fn, HopperTermination) and fn.healthy_angle_range == (-0.3, 0.3)


def _local_env_class(name: str) -> type[gym.Env]:
    """A trivial env class named ``name`` that pickle cannot find by reference (a local class)."""

    class LocalEnv(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(3, np.float32), {}

        def step(self, action):
            return np.zeros(3, np.float32), 0.0, False, False, {}

    LocalEnv.__name__ = name
    return LocalEnv


def _assert_unsendable_env_lookup(venv: SubprocVecEnv, name: str, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The lookup on a worker whose env cannot be sent here: an unknown ``name`` warns; once a rule that reads the env's
    parameters is registered for it, a ValueError matching ``error``; and the worker lives on.
    """
    with pytest.warns(UserWarning, match=f"No termination function known for '{name}'"):
        assert isinstance(get_termination_fn(venv), NeverTerminate)
    monkeypatch.setattr(termination.registry, "_REGISTRY", dict(termination.registry._REGISTRY))
    register_termination_fn(name, lambda env: NeverTerminate())
    with pytest.raises(ValueError, match=error):
        get_termination_fn(venv)
    assert venv.reset().shape == (1, 3)  # the worker lives on


def _no_wrapper(env: gym.Env) -> gym.Env:
    return env


#: SB3's Monitor (as make_vec_env adds it), or none: SubprocVecEnv's worker adds no wrapper, and without one the worker
#: has nowhere to run the pickle check in (the env is then sent only when its class can be found by name here)
WORKER_WRAPS = pytest.mark.parametrize("wrap", [Monitor, _no_wrapper], ids=["monitor", "bare"])


@WORKER_WRAPS
def test_lookup_from_subproc_workers_whose_env_does_not_pickle(
    wrap: Callable[[gym.Env], gym.Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    An env class the worker cannot pickle by reference (here a local class; in a script, one defined in ``__main__``
    with SubprocVecEnv's default start method) must not be sent out of the worker, wrapped or not: the failed pickle
    killed the worker and PMAC failed with a bare EOFError where SAC trains.
    """

    LocalEnv = _local_env_class("LocalEnv")
    venv = SubprocVecEnv([lambda: wrap(LocalEnv())], start_method="fork")
    try:
        error = r"registered for 'LocalEnv' .* cannot be sent .* without any wrapper.* Pass termination_fn"
        _assert_unsendable_env_lookup(venv, "LocalEnv", error, monkeypatch)
    finally:
        venv.close()


def test_lookup_from_subproc_workers_whose_bare_env_spec_does_not_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bare env made by ``gym.make`` (its id registered without any wrapper) whose spec holds a lambda: the spec cannot
    leave the worker and there is no wrapper to check that in, so the id is read from how the env prints itself (the
    spec read killed the worker with an EOFError).
    """

    LocalEnv = _local_env_class("LocalEnv")
    env_id = "SbPmacBareSpecProbe-v0"
    gym.register(env_id, entry_point=lambda **kwargs: LocalEnv(), order_enforce=False, disable_env_checker=True)
    try:
        venv = SubprocVecEnv([lambda: gym.make(env_id, f=lambda: 0)], start_method="fork")
        try:
            assert venv.env_method("__str__", indices=[0])[0] == f"<LocalEnv<{env_id}>>"  # bare, with a spec
            name = "SbPmacBareSpecProbe"
            _assert_unsendable_env_lookup(venv, name, f"registered for '{name}' .* cannot be sent", monkeypatch)
        finally:
            venv.close()
    finally:
        gym.registry.pop(env_id)


def test_lookup_from_subproc_workers_whose_bare_env_pickles() -> None:
    """A bare MuJoCo env (no wrapper, its class found by name here) is still sent out and its rule read its parameters."""

    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    venv = SubprocVecEnv([lambda: HopperEnv(healthy_angle_range=(-0.3, 0.3))], start_method="fork")
    try:
        fn = get_termination_fn(venv)
        assert venv.reset().shape == (1, 11)
    finally:
        venv.close()
    assert isinstance(fn, HopperTermination) and fn.healthy_angle_range == (-0.3, 0.3)


@WORKER_WRAPS
def test_subproc_worker_env_named_like_a_task_that_does_not_pickle_counts_as_unknown(
    wrap: Callable[[gym.Env], gym.Env],
) -> None:
    """
    A local class ``AntEnv`` (not MuJoCo's) in a SubprocVecEnv: Ant's rule, found by the class name alone, cannot be
    tried on an env that cannot leave the worker; as with a DummyVecEnv, the env counts as unknown (a warning), where an
    env of the exact registered name keeps the clear error above.
    """

    AntEnv = _local_env_class("AntEnv")
    venv = SubprocVecEnv([lambda: wrap(AntEnv())], start_method="fork")
    try:
        with pytest.warns(UserWarning, match=r"No termination function known for 'AntEnv'.*rule for 'Ant'.*cannot be sent"):
            assert isinstance(get_termination_fn(venv), NeverTerminate)
        assert venv.reset().shape == (1, 3)  # the worker lives on
    finally:
        venv.close()


# ---------------------------------------------------------------------------------------------------- wrappers
def _dummy(*env_fns: Any) -> DummyVecEnv:
    return DummyVecEnv(list(env_fns))


def _subproc(*env_fns: Any) -> SubprocVecEnv:
    return SubprocVecEnv(list(env_fns), start_method="fork")


def _doubled_hopper() -> gym.Env:
    env = make("Hopper-v5")
    return TransformObservation(env, lambda obs: 2 * obs, env.observation_space)  # a lambda: the wrapper cannot pickle


def _normalized_hopper() -> gym.Env:
    return NormalizeObservation(make("Hopper-v5"))


@pytest.mark.parametrize("vec_env", [_dummy, _subproc], ids=["DummyVecEnv", "SubprocVecEnv"])
def test_observation_wrappers_in_sub_envs_refused(vec_env: Any) -> None:
    """SubprocVecEnv sub-envs are checked in the worker, like DummyVecEnv ones here, and the worker survives."""
    for env_fn, wrapper in ((_normalized_hopper, "NormalizeObservation"), (_doubled_hopper, "TransformObservation")):
        venv = vec_env(env_fn)
        try:
            with pytest.raises(ValueError, match=f"Hopper env is wrapped in observation wrappers .*{wrapper}"):
                get_termination_fn(venv)
            assert venv.reset().shape == (1, 11)
        finally:
            venv.close()


def test_subproc_vec_env_accepts_exempt_wrappers_only() -> None:
    venv = _subproc(lambda: make_preset_env("Humanoid-v4"))  # the presets' truncation keeps the raw leading entries
    try:
        assert get_termination_fn(venv) == HumanoidTermination()
    finally:
        venv.close()
    venv = _subproc(lambda: NormalizeObservation(make_preset_env("Humanoid-v4")))
    try:
        with pytest.raises(ValueError, match="NormalizeObservation"):
            get_termination_fn(venv)
    finally:
        venv.close()


class _AppendZero(VecEnvWrapper):
    """Appends a zero to the observations: changes the observation space."""

    def __init__(self, venv: VecEnv) -> None:
        space = venv.observation_space
        assert isinstance(space, gym.spaces.Box)
        low, high = np.append(space.low, 0.0), np.append(space.high, 0.0)
        super().__init__(venv, observation_space=gym.spaces.Box(low, high, dtype=space.dtype))  # type: ignore[arg-type]

    def _append(self, obs: Any) -> np.ndarray:
        return np.concatenate([obs, np.zeros((len(obs), 1), obs.dtype)], axis=1)

    def reset(self) -> Any:
        return self._append(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, done, info = self.venv.step_wait()
        return self._append(obs), reward, done, info


class _MarkedAppendZero(_AppendZero):
    keeps_termination_inputs = True  # the raw entries stay in front


def test_vec_env_wrappers_that_change_observations_refused() -> None:
    venv = _dummy(lambda: make("Hopper-v5"))
    for wrapped, name in (
        (VecFrameStack(venv, 2), "VecFrameStack"),
        (VecNormalize(VecFrameStack(venv, 2)), "VecFrameStack"),
        (_AppendZero(venv), "_AppendZero"),
        (VecFrameStack(_MarkedAppendZero(venv), 2), "VecFrameStack"),  # the inner wrapper's mark does not carry over
    ):
        with pytest.raises(ValueError, match=f"Hopper env is wrapped in VecEnv wrappers .*{name}.*termination_fn="):
            get_termination_fn(wrapped)
    # PMAC keeps VecNormalize's raw observations; the others keep the observations or are marked
    assert get_termination_fn(VecCheckNan(VecMonitor(VecNormalize(venv)))) == HopperTermination()
    assert get_termination_fn(_MarkedAppendZero(VecNormalize(venv))) == HopperTermination()
    venv.close()


class _BoxEnv(gym.Env):
    """An env with a given observation space (only for the wrapper checks)."""

    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        self.observation_space = observation_space


@pytest.mark.filterwarnings("ignore:.*precision lowered by casting")
def test_value_keeping_observation_wrappers_accepted() -> None:
    env = FlattenObservation(DtypeObservation(make("Hopper-v5"), np.float32))
    fn = get_termination_fn(env)
    assert fn == HopperTermination()
    # the rule reads the float32 observations right: the episode ends on the first step it calls terminal
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen, terminated = [], False
    while not terminated and len(seen) < 1000:
        obs, _, terminated, _, _ = env.step(rng.uniform(-1, 1, 3))
        assert obs.dtype == np.float32
        seen.append(obs)
    assert terminated
    np.testing.assert_array_equal(fn(None, None, np.stack(seen)), np.arange(len(seen)) == len(seen) - 1)
    env.close()
    # integers cast to floats keep their values; a cast to integers, a flattened 2-D Box do not
    assert observation_wrappers(DtypeObservation(_BoxEnv(gym.spaces.Box(0, 9, (3,), np.int64)), np.float32)) == []
    assert observation_wrappers(DtypeObservation(_BoxEnv(gym.spaces.Box(-1, 1, (3,))), np.int32)) == ["DtypeObservation"]
    assert observation_wrappers(FlattenObservation(_BoxEnv(gym.spaces.Box(-1, 1, (2, 3))))) == ["FlattenObservation"]
    with pytest.raises(ValueError, match="DtypeObservation"):
        get_termination_fn(DtypeObservation(make("Hopper-v5"), np.int32))
    # the same exemptions in a SubprocVecEnv worker
    venv = _subproc(lambda: FlattenObservation(DtypeObservation(make("Hopper-v5"), np.float32)))
    try:
        assert get_termination_fn(venv) == HopperTermination()
    finally:
        venv.close()


def test_other_wrappers_that_change_the_observation_space_refused() -> None:
    from gymnasium.wrappers import FrameStackObservation

    # FrameStackObservation is a plain gym.Wrapper, not an ObservationWrapper: the Hopper rule would read the oldest frame
    stacked = FrameStackObservation(make("Hopper-v5"), 2)
    assert observation_wrappers(stacked) == ["FrameStackObservation"]
    with pytest.raises(ValueError, match="FrameStackObservation"):
        get_termination_fn(stacked)
    # MaxAndSkipObservation keeps the space but returns the maximum of the last frames: the rule would miss every fall
    skipped = gym.wrappers.MaxAndSkipObservation(make("Hopper-v5"), skip=2)
    assert observation_wrappers(skipped) == ["MaxAndSkipObservation"]
    with pytest.raises(ValueError, match="MaxAndSkipObservation"):
        get_termination_fn(skipped)
    # wrappers that leave the observation space alone (Monitor, TimeLimit, RecordEpisodeStatistics) stay accepted
    assert get_termination_fn(gym.wrappers.RecordEpisodeStatistics(make("Hopper-v5"))) == HopperTermination()


def test_rules_that_read_no_observations_skip_the_wrapper_check() -> None:
    pendulum = make("Pendulum-v1")
    env = TransformObservation(pendulum, lambda obs: 2 * obs, pendulum.observation_space)
    assert isinstance(get_termination_fn(env), NeverTerminate)
    assert isinstance(get_termination_fn(NormalizeObservation(make("HalfCheetah-v5"))), NeverTerminate)
    venv = _dummy(lambda: NormalizeObservation(make("Swimmer-v5")))
    assert isinstance(get_termination_fn(VecFrameStack(venv, 2)), NeverTerminate)
    venv.close()
    venv = _subproc(lambda: NormalizeObservation(make("Reacher-v5")))
    try:
        assert isinstance(get_termination_fn(venv), NeverTerminate)
    finally:
        venv.close()


FUNCTIONS = [
    NeverTerminate(),
    HopperTermination(),
    Walker2dTermination(),
    AntTermination(),
    HumanoidTermination(),
    InvertedPendulumTermination(),
    InvertedDoublePendulumTermination(),
]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: type(fn).__name__)
def test_numpy_torch_dtypes_devices_pickle(fn: Any) -> None:
    rng = np.random.default_rng(0)
    next_obs = rng.normal(size=(64, 30)) * 0.5
    next_obs[:, 0] += 1.0
    action = rng.uniform(-1, 1, size=(64, 3))
    done_np = fn(next_obs, action, next_obs)
    assert isinstance(done_np, np.ndarray) and done_np.dtype == bool and done_np.shape == (64,)
    devices = ["cpu"] + (["cuda"] if th.cuda.is_available() else [])
    for device in devices:
        for dtype in (th.float64, th.float32):
            x = th.as_tensor(next_obs, dtype=dtype, device=device)
            done = fn(x, th.as_tensor(action, device=device), x)
            assert done.dtype == th.bool and done.device.type == device and done.shape == (64,)
            if dtype == th.float64:
                np.testing.assert_array_equal(done.cpu().numpy(), done_np)
    # float32 numpy, extra leading dimensions
    assert fn(next_obs[:8].astype(np.float32), None, next_obs[:8].astype(np.float32)).shape == (8,)
    assert fn(None, None, th.as_tensor(next_obs).reshape(4, 16, 30)).shape == (4, 16)
    restored = pickle.loads(pickle.dumps(fn))
    assert restored == fn
    np.testing.assert_array_equal(restored(next_obs, action, next_obs), done_np)


def test_hand_made_states() -> None:
    hopper = HopperTermination()
    obs = np.zeros((5, 11))
    obs[:, 0] = 1.25
    obs[1, 0] = 0.7  # z on the open bound: unhealthy
    obs[2, 1] = 0.25  # angle
    obs[3, 7] = 100.0  # state entry on the open bound
    obs[4, 0] = np.nan
    np.testing.assert_array_equal(hopper(obs, None, obs), [False, True, True, True, True])
    # Ant uses a closed z interval
    ant = AntTermination()
    obs = np.zeros((4, 27))
    obs[:, 0] = [0.2, 1.0, 0.19, 1.01]
    np.testing.assert_array_equal(ant(obs, None, obs), [False, False, True, True])
    # positions included: z moves to index 1 (Hopper) / 2 (Ant, Humanoid)
    humanoid = HumanoidTermination(exclude_current_positions_from_observation=False)
    obs = np.zeros((2, 47))
    obs[:, 0] = 1.5
    obs[1, 2] = 1.5
    np.testing.assert_array_equal(humanoid(obs, None, obs), [True, False])
    # InvertedPendulum: angle and finiteness of the whole observation
    pendulum = InvertedPendulumTermination()
    obs = np.array([[0.0, 0.1, 0.0, 0.0], [0.0, -0.21, 0.0, 0.0], [0.0, 0.0, 0.0, np.inf]])
    np.testing.assert_array_equal(pendulum(obs, None, obs), [False, True, True])
    # InvertedDoublePendulum: upright tip at 1.2, first pole horizontal -> tip at most 0.6
    idp = InvertedDoublePendulumTermination()
    upright = [0.0, 0.0, 0.0, 1.0, 1.0]
    fallen = [0.0, 1.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(idp(None, None, np.array([upright, fallen])), [False, True])
    # too short observations are rejected
    with pytest.raises(ValueError, match="at least"):
        hopper(None, None, np.zeros((2, 5)))


@pytest.mark.parametrize("handle_timeout_termination", [True, False])
def test_termination_agreement_counts_only_what_the_buffer_can_tell(handle_timeout_termination: bool) -> None:
    from sb3_pmac.buffers import PolicyVersionedReplayBuffer
    from sb3_pmac.termination.agreement import termination_agreement

    space = gym.spaces.Box(-10, 10, (2,), np.float32)
    buffer = PolicyVersionedReplayBuffer(100, space, gym.spaces.Box(-1, 1, (1,), np.float32), device="cpu",
                                         handle_timeout_termination=handle_timeout_termination)  # fmt: skip
    rule = lambda obs, act, next_obs: next_obs[:, 0] > 1  # noqa: E731  (the env's rule: x > 1 terminates)
    for step in range(60):
        x = 2.0 if step % 10 == 9 else 0.0  # every 10th transition terminates ...
        truncated = step % 20 == 4  # ... and a time limit truncates others
        buffer.add(np.zeros((1, 2)), np.array([[x, 0.0]]), np.zeros((1, 1)), np.zeros(1), np.array([x > 1 or truncated]),
                   [{"TimeLimit.truncated": truncated and x <= 1}])  # fmt: skip
    agreement = termination_agreement(rule, buffer)
    assert agreement.n_missed == agreement.n_false == 0 and not agreement.disagrees()
    assert agreement.n_nonterminal == 60 - 6 - 3
    # without handle_timeout_termination a truncation is stored as a plain done: it cannot count as a terminal
    assert agreement.n_terminal == (6 if handle_timeout_termination else 0)
    never = termination_agreement(lambda obs, act, next_obs: np.zeros(len(obs), bool), buffer)
    assert never.n_missed == (6 if handle_timeout_termination else 0)


def test_hopper_state_range_covers_the_torso_angle() -> None:
    # Hopper's is_healthy checks state_vector()[2:] = (qpos[2:], qvel): the torso angle qpos[2] (obs[1]) is its first
    # entry, so with an angle range wider than the state range the state range decides
    kwargs = {"healthy_angle_range": (-10.0, 10.0), "healthy_state_range": (-1.0, 1.0)}
    env = make("Hopper-v5", **kwargs).unwrapped
    env.reset(seed=0)
    qpos = env.init_qpos.copy()
    qpos[2] = 1.5  # torso angle: inside the angle range, outside the state range
    env.set_state(qpos, np.zeros(env.model.nv))
    assert not env.is_healthy  # the env's own verdict
    obs = env._get_obs()[None]
    fn = get_termination_fn("Hopper-v5", env_kwargs=kwargs)
    assert fn(obs, None, obs).tolist() == [True]
    # hand-made: the angle and the last velocity are both checked against the state range
    states = np.zeros((3, 11))
    states[:, 0] = 1.25
    states[1, 1] = 1.5
    states[2, 10] = 1.5
    np.testing.assert_array_equal(fn(states, None, states), [False, True, True])


def test_walker_asymmetric_angle_range() -> None:
    walker = Walker2dTermination(healthy_angle_range=(-0.2, 1.0))
    obs = np.zeros((4, 17))
    obs[:, 0] = 1.25
    obs[:, 1] = [0.0, -0.5, 0.9, 1.0]  # -0.5 is below the low bound (|angle| < 1 is not the rule); 1.0: the open bound
    np.testing.assert_array_equal(walker(obs, None, obs), [False, True, False, True])


def test_inverted_pendulum_angle_bound_is_healthy() -> None:
    # the env terminates on abs(obs[1]) > 0.2: an angle of exactly +-0.2 goes on
    pendulum = InvertedPendulumTermination()
    obs = np.array([[0.0, 0.2, 0.0, 0.0], [0.0, -0.2, 0.0, 0.0], [0.0, 0.2 + 1e-9, 0.0, 0.0]])
    np.testing.assert_array_equal(pendulum(obs, None, obs), [False, False, True])


def test_termination_agreement_thresholds() -> None:
    from sb3_pmac.termination.agreement import TerminationAgreement

    def disagrees(n_terminal: int, n_missed: int, n_nonterminal: int, n_false: int) -> bool:
        return TerminationAgreement(n_terminal, n_missed, n_nonterminal, n_false).disagrees()

    # missed terminations: more than half, of at least 5
    assert not disagrees(10, 5, 0, 0) and disagrees(10, 6, 0, 0)
    assert not disagrees(4, 4, 0, 0) and disagrees(5, 3, 0, 0)
    # false terminations: more than 5 %, of at least 50 non-terminal transitions
    assert not disagrees(0, 0, 100, 5) and disagrees(0, 0, 100, 6)
    assert not disagrees(0, 0, 49, 49) and disagrees(0, 0, 50, 3)
