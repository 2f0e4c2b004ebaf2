"""What SB3 users rely on: PMAC behaves like SAC or refuses clearly (constructor arguments, spaces)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from sb3_pmac import MBPO, PMAC
from sb3_pmac.checks import UnsupportedSpaceError


class SpacesEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX_OBS = spaces.Box(-1, 1, (3,), np.float32)
BOX_ACT = spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize(
    "observation_space, action_space, match",
    [
        (BOX_OBS, spaces.Discrete(3), "continuous"),
        (BOX_OBS, spaces.MultiDiscrete([2, 3]), "continuous"),
        (spaces.Dict({"a": BOX_OBS}), BOX_ACT, "flat Box"),
        (spaces.Discrete(4), BOX_ACT, "flat Box"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), BOX_ACT, "1-D"),
        (spaces.Box(0, 10, (4,), np.int64), BOX_ACT, "float observations"),
        (spaces.Box(0, 1, (4,), np.bool_), BOX_ACT, "float observations"),
        (BOX_OBS, spaces.Box(-np.inf, np.inf, (2,), np.float32), "bounded action space"),
        (BOX_OBS, spaces.Box(np.array([-1, -np.inf]), np.array([1, 2]), dtype=np.float32), "bounded action space"),
    ],
)
def test_unsupported_spaces_raise_what_sb3_raises(observation_space, action_space, match):
    env = SpacesEnv(observation_space, action_space)
    for error in (AssertionError, ValueError):  # SB3 raises AssertionError for unsupported spaces
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused at once, not after a warning
            with pytest.raises(error, match=match):
                PMAC("MlpPolicy", env)
    with pytest.raises(UnsupportedSpaceError) as info:
        PMAC("MlpPolicy", env)
    if match == "float observations":
        assert "image" not in str(info.value)
    with pytest.raises(UnsupportedSpaceError, match=f"^MBPO needs .*{match}"):  # the class's own name
        MBPO("MlpPolicy", env)


def test_n_steps_default_accepted_and_n_step_returns_refused():
    model = PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), n_steps=1, buffer_size=100)
    assert model.n_steps == 1
    with pytest.raises(ValueError, match="n-step"):
        PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), n_steps=3, buffer_size=100)


# ---------------------------------------------------------------------------------------------- termination rules
def test_observation_wrappers_refused_unless_a_termination_fn_is_given():
    from gymnasium.wrappers import NormalizeObservation

    from sb3_pmac.termination import NeverTerminate

    wrapped = NormalizeObservation(gym.make("Hopper-v5"))
    with pytest.raises(ValueError, match="NormalizeObservation"):
        PMAC("MlpPolicy", wrapped, buffer_size=100)
    model = PMAC("MlpPolicy", wrapped, buffer_size=100, termination_fn=NeverTerminate())
    assert isinstance(model.termination_fn, NeverTerminate)
    # the presets' truncation keeps the leading raw entries: allowed (Humanoid's rule reads the height, entry 0)
    assert type(PMAC("Humanoid-v4", buffer_size=100).termination_fn).__name__ == "HumanoidTermination"


def test_load_and_set_env_derive_the_rule_of_the_new_env(tmp_path):
    from sb3_pmac.termination import NeverTerminate

    model = PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100, learning_starts=10)
    assert model.termination_fn.terminate_when_unhealthy and model.termination_fn.healthy_z_range[0] == 0.7
    model.save(tmp_path / "hopper")
    relaxed = gym.make("Hopper-v5", terminate_when_unhealthy=False, healthy_z_range=(0.5, float("inf")))
    loaded = PMAC.load(tmp_path / "hopper", env=relaxed)
    assert not loaded.termination_fn.terminate_when_unhealthy and loaded.termination_fn.healthy_z_range[0] == 0.5
    loaded.set_env(gym.make("Hopper-v5"))
    assert loaded.termination_fn.terminate_when_unhealthy and loaded.termination_fn.healthy_z_range[0] == 0.7
    # a rule the user passed is kept
    mine = PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100, termination_fn=NeverTerminate())
    mine.save(tmp_path / "mine")
    assert isinstance(PMAC.load(tmp_path / "mine", env=relaxed).termination_fn, NeverTerminate)
    mine.set_env(relaxed)
    assert isinstance(mine.termination_fn, NeverTerminate)


class IdentityEnvBox(gym.Env):
    """An env made without gym.make, whose class name does not end with 'Env'."""

    observation_space = spaces.Box(-1, 1, (3,), np.float32)
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class AlwaysDone:
    def __call__(self, obs, action, next_obs):
        import torch as th

        return th.ones(len(next_obs), dtype=th.bool)


def test_registered_rule_found_for_an_env_made_without_gym_make():
    from sb3_pmac.termination import register_termination_fn
    from sb3_pmac.termination.registry import _REGISTRY

    register_termination_fn("IdentityEnvBox", lambda env: AlwaysDone())
    try:
        assert isinstance(PMAC("MlpPolicy", IdentityEnvBox(), buffer_size=100).termination_fn, AlwaysDone)
    finally:
        del _REGISTRY["IdentityEnvBox"]


# ---------------------------------------------------------------------------------------------- presets
def test_presets_apply_to_an_env_built_from_a_known_id_and_can_be_turned_off(capsys):
    from stable_baselines3.common.env_util import make_vec_env

    assert PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100).rollout_horizon == (20, 100, 1, 15)
    assert PMAC("MlpPolicy", make_vec_env("Hopper-v5", n_envs=2), buffer_size=100).rollout_horizon == (20, 100, 1, 15)
    assert PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100, rollout_horizon=3).rollout_horizon == 3
    assert PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100, use_presets=False).rollout_horizon == 1
    plain = PMAC("Humanoid-v4", buffer_size=100, use_presets=False)
    assert plain.rollout_horizon == 1 and plain.observation_space.shape == (376,)  # no MBPO truncation either
    capsys.readouterr()
    PMAC("Humanoid-v4", buffer_size=100, verbose=1)
    printed = capsys.readouterr().out
    assert "rollout_horizon=(20, 300, 1, 25)" in printed and "truncated to 45" in printed
    PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100, verbose=1)
    assert "presets of Hopper-v5 applied: rollout_horizon=(20, 100, 1, 15)" in capsys.readouterr().out


def test_an_env_made_from_its_id_renders_to_arrays_as_sb3s(capsys):
    """SB3 makes an env id with render_mode="rgb_array" (the training env can be rendered and recorded)."""
    pytest.importorskip("pygame", reason="classic-control rendering needs pygame (the [zoo] extra)")
    for kwargs in ({}, {"use_presets": False}):
        model = PMAC("Pendulum-v1", buffer_size=100, verbose=1, **kwargs)
        assert "Creating environment from the given name 'Pendulum-v1'" in capsys.readouterr().out  # SB3's line
        env = model.get_env()
        assert env.render_mode == "rgb_array"
        env.reset()
        frame = env.render()
        assert frame.shape == (500, 500, 3) and frame.dtype == np.uint8 and frame.std() > 0
    assert PMAC("Hopper-v4", buffer_size=100).get_env().render_mode == "rgb_array"  # a preset's env too
    assert PMAC("MlpPolicy", gym.make("Hopper-v5"), buffer_size=100).get_env().render_mode is None  # the user's env


# ---------------------------------------------------------------------------------------------- random state
def test_load_leaves_the_global_random_generators_alone_unless_asked(tmp_path):
    import random

    import torch as th

    model = PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), buffer_size=100, learning_starts=10, seed=0)
    model.save(tmp_path / "agent")

    def draws():
        return np.random.rand(), random.random(), float(th.rand(1))

    for seed in (1, 2):
        np.random.seed(seed), random.seed(seed), th.manual_seed(seed)
        expected = draws()
        np.random.seed(seed), random.seed(seed), th.manual_seed(seed)
        PMAC.load(tmp_path / "agent")
        assert draws() == expected  # a user who seeds and then loads gets their own seed's draws
    np.random.seed(5), random.seed(5), th.manual_seed(5)
    PMAC.load(tmp_path / "agent", restore_random_state=True)  # exact resume: the states at save()
    after_opt_in = draws()
    np.random.seed(6), random.seed(6), th.manual_seed(6)
    PMAC.load(tmp_path / "agent", restore_random_state=True)
    assert draws() == after_opt_in


# ---------------------------------------------------------------------------------------------- training schedule
def test_training_starts_at_learning_starts_even_with_a_large_batch():
    import warnings

    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # batch_size 64 > the 40 transitions stored at learning_starts, and > buffer_size: SB3 samples with replacement
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "learning_starts": 40, "batch_size": 64,
                                                     "buffer_size": 50, "model_train_freq": 20})  # fmt: skip
    model.learn(60)
    assert model._n_updates == 60 - 40 and model.n_model_steps == 1  # SAC.train runs from step 41 on


def test_gradient_steps_zero_collects_without_training():
    import warnings

    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "gradient_steps": 0, "learning_starts": 10})
    model.learn(60)
    assert model.replay_buffer.size() == 60 and model._n_updates == 0 and model.n_model_steps == 0


def test_bounded_model_training_defaults():
    from sb3_pmac.dynamics.model_trainer import DEFAULT_MODEL_GRAD_STEPS
    from sb3_pmac.policy_mixture import bounded_train_size

    model = PMAC("Hopper-v4", buffer_size=1000)
    assert model.model_training == "bounded" and model.model_trainer.max_grad_steps == DEFAULT_MODEL_GRAD_STEPS == 400
    assert model.model_trainer.max_epochs is None  # early stopping and the step budget only
    # the mixture's effective support: 250 steps per version x (1 + 0.9) / (1 - 0.9) = 19 versions
    assert bounded_train_size(250, 0.9, 10**6) == 4750 and bounded_train_size(250, 1.0, 12_345) == 12_345


def test_default_entropy_coefficient_is_the_papers_fixed_0_2():
    import yaml
    from conftest import TINY_PMAC_KWARGS
    from stable_baselines3.common.logger import configure

    from sb3_pmac.zoo import hyperparams_path

    kwargs = {key: value for key, value in TINY_PMAC_KWARGS.items() if key != "ent_coef"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**kwargs, "learning_starts": 40, "model_train_freq": 20})
    assert model.ent_coef_optimizer is None and model.log_ent_coef is None
    seen: dict[str, float] = {}
    model.set_logger(configure(None, []))
    record = model.logger.record
    model.logger.record = lambda key, value, exclude=None: (seen.__setitem__(key, value), record(key, value, exclude))
    model.learn(60)
    assert seen["train/ent_coef"] == pytest.approx(0.2) and "train/ent_coef_loss" not in seen
    # the same as the rl-zoo3 YAMLs of the paper's tasks (and the Hopper campaign)
    for algo in ("pmac", "mbpo"):
        assert yaml.safe_load(hyperparams_path(algo).read_text())["Hopper-v4"]["ent_coef"] == model.ent_coef == 0.2


# ---------------------------------------------------------------------------------------------- mixture arguments
@pytest.mark.parametrize(
    "cls, kwargs, unused",
    [
        ("MBPO", dict(mixture="tv"), ["mixture"]),
        ("MBPO", dict(max_rate=0.1), ["max_rate"]),
        ("PMAC", dict(max_rate=0.1), ["max_rate"]),  # the exponential mixture has no max_rate
        ("PMAC", dict(mixture="tv", adaptation_rate=0.5, model_train_size=1000), ["adaptation_rate"]),
        ("MBPO", dict(adaptation_rate=0.5, model_training="full"), ["adaptation_rate"]),
        (
            "PMAC",
            dict(adapt_model_training=False, adapt_rollout_starts=False, mixture="tv", max_rate=0.1),
            ["mixture", "max_rate"],
        ),
    ],
)
def test_mixture_arguments_without_effect_warn(cls, kwargs, unused):
    from sb3_pmac import MBPO

    algo = {"PMAC": PMAC, "MBPO": MBPO}[cls]
    with pytest.warns(UserWarning, match=f"{cls}: {', '.join(unused)} set but without effect"):
        algo("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), buffer_size=100, **kwargs)


@pytest.mark.parametrize("ent_coef", [0.2, 0.05])
def test_target_entropy_with_a_fixed_ent_coef_warns(ent_coef):
    kwargs = {} if ent_coef == 0.2 else {"ent_coef": ent_coef}  # the default, and another fixed value
    with pytest.warns(UserWarning, match="PMAC: target_entropy=-3.0 set but without effect.*ent_coef='auto'"):
        PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), buffer_size=100, target_entropy=-3.0, **kwargs)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("PMAC", {}),
        ("MBPO", {}),
        ("PMAC", dict(adaptation_rate=0.5)),
        ("PMAC", dict(mixture="tv", max_rate=0.1, adaptation_rate=0.5)),  # alpha sizes the bounded set
        ("PMAC", dict(ent_coef="auto", target_entropy=-3.0)),
        ("PMAC", dict(ent_coef="auto_0.1", target_entropy=-3.0)),
        ("PMAC", dict(adapt_rollout_starts=False, mixture="tv")),
        ("MBPO", dict(adaptation_rate=0.5)),  # alpha sizes MBPO's bounded model-training set too
    ],
)
def test_mixture_arguments_with_effect_do_not_warn(cls, kwargs):
    from sb3_pmac import MBPO

    algo = {"PMAC": PMAC, "MBPO": MBPO}[cls]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("error", "(?s).*without effect")
        model = algo("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), buffer_size=1000, **kwargs)
    model.replay_buffer.full = True  # 1000 stored transitions
    # bounded training set: (1 + alpha) / (1 - alpha) versions of 250 steps
    assert model.model_training_rows() == (750 if kwargs.get("adaptation_rate") == 0.5 else 1000)


def test_fast_path_leaves_the_optimizers_as_configured(tmp_path):
    import warnings
    import zipfile

    import torch as th
    from conftest import TINY_PMAC_KWARGS

    from sb3_pmac import fast_sac

    assert fast_sac.fast_path_available()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20})
    optimizers = {"actor": model.actor.optimizer, "critic": model.critic.optimizer, "ent_coef": model.ent_coef_optimizer}
    configured = {name: [(g["fused"], g["foreach"]) for g in opt.param_groups] for name, opt in optimizers.items()}
    model.learn(80)
    for name, optimizer in optimizers.items():
        assert [(g["fused"], g["foreach"]) for g in optimizer.param_groups] == configured[name], name
        assert all(float(s["step"]) == 40 for s in optimizer.state.values()), name  # the updates were counted
    model.save(tmp_path / "agent")
    with zipfile.ZipFile(tmp_path / "agent.zip") as archive:
        saved = th.load(archive.open("policy.optimizer.pth" if "policy.optimizer.pth" in archive.namelist()
                                     else "actor.optimizer.pth"), weights_only=False)  # fmt: skip
    assert [g["fused"] for g in saved["param_groups"]] == [fused for fused, _ in configured["actor"]]


# ---------------------------------------------------------------------------------------------- interruptions
def test_an_interrupted_model_step_is_run_again_in_its_own_version():
    import warnings

    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20})
    train_dynamics_model = model.train_dynamics_model
    calls = {"n": 0}

    def interrupted_once():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second model step (at step 60)
        return train_dynamics_model()

    model.train_dynamics_model = interrupted_once
    with pytest.raises(KeyboardInterrupt):
        model.learn(100)
    # model steps at steps 41 and 61 (SB3 trains from step learning_starts + 1), the second interrupted
    assert model.num_timesteps == 61 and model.policy_version == 2
    model.learn(101 - model.num_timesteps, reset_num_timesteps=False)
    versions, counts = model.replay_buffer.version_counts()
    # the interrupted step is redone at step 62 in version 2, which then holds steps 62-81 (the next model step keeps to
    # the schedule: 81); no version of one transition (the old code: version 2 = step 62 alone, version 3 = 63-82, ...)
    assert versions.tolist() == [0, 1, 2, 3] and counts.tolist() == [41, 20, 20, 20], (versions, counts)
    assert model.n_model_steps == 4 and calls["n"] == 5  # model steps at 41, 61 (interrupted, redone at 62), 81, 101


def test_model_steps_every_model_train_freq_steps_when_training_per_episode():
    import warnings

    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20,
                                                     "train_freq": (1, "episode"), "gradient_steps": 5})  # fmt: skip
    model.learn(400)  # two Pendulum episodes of 200 steps: SAC updates at their ends only
    assert model._n_updates == 2 * 5
    _, counts = model.replay_buffer.version_counts()
    # model steps at steps 41, 61, ..., 381 as with train_freq=1 (not once per episode end)
    assert model.n_model_steps == 18 and counts.tolist() == [41] + [20] * 17 + [19], counts


def test_gradient_steps_minus_one_makes_one_update_per_collected_transition():
    """SB3's ``gradient_steps=-1``: as many updates as transitions the rollout collected (all envs), as SAC does."""
    from conftest import TINY_PMAC_KWARGS
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    kwargs = {"learning_starts": 40, "train_freq": (3, "step"), "gradient_steps": -1, "batch_size": 32, "seed": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **{**TINY_PMAC_KWARGS, **kwargs})
        sac = SAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), policy_kwargs={"net_arch": [32]}, **kwargs)
    model.learn(120)
    sac.learn(120)
    # rollouts of 3 steps of 2 envs end at 6, 12, ..., 120 transitions; SAC trains after those past 40 (42 ... 120: 14),
    # 6 updates each
    assert model._n_updates == sac._n_updates == 14 * 6


