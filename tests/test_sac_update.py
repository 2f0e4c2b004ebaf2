"""The fast SAC update path (sb3_pmac.fast_sac) against SB3's own SAC.train, and in PMAC.learn."""

import copy
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.sac.policies import Actor, SACPolicy

from sb3_pmac import PMAC, fast_sac
from sb3_pmac.fast_sac import (
    kernels,
    reference_sac_train,
    sac_updates,
    sample_batches,
    stack_batches,
    training,
    use_fused_adam,
)
from sb3_pmac.mixed_sampler import MixedReplaySampler
from sb3_pmac.model_buffer import ModelReplayBuffer

OBS_DIM, ACT_DIM, BATCH = 11, 3, 64


class BoxEnv(gym.Env):
    """Hopper-like spaces (obs 11, action 3); the dynamics do not matter here."""

    observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    def reset(self, seed=None, options=None):
        return np.zeros(OBS_DIM, np.float32), {}

    def step(self, action):
        return np.zeros(OBS_DIM, np.float32), 0.0, False, False, {}


class LinearExtractor(BaseFeaturesExtractor):
    """A features extractor with parameters (SB3's default, ``FlattenExtractor``, has none)."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.linear = th.nn.Linear(int(observation_space.shape[0]), features_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(observations))


class TanhLogStdActor(Actor):
    """An actor that squashes its log-std into a range (CleanRL's form): an override SB3's train goes through."""

    def get_action_dist_params(self, obs):
        mean, log_std, kwargs = super().get_action_dist_params(obs)
        return mean, -5 + 3.5 * (th.tanh(log_std) + 1), kwargs


class TanhLogStdPolicy(SACPolicy):
    def make_actor(self, features_extractor=None):
        return TanhLogStdActor(**self._update_features_extractor(self.actor_kwargs, features_extractor)).to(self.device)


class HalfCritic(ContinuousCritic):
    """Critics that halve their values: a subclass overriding ``forward``."""

    def forward(self, obs, actions):
        return tuple(0.5 * q for q in super().forward(obs, actions))


class HalfCriticPolicy(SACPolicy):
    def make_critic(self, features_extractor=None):
        return HalfCritic(**self._update_features_extractor(self.critic_kwargs, features_extractor)).to(self.device)


def make_sac(policy="MlpPolicy", **kwargs) -> SAC:
    kwargs.setdefault("policy_kwargs", dict(net_arch=[64, 64]))
    kwargs.setdefault("device", "cpu")  # tests/test_cuda.py: "cuda"
    model = SAC(policy, BoxEnv(), buffer_size=1000, batch_size=BATCH, seed=0, **kwargs)
    model.set_logger(configure(None, []))
    return model


def twins(**kwargs) -> tuple[SAC, SAC]:
    """Two SAC agents with identical parameters and optimizer states."""
    a, b = make_sac(**kwargs), make_sac(**kwargs)
    b.policy.load_state_dict(a.policy.state_dict())
    if a.log_ent_coef is not None:
        with th.no_grad():
            b.log_ent_coef.copy_(a.log_ent_coef)
    return a, b


def random_batches(n_steps: int, seed: int = 0) -> ReplayBufferSamples:
    g = th.Generator().manual_seed(seed)
    n = n_steps * BATCH
    return stack_batches(
        ReplayBufferSamples(
            observations=th.randn(n, OBS_DIM, generator=g),
            actions=th.rand(n, ACT_DIM, generator=g) * 2 - 1,
            next_observations=th.randn(n, OBS_DIM, generator=g),
            dones=(th.rand(n, 1, generator=g) < 0.1).float(),
            rewards=th.randn(n, 1, generator=g),
        ),
        n_steps,
    )


def state(model: SAC) -> dict[str, th.Tensor]:
    tensors = {name: t.detach().clone() for name, t in model.policy.state_dict().items()}
    if model.log_ent_coef is not None:
        tensors["log_ent_coef"] = model.log_ent_coef.detach().clone()
    return tensors


def assert_same_parameters(a: SAC, b: SAC, atol: float = 1e-5) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        th.testing.assert_close(sa[name], sb[name], rtol=0, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


def check_against_sb3(n_steps: int, manual_backward, calls: int = 1, **kwargs) -> None:
    reference, fast = twins(**kwargs)
    for call in range(calls):
        batches = random_batches(n_steps, seed=call)
        th.manual_seed(100 + call)  # the actors' action noise: drawn in the same order by both
        reference_sac_train(reference, n_steps, BATCH, batches=batches)
        th.manual_seed(100 + call)
        stats = sac_updates(fast, batches, manual_backward=manual_backward)
        logged = reference.logger.name_to_value
        assert stats.n_updates == n_steps
        assert stats.actor_loss == pytest.approx(logged["train/actor_loss"], rel=1e-5, abs=1e-6)
        assert stats.critic_loss == pytest.approx(logged["train/critic_loss"], rel=1e-5, abs=1e-6)
        assert stats.ent_coef == pytest.approx(logged["train/ent_coef"], rel=1e-6)
        if fast.ent_coef_optimizer is not None:
            assert stats.ent_coef_loss == pytest.approx(logged["train/ent_coef_loss"], rel=1e-5, abs=1e-7)
        else:
            assert stats.ent_coef_loss is None
        assert_same_parameters(reference, fast)


# ---------------------------------------------------------------------------------------------- same math as SB3
@pytest.mark.parametrize("manual_backward", [True, False], ids=["manual", "autograd"])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_same_updates_as_sb3_auto_ent_coef(n_steps, manual_backward):
    check_against_sb3(n_steps, manual_backward)


@pytest.mark.parametrize("manual_backward", [True, False], ids=["manual", "autograd"])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_same_updates_as_sb3_fixed_ent_coef_and_target_interval(n_steps, manual_backward):
    check_against_sb3(n_steps, manual_backward, ent_coef=0.1, target_update_interval=2)


def test_same_updates_as_sb3_over_several_calls():
    # the Adam states carry over between calls; the target interval counts from 0 in every call, as in SB3
    check_against_sb3(3, None, calls=3, target_update_interval=2, learning_starts=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(policy_kwargs=dict(net_arch=[32, 32], activation_fn=th.nn.Tanh)),  # not ReLU: autograd networks
        dict(policy_kwargs=dict(net_arch=[32]), use_sde=True),  # gSDE: SB3's own actor
        dict(policy_kwargs=dict(net_arch=dict(pi=[32], qf=[32, 32]), n_critics=3), ent_coef="auto_0.5"),
        dict(policy_kwargs=dict(net_arch=[32, 32], optimizer_kwargs=dict(amsgrad=True, weight_decay=1e-4))),
        dict(policy_kwargs=dict(net_arch=[32, 32], optimizer_class=th.optim.SGD, optimizer_kwargs=dict(momentum=0.9))),
        # a features extractor with parameters: the critic's own, or the actor's (shared: critic losses leave it alone)
        dict(policy_kwargs=dict(net_arch=[32], features_extractor_class=LinearExtractor)),
        dict(policy_kwargs=dict(net_arch=[32], features_extractor_class=LinearExtractor, share_features_extractor=True)),
        # subclasses of SB3's actor or critics: their overrides count, as in SB3 (the fast path recomputed SB3's math)
        dict(policy=TanhLogStdPolicy, policy_kwargs=dict(net_arch=[32, 32])),
        dict(policy=HalfCriticPolicy, policy_kwargs=dict(net_arch=[32, 32])),
    ],
    ids=[
        "tanh",
        "gsde",
        "three-critics",
        "amsgrad",
        "sgd",
        "own-extractor",
        "own-extractor-shared",
        "actor-subclass",
        "critic-subclass",
    ],
)
def test_other_networks_take_a_path_with_the_same_math(kwargs):
    check_against_sb3(3, None, **kwargs)


@pytest.mark.parametrize("manual_backward", [True, False], ids=["manual", "autograd"])
def test_log_std_bounds_are_read_as_sb3_reads_them(manual_backward, monkeypatch):
    """SB3 reads its module's LOG_STD_MIN / LOG_STD_MAX at every call: a patched bound applies to both."""
    from stable_baselines3.sac import policies as sac_policies

    monkeypatch.setattr(sac_policies, "LOG_STD_MIN", -2.0)
    reference, fast = twins()
    for model in (reference, fast):
        with th.no_grad():
            model.actor.log_std.bias.fill_(-3.0)  # below the patched bound: the clamp decides
    batches = random_batches(3)
    th.manual_seed(100)
    reference_sac_train(reference, 3, BATCH, batches=batches)
    th.manual_seed(100)
    stats = sac_updates(fast, batches, manual_backward=manual_backward)
    assert stats.critic_loss == pytest.approx(reference.logger.name_to_value["train/critic_loss"], rel=1e-5, abs=1e-6)
    assert_same_parameters(reference, fast)


def test_manual_backward_required_but_unsupported():
    model = make_sac(policy_kwargs=dict(net_arch=[32], activation_fn=th.nn.Tanh))
    with pytest.raises(ValueError, match="manual_backward"):
        sac_updates(model, random_batches(1), manual_backward=True)


def test_manual_and_autograd_paths_agree_to_rounding():
    # the same operations, but the critics' batched products may round differently from one product per critic
    a, b = twins()
    batches = random_batches(5)
    th.manual_seed(0)
    sac_updates(a, batches, manual_backward=True)
    th.manual_seed(0)
    sac_updates(b, batches, manual_backward=False)
    assert_same_parameters(a, b, atol=1e-7)


def test_callable_batch_source_and_errors():
    model = make_sac()
    calls = []

    def draw(n):
        calls.append(n)
        return ReplayBufferSamples(*(t.reshape(-1, *t.shape[2:]) for t in random_batches(4)[:5]))

    stats = sac_updates(model, draw, gradient_steps=4, batch_size=BATCH)
    assert calls == [4 * BATCH] and stats.n_updates == 4 and np.isfinite(stats.actor_loss)
    with pytest.raises(ValueError, match="gradient_steps"):
        sac_updates(model, draw)
    with pytest.raises(ValueError, match="updates"):
        sac_updates(model, random_batches(2), gradient_steps=3)


def test_fused_kernel_continues_the_existing_optimizers_and_leaves_their_settings():
    model = make_sac()
    reference_sac_train(model, 2, BATCH, batches=random_batches(2))  # Adam states created by the usual step()
    sac_updates(model, random_batches(2))
    for optimizer in (model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer):
        assert all(group["fused"] is None and group["foreach"] is None for group in optimizer.param_groups)
        assert all(float(s["step"]) == 4 and s["step"].device.type == "cpu" for s in optimizer.state.values())
    # SB3's own train() still works on the same optimizers
    reference_sac_train(model, 2, BATCH, batches=random_batches(2))
    assert all(float(s["step"]) == 6 for s in model.critic.optimizer.state.values())
    # use_fused_adam (public) still switches an optimizer on request
    assert use_fused_adam(model.critic.optimizer) and all(g["fused"] for g in model.critic.optimizer.param_groups)


def fill(buffer, n: int = 50) -> None:
    for _ in range(n):
        buffer.add(np.zeros((1, OBS_DIM)), np.zeros((1, OBS_DIM)), np.zeros((1, ACT_DIM)), np.zeros(1), np.zeros(1), [{}])


def test_train_entry_point_does_what_sac_train_does():
    model = make_sac()
    fill(model.replay_buffer)
    model._current_progress_remaining = 0.5
    stats = fast_sac.train(model, 3, BATCH)
    assert stats is not None and stats.n_updates == 3 and model._n_updates == 3
    logged = model.logger.name_to_value
    assert logged["train/n_updates"] == 3 and logged["train/learning_rate"] == 3e-4
    assert logged["train/actor_loss"] == stats.actor_loss and logged["train/critic_loss"] == stats.critic_loss
    assert logged["train/ent_coef"] == stats.ent_coef and logged["train/ent_coef_loss"] == stats.ent_coef_loss
    assert model.policy.training
    assert fast_sac.train(model, 0, BATCH) is None and model._n_updates == 3


class StackedBatches:
    """A sampler of prepared stacked batches (``sample_stacked`` only)."""

    def __init__(self, batches: ReplayBufferSamples) -> None:
        self.batches = batches

    def sample_stacked(self, gradient_steps, batch_size, env=None) -> ReplayBufferSamples:
        return self.batches


def _freeze_critic_input_layer(model: SAC) -> None:
    for q_net in model.critic.q_networks:
        q_net[0].weight.requires_grad_(False)


def _zero_actor_gradients(model: SAC) -> None:
    for param in model.actor.parameters():
        param.register_hook(lambda grad: grad * 0)


def _halve_q_values(model: SAC) -> None:
    for critic in (model.critic, model.critic_target):
        critic.register_forward_hook(lambda module, inputs, output: tuple(q / 2 for q in output))


def _double_actor_inputs(model: SAC) -> None:
    model.actor.register_forward_pre_hook(lambda module, inputs: (inputs[0] * 2,))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_freeze_critic_input_layer, "parameters frozen with requires_grad=False"),
        (_zero_actor_gradients, "gradient hooks on parameters"),
        (_halve_q_values, "module hooks"),
        (_double_actor_inputs, "module hooks"),
    ],
    ids=["frozen", "grad_hook", "forward_hook", "forward_pre_hook"],
)
def test_what_the_fast_path_cannot_honour_runs_sb3s_update(change, reason):
    # the fast path computes SB3's gradients without calling the modules or writing .grad: frozen layers moved,
    # hooks were skipped (parameters off by ~1e-3 after 3 updates), a frozen features extractor crashed learn()
    reference, fast = twins()
    for model in (reference, fast):
        change(model)
    frozen_before = reference.critic.q_networks[0][0].weight.detach().clone()
    batches = random_batches(3)
    th.manual_seed(1)
    reference_sac_train(reference, 3, BATCH, batches=batches)
    th.manual_seed(1)
    with pytest.warns(UserWarning, match=f"run SB3's own SAC.train .* cannot honour {reason}"):
        assert fast_sac.train(fast, 3, BATCH, sampler=StackedBatches(batches)) is None
    assert_same_parameters(reference, fast, atol=0)
    if change is _freeze_critic_input_layer:
        assert th.equal(fast.critic.q_networks[0][0].weight, frozen_before)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per agent
        fast_sac.train(fast, 1, BATCH, sampler=StackedBatches(random_batches(1)))
    assert fast._n_updates == 4


