"""
The diagnostics CSV files of ``python -m sb3_pmac.diagnostics`` and the callback: never destroy a file. rl-zoo3 runs:
VecNormalize statistics, checkpoints of a run continued with ``train -i``, an agent of another env.
"""

import csv
import itertools
import os
import re
import stat
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import TINY_PMAC_KWARGS
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_pmac import PMAC
from sb3_pmac.diagnostics import (
    DiagnosticsInputError,
    append_csv_row,
    checkpoint_upto,
    csv_columns,
    evaluate_checkpoints,
    evaluate_model,
    load_agent,
    load_buffer,
    main,
    schema,
)
from sb3_pmac.diagnostics.cli import parse_args
from sb3_pmac.env_presets import make_preset_env


def monitor_csv(folder: Path) -> Path:
    """An SB3 Monitor file of two short episodes (a ``#{...}`` JSON line, then ``r,l,t`` rows)."""
    env = Monitor(gym.make("Pendulum-v1", max_episode_steps=5), str(folder / "monitor.csv"))
    for seed in (0, 1):
        env.reset(seed=seed)
        truncated = False
        while not truncated:
            _, _, _, truncated, _ = env.step(env.action_space.sample())
    env.close()
    path = folder / "monitor.csv"
    assert path.read_text().startswith("#{") and len(path.read_text().splitlines()) == 4
    return path


def diagnostics_row(timesteps: int, horizon: int = 3) -> dict[str, float]:
    return {column: float(index) for index, column in enumerate(csv_columns(horizon))} | {"timesteps": timesteps}


def other_csv_files(folder: Path) -> list[Path]:
    """Files that are not diagnostics CSVs: SB3's Monitor and progress files, the runner's evaluations, others."""
    files = {
        "progress.csv": "time/total_timesteps,train/actor_loss\n100,0.5\n",
        "evaluations.csv": "timesteps,mean_return,std_return,wall_s\n100,5.0,0.0,1.2\n",
        "binary.csv": b"\x80\x04\x95\xff\x00",
        "blank.csv": "\n\n",
        "no_timesteps.csv": "local_obs_mse,timesteps\n0.1,100\n",
    }
    paths = [monitor_csv(folder)]
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        paths.append(path)
    return paths


def test_other_csv_files_are_refused_and_left_unchanged(tmp_path):
    for path in other_csv_files(tmp_path):
        before = path.read_bytes()
        with pytest.raises(ValueError, match=r"is not a diagnostics CSV file.*left unchanged"):
            append_csv_row(path, diagnostics_row(100))
        with pytest.raises(ValueError, match="is not a diagnostics CSV file"):
            schema.check_diagnostics_csv(path)
        # the offline diagnostics refuse before anything else (the agent file does not even exist)
        with pytest.raises(ValueError, match="is not a diagnostics CSV file"):
            evaluate_checkpoints([tmp_path / "no_agent.zip"], "Pendulum-v1", csv_path=path)
        assert path.read_bytes() == before, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["monitor.csv", "progress.csv", "evaluations.csv", "binary.csv", "blank.csv", "no_timesteps.csv"]
    )  # no temporary files left


def test_cli_refuses_a_monitor_file_before_loading_anything(tmp_path, capsys):
    path = monitor_csv(tmp_path)
    before = path.read_bytes()
    with pytest.raises(SystemExit, match=r"--csv .*monitor.csv is not a diagnostics CSV file \(its first line is '#\{"):
        main([str(tmp_path / "no_agent.zip"), "--env", "Pendulum-v1", "--csv", str(path)])
    assert path.read_bytes() == before


