import pytest
import torch as th

#: Small networks and budgets for PMAC tests that check behaviour, not learning.
TINY_PMAC_KWARGS = dict(
    learning_starts=100,
    model_train_freq=50,
    rollout_batch_size=200,
    gradient_steps=1,
    batch_size=32,
    buffer_size=10_000,
    dynamics_kwargs=dict(hidden_sizes=(32, 32), weight_decays=None),
    model_trainer_kwargs=dict(max_epochs=3),
    policy_kwargs=dict(net_arch=[32, 32]),
    ent_coef="auto",  # the learned coefficient (SB3's default) exercises more: its optimizer, loss, save/load
)


def pytest_configure(config: pytest.Config) -> None:
    # Small networks run fastest on one thread, and with pytest-xdist each worker is a process of its own:
    # one torch thread per process keeps 2 workers on 2 cores without oversubscription.
    th.set_num_threads(1)
