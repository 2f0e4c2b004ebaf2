"""
Wrong inputs of the benchmark scripts that train for minutes to hours (benchmarks/model_replay.py,
benchmarks/compare_pmac_mbpo.py) stop at once with one line that names the option, not with a traceback from inside
the first training or after it.
"""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: its folder's helpers (machine.py) import
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def model_replay():
    yield load_script("model_replay")
    sys.modules.pop("model_replay", None)


@pytest.fixture(scope="module")
def compare():
    yield load_script("compare_pmac_mbpo")
    sys.modules.pop("compare_pmac_mbpo", None)


@pytest.fixture
def run_data(tmp_path: Path) -> Path:
    """600 transitions of a made-up 3-dimensional system, 6 policy versions of 100 steps."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(600, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(600, 1)).astype(np.float32)
    path = tmp_path / "run.npz"
    np.savez(path, observations=obs, actions=actions, rewards=obs[:, 0].copy(), next_observations=obs + 0.1 * actions,
             versions=np.repeat(np.arange(6), 100))  # fmt: skip
    return path


def test_model_replay_refuses_bad_inputs_before_training(model_replay, run_data: Path, tmp_path: Path, capsys):
    data = ["--data", str(run_data)]
    cases = [
        (["--configs", "a=exponential:auto:x", *data], "bad steps 'x'"),
        (["--configs", "a=exponential:0:5", *data], "bad rows '0'"),
        (["--configs", "a=uniform:auto:5", "a=exponential:auto:5", *data], "configuration names given twice: a"),
        ([], "--data is required"),
        (["--data", str(tmp_path / "missing.npz")], "error: --data"),
        (["--every", "0", *data], "--every must be positive"),
        (["--start", "2000", *data], "no round between --start 2000 and 350"),
        (["--summary", str(tmp_path / "missing.csv")], "error: --summary"),
    ]
    np.savez(tmp_path / "other.npz", observations=np.zeros((10, 3)))
    cases.append((["--data", str(tmp_path / "other.npz")], "not run data of benchmarks/collect_run_data.py"))
    for argv, message in cases:
        with pytest.raises(SystemExit) as raised:
            model_replay.main(argv)
        said = str(raised.value) if isinstance(raised.value.code, str) else capsys.readouterr().err
        assert message in said, (argv, said)
        assert "Traceback" not in said


def test_model_replay_runs_on_good_inputs(model_replay, run_data: Path, tmp_path: Path, capsys):
    csv_path = tmp_path / "rows.csv"
    model_replay.main(["--data", str(run_data), "--start", "200", "--end", "300", "--every", "100", "--reference-every",
                       "100", "--reference-max-epochs", "1", "--configs", "ref=uniform:full:none", "b=exponential:150:3",
                       "--csv", str(csv_path)])  # fmt: skip
    with open(csv_path) as file:
        rows = list(csv.DictReader(file))
    assert [(row["t"], row["config"]) for row in rows] == [("200", "ref"), ("200", "b"), ("300", "ref"), ("300", "b")]
    for row in rows:
        t = int(row["t"])
        if row["config"] == "ref":  # MBPO's rule: every one of the first t transitions once, 1 epoch at most here
            assert int(row["n_rows"]) == int(row["distinct"]) == t and row["epochs"] == "1"
        else:  # 150 rows drawn per version with Algorithm 1's weights, 3 gradient steps
            assert int(row["n_rows"]) == 150 and int(row["grad_steps"]) == 3
        assert 0 < float(row["local"]) < np.inf and 0 < float(row["global"]) < np.inf
    # at t = 200 versions 0 (warm-up) and 1 weigh alpha = 0.9 and 1 - alpha = 0.1: 135 rows of version 0's 100
    # transitions (all of them, 35 again) and 15 of version 1: 115 distinct
    assert rows[1]["distinct"] == "115"
    assert "t=300:" in capsys.readouterr().out


def test_compare_refuses_bad_inputs_before_training(compare, capsys):
    cases = [
        (["--timesteps", "0"], "--timesteps must be positive"),
        (["--timesteps", "300", "--eval-freq", "500"], "--eval-freq 500 is above --timesteps 300"),
        (["--env", "NoSuchEnv-v0"], "cannot make --env NoSuchEnv-v0"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            compare.main(argv)
        assert message in capsys.readouterr().err