def test_appending_to_a_diagnostics_csv(tmp_path):
    path = tmp_path / "diagnostics.csv"
    schema.check_diagnostics_csv(path)  # no file: fine
    path.write_bytes(b"")
    schema.check_diagnostics_csv(path)  # an empty file: written as new
    append_csv_row(path, diagnostics_row(100))
    first = path.read_bytes()
    append_csv_row(path, diagnostics_row(200))
    assert path.read_bytes().startswith(first)  # appended: the earlier bytes unchanged
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["timesteps"] for row in rows] == ["100", "200"] and rows[1]["compounding_obs_mse_h3"] == "10.0"
    # a longer horizon: the file is rewritten with the union of the columns
    append_csv_row(path, diagnostics_row(300, horizon=4))
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == csv_columns(4)
        rows = list(reader)
    assert [(row["timesteps"], row["compounding_obs_mse_h4"]) for row in rows] == [("100", ""), ("200", ""), ("300", "11.0")]
    schema.check_diagnostics_csv(path)
    # rows of a shorter horizon, other newest-k shares
    append_csv_row(path, {"timesteps": 400, "mixture_newest_3_share": 0.5})
    assert path.read_text().splitlines()[0] == ",".join([*csv_columns(4), "mixture_newest_3_share"])


def test_appending_keeps_foreign_line_endings_and_mode(tmp_path):
    path = tmp_path / "diagnostics.csv"
    path.write_bytes(b"timesteps,local_obs_mse\n100,0.5")  # "\n" line ends, no newline at the end
    os.chmod(path, 0o640)
    append_csv_row(path, {"timesteps": 200, "local_obs_mse": 0.25})
    assert path.read_bytes() == b"timesteps,local_obs_mse\n100,0.5\r\n200,0.25\r\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("horizon", [3, 4], ids=["append", "new_columns"])
def test_a_failed_write_leaves_the_file_unchanged(tmp_path, monkeypatch, horizon):
    path = tmp_path / "diagnostics.csv"
    append_csv_row(path, diagnostics_row(100))
    append_csv_row(path, diagnostics_row(200))
    before = path.read_bytes()
    real_writerow = csv.DictWriter.writerow
    calls = []

    def fails_midway(self, rowdict):
        calls.append(rowdict)
        if rowdict.get("timesteps") != 300:  # the header (a rewrite) goes through
            return real_writerow(self, rowdict)
        self.writer.writerow(["30"])  # half a row, then the disk is full
        raise OSError("No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerow", fails_midway)
    with pytest.raises(OSError, match="No space left"):
        append_csv_row(path, diagnostics_row(300, horizon))
    assert calls[-1]["timesteps"] == 300 and len(calls) == (1 if horizon == 3 else 2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["diagnostics.csv"]  # the temporary file is gone
    # a new file is not created either
    with pytest.raises(OSError, match="No space left"):
        append_csv_row(tmp_path / "new.csv", diagnostics_row(300))
    assert [p.name for p in tmp_path.iterdir()] == ["diagnostics.csv"]
    monkeypatch.undo()
    append_csv_row(path, diagnostics_row(300, horizon))
    with open(path, newline="") as file:
        assert [row["timesteps"] for row in csv.DictReader(file)] == ["100", "200", "300"]


# ------------------------------------------------------------------ rl-zoo3 runs: VecNormalize, train -i, wrong --env

ENV_ID = "Pendulum-v1"
RUN_KWARGS = {**TINY_PMAC_KWARGS, "learning_starts": 50, "model_train_freq": 50, "seed": 0, "device": "cpu"}
SIZES = dict(n_local=40, n_global=200, n_trajectories=5, horizon=2, seed=7)
SIZE_ARGS = ["--n-local", "40", "--n-global", "200", "--n-trajectories", "5", "--horizon", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def zoo_vecnormalize_run(tmp_path_factory):
    """An agent trained on a VecNormalize env, saved as rl-zoo3 saves it (``<run>/<env>/vecnormalize.pkl``)."""
    run = tmp_path_factory.mktemp("logs") / "pmac" / f"{ENV_ID}_1"
    (run / ENV_ID).mkdir(parents=True)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(ENV_ID)]))
    agent = PMAC("MlpPolicy", venv, **RUN_KWARGS).learn(120)
    venv.obs_rms.mean = venv.obs_rms.mean + 3.0  # statistics far from raw observations: normalization matters
    agent.save(run / f"{ENV_ID}.zip")
    venv.save(run / ENV_ID / "vecnormalize.pkl")
    env = make_preset_env(ENV_ID)
    normalized = evaluate_model(agent, env, **SIZES)
    agent._vec_normalize_env = None
    raw = evaluate_model(agent, env, **SIZES)
    assert normalized["local_obs_mse"] != pytest.approx(raw["local_obs_mse"], rel=1e-3)  # the test can tell them apart
    return run, normalized, raw