def base_code_update_counts(steps: int, cap: int, repeat: int, epoch_length: int) -> list[int]:
    """
    The paper's base code (mbpo_pytorch) written out: cumulative SAC updates after each step after the warm-up, with
    ``num_train_repeat = repeat`` and ``max_train_repeat_per_step = cap`` (per-epoch count against the steps so far).
    """
    counts, total, total_step = [], 0, 0
    while total_step < steps:
        train_policy_steps = 0  # reset at every epoch
        for _ in range(epoch_length):
            if total_step >= steps:
                break
            if not train_policy_steps > cap * total_step:
                train_policy_steps += repeat
                total += repeat
            counts.append(total)
            total_step += 1
    return counts


def test_max_train_repeat_per_step_ramps_the_updates_as_the_base_code():
    from conftest import TINY_PMAC_KWARGS

    from sb3_pmac import MBPO

    reference = base_code_update_counts(steps=70, cap=2, repeat=5, epoch_length=20)
    # by hand: epoch 0 averages the cap (40 updates in 20 steps); epoch 1 makes 5 per step while its count stays within
    # 2 x the steps so far (14 steps), then 2 per step on average (80 in all); epochs 2 and 3 never reach the cap
    assert (reference[19], reference[39], reference[-1]) == (40, 40 + 80, 40 + 80 + 100 + 50)
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 30, "gradient_steps": 5, "epoch_length": 20, "seed": 0}
    seen = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(self.model._n_updates)  # at step n: the updates of the steps before n
            return True

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = MBPO("MlpPolicy", "Pendulum-v1", max_train_repeat_per_step=2, **kwargs)
        model.learn(30 + 70, callback=Record())
        plain = PMAC("MlpPolicy", "Pendulum-v1", **kwargs)
        plain.learn(30 + 70)
    assert model._n_updates == reference[-1] and plain._n_updates == 70 * 5  # default: 5 at every step
    assert seen[31:] == reference[:-1]  # step 32 sees the updates of the first step after the warm-up
    assert seen[:31] == [0] * 31
    assert model.n_model_steps == plain.n_model_steps  # the model steps are not ramped

    model.learn(30 + 25)  # a new run (num_timesteps reset): warm-up again, then the ramp starts over
    assert model._n_updates == reference[-1] + reference[24]


