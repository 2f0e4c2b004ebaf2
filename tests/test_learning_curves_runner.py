"""The resumable learning-curve runner (benchmarks/learning_curves.py): pause, resume, refuse other settings."""

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.save_util import save_to_pkl

from sb3_pmac.buffer_files import load_buffers

RUNNER = Path(__file__).resolve().parent.parent / "benchmarks" / "learning_curves.py"
ZIP_MAGIC = b"PK\x03\x04"


@pytest.fixture(scope="module")
def runner():
    sys.path.insert(0, str(RUNNER.parent))  # as when run as a script: its folder's helpers (machine.py) import
    spec = importlib.util.spec_from_file_location("learning_curves", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["learning_curves"] = module
    spec.loader.exec_module(module)
    return module


def tiny_argv(out: Path, *extra: str) -> list[str]:
    return ["--algo", "pmac", "--env", "InvertedPendulum-v5", "--timesteps", "300", "--eval-freq", "100",
            "--eval-episodes", "2", "--learning-starts", "100", "--gradient-steps", "1", "--net-arch", "32", "32",
            "--rollout-batch-size", "200", "--model-max-epochs", "2", "--model-train-freq", "50", "--out", str(out),
            *extra]  # fmt: skip


def tiny_args(runner, out: Path, *extra: str):
    return runner.parse_args(tiny_argv(out, *extra))


def test_pause_resume_and_finish(runner, tmp_path: Path) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    # --max-seconds 0: every call stops after its first evaluation, saving agent and buffer
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    pause = json.loads((run_dir / "resume.json").read_text())
    assert pause == {"agent": "resume_100.zip", "buffer": "resume_100_buffer.npz", "env_state": "resume_100_env.pkl",
                     "monitor_rows": monitor_rows(run_dir)}  # fmt: skip
    assert (run_dir / pause["agent"]).exists() and (run_dir / pause["buffer"]).read_bytes()[:4] == ZIP_MAGIC
    assert load_buffers(run_dir / pause["buffer"])[0].n_written == 100
    # a pause of an earlier version of the runner: the buffer pickled as .pkl, read as the runner's own file
    make_pickled_pause(run_dir, pause)
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    assert not (run_dir / "resume_100.zip").exists() and (run_dir / "resume_200.zip").exists()  # the older pair goes
    assert not (run_dir / "resume_100_buffer.pkl").exists()
    resumed, model_state = load_buffers(run_dir / "resume_200_buffer.npz")
    assert resumed.n_written == 200 and resumed.version_counts()[1].sum() == 200  # the pickled 100 steps went on
    assert model_state is not None and model_state["observations"].shape[0] > 0
    # a kill while the next pause is written (new files, pointer not yet replaced) resumes from the last complete one
    (run_dir / "resume_300.zip").write_bytes(b"half-written")
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == 0  # the last chunk finishes the run

    with open(run_dir / "evaluations.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["timesteps"]) for row in rows] == [100, 200, 300]
    walls = [float(row["wall_s"]) for row in rows]
    assert walls == sorted(walls)  # wall time accumulates across the calls
    record = json.loads((run_dir / "run.json").read_text())
    assert record["finished"] and record["algo"] == "pmac" and record["agent_kwargs"]["gradient_steps"] == 1
    assert set(record["time_split_s"]) == {"model_train", "rollout", "sac"}
    assert not list(run_dir.glob("resume*")) and (run_dir / "final_agent.zip").exists()
    assert load_buffers(run_dir / "final_buffer.npz")[0].n_written == 300
    assert len(record["commit"]) >= 7  # the code's commit (or "unknown" outside a git checkout)
    # the machine, recorded once: the calls that resumed ran on the same one
    assert [(m["cpu"], m["cpus"], m["from_step"]) for m in record["machines"]] == [(runner.cpu_model(), os.cpu_count(), 0)]
    # progress.csv keeps one row per evaluation across the three calls
    with open(run_dir / "progress.csv") as file:
        progress = list(csv.DictReader(file))
    assert [int(float(row["time/total_timesteps"])) for row in progress] == [100, 200, 300]
    assert progress[-1]["train/actor_loss"] != ""

    from sb3_pmac import PMAC

    agent = PMAC.load(run_dir / "final_agent.zip")
    assert agent.num_timesteps == 300
    assert agent.policy_mixture is not None and agent.policy_version >= 1  # model steps ran
    # a finished run is not run again, and other settings are refused
    assert runner.run(tiny_args(runner, tmp_path)) == 0
    with pytest.raises(SystemExit, match="other settings"):
        runner.run(tiny_args(runner, tmp_path, "--gradient-steps", "2"))


def monitor_rows(run_dir: Path) -> int:
    with open(run_dir / "monitor.csv") as file:
        assert file.readline().startswith("#") and file.readline() == "r,l,t\n"
        return sum(1 for _ in file)


def make_pickled_pause(run_dir: Path, pause: dict[str, str]) -> None:
    """Replace the pause's buffer with what the runner wrote before: a pickle (the model buffer as an attribute)."""
    buffer, model_state = load_buffers(run_dir / pause["buffer"])
    buffer.model_buffer_state = model_state
    pickled = pause["buffer"].replace(".npz", ".pkl")
    save_to_pkl(run_dir / pickled, buffer)
    os.remove(run_dir / pause["buffer"])
    (run_dir / "resume.json").write_text(json.dumps({**pause, "buffer": pickled}))


def test_remove_other_pauses_takes_both_suffixes(runner, tmp_path: Path) -> None:
    names = ["resume_1.zip", "resume_1_buffer.pkl", "resume_2.zip", "resume_2_buffer.npz", "resume_3.zip",
             "resume_3_buffer.npz", "final_buffer.npz", "monitor.csv"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_bytes(b"")
    runner._remove_other_pauses(tmp_path, keep={"agent": "resume_3.zip", "buffer": "resume_3_buffer.npz"})
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[4:])
    runner._remove_other_pauses(tmp_path, keep=None)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["final_buffer.npz", "monitor.csv"]


def test_buffer_suffix(runner) -> None:
    from stable_baselines3 import SAC

    from sb3_pmac import MBPO, PMAC

    assert runner.buffer_suffix(PMAC("MlpPolicy", "Pendulum-v1", buffer_size=10)) == ".npz"
    assert runner.buffer_suffix(MBPO("MlpPolicy", "Pendulum-v1", buffer_size=10)) == ".npz"
    assert runner.buffer_suffix(SAC("MlpPolicy", "Pendulum-v1", buffer_size=10)) == ".pkl"  # SB3 pickles its buffers


def test_variant_kwargs(runner, tmp_path: Path) -> None:
    args = tiny_args(runner, tmp_path)
    args.algo = "pmac_tv"
    assert runner.agent_kwargs(args)["mixture"] == "tv"
    assert runner.agent_kwargs(args)["ent_coef"] == "auto"  # reduced settings: the coefficient of the earlier runs
    args.algo = "sac"
    assert "model_trainer_kwargs" not in runner.agent_kwargs(args)
    args.algo, args.settings = "mbpo", "paper"
    assert runner.agent_kwargs(args)["ent_coef"] == 0.2
    args.algo = "sac"  # the paper's SAC side: Table 2's updates per step, the base code's fixed coefficient
    assert runner.agent_kwargs(args) == {"learning_starts": 5000, "gradient_steps": 20, "ent_coef": 0.2,
                                         "policy_kwargs": {"net_arch": [32, 32]}}  # fmt: skip


@pytest.mark.parametrize("option", ["--eval-freq", "--eval-episodes", "--timesteps"])
def test_budgets_the_loop_cannot_run_are_refused_before_anything_is_written(runner, tmp_path: Path, option) -> None:
    argv = tiny_args(runner, tmp_path)
    setattr(argv, option[2:].replace("-", "_"), 0)
    with pytest.raises(SystemExit, match=f"{option} must be positive"):
        runner.run(argv)
    assert not (tmp_path / "InvertedPendulum-v5").exists()  # no run.json to spoil the folder for a correct call


def test_a_run_that_fails_to_start_leaves_no_folder_behind(runner, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = tiny_argv(out)
    argv[argv.index("InvertedPendulum-v5")] = "NoSuchEnv-v0"
    with pytest.raises(gym.error.Error):
        runner.run(runner.parse_args(argv))
    assert not out.exists()  # the folders the call made are gone: the output folder was new
    (out / "InvertedPendulum-v5" / "sac").mkdir(parents=True)
    with pytest.raises(ValueError):  # the class refuses the options after the Monitor wrote its file
        runner.run(tiny_args(runner, out, "--model-train-freq", "0"))
    assert sorted(path.name for path in out.rglob("*")) == ["InvertedPendulum-v5", "sac"]  # what was there stays
    assert runner.run(tiny_args(runner, out, "--timesteps", "150")) == 0  # and the correct call runs
    assert json.loads((out / "InvertedPendulum-v5" / "pmac" / "seed_0" / "run.json").read_text())["finished"]


def test_rows_of_a_killed_call_are_removed_when_the_run_resumes(runner, tmp_path: Path) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    extra = ("--max-seconds", "0", "--diagnostics-freq", "100", "--diagnostics-horizon", "2")
    assert runner.run(tiny_args(runner, tmp_path, *extra)) == runner.NOT_FINISHED  # paused at 100
    assert runner.run(tiny_args(runner, tmp_path, *extra)) == runner.NOT_FINISHED  # paused at 200
    # a call killed after evaluating 300, before its pause was written: its rows stay, the pointer says 200
    pointer = json.loads((run_dir / "resume.json").read_text())
    assert pointer["agent"] == "resume_200.zip"
    for name, column in runner.STEP_COLUMNS.items():
        with open(run_dir / name, newline="") as file:
            reader = csv.DictReader(file)
            columns, rows = list(reader.fieldnames or []), list(reader)
        rows.append({**rows[-1], column: "300"})
        with open(run_dir / name, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    episodes_at_pause = monitor_rows(run_dir)
    assert pointer["monitor_rows"] == episodes_at_pause > 0
    with open(run_dir / "monitor.csv", "a") as file:  # ... and the killed call's episodes
        file.write("11.0,11,1.5\n12.0,12,1.6\n")
    killed_run = runner.parse_args(list(tiny_argv(tmp_path, *extra)))
    original_monitor = runner.Monitor

    def monitor_rows_at_creation(env, filename=None, **kwargs):
        if filename is not None:  # the training env's Monitor: the file as the resumed call found it
            found.append(monitor_rows(run_dir))
        return original_monitor(env, filename, **kwargs)

    found: list[int] = []
    runner.Monitor = monitor_rows_at_creation
    try:
        assert runner.run(killed_run) == 0  # resumes at 200, redoes 300, finishes
    finally:
        runner.Monitor = original_monitor
    assert found == [episodes_at_pause]  # the killed call's two episodes are gone before the run goes on
    for name, column in runner.STEP_COLUMNS.items():
        with open(run_dir / name, newline="") as file:
            steps = [float(row[column]) for row in csv.DictReader(file) if row.get(column)]
        # as many rows as a step without a kill (progress.csv: two, the evaluation's and the diagnostics' dump)
        assert steps.count(300) == steps.count(200) >= 1 and steps == sorted(steps), (name, steps)


def test_a_run_killed_before_its_first_pause_starts_over_in_every_file(runner, tmp_path: Path) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    for pause_file in run_dir.glob("resume*"):  # as if killed before this pause was written
        pause_file.unlink()
    rows_before = (run_dir / "progress.csv").read_text().count("\n")
    assert rows_before >= 2  # the killed call's rows
    assert runner.run(tiny_args(runner, tmp_path)) == 0
    with open(run_dir / "progress.csv", newline="") as file:
        steps = [float(row["time/total_timesteps"]) for row in csv.DictReader(file)]
    assert steps == [100.0, 200.0, 300.0]  # the new call's rows only (the killed call's 100 is gone)


def test_a_kill_after_the_final_save_does_not_run_again(runner, tmp_path: Path, monkeypatch) -> None:
    """The run is marked finished before its pause files go: a kill in between leaves a finished run, not a new one."""
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"

    def killed(run_dir, keep):
        raise KeyboardInterrupt  # SIGKILL-like: stops the run while it removes its last pause

    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    monkeypatch.setattr(runner, "_remove_other_pauses", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.run(tiny_args(runner, tmp_path))  # finishes the run, killed while cleaning up
    assert json.loads((run_dir / "run.json").read_text())["finished"]
    monkeypatch.undo()
    assert runner.run(tiny_args(runner, tmp_path)) == 0  # "already finished": not trained again
    with open(run_dir / "evaluations.csv") as file:
        assert [int(row["timesteps"]) for row in csv.DictReader(file)] == [100, 200, 300]


def test_paper_runs_refuse_and_do_not_record_the_reduced_options(runner, tmp_path: Path, capsys) -> None:
    paper = ["--algo", "mbpo", "--env", "Hopper-v4", "--settings", "paper", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        runner.parse_args([*paper, "--gradient-steps", "5", "--model-train-freq", "100"])
    assert "--gradient-steps, --model-train-freq: reduced settings only" in capsys.readouterr().err
    record = runner.settings_record(runner.parse_args(paper))
    assert not set(runner.REDUCED_ONLY) & set(record) and record["settings"] == "paper"
    reduced = runner.parse_args([*paper[:4], "--out", str(tmp_path)])
    assert (reduced.gradient_steps, reduced.learning_starts, reduced.model_max_epochs) == (5, 300, 10)
    # a paper run.json of an earlier version (the unused reduced defaults recorded) resumes under this version
    earlier = {**record, "gradient_steps": 5, "learning_starts": 300, "model_max_epochs": 10, "rollout_batch_size": None}
    assert runner.settings_differences(earlier, record) == []
    assert runner.settings_differences({**earlier, "seed": 1}, record) == ["seed: 1 (this call: 0)"]


def test_diagnostics_of_a_model_free_run_are_refused(runner, tmp_path: Path, capsys) -> None:
    # they were silently not written (run.json recorded the frequency all the same)
    with pytest.raises(SystemExit):
        runner.parse_args(["--algo", "sac", "--env", "Pendulum-v1", "--diagnostics-freq", "200", "--out", str(tmp_path)])
    assert "--diagnostics-freq: model diagnostics need a dynamics model" in capsys.readouterr().err
    assert runner.parse_args(["--algo", "mbpo", "--env", "Pendulum-v1", "--diagnostics-freq", "200"]).diagnostics_freq == 200


def test_a_recorded_setting_must_be_given_again(runner, tmp_path: Path) -> None:
    """A run started with --model-train-freq (recorded only when set) is not resumed by a call without it."""
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    without = [arg for arg in tiny_argv(tmp_path) if arg not in ("--model-train-freq", "50")]
    with pytest.raises(SystemExit, match=r"other settings: model_train_freq: 50 \(this call: None\)"):
        runner.run(runner.parse_args(without))


def run_files(run_dir: Path) -> dict[str, Any]:
    """What a run wrote that must not depend on its pauses (not the wall times)."""
    from sb3_pmac import PMAC

    with open(run_dir / "evaluations.csv") as file:
        evaluations = [(row["timesteps"], row["mean_return"], row["std_return"]) for row in csv.DictReader(file)]
    with open(run_dir / "monitor.csv") as file:
        episodes = [(row["r"], row["l"]) for row in csv.DictReader(file.readlines()[1:])]
    with open(run_dir / "progress.csv") as file:
        train = [{k: v for k, v in row.items() if k.startswith("train/")} for row in csv.DictReader(file)]
    diagnostics = (run_dir / "diagnostics.csv").read_text() if (run_dir / "diagnostics.csv").exists() else None
    algo = json.loads((run_dir / "run.json").read_text())["algo"]
    load = PMAC.load if algo == "pmac" else SAC.load
    parameters = load(run_dir / "final_agent.zip", device="cpu").policy.state_dict()
    return {"evaluations": evaluations, "episodes": episodes, "train": train, "diagnostics": diagnostics,
            "parameters": parameters}  # fmt: skip


@pytest.mark.parametrize("algo", ["pmac", "sac"])
def test_a_paused_run_is_the_uninterrupted_run_bit_for_bit(runner, tmp_path: Path, algo: str) -> None:
    """Pauses at 100 and 200 steps, in mid-episode: the same episodes, losses, evaluations and final parameters."""
    extra = ["--algo", algo] + (["--diagnostics-freq", "100", "--diagnostics-horizon", "2"] if algo == "pmac" else [])
    assert runner.run(tiny_args(runner, tmp_path / "straight", *extra)) == 0
    for _ in range(2):
        assert runner.run(tiny_args(runner, tmp_path / "paused", *extra, "--max-seconds", "0")) == runner.NOT_FINISHED
    assert runner.run(tiny_args(runner, tmp_path / "paused", *extra)) == 0
    straight, paused = (
        run_files(tmp_path / name / "InvertedPendulum-v5" / algo / "seed_0") for name in ("straight", "paused")
    )
    episode_ends = np.cumsum([int(length) for _, length in straight["episodes"]])
    assert not {100, 200} & set(episode_ends)  # both pauses cut an episode (the old resume started a new one there)
    for key in ("evaluations", "episodes", "train", "diagnostics"):
        assert paused[key] == straight[key], key
    for name, tensor in straight["parameters"].items():
        assert th.equal(paused["parameters"][name], tensor), name


def test_a_resume_on_another_machine_is_recorded(runner, tmp_path: Path, monkeypatch) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    monkeypatch.setattr(runner, "cpu_model", lambda: "Other CPU")
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    assert runner.run(tiny_args(runner, tmp_path)) == 0
    machines = json.loads((run_dir / "run.json").read_text())["machines"]
    assert [(m["cpu"], m["from_step"]) for m in machines] == [
        (importlib.import_module("machine").cpu_model(), 0),
        ("Other CPU", 100),
    ]


class NoisyObservation(gym.Wrapper):
    """Pendulum whose observations get noise from the env's own generator, held by the wrapper too (a shared object)."""

    def __init__(self, env, transform=None):
        super().__init__(env)
        self.rng = env.unwrapped.np_random
        self.transform = transform

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.rng = self.env.unwrapped.np_random  # reset(seed=...) makes a new generator: hold that one
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs + 0.01 * self.rng.standard_normal(obs.shape).astype(obs.dtype), reward, terminated, truncated, info


def noisy_pendulum(lambda_attribute: bool = False):
    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    return gym.wrappers.TimeLimit(NoisyObservation(PendulumEnv(), (lambda x: x) if lambda_attribute else None), 200)


@pytest.fixture
def noisy_envs():
    gym.register("RunnerNoisyPendulum-v0", entry_point=noisy_pendulum)
    gym.register("RunnerLambdaPendulum-v0", entry_point=noisy_pendulum, kwargs={"lambda_attribute": True})
    yield
    gym.registry.pop("RunnerNoisyPendulum-v0")
    gym.registry.pop("RunnerLambdaPendulum-v0")


def sac_args(runner, out: Path, env_id: str, *extra: str):
    argv = ["--algo", "sac", "--env", env_id, "--timesteps", "300", "--eval-freq", "100", "--eval-episodes", "1",
            "--learning-starts", "100", "--gradient-steps", "1", "--net-arch", "32", "32", "--out", str(out),
            *extra]  # fmt: skip
    return runner.parse_args(argv)


def test_an_object_two_env_layers_share_is_shared_after_the_resume(runner, tmp_path: Path, noisy_envs) -> None:
    """The wrapper draws its noise from the env's generator: restored as two copies, the noise would repeat draws."""
    env_id = "RunnerNoisyPendulum-v0"
    assert runner.run(sac_args(runner, tmp_path / "straight", env_id)) == 0
    for _ in range(2):
        assert runner.run(sac_args(runner, tmp_path / "paused", env_id, "--max-seconds", "0")) == runner.NOT_FINISHED
    assert runner.run(sac_args(runner, tmp_path / "paused", env_id)) == 0
    straight, paused = (run_files(tmp_path / name / env_id / "sac" / "seed_0") for name in ("straight", "paused"))
    assert paused["episodes"] == straight["episodes"] and paused["evaluations"] == straight["evaluations"]
    for name, tensor in straight["parameters"].items():
        assert th.equal(paused["parameters"][name], tensor), name


def test_an_env_that_cannot_be_pickled_pauses_with_a_reset(runner, tmp_path: Path, noisy_envs) -> None:
    env_id = "RunnerLambdaPendulum-v0"
    run_dir = tmp_path / env_id / "sac" / "seed_0"
    with pytest.warns(UserWarning, match=r"NoisyObservation.transform of the training env cannot be saved .*reset"):
        assert runner.run(sac_args(runner, tmp_path, env_id, "--max-seconds", "0")) == runner.NOT_FINISHED
    pause = json.loads((run_dir / "resume.json").read_text())
    assert "env_state" not in pause and (run_dir / pause["agent"]).exists()
    assert runner.run(sac_args(runner, tmp_path, env_id)) == 0  # resumes (with a reset) and finishes
    with open(run_dir / "evaluations.csv") as file:
        assert [int(row["timesteps"]) for row in csv.DictReader(file)] == [100, 200, 300]
    assert not list(run_dir.glob("resume*")) and not list(run_dir.glob("*.tmp"))


def test_a_kill_while_a_pause_is_saved_resumes_from_the_previous_pause(runner, tmp_path: Path, monkeypatch) -> None:
    """The pointer to a pause is written after the pause's files: a run killed while saving resumes from the last one."""
    from sb3_pmac import PMAC

    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED  # paused at 100

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # as a kill: the pause at 200 is being written

    monkeypatch.setattr(PMAC, "save_replay_buffer", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0"))
    monkeypatch.undo()
    assert json.loads((run_dir / "resume.json").read_text())["agent"] == "resume_100.zip"
    assert runner.run(tiny_args(runner, tmp_path)) == 0
    with open(run_dir / "evaluations.csv") as file:
        assert [int(row["timesteps"]) for row in csv.DictReader(file)] == [100, 200, 300]


def set_walls(run_dir: Path, walls: dict[int, str]) -> None:
    """Overwrite the ``wall_s`` of some evaluation rows (as if the earlier calls had taken that long)."""
    with open(run_dir / "evaluations.csv", newline="") as file:
        reader = csv.DictReader(file)
        columns, rows = list(reader.fieldnames or []), list(reader)
    for row in rows:
        row["wall_s"] = walls.get(int(row["timesteps"]), row["wall_s"])
    with open(run_dir / "evaluations.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_max_seconds_is_the_budget_of_each_call(runner, tmp_path: Path) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    set_walls(run_dir, {100: "100000.0"})  # the earlier calls took a day: this call still has its hour
    assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "3600")) == 0


def test_the_wall_time_goes_on_from_the_last_evaluation(runner, tmp_path: Path) -> None:
    run_dir = tmp_path / "InvertedPendulum-v5" / "pmac" / "seed_0"
    for _ in range(2):
        assert runner.run(tiny_args(runner, tmp_path, "--max-seconds", "0")) == runner.NOT_FINISHED
    set_walls(run_dir, {100: "5.0", 200: "1000.0"})
    assert runner.run(tiny_args(runner, tmp_path)) == 0
    with open(run_dir / "evaluations.csv") as file:
        walls = [float(row["wall_s"]) for row in csv.DictReader(file)]
    assert walls[:2] == [5.0, 1000.0] and walls[2] >= 1000.0
    assert json.loads((run_dir / "run.json").read_text())["wall_s"] >= 1000.0


def test_a_pause_in_the_warm_up_continues_its_random_actions(runner, tmp_path: Path) -> None:
    extra = ["--algo", "sac", "--learning-starts", "250"]  # the pauses at 100 and 200 fall in the random warm-up
    assert runner.run(tiny_args(runner, tmp_path / "straight", *extra)) == 0
    for _ in range(2):
        assert runner.run(tiny_args(runner, tmp_path / "paused", *extra, "--max-seconds", "0")) == runner.NOT_FINISHED
    assert runner.run(tiny_args(runner, tmp_path / "paused", *extra)) == 0
    runs = [tmp_path / name / "InvertedPendulum-v5" / "sac" / "seed_0" for name in ("straight", "paused")]
    straight, paused = (run_files(run_dir) for run_dir in runs)
    for key in ("evaluations", "episodes", "train"):
        assert paused[key] == straight[key], key
    for name, tensor in straight["parameters"].items():
        assert th.equal(paused["parameters"][name], tensor), name