def test_cli_normalizes_observations_with_rl_zoo3_vecnormalize(zoo_vecnormalize_run, tmp_path, capsys):
    run, normalized, raw = zoo_vecnormalize_run
    agent_zip, stats = run / f"{ENV_ID}.zip", run / ENV_ID / "vecnormalize.pkl"
    (row,) = main([str(agent_zip), "--env", ENV_ID, "--device", "cpu", *SIZE_ARGS])  # found next to the agent
    for key in ("local_obs_mse", "local_reward_mse", "compounding_obs_mse_h2"):
        assert row[key] == pytest.approx(normalized[key], rel=1e-6), key
    assert f"observations normalized with {stats}" in capsys.readouterr().out  # says which file
    # the policy acts as in training: the statistics are frozen (an evaluation leaves the file's statistics alone)
    (again,) = main([str(agent_zip), "--env", ENV_ID, "--device", "cpu", *SIZE_ARGS])
    assert again["local_obs_mse"] == row["local_obs_mse"]
    # --vecnormalize none: raw observations, as before
    (plain,) = main([str(agent_zip), "--env", ENV_ID, "--device", "cpu", "--vecnormalize", "none", *SIZE_ARGS])
    assert plain["local_obs_mse"] == pytest.approx(raw["local_obs_mse"], rel=1e-6)
    # an agent copied elsewhere: the statistics passed by path (the Python API takes them too)
    copied = tmp_path / "agent.zip"
    copied.write_bytes(agent_zip.read_bytes())
    (api_row,) = evaluate_checkpoints([copied], ENV_ID, vecnormalize=stats, device="cpu", **SIZES)
    assert api_row["local_obs_mse"] == pytest.approx(normalized["local_obs_mse"], rel=1e-6)
    (api_raw,) = evaluate_checkpoints([copied], ENV_ID, device="cpu", **SIZES)  # none found next to it: raw
    assert api_raw["local_obs_mse"] == pytest.approx(raw["local_obs_mse"], rel=1e-6)


def test_cli_refuses_an_agent_of_another_env(zoo_vecnormalize_run):
    run, _, _ = zoo_vecnormalize_run
    with pytest.raises(
        SystemExit,
        match=r"does not fit --env MountainCarContinuous-v0: observation space Box\(.*\(3,\).*\(the agent\) != .*\(2,\)",
    ):
        main([str(run / f"{ENV_ID}.zip"), "--env", "MountainCarContinuous-v0", "--device", "cpu", *SIZE_ARGS])


@pytest.fixture(scope="module")
def continued_run(tmp_path_factory):
    """
    rl-zoo3's ``train -i``: a run of 150 steps, then a second one from its agent and buffer with ``num_timesteps``
    reset (checkpoints ``rl_model_<n>_steps.zip`` every 50 steps of the second run), and the final buffer.
    """
    folder = tmp_path_factory.mktemp("continued")
    first = PMAC("MlpPolicy", gym.make(ENV_ID), **RUN_KWARGS).learn(150)
    first.save(folder / "first.zip")
    first.save_replay_buffer(folder / "first_buffer.npz")
    second = PMAC.load(folder / "first.zip", env=gym.make(ENV_ID), device="cpu")
    second.load_replay_buffer(folder / "first_buffer.npz")
    second.learn(100, callback=CheckpointCallback(50, str(folder), name_prefix="rl_model"))
    assert second.num_timesteps == 100 and second.replay_buffer.size() == 250
    second.save_replay_buffer(folder / "final_buffer.npz")
    return folder