def test_the_update_ramp_continues_across_save_and_load(tmp_path):
    """Saved in the middle of a ramped epoch, the loaded agent makes the updates the uninterrupted run made."""
    from conftest import TINY_PMAC_KWARGS

    from sb3_pmac import MBPO

    reference = base_code_update_counts(steps=70, cap=2, repeat=5, epoch_length=20)
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 30, "gradient_steps": 5, "epoch_length": 20, "seed": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = MBPO("MlpPolicy", "Pendulum-v1", max_train_repeat_per_step=2, **kwargs)
        model.learn(30 + 25)  # 5 steps into epoch 1, whose updates are capped: 5 per step until 2 x the steps so far
        assert model._n_updates == reference[24]
        model.save(tmp_path / "agent")
        model.save_replay_buffer(tmp_path / "buffer")
        loaded = MBPO.load(tmp_path / "agent", env=gym.make("Pendulum-v1"))
        loaded.load_replay_buffer(tmp_path / "buffer")
        loaded.learn(45, reset_num_timesteps=False)
    assert loaded.num_timesteps == 100 and loaded._n_updates == reference[-1]


def test_a_repeated_warm_up_is_a_version_of_its_own():
    """learn() with num_timesteps reset repeats SB3's random warm-up: its transitions are not the last policy's."""
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})  # learning_starts 100, versions of 50
    for _ in range(3):
        model.learn(160)
    versions, counts = model.replay_buffer.version_counts()
    # per call: the warm-up (100 steps, and step 101, collected before the model step) then 50 and 9 steps of policies
    assert dict(zip(versions.tolist(), counts.tolist(), strict=True)) == {
        0: 101, 1: 50, 2: 9, 3: 101, 4: 50, 5: 9, 6: 101, 7: 50, 8: 9
    }  # fmt: skip
    model.learn(40, reset_num_timesteps=False)  # a continuation goes on in the current version
    assert model.replay_buffer.version_counts()[1][-1] == 49


