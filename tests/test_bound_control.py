"""
The bounded-training control (benchmarks/bound_control.py): every retraining starts from the saved model, uses the
whole buffer with the selection asked for, and the agent gets its saved model back.
"""

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_PMAC_KWARGS

from sb3_pmac import PMAC
from sb3_pmac.diagnostics import evaluate_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bound_control.py"


@pytest.fixture(scope="module")
def bound_control():
    spec = importlib.util.spec_from_file_location("bound_control", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def agent():
    kwargs = {**TINY_PMAC_KWARGS, "model_train_freq": 100, "model_trainer_kwargs": dict(max_grad_steps=5)}
    model = PMAC("MlpPolicy", "Pendulum-v1", seed=0, **kwargs)
    model.learn(500)
    return model


def test_retrainings_start_from_the_saved_model_and_use_the_whole_buffer(bound_control, agent, monkeypatch):
    env = gym.make("Pendulum-v1")
    before = {k: v.clone() for k, v in agent.dynamics_model.state_dict().items()}
    saved_row = evaluate_model(agent, env, horizon=10, seed=3)
    from sb3_pmac.dynamics.model_trainer import ModelTrainer

    trained_on, train = [], ModelTrainer.train

    def spy(self, *args, sample_ids=None, **kwargs):
        trained_on.append(np.asarray(sample_ids))
        return train(self, *args, sample_ids=sample_ids, **kwargs)

    monkeypatch.setattr(ModelTrainer, "train", spy)
    rows = bound_control.control_rows(agent, env, "tiny", ("exponential", "uniform"), seed=3)
    monkeypatch.undo()
    # the selections differ: Algorithm 1's weights draw the newest versions' transitions several times and the
    # oldest ones rarely; uniform (MBPO's rule) takes each of the 500 transitions once
    assert [len(ids) for ids in trained_on] == [500, 500]
    assert len(np.unique(trained_on[0])) < 400 and np.array_equal(np.sort(trained_on[1]), np.arange(500))
    assert [(r["config"], r["selection"]) for r in rows] == [
        ("saved", "exponential"), ("full", "exponential"), ("full", "uniform")
    ]  # fmt: skip
    assert rows[0]["local_obs_mse"] == saved_row["local_obs_mse"]
    assert (rows[0]["train_rows"], rows[0]["max_grad_steps"]) == (agent.model_training_rows(), 5)  # the run's bounds
    for row in rows[1:]:
        assert row["train_rows"] == 500  # as many rows as the buffer holds
        assert row["grad_steps"] > 5  # not bounded by the agent's max_grad_steps
        assert row["local_obs_mse"] != rows[0]["local_obs_mse"]
    assert rows[1]["local_obs_mse"] != rows[2]["local_obs_mse"]
    # the agent is left as it was: its saved model, bounded training, its own selection
    for key, value in agent.dynamics_model.state_dict().items():
        assert th.equal(value, before[key]), key
    assert agent.model_trainer.model is agent.dynamics_model
    assert agent.model_training == "bounded" and agent.adapt_model_training
    assert agent.model_trainer.max_grad_steps == 5
    # uniform alone gives the same model as uniform after exponential: each retraining starts from the saved state
    alone = bound_control.control_rows(agent, env, "tiny", ("uniform",), seed=3)
    np.testing.assert_equal(alone[1]["local_obs_mse"], rows[2]["local_obs_mse"])
    np.testing.assert_equal(alone[1]["grad_steps"], rows[2]["grad_steps"])


def test_the_command_appends_to_its_own_csv_only(bound_control, agent, tmp_path):
    """A CSV with other columns (an earlier version's) is refused before the retrainings, and left as it was."""
    agent.save(tmp_path / "agent.zip")
    agent.save_replay_buffer(tmp_path / "buffer")
    old = tmp_path / "old.csv"
    old.write_text("label,num_timesteps,config\nx,1,saved\n")
    args = ["--agent", str(tmp_path / "agent.zip"), "--buffer", str(tmp_path / "buffer.npz"), "--env", "Pendulum-v1",
            "--label", "tiny_seed0", "--max-epochs", "2", "--verbose", "0", "--selections", "uniform"]  # fmt: skip
    with pytest.raises(SystemExit):
        bound_control.main([*args, "--csv", str(old)])
    assert old.read_text() == "label,num_timesteps,config\nx,1,saved\n"
    new = tmp_path / "new.csv"
    rows = bound_control.main([*args, "--csv", str(new)])
    rows += bound_control.main([*args, "--csv", str(new)])  # appended under the same header
    lines = new.read_text().splitlines()
    assert lines[0].split(",") == bound_control.COLUMNS and len(lines) == 5
    assert [line.split(",")[2] for line in lines[1:]] == ["saved", "full", "saved", "full"]
    assert lines[1].split(",")[bound_control.COLUMNS.index("max_grad_steps")] == "5"


def test_inputs_that_do_not_fit_are_one_line_errors_before_any_retraining(bound_control, agent, tmp_path, capsys):
    agent.save(tmp_path / "agent.zip")
    agent.save_replay_buffer(tmp_path / "buffer")
    other = PMAC("MlpPolicy", "Pendulum-v1", seed=1, **{**TINY_PMAC_KWARGS, "model_train_freq": 100})
    other.learn(300)  # another run: 300 steps
    other.save_replay_buffer(tmp_path / "other_buffer")
    good = {"--agent": str(tmp_path / "agent.zip"), "--buffer": str(tmp_path / "buffer.npz"), "--env": "Pendulum-v1"}
    cases = [
        ("--buffer", str(tmp_path / "other_buffer.npz"), "holds 300 steps and --agent"),
        ("--env", "MountainCarContinuous-v0", "The agent does not fit --env MountainCarContinuous-v0"),
        ("--env", "NoSuchEnv-v0", "cannot make --env NoSuchEnv-v0"),
        ("--agent", str(tmp_path / "missing.zip"), "cannot load --agent"),
    ]
    for option, value, message in cases:
        given = {**good, option: value}
        argv = [item for pair in given.items() for item in pair]
        argv += ["--label", "x", "--csv", str(tmp_path / "rows.csv"), "--verbose", "0"]
        with pytest.raises(SystemExit, match=r"^error: ") as raised:
            bound_control.main(argv)
        assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "rows.csv").exists()


def test_every_row_measures_the_same_transitions_and_the_epochs_are_capped(bound_control, agent, monkeypatch):
    env = gym.make("Pendulum-v1")
    seeds, measure = [], bound_control.evaluate_model

    def spy(*args, seed=None, **kwargs):
        seeds.append(seed)
        return measure(*args, seed=seed, **kwargs)

    monkeypatch.setattr(bound_control, "evaluate_model", spy)
    rows = bound_control.control_rows(agent, env, "tiny", ("exponential", "uniform"), seed=3, max_epochs=1)
    assert seeds == [3, 3, 3]
    assert [row["epochs"] for row in rows[1:]] == [1, 1]
