"""
The gradients of the fast SAC updates (sb3_pmac.fast_sac) against autograd's on SB3's own ``SAC.train``.

Comparing parameters after Adam steps hides the scale of a gradient (Adam's step is nearly ``lr * sign(grad)``), so
these tests compare the gradients themselves. Every gradient of the fast path is handed to ``AdamStep.step``, every
gradient of SB3's ``SAC.train`` is in ``param.grad`` when its optimizers' ``step`` runs: both are recorded, for the
same updates from the same state, batches and action noise (SB3's order in each update: entropy coefficient, critics,
actor with the critics just updated), and compared tensor by tensor.

Tolerances (float32, as SB3 runs; measured on a 2-core x86 CPU, torch 2.13, SB3 2.9):

* gradients, ``GRAD_RTOL = 1e-5`` on ``|fast - sb3| / |sb3|`` (Frobenius norms, each tensor of each optimizer step):
  the two paths round differently (batched critics, other summation orders) and the later updates start from
  parameters that differ by that rounding. Measured on the setups below: at most 2.4e-7, except the scalar
  output-layer bias gradients of the critics, a mean of O(1) residuals that nearly cancel (1.3e-6 here, 3.1e-6 at
  worst over 12 batch seeds per setup). A 1% error in one tensor is a relative error of 1e-2, 1000 times the tolerance;
* trajectories, ``TRAJECTORY_RTOL = 1e-4`` on ``|fast - sb3| / |sb3 - initial|`` (each parameter tensor, targets and
  ``log_ent_coef`` included, after 60 updates): measured at most 6e-6 here (9.4e-6 over 100 updates of 256-wide
  networks, batch 256). With plain SGD a 1% error in one gradient moves its tensor 1% off (>= 8.1e-3 measured);
  with Adam it is invisible (Adam's step does not scale with the gradient), hence the gradient comparisons.

A wrong gradient is caught: ``test_gradient_check_catches_a_one_percent_error`` scales each gradient tensor of the
hand-written path in turn by 1.01 (through the ``AdamStep.step`` wrapper) and asserts that the gradient check fails
(its relative error is then 1e-2). The same sweep against the plain-SGD trajectory is
``test_sgd_trajectory_catches_a_one_percent_error`` (slow: ``python -m pytest -m slow tests/test_sac_gradients.py``).
Run both after every change to the update path.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_pmac.fast_sac import kernels, reference_sac_train, sac_updates, stack_batches

GRAD_RTOL = 1e-5
TRAJECTORY_RTOL = 1e-4
N_UPDATES = 3  # gradient comparisons: updates per run (the 2nd and 3rd see updated critics, targets, ent_coef)


@dataclass(frozen=True)
class Setup:
    obs_dim: int
    act_dim: int
    batch_size: int
    net_arch: Any
    kwargs: dict[str, Any] = field(default_factory=dict)


SETUPS = {
    "small": Setup(11, 3, 64, [64, 64]),
    "small-fixed-ent-coef-target-interval-2": Setup(11, 3, 64, [64, 64], dict(ent_coef=0.1, target_update_interval=2)),
    "small-three-critics": Setup(5, 2, 32, dict(pi=[32], qf=[48, 48]), dict(policy_kwargs=dict(n_critics=3))),
    "small-linear-actor": Setup(5, 2, 32, dict(pi=[], qf=[32])),
    "hopper-256": Setup(11, 3, 256, [256, 256]),
    "hopper-256-target-interval-2": Setup(11, 3, 256, [256, 256], dict(target_update_interval=2)),
    "humanoid-256": Setup(376, 17, 256, [256, 256]),
    "humanoid-256-target-interval-2": Setup(376, 17, 256, [256, 256], dict(target_update_interval=2)),
}


class BoxEnv(gym.Env):
    """Spaces of the given sizes; the dynamics do not matter here."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    def reset(self, seed=None, options=None):
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def make_sac(setup: Setup, **kwargs) -> SAC:
    """A SAC agent of ``setup`` (seed 0: every call builds the same parameters)."""
    kwargs = {**setup.kwargs, **kwargs}
    policy_kwargs = {"net_arch": setup.net_arch, **kwargs.pop("policy_kwargs", {})}
    env = BoxEnv(setup.obs_dim, setup.act_dim)
    model = SAC(
        "MlpPolicy",
        env,
        buffer_size=10,
        batch_size=setup.batch_size,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
        **kwargs,
    )
    model.set_logger(configure(None, []))
    return model