def test_a_restarted_run_that_stores_nothing_adds_no_version():
    # a callback that stops learn() at its first step (SB3 drops that step's transition) or learn(0): an empty version
    # would age the older data in Algorithm 1's weights (their ids count the versions)
    from conftest import TINY_PMAC_KWARGS
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAtOnce(BaseCallback):
        def _on_step(self) -> bool:
            return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})
        model.learn(160)
        for _ in range(3):
            model.learn(100, callback=StopAtOnce())
        model.learn(0)
    assert model.replay_buffer.current_version == model.policy_version == 3  # one new version for the next run, once
    assert model.replay_buffer.version_counts()[0].tolist() == [0, 1, 2]
    model.learn(10)  # the restarted warm-up's transitions go to that version
    assert dict(zip(*(a.tolist() for a in model.replay_buffer.version_counts()), strict=True)) == {0: 101, 1: 50, 2: 9, 3: 10}


def test_time_keys_count_the_seconds_of_the_run():
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})
        model.learn(160)
        first = dict(model._timings)
        model.learn(60, reset_num_timesteps=False)  # a continuation: the same run, the seconds go on
        assert all(model._timings[key] >= first[key] for key in first) and model._timings["sac"] > first["sac"]
        model.learn(20)  # a new run (num_timesteps restarted) within its warm-up: SB3's time/ keys restart too
    assert model._timings == {"model_train": 0.0, "rollout": 0.0, "sac": 0.0} and first["sac"] > 0


def test_model_steps_average_model_train_freq_with_several_envs():
    """4 envs step 4 transitions at a time: model steps keep to every 50 transitions on average (versions too)."""
    from conftest import TINY_PMAC_KWARGS
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=4, seed=0), **{**TINY_PMAC_KWARGS, "seed": 0})
    steps = []
    model_step = model._model_step
    model._model_step = lambda: (steps.append(model.num_timesteps), model_step())[1]
    model.learn(600)
    gaps = np.diff(steps)
    assert steps[0] == 104 and set(gaps.tolist()) == {48, 52}  # (it re-anchored on the overshoot: every 52)
    assert abs(steps[-1] - steps[0] - 50 * len(gaps)) <= 2  # on the schedule of every 50 transitions
    _, counts = model.replay_buffer.version_counts()
    assert set(counts[1:-1].tolist()) == {48, 52}


