"""
``sb3_pmac.demo`` (``make demo``) with the training replaced by a stand-in agent: which arguments reach the agent, its
training, its reload and its evaluation, and what docs/install.md says of the defaults. The real (short) training run
is ``tests/test_packaging.py::test_demo_runs_and_explains_v4_once``.
"""

import warnings
from pathlib import Path

import gymnasium as gym
import pytest

from sb3_pmac import demo


class Recorder:
    """What the demo did: the agent's construction, training, saving, reload and evaluation."""

    def __init__(self) -> None:
        self.events: list[tuple] = []


@pytest.fixture
def recorded(monkeypatch):
    record = Recorder()

    def fake_algo(name):
        class FakeAgent:
            def __init__(self, env, **kwargs):
                record.events.append(("init", name, env, kwargs))

            def learn(self, total_timesteps, **kwargs):
                record.events.append(("learn", total_timesteps, kwargs))
                return self

            def save(self, path):
                record.events.append(("save", str(path)))
                Path(f"{path}.zip").write_bytes(b"agent")  # fails unless the demo made the folder

            @classmethod
            def load(cls, path, **kwargs):
                record.events.append(("load", name, str(path), kwargs))
                return cls.__new__(cls)

        FakeAgent.__name__ = name
        return FakeAgent

    class ResetRecorder(gym.Wrapper):
        def reset(self, **kwargs):
            record.events.append(("reset", kwargs.get("seed")))
            return super().reset(**kwargs)

    def make_env(env_id, *args, **kwargs):
        record.events.append(("make_preset_env", env_id))
        return ResetRecorder(gym.make("Pendulum-v1"))

    def evaluate(model, env, **kwargs):
        record.events.append(("evaluate", type(model).__name__, kwargs))
        env.reset()
        return 12.5, 1.5

    threads = []
    monkeypatch.setattr(demo, "PMAC", fake_algo("PMAC"))
    monkeypatch.setattr(demo, "MBPO", fake_algo("MBPO"))
    monkeypatch.setattr(demo, "make_preset_env", make_env)
    monkeypatch.setattr(demo, "evaluate_policy", evaluate)
    monkeypatch.setattr(demo.th, "set_num_threads", threads.append)
    record.threads = threads
    return record


def kinds(record: Recorder, kind: str) -> list[tuple]:
    return [event[1:] for event in record.events if event[0] == kind]


def test_arguments_reach_the_agent_its_training_and_its_evaluation(recorded, tmp_path, capsys):
    output = tmp_path / "not" / "yet" / "agent"
    argv = ["--env", "Hopper-v4", "--algo", "mbpo", "--timesteps", "123", "--seed", "7", "--threads", "3",
            "--eval-episodes", "4", "--learning-starts", "11", "--gradient-steps", "5", "--rollout-batch-size", "66",
            "--model-max-epochs", "9", "--output", str(output)]  # fmt: skip
    assert demo.main(argv) == 12.5
    assert recorded.threads == [3]
    [(name, env, kwargs)] = kinds(recorded, "init")
    assert (name, env) == ("MBPO", "Hopper-v4")
    assert kwargs == dict(verbose=0, seed=7, learning_starts=11, gradient_steps=5, rollout_batch_size=66,
                          model_trainer_kwargs={"max_epochs": 9})  # fmt: skip
    assert kinds(recorded, "learn") == [(123, {"progress_bar": True})]
    assert kinds(recorded, "save") == [(str(output),)] and (output.parent / "agent.zip").is_file()
    assert kinds(recorded, "load") == [("MBPO", str(output), {"device": "cpu"})]
    # a separate env of the same task (with the presets the agent trained with), seeded apart from the training env
    assert kinds(recorded, "make_preset_env") == [("Hopper-v4",)]
    assert kinds(recorded, "reset")[0] == (7 + 1000,)
    [(evaluated, eval_kwargs)] = kinds(recorded, "evaluate")
    assert evaluated == "MBPO" and eval_kwargs["n_eval_episodes"] == 4 and eval_kwargs["deterministic"] is True
    out = capsys.readouterr().out
    assert "Training MBPO on Hopper-v4 for 123 steps (demo settings)" in out
    assert "over 4 episodes: 12.5 +/- 1.5" in out


def test_paper_settings_keep_the_classes_defaults_and_no_thread_count_keeps_torchs(recorded, tmp_path, capsys):
    demo.main(["--env", "Pendulum-v1", "--paper-settings", "--no-progress-bar", "--output", str(tmp_path / "a")])
    [(name, env, kwargs)] = kinds(recorded, "init")
    assert (name, env, kwargs) == ("PMAC", "Pendulum-v1", {"verbose": 0, "seed": 0})
    assert kinds(recorded, "learn") == [(3000, {"progress_bar": False})]
    assert recorded.threads == []  # --threads 0 (default): torch's own
    assert kinds(recorded, "reset")[0] == (1000,)
    out = capsys.readouterr().out
    assert "(paper settings)" in out and "the version of the paper's comparisons" not in out  # v1: no v4 note


def test_the_v4_warning_filter_stays_inside_the_demo(recorded, tmp_path, capsys):
    """main is also called in-process: gymnasium's "out of date" warning is silenced for the demo only."""
    with warnings.catch_warnings():
        before = list(warnings.filters)
        demo.main(["--env", "Hopper-v4", "--no-progress-bar", "--output", str(tmp_path / "a")])
        assert warnings.filters == before
    assert "(Hopper-v4: the version of the paper's comparisons" in capsys.readouterr().out


def test_defaults_are_the_documented_ones():
    """docs/install.md: ``make demo`` saves the agent to ``demo_output/pmac_demo.zip``; torch's thread default."""
    args = demo.parse_args([])
    assert (args.output, args.threads, args.no_progress_bar) == ("demo_output/pmac_demo", 0, False)