def test_upto_auto_places_the_checkpoints_of_a_continued_run(continued_run):
    folder = continued_run
    buffer = load_buffer(folder / "final_buffer.npz")
    expected = {"rl_model_50_steps.zip": 200, "rl_model_100_steps.zip": 250, "first.zip": 150}
    for name, position in expected.items():
        assert checkpoint_upto(load_agent(folder / name, device="cpu"), buffer) == position, name
    checkpoint = folder / "rl_model_50_steps.zip"
    (auto,) = evaluate_checkpoints([checkpoint], ENV_ID, folder / "final_buffer.npz", upto="auto", device="cpu", **SIZES)
    (given,) = evaluate_checkpoints([checkpoint], ENV_ID, folder / "final_buffer.npz", upto=200, device="cpu", **SIZES)
    (old,) = evaluate_checkpoints([checkpoint], ENV_ID, folder / "final_buffer.npz", upto=50, device="cpu", **SIZES)
    assert auto == given
    assert auto["mixture_effective_versions"] != old["mixture_effective_versions"]  # 50: the first run's warm-up only
    assert auto["global_obs_mse"] != old["global_obs_mse"]


def test_upto_auto_refuses_what_it_cannot_place(continued_run, capsys):
    folder = continued_run
    # the second run's checkpoint with the first run's buffer (no position of it holds the checkpoint's version)
    agent, buffer = load_agent(folder / "rl_model_100_steps.zip", device="cpu"), load_buffer(folder / "first_buffer.npz")
    with pytest.raises(DiagnosticsInputError, match=r"num_timesteps is 100 .*train -i.*--upto N"):
        checkpoint_upto(agent, buffer)
    argv = [str(folder / "rl_model_100_steps.zip"), "--env", ENV_ID, "--buffer", str(folder / "first_buffer.npz")]
    with pytest.raises(SystemExit, match=r"error: Cannot tell which buffer positions"):
        main([*argv, "--upto", "auto", "--device", "cpu", *SIZE_ARGS])
    (row,) = main([*argv, "--upto", "150", "--device", "cpu", *SIZE_ARGS])  # told: evaluated
    assert np.isfinite(row["global_obs_mse"])
    assert "upto=150" in capsys.readouterr().out


def test_one_checkpoint_is_measured_on_its_own_data_by_default(continued_run, capsys):
    """A glob that matches one checkpoint gives the row it gives among several: the data it had collected."""
    folder = continued_run
    checkpoint, final = str(folder / "rl_model_50_steps.zip"), str(folder / "final_buffer.npz")
    args = ["--env", ENV_ID, "--buffer", final, "--device", "cpu", *SIZE_ARGS]
    (alone,) = main([checkpoint, *args])
    among, _ = main([checkpoint, str(folder / "rl_model_100_steps.zip"), *args])  # in step order
    assert alone == among and "upto=200" in capsys.readouterr().out
    (whole,) = main([checkpoint, *args, "--upto", "all"])  # the whole buffer when asked
    assert "upto=None" in capsys.readouterr().out and whole["global_obs_mse"] != alone["global_obs_mse"]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--horizon", "0"], "horizon"),
        (["--upto", "100000"], "exceeds the 250 positions"),
        (["--n-local", "0"], "n_local"),
    ],
)
def test_inputs_that_do_not_fit_end_with_the_message(continued_run, extra, match):
    folder = continued_run
    argv = [str(folder / "rl_model_50_steps.zip"), "--env", ENV_ID, "--buffer", str(folder / "final_buffer.npz")]
    with pytest.raises(SystemExit, match=f"error: .*{match}"):
        main([*argv, "--device", "cpu", *SIZE_ARGS, *extra])
    with pytest.raises(SystemExit, match=r"error: .*missing\.zip"):
        main([str(folder / "missing.zip"), *argv[1:], "--device", "cpu", *SIZE_ARGS])


def test_env_kwargs_reach_the_evaluation_env(continued_run):
    """A run on other dynamics (rl-zoo3's env_kwargs) is measured on them: --env-kwargs as rl-zoo3 takes them."""
    checkpoint = continued_run / "first.zip"
    args = [str(checkpoint), "--env", ENV_ID, "--device", "cpu", *SIZE_ARGS]
    (registered,) = main(args)
    (light,) = main([*args, "--env-kwargs", "g:2.0"])
    (by_hand,) = evaluate_checkpoints([checkpoint], ENV_ID, env_kwargs={"g": 2.0}, device="cpu", **SIZES)
    assert light == by_hand and light["local_obs_mse"] != registered["local_obs_mse"]
    with pytest.raises(SystemExit):
        main([*args, "--env-kwargs", "g"])  # not KEY:VALUE