def test_load_replay_buffer_releases_the_previous_buffer(tmp_path):
    import gc
    import weakref

    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})
    model.learn(200)  # model steps: the rollouts' state bounds keep a running range of the buffer
    model.save_replay_buffer(tmp_path / "buffer")
    previous = weakref.ref(model.replay_buffer)
    model.load_replay_buffer(tmp_path / "buffer")
    gc.collect()
    assert previous() is None  # (the range cache held it until the next model step: one more buffer in memory)


def test_random_states_of_a_cpu_agent_leave_cuda_alone():
    """The saved CUDA state is restored only to a CUDA device: an agent saved on a GPU loads on a CPU."""
    from sb3_pmac.random_state import get_global_rng_states, set_global_rng_states

    assert "cuda" not in get_global_rng_states("cpu")
    states = {**get_global_rng_states("cpu"), "cuda": ("cuda:0", th.zeros(16, dtype=th.uint8))}
    first = (np.random.rand(), th.rand(1).item())
    set_global_rng_states(states, "cpu")  # would raise without a GPU if it restored the CUDA state
    assert (np.random.rand(), th.rand(1).item()) == first  # the CPU generators are restored


# ---------------------------------------------------------------------------------------------- non-finite data
class NaNObservations(gym.Wrapper):
    """Returns NaN observations (or ``value``) at the given steps (counted from the wrapper's creation)."""

    def __init__(self, env, steps, value=np.nan):
        super().__init__(env)
        self.steps, self.t, self.value = set(steps), 0, value

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return (np.full_like(obs, self.value) if self.t in self.steps else obs), reward, terminated, truncated, info


def test_nan_observations_are_left_out_of_model_training():
    import warnings

    from conftest import TINY_PMAC_KWARGS

    env = NaNObservations(gym.make("Pendulum-v1"), steps=(10, 11))  # two NaN observations during the warm-up
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20, "gradient_steps": 0}
    model = PMAC("MlpPolicy", env, **kwargs, seed=0, termination_fn=lambda obs, act, next_obs: np.zeros(len(obs), bool))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(40)
        model.train(gradient_steps=1, batch_size=32)  # the first model step, on the 40 warm-up transitions
    # transitions 10, 11 (NaN next observations) and 11, 12 (NaN observations): 3 rows
    assert model._last_model_info.n_nonfinite == 3 and not model._last_model_info.reverted
    assert all(th.isfinite(p).all() for p in model.dynamics_model.parameters())
    # rollouts from a working model, from the finite start states (2 of the 40 stored observations are NaN)
    info = model._last_rollout_info
    n_starts_dropped = info.nonfinite_starts_dropped
    # (a model trained on 37 rows may also send a few branches out of the data's range: dropped, counted apart)
    assert 0 < n_starts_dropped < 30 and info.out_of_bounds_dropped < 20 and info.nan_predictions_dropped == 0
    assert model.model_buffer.size() == TINY_PMAC_KWARGS["rollout_batch_size"] - n_starts_dropped - info.out_of_bounds_dropped
    assert any("NaN or infinite" in str(w.message) for w in caught)
    assert model.logger.name_to_value["train/model_nonfinite_rows_dropped"] == 3 + n_starts_dropped
    with warnings.catch_warnings(record=True) as caught:  # the rows stay in the buffer: said once, counted on
        warnings.simplefilter("always")
        model.learn(20, reset_num_timesteps=False)
        model.train(gradient_steps=1, batch_size=32)  # the next model step, with the same NaN rows
    assert model.n_model_steps == 2 and model._last_model_info.n_nonfinite >= 3
    assert not any("NaN or infinite" in str(w.message) for w in caught)
    # the count goes on: the first step's rows and starts, then the second's
    second = model._last_model_info.n_nonfinite + model._last_rollout_info.nonfinite_starts_dropped
    assert model.logger.name_to_value["train/model_nonfinite_rows_dropped"] == 3 + n_starts_dropped + second


def test_empty_model_buffer_is_reported(tmp_path):

    from conftest import TINY_PMAC_KWARGS

    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20, "gradient_steps": 0}
    model = PMAC("MlpPolicy", NaNObservations(gym.make("Pendulum-v1"), steps=range(100)), **kwargs,
                 termination_fn=lambda obs, act, next_obs: np.zeros(len(obs), bool))  # fmt: skip
    model.learn(40)
    with pytest.warns(UserWarning, match="model buffer is empty") as said:
        model.train(gradient_steps=1, batch_size=32)  # every row non-finite: no model, no rollouts
    messages = [str(w.message) for w in said]
    assert any("had no finite data: every one of its 40 rows held NaN or infinite values" in m for m in messages)
    assert not any("produced no usable model" in m for m in messages)  # not an overflow of finite data
    assert model._last_model_info.reverted and model.model_rounds_trained == 0 and model.model_buffer.size() == 0
    # the count survives save/load (an agent of an earlier release gets one per model step instead: test_legacy_agents)
    model.save(tmp_path / "agent")
    loaded = PMAC.load(tmp_path / "agent")
    assert loaded._n_model_steps == 1 and loaded.model_rounds_trained == 0


def test_unusable_model_trainings_and_an_empty_model_buffer_are_said_once_and_counted_on():
    # One finite but huge observation (its square overflows float32) makes every model training unusable while it stays
    # in the buffer: said once per agent, not at every model step (the step in the text defeats Python's own filter)
    from conftest import TINY_PMAC_KWARGS

    env = NaNObservations(gym.make("Pendulum-v1"), steps=(10,), value=1e20)
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20, "gradient_steps": 0}
    model = PMAC("MlpPolicy", env, **kwargs, seed=0, termination_fn=lambda obs, act, next_obs: np.zeros(len(obs), bool))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(40)
        for _ in range(4):  # four model steps, every one on the huge row
            model.train(gradient_steps=1, batch_size=32)
            model.learn(20, reset_num_timesteps=False)
    messages = [str(w.message) for w in caught]
    unusable = [m for m in messages if "produced no usable model" in m]
    assert len(unusable) == 1 and "although its" in unusable[0] and "training rows were" in unusable[0]
    assert "no model yet" in unusable[0] and "said once" in unusable[0]
    assert sum("model buffer is empty" in m for m in messages) == 1
    assert model.n_model_steps >= 4 and model.model_rounds_trained == 0 and model.model_buffer.size() == 0
    assert model._model_rounds_kept == model.n_model_steps  # train/model_trainings_kept_previous