def test_a_frozen_features_extractor_trains_pmac():
    class FrozenExtractor(LinearExtractor):
        def __init__(self, observation_space, features_dim: int = 8) -> None:
            super().__init__(observation_space, features_dim)
            self.requires_grad_(False)

    model = PMAC("MlpPolicy", "Pendulum-v1", **{**TINY_PMAC_KWARGS, "policy_kwargs": dict(
        features_extractor_class=FrozenExtractor, net_arch=[16])})  # fmt: skip
    frozen = {name: t.clone() for name, t in model.actor.features_extractor.state_dict().items()}
    with pytest.warns(UserWarning, match="cannot honour parameters frozen"):
        model.learn(150)
    assert model._n_updates > 0
    for name, value in model.actor.features_extractor.state_dict().items():
        assert th.equal(value, frozen[name]), name


# ---------------------------------------------------------------------------------------------- batches
def test_sample_batches_keeps_the_real_model_split():
    real = make_sac().replay_buffer
    fill(real)
    model_buffer = ModelReplayBuffer(100, OBS_DIM, ACT_DIM)
    n = 80
    model_buffer.add(th.ones(n, OBS_DIM), th.ones(n, ACT_DIM), th.full((n,), 7.0), th.ones(n, OBS_DIM), th.zeros(n))
    sampler = MixedReplaySampler(real, model_buffer, real_ratio=0.25)
    batches = sample_batches(sampler, 5, 40)
    assert batches.observations.shape == (5, 40, OBS_DIM) and batches.rewards.shape == (5, 40, 1)
    # every batch: its 10 real samples first, then its 30 model samples
    assert (batches.rewards[:, :10] == 0).all() and (batches.rewards[:, 10:] == 7).all()
    plain = sample_batches(real, 3, 16)
    assert plain.actions.shape == (3, 16, ACT_DIM)
    one = sampler.sample(40)  # one batch: the same split
    assert one.observations.shape == (40, OBS_DIM) and (one.rewards[:10] == 0).all() and (one.rewards[10:] == 7).all()