def random_batches(setup: Setup, n_steps: int, seed: int = 0) -> ReplayBufferSamples:
    g = th.Generator().manual_seed(seed)
    n = n_steps * setup.batch_size
    return stack_batches(
        ReplayBufferSamples(
            observations=th.randn(n, setup.obs_dim, generator=g),
            actions=th.rand(n, setup.act_dim, generator=g) * 2 - 1,
            next_observations=th.randn(n, setup.obs_dim, generator=g),
            dones=(th.rand(n, 1, generator=g) < 0.1).float(),
            rewards=th.randn(n, 1, generator=g),
        ),
        n_steps,
    )


def optimizers(model: SAC) -> dict[str, th.optim.Optimizer]:
    found = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
    if model.ent_coef_optimizer is not None:
        found["ent_coef"] = model.ent_coef_optimizer
    return found


def parameter_names(model: SAC) -> dict[str, list[str]]:
    """The names of each optimizer's parameters, in the optimizer's order (that of the gradients it is handed)."""
    names = {id(p): name for module in (model.actor, model.critic) for name, p in module.named_parameters()}
    if model.log_ent_coef is not None:
        names[id(model.log_ent_coef)] = "log_ent_coef"
    return {
        kind: [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        for kind, optimizer in optimizers(model).items()
    }


Record = list[tuple[str, list[th.Tensor]]]  # (optimizer kind, its gradients) at each optimizer step, in order


def sb3_gradients(model: SAC, batches: ReplayBufferSamples, n_steps: int, noise_seed: int = 1) -> Record:
    """SB3's ``SAC.train`` on ``batches``, recording ``param.grad`` at every optimizer step."""
    record: Record = []
    for kind, optimizer in optimizers(model).items():
        params = [p for group in optimizer.param_groups for p in group["params"]]

        def step(*args, _step=optimizer.step, _kind=kind, _params=params, **kwargs):
            record.append((_kind, [p.grad.detach().clone() for p in _params]))
            return _step(*args, **kwargs)

        optimizer.step = step  # type: ignore[method-assign]
    th.manual_seed(noise_seed)  # the actor's action noise: drawn in the same order by both paths
    reference_sac_train(model, n_steps, batches.observations.shape[1], batches=batches)
    for optimizer in optimizers(model).values():
        del optimizer.step  # the class's step again
    return record


@contextlib.contextmanager
def fast_path_gradients(model: SAC, mutation: tuple[str, str, float] | None = None) -> Iterator[Record]:
    """
    Record the gradients the fast path hands to ``AdamStep.step`` for ``model``'s optimizers; ``mutation``
    ``(kind, parameter name, factor)`` scales that one gradient tensor at every step before it is used (and recorded).
    """
    record: Record = []
    kinds = {id(optimizer): kind for kind, optimizer in optimizers(model).items()}
    names = parameter_names(model)
    original = kernels.AdamStep.step

    def step(self, grads):
        kind = kinds.get(id(self.optimizer))
        if kind is not None:  # not, e.g., a kernel's trial call
            if mutation is not None and mutation[0] == kind:
                index = names[kind].index(mutation[1])
                grads = tuple(g * mutation[2] if i == index else g for i, g in enumerate(grads))
            record.append((kind, [g.detach().clone() for g in grads]))
        return original(self, grads)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels.AdamStep, "step", step)
        yield record