def test_warm_up_checkpoints_are_skipped_as_the_callback_skips_them(tmp_path):
    agent = PMAC("MlpPolicy", gym.make(ENV_ID), **RUN_KWARGS)
    agent.learn(RUN_KWARGS["learning_starts"])  # the warm-up only: no model trained
    assert agent.model_rounds_trained == 0
    agent.save(tmp_path / "agent_warm_up.zip")
    agent.learn(100, reset_num_timesteps=False)
    agent.save(tmp_path / "agent_trained.zip")
    agent.save_replay_buffer(tmp_path / "final_buffer.npz")
    paths = [tmp_path / "agent_warm_up.zip", tmp_path / "agent_trained.zip"]
    with pytest.warns(UserWarning, match=r"agent_warm_up.zip holds no trained model yet .*skipped"):
        rows = evaluate_checkpoints(paths, ENV_ID, tmp_path / "final_buffer.npz", device="cpu", **SIZES)
    assert [row["timesteps"] for row in rows] == [agent.num_timesteps]


@pytest.fixture(scope="module")
def vecnormalize_checkpoints(tmp_path_factory):
    """
    A run on a VecNormalize env of 2 envs with checkpoints and their statistics every 80 steps
    (``CheckpointCallback(save_vecnormalize=True)``: ``first_<n>_steps.zip``, ``first_vecnormalize_<n>_steps.pkl``),
    rl-zoo3's statistics of the end of the run (``<run>/<env>/vecnormalize.pkl``), and its continuation as rl-zoo3's
    ``train -i`` makes it (agent, buffer and those statistics loaded, ``num_timesteps`` reset: ``second_80_steps.zip``).
    """
    folder = tmp_path_factory.mktemp("vecnormalize")
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(ENV_ID)] * 2))
    first = PMAC("MlpPolicy", venv, **RUN_KWARGS)
    first.learn(160, callback=CheckpointCallback(40, str(folder), name_prefix="first", save_vecnormalize=True))
    (folder / ENV_ID).mkdir()
    venv.save(folder / ENV_ID / "vecnormalize.pkl")
    first.save(folder / "first.zip")
    first.save_replay_buffer(folder / "first_buffer.npz")
    statistics = VecNormalize.load(str(folder / ENV_ID / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make(ENV_ID)] * 2))
    second = PMAC.load(folder / "first.zip", env=statistics, device="cpu")
    second.load_replay_buffer(folder / "first_buffer.npz")
    second.learn(80, callback=CheckpointCallback(40, str(folder), name_prefix="second", save_vecnormalize=True))
    second.save_replay_buffer(folder / "final_buffer.npz")
    assert sorted(path.name for path in folder.glob("*_steps.*")) == [
        "first_160_steps.zip", "first_80_steps.zip", "first_vecnormalize_160_steps.pkl",
        "first_vecnormalize_80_steps.pkl", "second_80_steps.zip", "second_vecnormalize_80_steps.pkl",
    ]  # fmt: skip
    return folder


def _vecnormalize_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "VecNormalize statistics" in str(w.message)]


