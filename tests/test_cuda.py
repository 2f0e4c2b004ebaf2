"""
What runs on a GPU (skipped without CUDA): PMAC end to end on ``device="cuda"`` (the networks, the dynamics model and
the model buffer there; save and load), and the fast SAC update path against SB3's own ``SAC.train`` on the GPU.
``benchmarks/device_check.sh`` runs these on a machine with a GPU.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_pmac import PMAC
from sb3_pmac.fast_sac import reference_sac_train, sac_updates

DEVICES = ["cuda"]
pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="requires CUDA")


def run_pmac_on(device: str, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no termination function for Pendulum
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, device=device, **TINY_PMAC_KWARGS)
    model.learn(200)  # model steps at 101 and 151
    assert model.device.type == device and model.n_model_steps == 2
    assert next(model.dynamics_model.parameters()).device.type == device
    assert model.model_buffer.size() > 0 and model.model_buffer.observations.device.type == device
    observations = np.random.RandomState(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "agent")
    loaded = PMAC.load(tmp_path / "agent", env=gym.make("Pendulum-v1"), device=device)
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    loaded.learn(60, reset_num_timesteps=False)  # the replay buffer is allocated on the device when learning resumes
    assert loaded.num_timesteps == 260 and loaded.replay_buffer.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_pmac_learns_saves_and_loads(device, tmp_path):
    run_pmac_on(device, tmp_path)


@pytest.mark.parametrize("device", DEVICES)
def test_saved_random_states_hold_the_cuda_generator(device, tmp_path):
    """On a GPU the actions, rollouts and batches draw from CUDA's generator: save keeps it, load restores it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, device=device, **TINY_PMAC_KWARGS)
    model.learn(120)
    model.save(tmp_path / "agent")
    saved = th.cuda.get_rng_state(model.device)
    th.rand(1000, device=model.device)  # moves CUDA's generator on
    PMAC.load(tmp_path / "agent", env=gym.make("Pendulum-v1"), device=device, restore_random_state=True)
    assert th.equal(th.cuda.get_rng_state(model.device), saved)


def fast_path_against_sb3(device: str, manual_backward: bool, n_steps: int = 3, atol: float = 1e-4) -> None:
    from test_sac_update import BATCH, assert_same_parameters, random_batches, twins

    reference, fast = twins(device=device)
    batches = ReplayBufferSamples(*(None if t is None else t.to(device) for t in random_batches(n_steps)))
    th.manual_seed(100)  # the actors' action noise: drawn in the same order by both (on every device)
    reference_sac_train(reference, n_steps, BATCH, batches=batches)
    th.manual_seed(100)
    stats = sac_updates(fast, batches, manual_backward=manual_backward)
    assert stats.n_updates == n_steps
    assert stats.critic_loss == pytest.approx(reference.logger.name_to_value["train/critic_loss"], rel=1e-4, abs=1e-5)
    assert_same_parameters(reference, fast, atol=atol)


@pytest.mark.parametrize("manual_backward", [True, False], ids=["manual", "autograd"])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_path_matches_sb3(device, manual_backward):
    fast_path_against_sb3(device, manual_backward)