@pytest.mark.parametrize(
    "bonus, normalize_targets, warned", [(0.0, False, False), (1000.0, False, True), (1000.0, True, False)]
)
def test_rewards_of_a_scale_raw_model_targets_fit_poorly_are_said_once(bonus, normalize_targets, warned):
    from conftest import TINY_PMAC_KWARGS

    env = gym.wrappers.TransformReward(gym.make("Pendulum-v1"), lambda reward: reward + bonus)
    dynamics_kwargs = {**TINY_PMAC_KWARGS["dynamics_kwargs"], "normalize_targets": normalize_targets}
    kwargs = {**TINY_PMAC_KWARGS, "learning_starts": 40, "model_train_freq": 20, "dynamics_kwargs": dynamics_kwargs}
    model = PMAC("MlpPolicy", env, **kwargs, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(100)  # model steps at 41, 61, 81
    assert model.n_model_steps == 3
    said = [str(w.message) for w in caught if "real rewards have mean" in str(w.message)]
    assert len(said) == int(warned)
    if warned:
        assert "mean 99" in said[0] and "normalize_targets=True" in said[0]


def test_missing_env_is_a_clear_error():
    # the env is optional in the signature only for PMAC("Hopper-v4") and SB3's load
    with pytest.raises(ValueError, match="needs an environment"):
        PMAC("MlpPolicy")


# ---------------------------------------------------------------------------------------------- parameters
def test_get_and_set_parameters_carry_the_dynamics_model(tmp_path):
    from conftest import TINY_PMAC_KWARGS

    def make(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return PMAC("MlpPolicy", "Pendulum-v1", seed=seed, **TINY_PMAC_KWARGS)

    trained = make(0)
    trained.learn(160)  # model steps at 101 and 151
    parameters = trained.get_parameters()
    assert {"policy", "dynamics_model", "model_trainer.optimizer"} <= set(parameters)
    inputs = th.as_tensor(np.random.RandomState(0).uniform(-1, 1, (8, 4)), dtype=th.float32)
    trained.save(tmp_path / "agent")
    for source in (parameters, tmp_path / "agent.zip"):
        other = make(1)
        assert not th.equal(other.dynamics_model(inputs)[0], trained.dynamics_model(inputs)[0])
        other.set_parameters(source, exact_match=True)
        with th.no_grad():  # weights, input normalizer and elites
            for actual, expected in zip(other.dynamics_model(inputs), trained.dynamics_model(inputs), strict=True):
                assert th.equal(actual, expected)
        assert th.equal(other.dynamics_model.elite_indices, trained.dynamics_model.elite_indices)
        np.testing.assert_array_equal(other.predict(inputs[:, :3].numpy(), deterministic=True)[0],
                                      trained.predict(inputs[:, :3].numpy(), deterministic=True)[0])  # fmt: skip


# ---------------------------------------------------------------------------------------------- vectorized envs
def test_bounded_model_training_rows_count_the_transitions_of_all_envs():
    from conftest import TINY_PMAC_KWARGS
    from stable_baselines3.common.env_util import make_vec_env

    # model_train_freq counts transitions of all envs (num_timesteps): a version holds ~50 of them whatever n_envs is,
    # so the effective support is 50 * 1.5 / 0.5 = 150 transitions, not n_envs times that
    kwargs = {**TINY_PMAC_KWARGS, "adaptation_rate": 0.5, "learning_starts": 200}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=4, seed=0), seed=0, **kwargs)
    model.learn(400)
    versions, counts = model.replay_buffer.version_counts()
    assert len(versions) >= 4 and set(counts[1:-1].tolist()) <= {48, 52}  # 12 or 13 vector steps of 4 envs: 50 on average
    info = model._last_model_info
    assert model.model_training_rows() == info.n_train + info.n_holdout == 150


# ---------------------------------------------------------------------------------------------- model step data
def test_model_step_waits_for_an_interaction_epoch_of_data():
    from conftest import TINY_PMAC_KWARGS

    # learning_starts 0: the first model step is due at once, but the warm-up version must hold a whole interaction
    # epoch, else its one transition would get the weight of a whole policy (alpha^k) in every draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **{**TINY_PMAC_KWARGS, "learning_starts": 0})
    model.learn(49)
    assert model.n_model_steps == 0 and model._n_updates == 49  # SAC updates on real data meanwhile, as in SB3
    model.learn(61, reset_num_timesteps=False)
    _, counts = model.replay_buffer.version_counts()
    assert model.n_model_steps == 2 and counts.tolist() == [50, 50, 10]


def test_resuming_without_the_replay_buffer_keeps_the_loaded_model(tmp_path):
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY_PMAC_KWARGS)
    model.learn(160)  # model steps at 101 and 151; the next is due at 201
    model.save(tmp_path / "agent")
    loaded = PMAC.load(tmp_path / "agent", env=gym.make("Pendulum-v1"))
    saved = {k: v.clone() for k, v in loaded.dynamics_model.state_dict().items()}
    loaded.learn(45, reset_num_timesteps=False)  # step 205: due, but 45 < 50 transitions in the fresh buffer
    assert loaded.n_model_steps == 2
    for key, value in loaded.dynamics_model.state_dict().items():
        assert th.equal(value, saved[key]), key
    loaded.learn(5, reset_num_timesteps=False)  # the 50th transition: the model step runs
    assert loaded.n_model_steps == 3 and loaded.model_buffer.size() > 0
    assert any(not th.equal(value, saved[key]) for key, value in loaded.dynamics_model.state_dict().items())


