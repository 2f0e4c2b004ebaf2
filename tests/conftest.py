import importlib.util
import sys
from pathlib import Path

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


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """
    ``benchmarks/campaign.py`` as a module whose every path (results, the driver's pid file and log) is under
    ``tmp_path``: nothing a test does reaches a campaign that runs on this machine.
    """
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "campaign.py"
    spec = importlib.util.spec_from_file_location("campaign_under_test", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path / "campaign" / "results" / "campaign"
    monkeypatch.setattr(module, "OUT", out)
    monkeypatch.setattr(module, "PID_FILE", out / "driver.pid")
    monkeypatch.setattr(module, "LOG_FILE", out / "driver.log")
    yield module
    sys.modules.pop(spec.name, None)