def test_vecnormalize_statistics_of_another_step_warn(vecnormalize_checkpoints):
    """
    In one training ``obs_rms.count`` is ``num_timesteps + n_envs + 1e-4``: statistics of another step than the
    checkpoint's (rl-zoo3's end-of-run file) warn, per-checkpoint ones do not, nor a continued run placed as such.
    """
    folder = vecnormalize_checkpoints
    checkpoints = [folder / "first_80_steps.zip", folder / "first_160_steps.zip"]
    final_statistics = folder / ENV_ID / "vecnormalize.pkl"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        own = evaluate_checkpoints(checkpoints, ENV_ID, device="cpu", **SIZES)  # auto: first_vecnormalize_<n>_steps.pkl
        final = evaluate_checkpoints(checkpoints, ENV_ID, vecnormalize=final_statistics, device="cpu", **SIZES)
    assert [row["timesteps"] for row in final] == [80, 160]
    (message,) = _vecnormalize_warnings(record)  # step 80 with the statistics of step 160 only
    assert re.search(r"first_80_steps\.zip was saved at step 80, but the VecNormalize statistics .*vecnormalize\.pkl "
                     r"seem to be from step 160 \(obs_rms\.count 162\.0001; .*n_envs \(2\)", message)  # fmt: skip
    assert "CheckpointCallback(save_vecnormalize=True)" in message
    assert own[0]["local_obs_mse"] != final[0]["local_obs_mse"] and own[1] == final[1]  # what the warning is about
    # the continuation's statistics go on from the first run's (2 + 160 + 2 + 80 observations)
    continued = [folder / "second_80_steps.zip"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        evaluate_checkpoints(continued, ENV_ID, folder / "final_buffer.npz", device="cpu", **SIZES)  # placed: upto 120
    assert _vecnormalize_warnings(record) == []
    with pytest.warns(UserWarning, match=r"saved at step 80, but .* seem to be from step 242 .*train -i"):
        evaluate_checkpoints(continued, ENV_ID, device="cpu", **SIZES)  # without the buffer it cannot be told


def test_checkpoints_are_evaluated_in_the_order_of_their_saved_steps(vecnormalize_checkpoints, tmp_path, monkeypatch):
    """The order of the agents' num_timesteps, not of digits in the file names; agents of one step warn."""
    from sb3_pmac.diagnostics import checkpoints as checkpoints_module

    folder = vecnormalize_checkpoints
    final = tmp_path / "final_agent.zip"  # no step in the name
    final.write_bytes((folder / "first_160_steps.zip").read_bytes())
    early = tmp_path / "agent_2024_run_80.zip"  # digits in the prefix
    early.write_bytes((folder / "first_80_steps.zip").read_bytes())
    loads = []
    real_load_agent = checkpoints_module.load_agent
    monkeypatch.setattr(
        checkpoints_module, "load_agent", lambda path, **kwargs: loads.append(path) or real_load_agent(path, **kwargs)
    )
    rows = evaluate_checkpoints([final, early], ENV_ID, vecnormalize=None, device="cpu", **SIZES)
    assert [row["timesteps"] for row in rows] == [80, 160] and loads == [early, final]  # each agent loaded once
    with pytest.warns(UserWarning, match=r"2 agents were saved at the same step 160: .*final_agent\.zip, .*first\.zip"):
        rows = evaluate_checkpoints([final, folder / "first.zip", early], ENV_ID, vecnormalize=None, device="cpu", **SIZES)
    assert [row["timesteps"] for row in rows] == [80, 160, 160]
    # a file that is not an agent comes first: its error before anything is evaluated or written
    csv_path = tmp_path / "diagnostics.csv"
    with pytest.raises(FileNotFoundError):
        evaluate_checkpoints([early, tmp_path / "missing.zip"], ENV_ID, csv_path=csv_path, device="cpu", **SIZES)
    assert not csv_path.exists()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--csv", "{tmp_path}"], r"--csv .* is a folder, not a CSV file"),
        (["--env", "Pendulum-v2"], r"make_preset_env\('Pendulum-v2'\): Environment version `v2` .* doesn't exist"),
        (["--env-kwargs", "foo:1"], r"make_preset_env\('Pendulum-v1', \{'foo': 1\}\): .*unexpected keyword argument 'foo'"),
    ],
    ids=["csv_folder", "env_id", "env_kwargs"],
)
def test_cli_input_errors_end_with_a_one_line_message(continued_run, tmp_path, extra, match):
    argv = [str(continued_run / "first.zip"), "--env", ENV_ID, "--device", "cpu", *SIZE_ARGS]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *(arg.format(tmp_path=tmp_path) for arg in extra)])  # a later --env replaces the first
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message and re.match(f"error: .*{match}", message), message  # status 1
    assert list(tmp_path.iterdir()) == []


def test_help_examples_keep_their_line_continuations(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    lines = capsys.readouterr().out.split("examples:")[1].splitlines()
    continued = [line for line, following in itertools.pairwise(lines) if following.startswith("      --")]
    assert len(continued) == 2 and all(line.endswith(" \\") for line in continued), continued