def test_save_replay_buffer_of_a_loaded_agent_keeps_the_buffer_size(tmp_path):
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        PMAC("MlpPolicy", "Pendulum-v1", **TINY_PMAC_KWARGS).save(tmp_path / "agent")
        loaded = PMAC.load(tmp_path / "agent")  # an empty buffer of the agent's size
        loaded.save_replay_buffer(tmp_path / "buffer")
        other = PMAC("MlpPolicy", "Pendulum-v1", **TINY_PMAC_KWARGS)
    other.load_replay_buffer(tmp_path / "buffer")
    assert other.replay_buffer.buffer_size == TINY_PMAC_KWARGS["buffer_size"] and other.replay_buffer.size() == 0
    other.learn(120)
    assert other.replay_buffer.size() == 120


# ---------------------------------------------------------------------------------------------- env changes
def test_a_refused_set_env_leaves_the_agent_as_it_was():
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", gym.make("Hopper-v5"), **TINY_PMAC_KWARGS)
    env, termination_fn = model.env, model.termination_fn
    hopper = gym.make("Hopper-v5")
    scaled = gym.wrappers.TransformObservation(hopper, lambda obs: 10 * obs, hopper.observation_space)
    with pytest.raises(ValueError, match="observation wrappers"):
        model.set_env(scaled)
    assert model.env is env and model.termination_fn is termination_fn


# ---------------------------------------------------------------------------------------------- termination rules
def test_a_termination_fn_that_misses_the_envs_terminations_warns_once():
    from conftest import TINY_PMAC_KWARGS

    from sb3_pmac.termination import NeverTerminate
    from sb3_pmac.termination.agreement import termination_agreement

    kwargs = {**TINY_PMAC_KWARGS, "model_trainer_kwargs": dict(max_epochs=1)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PMAC("MlpPolicy", gym.make("Hopper-v5"), seed=0, termination_fn=NeverTerminate(), **kwargs)
        model.learn(160)  # random warm-up: a Hopper falls every ~20-40 steps
    messages = [str(w.message) for w in caught if "disagrees with the env" in str(w.message)]
    assert len(messages) == 1 and "misses" in messages[0]
    agreement = termination_agreement(model.termination_fn, model.replay_buffer)
    assert agreement.n_terminal >= 3 and agreement.missed_rate == 1.0 and agreement.false_rate == 0.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PMAC("MlpPolicy", gym.make("Hopper-v5"), seed=0, **kwargs)  # the derived Hopper rule
        model.learn(160)
    assert not [w for w in caught if "disagrees with the env" in str(w.message)]
    agreement = termination_agreement(model.termination_fn, model.replay_buffer)
    assert agreement.n_terminal >= 3 and agreement.n_missed == 0 and agreement.n_false == 0


# ---------------------------------------------------------------------------------------------- an SB3 user's paths
def _tiny(env="Pendulum-v1", **kwargs):
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return PMAC("MlpPolicy", env, **{**TINY_PMAC_KWARGS, **kwargs})


def _add_transitions(buffer, env, n, seed=0):
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)[0]
    for _ in range(n):
        action = rng.uniform(-1, 1, (1, *env.action_space.shape)).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(env.action_space.high * action[0])
        buffer.add(obs[None], next_obs[None], action, np.array([reward]), np.array([terminated]), [{}])
        obs = env.reset()[0] if terminated or truncated else next_obs


def test_transitions_added_to_a_loaded_agents_buffer_are_kept(tmp_path):
    """SB3's pattern of filling a loaded agent's buffer (demonstrations) or handing it another agent's buffer."""
    _tiny().save(tmp_path / "agent")
    env = gym.make("Pendulum-v1")
    loaded = PMAC.load(tmp_path / "agent", env=env)
    assert loaded.replay_buffer.buffer_size == 10_000 and loaded.replay_buffer.size() == 0
    _add_transitions(loaded.replay_buffer, env, 150)
    assert loaded.replay_buffer.size() == 150
    stored = loaded.replay_buffer.observations[:150].copy()
    loaded.learn(10, reset_num_timesteps=False)
    assert loaded.replay_buffer.size() == 160
    np.testing.assert_array_equal(loaded.replay_buffer.observations[:150], stored)

    donor = _tiny()
    donor.learn(120)
    other = PMAC.load(tmp_path / "agent", env=env)
    other.replay_buffer = donor.replay_buffer
    other.learn(10, reset_num_timesteps=False)
    assert other.replay_buffer is donor.replay_buffer and other.replay_buffer.size() == 130


def test_an_sb3_buffer_or_agent_file_is_refused_with_the_way_to_use_it(tmp_path):
    from stable_baselines3 import SAC

    sac = SAC("MlpPolicy", "Pendulum-v1", buffer_size=1000, learning_starts=10, policy_kwargs=dict(net_arch=[32, 32]))
    sac.learn(20)
    model = _tiny()
    model.replay_buffer = sac.replay_buffer
    with pytest.raises(TypeError, match=r"load_replay_buffer\(path, allow_pickle=True\)"):
        model.learn(10)
    sac.save(tmp_path / "sac")
    with pytest.raises(ValueError, match="saved by another algorithm"):
        PMAC.load(tmp_path / "sac")
    # the route the message gives: a PMAC agent starts from the SAC agent's networks
    model = _tiny()
    model.set_parameters(tmp_path / "sac", exact_match=False)
    for actual, expected in zip(model.actor.parameters(), sac.actor.parameters(), strict=True):
        assert th.equal(actual, expected)
    # ... also with PMAC's default fixed coefficient (0.2), which has no optimizer for SAC's learned one ("auto")
    fixed = _tiny(ent_coef=0.2)
    assert fixed.ent_coef_optimizer is None and sac.ent_coef_optimizer is not None
    with pytest.warns(UserWarning, match=r"skipped ent_coef_optimizer: .*fixed, ent_coef=0.2"):
        fixed.set_parameters(tmp_path / "sac", exact_match=False)
    for actual, expected in zip(fixed.critic.parameters(), sac.critic.parameters(), strict=True):
        assert th.equal(actual, expected)
    assert fixed.ent_coef == 0.2 and fixed.ent_coef_optimizer is None
    with pytest.raises(ValueError, match=r"ent_coef_optimizer: .*pass exact_match=False"):
        fixed.set_parameters(sac.get_parameters(), exact_match=True)
    fixed.learn(20)  # trains on with its own coefficient