@functools.cache
def initial_state(setup_name: str) -> dict[str, Any]:
    model = make_sac(SETUPS[setup_name])
    return {
        "policy": {name: t.detach().clone() for name, t in model.policy.state_dict().items()},
        "log_ent_coef": None if model.log_ent_coef is None else model.log_ent_coef.detach().clone(),
    }


def make_from_initial_state(setup_name: str, **kwargs) -> SAC:
    """A fresh agent of the setup (fresh optimizers) with the setup's initial parameters."""
    model = make_sac(SETUPS[setup_name], **kwargs)
    state = initial_state(setup_name)
    model.policy.load_state_dict(state["policy"])
    if state["log_ent_coef"] is not None:
        with th.no_grad():
            model.log_ent_coef.copy_(state["log_ent_coef"])
    return model


@functools.cache
def reference_run(setup_name: str) -> tuple[Record, dict[str, list[str]]]:
    model = make_from_initial_state(setup_name)
    return sb3_gradients(model, random_batches(SETUPS[setup_name], N_UPDATES), N_UPDATES), parameter_names(model)


def gradient_errors(
    setup_name: str, manual_backward: bool | None = True, mutation: tuple[str, str, float] | None = None
) -> dict[str, float]:
    """
    The fast path's gradients against SB3's, ``N_UPDATES`` updates from the setup's initial state: asserts each
    tensor's relative error is at most ``GRAD_RTOL``.

    :return: the largest relative error of each optimizer's gradients
    """
    expected, names = reference_run(setup_name)
    model = make_from_initial_state(setup_name)
    with fast_path_gradients(model, mutation) as got:
        th.manual_seed(1)
        sac_updates(model, random_batches(SETUPS[setup_name], N_UPDATES), manual_backward=manual_backward)
    assert [kind for kind, _ in got] == [kind for kind, _ in expected], "not the same optimizer steps in the same order"
    worst: dict[str, float] = {}
    for step, ((kind, fast_grads), (_, sb3_grads)) in enumerate(zip(got, expected, strict=True)):
        assert len(fast_grads) == len(sb3_grads) == len(names[kind])
        for name, fast, sb3 in zip(names[kind], fast_grads, sb3_grads, strict=True):
            assert fast.shape == sb3.shape and fast.dtype == sb3.dtype, name
            error = (fast - sb3).norm().item()
            scale = sb3.norm().item()
            assert scale > 0, f"{name}: SB3's gradient is zero: the check would be vacuous"
            relative = error / scale
            assert relative <= GRAD_RTOL, f"optimizer step {step} ({kind}), {name}: relative error {relative:.3g}"
            worst[kind] = max(worst.get(kind, 0.0), relative)
    return worst


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("setup_name", list(SETUPS))
def test_manual_gradients_equal_autograd_on_sb3_losses(setup_name):
    worst = gradient_errors(setup_name, manual_backward=True)
    expected_kinds = {"actor", "critic"} | ({"ent_coef"} if "fixed-ent-coef" not in setup_name else set())
    assert set(worst) == expected_kinds


@pytest.mark.parametrize("setup_name", ["small", "small-fixed-ent-coef-target-interval-2", "small-three-critics"])
def test_autograd_path_gradients_equal_autograd_on_sb3_losses(setup_name):
    gradient_errors(setup_name, manual_backward=False)


# ---------------------------------------------------------------------------------------------- the check bites
MUTATION_SETUP = "small"
MUTATION_TARGETS = [
    *(("actor", f"{layer}.{p}") for layer in ("latent_pi.0", "latent_pi.2", "mu", "log_std") for p in ("weight", "bias")),
    *(("critic", f"qf{q}.{layer}.{p}") for q in (0, 1) for layer in (0, 2, 4) for p in ("weight", "bias")),
    ("ent_coef", "log_ent_coef"),
]
MUTATION_IDS = [name for _, name in MUTATION_TARGETS]


def test_mutation_targets_are_every_gradient_of_the_fast_path():
    names = parameter_names(make_sac(SETUPS[MUTATION_SETUP]))
    assert sorted(MUTATION_TARGETS) == sorted((kind, name) for kind, kind_names in names.items() for name in kind_names)