# ---------------------------------------------------------------------------------------------- in PMAC
TINY = {**TINY_PMAC_KWARGS, "gradient_steps": 2}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "sb3"])
def test_pmac_learn_logs_the_sac_keys(fast, monkeypatch):
    monkeypatch.setattr(kernels, "FAST_PATH_ENABLED", fast)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY)
    model.set_logger(configure(None, []))
    seen = {}
    original = model.logger.record

    def record(key, value, exclude=None):
        seen[key] = value
        original(key, value, exclude)

    model.logger.record = record
    model.learn(160)
    assert model._n_updates == 2 * (160 - 100)
    for key in ("train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss", "time/sac_s"):
        assert np.isfinite(seen[key]), key
    assert seen["train/n_updates"] == model._n_updates and seen["train/learning_rate"] == 3e-4
    assert model.model_buffer.size() > 0
    # the critics' parameters are still SB3's modules: predict and a state_dict round trip see the trained values
    clone = copy.deepcopy(model.policy.state_dict())
    model.policy.load_state_dict(clone)
    action, _ = model.predict(np.zeros(3, np.float32), deterministic=True)
    assert action.shape == (1,)


# ---------------------------------------------------------------------------------------------- private kernels
def test_the_private_kernels_pass_their_trial_call(monkeypatch):
    monkeypatch.setattr(kernels, "_KERNEL_ERRORS", {})  # run the trials again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fast_sac.kernel_error("cpu") is None
        assert fast_sac.fast_path_available("cpu")
        monkeypatch.setattr(kernels, "FAST_PATH_ENABLED", False)  # the user's switch: off without a warning
        assert not fast_sac.fast_path_available("cpu")


