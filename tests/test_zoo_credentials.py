"""
Passwords in URLs (``--storage postgresql://user:secret@host/db``) reach the database but none of the files the rl-zoo3
launcher writes (``args.yml``, ``config.yml``, ``command.txt``, the Optuna report ``report_*.pkl``/``.csv``), nor the
study's ``command`` attribute.

No PostgreSQL server is needed: the storage is SQLite behind a server-style URL with a user and a password (a
SQLAlchemy dialect ``pwsqlite`` that accepts and ignores them), so Optuna gets and uses a password-bearing URL as it
would a PostgreSQL one, and its ``RDBStorage`` keeps that URL as PostgreSQL's would.
"""

import argparse
import collections
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="optuna not installed (pip install -e '.[zoo]')")
from sqlalchemy.dialects import registry  # noqa: E402
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite  # noqa: E402

from sb3_pmac.zoo_credentials import _MaskingPickleModule, mask_credentials  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "S3cret-Pw_4711"
OTHER_PASSWORD = "0ther-Pw_0815"


class PasswordSQLiteDialect(SQLiteDialect_pysqlite):
    """SQLite behind a server-style URL ``pwsqlite://user:password@//abs/path.db``: user and password are ignored."""

    supports_statement_cache = True

    def create_connect_args(self, url):
        return super().create_connect_args(url._replace(username=None, password=None))


registry.register("pwsqlite", __name__, "PasswordSQLiteDialect")


def test_mask_credentials_values():
    assert mask_credentials("postgresql+psycopg2://optuna:S3cret@db-host:5432/optuna") == (
        "postgresql+psycopg2://optuna@db-host:5432/optuna"
    )
    assert mask_credentials("--storage=mysql://u:p%40ss@h/db --x") == "--storage=mysql://u@h/db --x"
    assert mask_credentials("redis://:pw@h/0") == "redis://@h/0"
    assert mask_credentials("postgresql://u@h/db?sslmode=require&password=abc") == "postgresql://u@h/db?sslmode=require"
    assert mask_credentials("postgresql://u@h/db?password=abc&sslmode=require") == "postgresql://u@h/db?sslmode=require"
    # a password with spaces (SQLAlchemy reads up to the first "@"): in a value that is a URL, also as --option=URL
    assert mask_credentials("postgresql://u:my S3cret pw@h/db") == "postgresql://u@h/db"
    assert mask_credentials("--storage=postgresql://u:a b@h/db") == "--storage=postgresql://u@h/db"
    assert mask_credentials(["--storage", "postgresql://u:a b@h/db"]) == ["--storage", "postgresql://u@h/db"]
    # ... not across the arguments of a command line: a URL without password keeps its port, the "@" is another's
    for command in ("--storage postgresql://db:5432/o --x a@b", "--storage=postgresql://db:5432/o --x a@b",
                    "postgresql://host:5432/db --other=a@b"):  # fmt: skip
        assert mask_credentials(command) == command
    for unchanged in ("postgresql://optuna@db/optuna", "postgresql://db:5432/optuna", "sqlite:///a.db", "a:b@c", 3, None):
        assert mask_credentials(unchanged) == unchanged
    # containers: masked copies, the originals keep the real values; objects without a password are returned as they are
    args = argparse.Namespace(storage="postgresql://u:pw@h/d", n=[1, ("x://u:pw@h",)], kw=collections.OrderedDict(k="y"))
    masked = mask_credentials(args)
    assert vars(masked) == {"storage": "postgresql://u@h/d", "n": [1, ("x://u@h",)], "kw": collections.OrderedDict(k="y")}
    assert args.storage == "postgresql://u:pw@h/d" and args.n == [1, ("x://u:pw@h",)]
    assert masked.kw is args.kw and type(mask_credentials({"a": "b://u:p@h"})) is dict
    config = collections.OrderedDict(url="b://u:p@h")
    assert type(mask_credentials(config)) is collections.OrderedDict
    plain = argparse.Namespace(seed=1, env="Pendulum-v1")
    assert mask_credentials(plain) is plain


def test_report_pickle_masks_the_storage_url(tmp_path):
    url = f"pwsqlite://optuna:{PASSWORD}@/{tmp_path}/study.db"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert PASSWORD.encode() in pickle.dumps(study)  # what rl-zoo3's report held

    buffer = io.BytesIO()
    _MaskingPickleModule.dump(study, buffer)
    assert PASSWORD.encode() not in buffer.getvalue()
    assert study._storage._backend.url == url  # the running study keeps its URL
    loaded = pickle.loads(buffer.getvalue())
    assert loaded._storage._backend.url == f"pwsqlite://optuna@/{tmp_path}/study.db"
    assert [t.number for t in loaded.trials] == [0, 1]  # still loads the trials (PGPASSWORD/.pgpass for PostgreSQL)
    assert loaded.best_value == study.best_value


