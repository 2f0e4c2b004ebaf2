"""The diagnostics CSV files of ``python -m sb3_pmac.diagnostics`` and the callback: never destroy a file."""

import csv
import os
import stat
from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3.common.monitor import Monitor

from sb3_pmac.diagnostics import append_csv_row, csv_columns, evaluate_checkpoints, main, schema


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