@pytest.mark.parametrize(("kind", "name"), MUTATION_TARGETS, ids=MUTATION_IDS)
def test_gradient_check_catches_a_one_percent_error(kind, name):
    with pytest.raises(AssertionError, match=rf"\({kind}\), {name}: relative error 0\.01"):
        gradient_errors(MUTATION_SETUP, mutation=(kind, name, 1.01))


@pytest.mark.parametrize(
    "mutation",
    [("critic", "qf0.4.bias", 3.0), ("critic", "qf1.0.bias", 3.0), ("ent_coef", "log_ent_coef", 3.0)],
    ids=["critic-output-bias-x3", "critic-input-bias-x3", "ent-coef-x3"],
)
def test_gradient_check_catches_the_errors_adam_hides(mutation):
    # the errors of the issue: SB3-vs-fast parameter comparisons after Adam steps passed with them
    with pytest.raises(AssertionError, match=rf"{mutation[1]}: relative error 2"):
        gradient_errors(MUTATION_SETUP, mutation=mutation)


# ---------------------------------------------------------------------------------------------- trajectories
TRAJECTORY_SETUP = "small"
TRAJECTORY_UPDATES = 60


def parameters(model: SAC) -> dict[str, th.Tensor]:
    tensors = {name: t.detach().clone() for name, t in model.policy.state_dict().items()}
    if model.log_ent_coef is not None:
        tensors["log_ent_coef"] = model.log_ent_coef.detach().clone()
    return tensors


def make_trajectory_model(optimizer: str) -> SAC:
    if optimizer == "adam":
        return make_from_initial_state(TRAJECTORY_SETUP)
    # plain SGD everywhere, the entropy coefficient included (SB3 gives it an Adam): the steps scale with the gradients
    model = make_from_initial_state(TRAJECTORY_SETUP, learning_rate=1e-2, policy_kwargs=dict(optimizer_class=th.optim.SGD))
    model.ent_coef_optimizer = th.optim.SGD([model.log_ent_coef], lr=1e-2)
    return model


def trajectory_errors(
    optimizer: str, manual_backward: bool | None = None, mutation: tuple[str, str, float] | None = None
) -> dict[str, float]:
    """
    ``TRAJECTORY_UPDATES`` updates of the fast path and of SB3's ``SAC.train`` from the same state: asserts that each
    parameter tensor is within ``TRAJECTORY_RTOL`` of SB3's, relative to the distance SB3's moved it.

    :return: each tensor's relative error
    """
    batches = random_batches(SETUPS[TRAJECTORY_SETUP], TRAJECTORY_UPDATES, seed=3)
    reference, fast = make_trajectory_model(optimizer), make_trajectory_model(optimizer)
    initial = parameters(reference)
    th.manual_seed(5)
    reference_sac_train(reference, TRAJECTORY_UPDATES, batches.observations.shape[1], batches=batches)
    with fast_path_gradients(fast, mutation):
        th.manual_seed(5)
        sac_updates(fast, batches, manual_backward=manual_backward)
    expected, got = parameters(reference), parameters(fast)
    errors = {}
    for name, start in initial.items():
        moved = (expected[name] - start).norm().item()
        assert moved > 0, f"{name} did not move: the check would be vacuous"
        errors[name] = (got[name] - expected[name]).norm().item() / moved
        assert errors[name] <= TRAJECTORY_RTOL, f"{name}: relative error {errors[name]:.3g} after {TRAJECTORY_UPDATES} updates"
    return errors


@pytest.mark.parametrize("manual_backward", [True, False], ids=["manual", "autograd"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_long_trajectory_matches_sb3(optimizer, manual_backward):
    trajectory_errors(optimizer, manual_backward)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), MUTATION_TARGETS, ids=MUTATION_IDS)
def test_sgd_trajectory_catches_a_one_percent_error(kind, name):
    with pytest.raises(AssertionError, match="relative error"):
        trajectory_errors("sgd", mutation=(kind, name, 1.01))