def _raise_type_error(*args, **kwargs):
    raise TypeError("got an unexpected keyword argument (a new signature)")


BROKEN_KERNELS = {  # (module, attribute, replacement)
    "torch._fused_adam_": (th, "_fused_adam_", _raise_type_error),
    "torch._fused_adamw_": (th, "_fused_adamw_", _raise_type_error),
    "torch.ops.aten.threshold_backward.grad_input": (kernels, "THRESHOLD_BACKWARD", _raise_type_error),
    "torch.ops.aten.tanh_backward": (kernels, "TANH_BACKWARD", _raise_type_error),
    "torch._fused_adam_ (does nothing)": (th, "_fused_adam_", lambda *args, **kwargs: None),
}


@pytest.fixture(params=list(BROKEN_KERNELS))
def broken_kernel(request, monkeypatch) -> str:
    """A private kernel that fails (a new signature) or does something else; the trials not yet run, no warning yet."""
    module, attribute, replacement = BROKEN_KERNELS[request.param]
    monkeypatch.setattr(module, attribute, replacement)
    monkeypatch.setattr(kernels, "_KERNEL_ERRORS", {})
    monkeypatch.setattr(kernels, "_FALLBACK_WARNED", False)
    return request.param.split(" ")[0]


def test_a_failing_kernel_turns_the_fast_path_off_with_one_warning(broken_kernel):
    with pytest.warns(UserWarning, match=re.escape(broken_kernel) + ".*SB3's SAC.train is used"):
        assert not fast_sac.fast_path_available("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        assert not fast_sac.fast_path_available("cpu")
    # called directly, the fast path refuses clearly
    with pytest.raises(RuntimeError, match="sac_updates needs torch's private kernels: " + re.escape(broken_kernel)):
        sac_updates(make_sac(), random_batches(1))


def test_pmac_falls_back_to_sb3_when_a_kernel_fails(broken_kernel, monkeypatch):
    reference_calls = []
    original = training.reference_sac_train

    def reference(*args, **kwargs):
        reference_calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "reference_sac_train", reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **TINY)
    model.set_logger(configure(None, []))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(120)
    fallback = [w for w in caught if "Fast SAC updates unavailable" in str(w.message)]
    assert len(fallback) == 1 and broken_kernel in str(fallback[0].message)
    assert fallback[0].category is UserWarning
    assert reference_calls == [2] * 20 and model._n_updates == 2 * 20