def test_set_random_seed_repeats_a_run_model_training_included():
    """SB3: agents re-seeded alike, with the same parameters, learn alike (here through model steps)."""
    first, second = _tiny(seed=1), _tiny(seed=2)
    second.set_parameters(first.get_parameters(), exact_match=True)
    for model in (first, second):
        model.set_random_seed(7)
        model.learn(160)  # model steps at 101 and 151: hold-out splits and minibatches drawn by the trainer
    for (name, actual), expected in zip(first.dynamics_model.state_dict().items(),
                                        second.dynamics_model.state_dict().values(), strict=True):  # fmt: skip
        assert th.equal(actual, expected), name
    for actual, expected in zip(first.actor.parameters(), second.actor.parameters(), strict=True):
        assert th.equal(actual, expected)


def test_numpy_integer_gradient_steps_are_accepted():
    model = _tiny(gradient_steps=np.int64(2))
    assert model.gradient_steps == 2 and type(model.gradient_steps) is int
    with pytest.raises(ValueError, match="gradient_steps"):
        _tiny(gradient_steps=np.bool_(True))


def test_gsde_rollouts_draw_a_fresh_exploration_matrix_per_branch():
    """With gSDE, one shared matrix would give every branch from a state the same action; SB3 gives each env its own."""
    model = _tiny(use_sde=True, seed=0, policy_kwargs=dict(net_arch=[32, 32], log_std_init=0.0))
    n = 4000
    state = np.random.default_rng(0).uniform(-1, 1, (1, 3)).astype(np.float32)
    states = th.as_tensor(state.repeat(n, axis=0))
    th.manual_seed(0)
    with th.no_grad():
        actions = model.rollout_policy(states)
        model.actor.reset_noise(n)  # SB3's own per-env matrices (its bmm path): the reference distribution
        reference = model.actor(states, deterministic=False)
    assert actions.shape == reference.shape == (n, 1)
    std = reference.std()
    assert std > 0.3  # log_std_init=0: the state's noise is large
    # the same distribution: mean within 4 standard errors of the difference, std within 5 %, matching quantiles
    assert abs(actions.mean() - reference.mean()) < 4 * std * np.sqrt(2 / n)
    assert abs(actions.std() / std - 1) < 0.05
    quantiles = th.tensor([0.1, 0.5, 0.9])
    assert th.allclose(th.quantile(actions[:, 0], quantiles), th.quantile(reference[:, 0], quantiles), atol=0.15 * std)


@pytest.mark.parametrize("policy", ["CnnPolicy", "MultiInputPolicy"])
def test_sacs_image_and_dict_policies_are_refused_by_name(policy):
    # SAC's own error here would be about its feature extractor ('Box' has no attribute 'spaces', NatureCNN images)
    for env in (SpacesEnv(BOX_OBS, BOX_ACT), None):
        with pytest.raises(ValueError, match="supports policy='MlpPolicy' only, got '" + policy):
            PMAC(policy, env)
    assert set(PMAC.policy_aliases) == {"MlpPolicy"}
    model = PMAC("MlpPolicy", SpacesEnv(BOX_OBS, BOX_ACT), buffer_size=100)
    assert type(model.policy) is SAC.policy_aliases["MlpPolicy"]


def test_the_policy_alone_loads_with_sb3_alone(tmp_path):
    """Deployment without sb3-pmac (docs/quickstart.md): ``model.policy.save``, then SB3's ``SACPolicy.load``."""
    import subprocess
    import sys

    model = _tiny()
    model.learn(120)  # trained past a model step
    model.policy.save(tmp_path / "policy.pth")
    observations = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", observations)
    script = (
        "import sys; sys.modules['sb3_pmac'] = None\n"  # importing sb3_pmac fails, as where it is not installed
        "import numpy as np\n"
        "from stable_baselines3.sac.policies import SACPolicy\n"
        f"policy = SACPolicy.load({str(tmp_path / 'policy.pth')!r}, device='cpu')\n"
        f"actions, _ = policy.predict(np.load({str(tmp_path / 'obs.npy')!r}), deterministic=True)\n"
        f"np.save({str(tmp_path / 'actions.npy')!r}, actions)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    expected, _ = model.predict(observations, deterministic=True)
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), expected)


def test_a_model_step_a_whole_period_late_restarts_the_schedule():
    """Learning paused (gradient_steps=0) until the step due at 201 comes at 251: the next one 50 steps on, not at once."""
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0})
    steps = []
    model_step = model._model_step
    model._model_step = lambda: (steps.append(model.num_timesteps), model_step())[1]
    model.learn(160)  # model steps at 101 and 151: the next is due at 201
    model.gradient_steps = 0  # collect without training up to step 250
    model.learn(90, reset_num_timesteps=False)
    model.gradient_steps = 1
    model.learn(60, reset_num_timesteps=False)
    assert steps == [101, 151, 251, 301]


def test_a_restart_without_warm_up_stays_in_the_current_policys_version():
    """
    learning_starts=0: a restarted run (num_timesteps reset) has no random warm-up: its first transitions are the
    current policy's, no version of their own (a new one would hold a single transition and weigh a whole version).
    """
    from conftest import TINY_PMAC_KWARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "seed": 0, "learning_starts": 0})
        model.learn(60)  # model step at 50 (one epoch of data): versions 0: 50, 1: 10
        model.learn(60)  # restarted: a model step at once (data enough), then at 51
    versions, counts = model.replay_buffer.version_counts()
    assert dict(zip(versions.tolist(), counts.tolist(), strict=True)) == {0: 50, 1: 11, 2: 50, 3: 9}


def test_random_states_restore_pythons_generator_too():
    import random

    from sb3_pmac.random_state import get_global_rng_states, preserved_rng_states, set_global_rng_states

    states = get_global_rng_states("cpu")
    first = (random.random(), np.random.rand(), th.rand(1).item())
    set_global_rng_states(states, "cpu")
    assert (random.random(), np.random.rand(), th.rand(1).item()) == first
    before = random.getstate()
    with preserved_rng_states("cpu"):
        random.random()
    assert random.getstate() == before