RUNNER = textwrap.dedent(
    """
    import json, sys
    import optuna
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class PasswordSQLiteDialect(SQLiteDialect_pysqlite):
        supports_statement_cache = True

        def create_connect_args(self, url):
            return super().create_connect_args(url._replace(username=None, password=None))

    registry.register("pwsqlite", "__main__", "PasswordSQLiteDialect")
    RECORD, received = sys.argv[1], []

    def recording(function):
        def wrapper(*args, **kwargs):  # what Optuna is given
            received.append([function.__name__, kwargs.get("storage")])
            with open(RECORD, "w") as f:
                json.dump(received, f)
            return function(*args, **kwargs)
        return wrapper

    optuna.create_study = recording(optuna.create_study)
    optuna.load_study = recording(optuna.load_study)
    from sb3_pmac.zoo import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl-zoo3 not installed (pip install -e '.[zoo]')")
def test_launcher_writes_no_password(tmp_path):
    import yaml

    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = os.environ.copy()
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    url = f"pwsqlite://optuna:{PASSWORD}@/{tmp_path}/study.db"
    masked_url = f"pwsqlite://optuna@/{tmp_path}/study.db"
    other_url = f"https://me:{OTHER_PASSWORD}@example.org/project"  # another saved argument with a password
    common = ["train", "--algo", "mbpo", "--env", "Pendulum-v1", "-n", "150", "-f", "logs", "--seed", "3"]
    common += ["--num-threads", "1", "--storage", url, "--study-name", "pw-study", "--wandb-project-name", other_url]
    optimize = ["-optimize", "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--eval-episodes", "1"]
    optimize += ["--n-trials", "2", "--no-optim-plots"]
    records = []
    for i, extra in enumerate([optimize, ["--trial-id", "1", "--eval-freq", "-1"]]):  # search, then retrain trial 1
        records.append(tmp_path / f"received{i}.json")
        proc = subprocess.run(
            [sys.executable, str(runner), str(records[-1]), *common, *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Optuna got the real URL, password included, and connected with it
    assert json.loads(records[0].read_text()) == [["create_study", url]]
    assert json.loads(records[1].read_text()) == [["load_study", url]]
    study = optuna.load_study(study_name="pw-study", storage=url)
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2

    # ... and no file under the log folder holds either password
    logs = tmp_path / "logs"
    files = sorted(p for p in logs.rglob("*") if p.is_file())
    names = {p.relative_to(logs).as_posix() for p in files}
    run = "mbpo/Pendulum-v1_2/Pendulum-v1"  # the retrained agent (_1: the search's)
    assert {f"{run}/args.yml", f"{run}/config.yml", f"{run}/command.txt"} <= names
    reports = sorted(p for p in files if p.name.startswith("report_"))
    assert [p.suffix for p in reports] == [".csv", ".pkl"]
    for path in files:
        content = path.read_bytes()
        assert PASSWORD.encode() not in content and OTHER_PASSWORD.encode() not in content, path
    # the saved values are the masked URLs
    with open(logs / run / "args.yml") as f:
        saved = yaml.load(f, Loader=yaml.UnsafeLoader)
    assert saved["storage"] == masked_url and saved["trial_id"] == 1
    assert saved["wandb_project_name"] == "https://me@example.org/project"
    command = (logs / run / "command.txt").read_text()
    assert f"--storage {masked_url} " in command and "--trial-id 1" in command
    with open(reports[1], "rb") as f:
        report = pickle.load(f)
    assert report._storage._backend.url == masked_url
    assert len(report.trials) == 2
    # the study's "command" attribute (in the database) too
    assert f"--storage {masked_url} " in study.user_attrs["command"] and PASSWORD not in study.user_attrs["command"]


SAVE_CONFIG_CHECK = textwrap.dedent(
    """
    import argparse, sys
    from pathlib import Path
    from rl_zoo3 import exp_manager
    from sb3_pmac.zoo_credentials import mask_saved_credentials, masked_orig_argv

    tmp_path, password = Path(sys.argv[1]), sys.argv[2]
    mask_saved_credentials()
    url = f"postgresql://u:{password}@h/db"
    manager = exp_manager.ExperimentManager.__new__(exp_manager.ExperimentManager)  # only what _save_config reads
    manager.params_path = manager.save_path = str(tmp_path)
    manager.args = argparse.Namespace(storage=url)
    hyperparams = {"policy_kwargs": f"dict(url='{url}')", "n_timesteps": 100}
    argv = ["python", "-m", "sb3_pmac.zoo", "train", "--storage", url]
    sys.orig_argv = list(argv)
    with masked_orig_argv():
        manager._save_config(hyperparams)
    assert sys.orig_argv == argv  # the real command line is back once the command has run
    for name in ("config.yml", "args.yml", "command.txt"):
        text = (tmp_path / name).read_text()
        assert password not in text and "postgresql://u@h/db" in text, name
    assert manager.args.storage == url and hyperparams["policy_kwargs"] == f"dict(url='{url}')"  # the run's values
    print("masked")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl-zoo3 not installed (pip install -e '.[zoo]')")
def test_saved_config_and_command_hold_no_password_and_argv_is_restored(tmp_path):
    """rl-zoo3's config.yml, args.yml and command.txt without the password, ``sys.orig_argv`` restored (in a
    subprocess: importing rl-zoo3 patches gymnasium for the whole process)."""
    result = subprocess.run(
        [sys.executable, "-c", SAVE_CONFIG_CHECK, str(tmp_path), PASSWORD], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "masked" in result.stdout, result.stderr[-2000:]
