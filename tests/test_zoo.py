"""
rl-zoo3 integration (``python -m sb3_pmac.zoo``), exercised through the real command line in subprocesses:
train / repeated runs / enjoy / plots, Optuna search (SQLite, and two concurrent workers sharing a PostgreSQL study),
and the YAML entries through rl-zoo3's own hyperparameter pipeline (the installed wheel and the editable install:
``tests/test_packaging.py``; credentials in saved files: ``tests/test_zoo_credentials.py``).

rl-zoo3's commands run only in subprocesses: importing rl-zoo3 patches gymnasium's ``TimeLimit`` and its commands mutate
its algorithm tables. The launcher's argument checks, which stop ``train`` before rl-zoo3's commands load, are called in
this process (fixture ``zoo_main``, which undoes the patch where a check imports ``rl_zoo3.import_envs``).
"""

import ast
import glob
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

if importlib.util.find_spec("rl_zoo3") is None:  # not imported here: it patches gymnasium for the whole process
    pytest.skip("rl-zoo3 not installed (pip install -e '.[zoo]')", allow_module_level=True)
optuna = pytest.importorskip("optuna", reason="optuna not installed (pip install -e '.[zoo]')")

from sb3_pmac import MBPO, PMAC  # noqa: E402
from sb3_pmac.env_presets import ENV_PRESETS  # noqa: E402
from sb3_pmac.horizon import validate_horizon_schedule  # noqa: E402
from sb3_pmac.zoo import hyperparams_dir, hyperparams_path, main, with_default_conf  # noqa: E402
from sb3_pmac.zoo_optuna import HORIZON_CHOICES, NET_ARCHS, convert_pmac_params, parse_horizon_choice  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HYPERPARAMS = REPO / "sb3_pmac" / "hyperparams"  # package data; the top-level hyperparams/ links to it
PAPER_TASKS = ["Hopper", "Walker2d", "HalfCheetah", "Ant", "Humanoid", "Pusher"]
SMOKE_ENVS = ["Pendulum-v1", "InvertedPendulum-v4", "InvertedPendulum-v5"]
# Fast, single-threaded CLI runs (2 cores shared with the rest of the suite)
THREADS = ["--num-threads", "1"]
# Optuna parameters of MBPO's sampler (PMAC's add "adaptation_rate")
MBPO_PARAMS = {"real_ratio", "model_train_freq", "rollout_horizon", "learning_rate", "batch_size", "one_minus_gamma"}
MBPO_PARAMS |= {"tau", "net_arch"}
OPTIMIZE = ["-optimize", "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--eval-episodes", "1"]


def _env() -> dict[str, str]:
    """Environment of the subprocesses: this source tree first on the path, plots without a window."""
    env = os.environ.copy()
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def zoo(args: list[str], cwd: Path, python: str = sys.executable, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``python -m sb3_pmac.zoo ARGS`` in ``cwd``; fail with its output unless it exits with 0."""
    proc = subprocess.run(
        [python, "-m", "sb3_pmac.zoo", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or _env()
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
    return proc


def _run_once(tmp_path_factory, name: str, produce) -> Path:
    """
    ``produce(folder)`` once per test session, also with pytest-xdist (the workers share the result through a folder
    next to their temp dirs, guarded by a file lock), so that the slow CLI runs behind module fixtures are not repeated.
    """
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        root = root.parent
    folder = root / name
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a failed attempt of another worker
            folder.mkdir(parents=True)
            produce(folder)
            (folder / ".done").touch()
    return folder


# ---------------------------------------------------------------------------------------------------- launcher units
def test_default_conf_file_injection():
    pmac_yml, mbpo_yml = str(hyperparams_path("pmac")), str(hyperparams_path("mbpo"))
    assert with_default_conf(["--algo", "pmac", "--env", "Hopper-v4"])[-2:] == ["--conf-file", pmac_yml]
    assert with_default_conf(["--algo=mbpo", "-n", "10"])[-2:] == ["--conf-file", mbpo_yml]
    # user's own file (any spelling rl-zoo3 accepts) and other algos are left alone
    for args in (
        ["--algo", "pmac", "-conf", "my.yml"],
        ["--algo", "pmac", "--conf-file", "my.yml"],
        ["--algo", "pmac", "--conf-file=my.yml"],
        ["--algo", "sac", "--env", "Pendulum-v1"],
        ["--env", "Pendulum-v1"],
    ):
        assert with_default_conf(args) == args
    assert hyperparams_dir() == HYPERPARAMS  # source checkout (editable install)
    with pytest.raises(ValueError):
        hyperparams_path("sac")


@pytest.fixture
def zoo_main(tmp_path, monkeypatch):
    """
    :func:`sb3_pmac.zoo.main` run in this process, in ``tmp_path``. For an unregistered id the check imports
    ``rl_zoo3.import_envs`` (rl-zoo3's own envs), which patches gymnasium's ``TimeLimit`` and sets ``np.bool8``: undone
    after the test.
    """
    import gymnasium

    monkeypatch.chdir(tmp_path)
    time_limit = gymnasium.wrappers.TimeLimit
    for module in (gymnasium.wrappers, gymnasium.wrappers.common, gymnasium.envs.registration):
        monkeypatch.setattr(module, "TimeLimit", time_limit, raising=False)  # restored (or removed) after the test
    monkeypatch.setattr(np, "bool8", np.bool_, raising=False)
    return main


def test_train_unregistered_env_is_a_clear_error(zoo_main, capsys):
    assert zoo_main(["train", "--algo", "pmac", "--env", "Foo-v0"]) == 2
    err = capsys.readouterr().err
    assert "'Foo-v0' is not registered with gymnasium" in err and "--gym-packages" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert zoo_main(["train", "--algo=mbpo", "--env=Hoper-v4", "-n", "10"]) == 2  # rl-zoo3's "--env=" form
    err = capsys.readouterr().err
    assert "'Hoper-v4' is not registered" in err and "did you mean 'Hopper-v4'" in err


def test_train_env_of_gym_packages_is_registered(zoo_main, capsys, tmp_path, monkeypatch):
    """--gym-packages modules are imported before the check, as rl-zoo3 does: their env is registered."""
    import gymnasium

    (tmp_path / "sb3_pmac_test_envs.py").write_text(
        "import gymnasium\n"
        "gymnasium.register('SbPmacTestPendulum-v0', entry_point='gymnasium.envs.classic_control:PendulumEnv')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sb3_pmac_test_envs", raising=False)
    try:
        args = ["train", "--algo", "pmac", "--env", "SbPmacTestPendulum-v0", "--gym-packages", "sb3_pmac_test_envs"]
        assert zoo_main(args) == 2
    finally:
        gymnasium.registry.pop("SbPmacTestPendulum-v0", None)
        sys.modules.pop("sb3_pmac_test_envs", None)
    err = capsys.readouterr().err
    assert "not registered" not in err and "has no entry for 'SbPmacTestPendulum-v0'" in err


def test_train_env_without_yaml_entry_is_a_clear_error(zoo_main, capsys):
    for algo, env_id in (("mbpo", "MountainCarContinuous-v0"), ("pmac", "Walker2d-v3")):
        assert zoo_main(["train", "--algo", algo, "--env", env_id]) == 2
        err = capsys.readouterr().err
        assert f"{hyperparams_path(algo)} has no entry for {env_id!r}" in err
        assert f"Its entries: {', '.join(_yaml_keys(algo))}." in err
        assert "-conf my.yml" in err and "docs/zoo.md" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_env_with_discrete_actions_is_a_clear_error(zoo_main, capsys):
    for args in (["--env", "CartPole-v1", "-conf", "my.yml"], []):  # with a user's file too; [] : rl-zoo3's default env
        assert zoo_main(["train", "--algo", "pmac", *args]) == 2
        err = capsys.readouterr().err
        assert "pmac needs a continuous action space with finite bounds" in err and "has Discrete(2)" in err
        assert ("(rl-zoo3's default when --env is not given)" in err) == (not args)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_args_check_passes_valid_entries_and_own_conf():
    from sb3_pmac.zoo import missing_entry_error, train_args_error

    for algo in ("pmac", "mbpo"):
        for env_id in _yaml_keys(algo):
            assert missing_entry_error(algo, env_id) is None, (algo, env_id)
    assert train_args_error(["--algo", "pmac", "--env", "Hopper-v4", "-n", "10"]) is None
    assert train_args_error(["--algo=mbpo", "--env=Pendulum-v1", "--env-kwargs", "g:9.81"]) is None
    # a user's own file and other algos are left to rl-zoo3; a malformed command line to rl-zoo3's parser
    assert train_args_error(["--algo", "pmac", "--env", "MountainCarContinuous-v0", "-conf", "my.yml"]) is None
    assert train_args_error(["--algo", "sac", "--env", "CartPole-v1"]) is None
    assert train_args_error(["--algo", "pmac", "--en", "Hopper-v4"]) is None  # ambiguous for rl-zoo3 too


class ToggleActions(gym.Env):
    """Discrete actions by default, a bounded Box with ``continuous=True`` (as LunarLander's ``continuous`` kwarg)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, continuous: bool = False) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else gym.spaces.Discrete(3)


def test_action_check_makes_the_env_with_the_runs_env_kwargs(tmp_path):
    from sb3_pmac.zoo import train_args_error, train_env_kwargs

    gym.register("ZooToggleActions-v0", entry_point=ToggleActions)
    try:
        conf = tmp_path / "toggle.yml"
        conf.write_text("ZooToggleActions-v0:\n  env_kwargs:\n    continuous: true\n  n_timesteps: 1000\n")
        plain = tmp_path / "plain.yml"
        plain.write_text("ZooToggleActions-v0:\n  n_timesteps: 1000\n")
        base = ["--algo", "pmac", "--env", "ZooToggleActions-v0"]
        assert train_env_kwargs("pmac", "ZooToggleActions-v0", str(conf), None) == {"continuous": True}
        assert train_args_error([*base, "-conf", str(conf)]) is None  # continuous with the file's env_kwargs
        assert "has Discrete(3)" in train_args_error([*base, "-conf", str(plain)])
        assert train_args_error([*base, "-conf", str(plain), "--env-kwargs", "continuous:True"]) is None
        assert "has Discrete(3)" in train_args_error([*base, "-conf", str(conf), "--env-kwargs", "continuous:False"])
    finally:
        gym.registry.pop("ZooToggleActions-v0")


def test_the_env_kwargs_of_a_conf_files_default_entry_are_used(tmp_path):
    from sb3_pmac.zoo import train_args_error, train_env_kwargs

    gym.register("ZooToggleActions-v0", entry_point=ToggleActions)
    try:
        conf = tmp_path / "default.yml"
        conf.write_text("default:\n  env_kwargs:\n    continuous: true\n  n_timesteps: 1000\n")
        assert train_env_kwargs("pmac", "ZooToggleActions-v0", str(conf), None) == {"continuous": True}
        assert train_args_error(["--algo", "pmac", "--env", "ZooToggleActions-v0", "-conf", str(conf)]) is None
    finally:
        gym.registry.pop("ZooToggleActions-v0")


class HalfBoundedActions(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, low: float = -np.inf, high: float = 1.0) -> None:
        self.action_space = gym.spaces.Box(np.float32(low), np.float32(high), (1,), np.float32)


@pytest.mark.parametrize("low, high", [(-np.inf, 1.0), (-1.0, np.inf)])
def test_an_action_space_unbounded_on_one_side_is_a_clear_error(low, high):
    from sb3_pmac.zoo import unsupported_actions_error

    gym.register("ZooHalfBounded-v0", entry_point=HalfBoundedActions, kwargs={"low": low, "high": high})
    try:
        error = unsupported_actions_error("pmac", "ZooHalfBounded-v0")
        assert error is not None and "finite bounds" in error
        assert unsupported_actions_error("pmac", "ZooHalfBounded-v0", env_kwargs={"low": -1.0, "high": 1.0}) is None
    finally:
        gym.registry.pop("ZooHalfBounded-v0")


TRIAL_ID_CHECK = textwrap.dedent(
    """
    import sys
    from types import SimpleNamespace
    import optuna
    from sb3_pmac import MBPO, zoo
    from sb3_pmac.zoo_optuna import convert_pmac_params, sample_mbpo_params
    storage = sys.argv[1]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2):
        trial = study.ask()
        sample_mbpo_params(trial, 1, 1, {})
        study.tell(trial, 0.0)
    zoo.register()
    from rl_zoo3.exp_manager import ExperimentManager  # what train --trial-id 1 calls
    for algo in ("pmac", "mbpo"):
        loaded = ExperimentManager.load_trial(SimpleNamespace(algo=algo), storage, "s", 1)
        assert loaded == convert_pmac_params(study.trials[1].params), (algo, loaded)
    MBPO("MlpPolicy", "Pendulum-v1", buffer_size=100, **loaded)
    print("converted")
    """
)


def test_train_trial_id_converts_the_trials_of_both_algos(tmp_path):
    """``train --trial-id``: rl-zoo3 converts a stored trial's raw parameters with the algorithm's converter."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = subprocess.run([sys.executable, "-c", TRIAL_ID_CHECK, storage], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "converted" in result.stdout, result.stderr[-2000:]


def test_a_gym_package_that_fails_to_import_is_left_to_rl_zoo3(zoo_main):
    """rl-zoo3 reports the failing import; the launcher must not say "no entry in pmac.yml" instead (``zoo_main``:
    undoes what the unregistered id's check patches)."""
    from sb3_pmac.zoo import train_args_error

    assert train_args_error(["--algo", "pmac", "--env", "MyEnv-v0", "--gym-packages", "no_such_module_sb3_pmac"]) is None
    assert "not registered" in train_args_error(["--algo", "pmac", "--env", "MyEnv-v0"])


def test_train_without_the_zoo_extra_says_which_extra(monkeypatch, capsys):
    """Without rl-zoo3 (and its PyYAML), train ends with the extra to install, before the checks that need them."""
    import sb3_pmac.zoo as zoo

    def not_reached(args):
        raise AssertionError("the argument checks need PyYAML: they must not run without the extra")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "yaml" else real_find_spec(name, *a))
    monkeypatch.setattr(zoo, "train_args_error", not_reached)
    assert zoo.main(["train", "--algo", "pmac", "--env", "Pendulum-v1"]) == 1
    assert "(no module 'yaml'); install the extra: pip install 'sb3-pmac[zoo]'" in capsys.readouterr().err


def test_storage_without_a_trial_that_rl_zoo3_loads_is_refused():
    from sb3_pmac.zoo import train_args_error

    base = ["--algo", "pmac", "--env", "Pendulum-v1", "--storage", "sqlite:///x.db", "--study-name", "s"]
    assert "without -optimize or --trial-id load nothing" in train_args_error(base)
    assert "load_study(study_name='s', storage='sqlite:///x.db').best_trial.number" in train_args_error(base)
    secret = ["--algo", "pmac", "--env", "Pendulum-v1", "--storage", "postgresql://u:secret@h/db", "--study-name", "s"]
    assert "storage='postgresql://u@h/db'" in train_args_error(secret)  # the command it prints holds no password
    assert "--trial-id 0 loads nothing" in train_args_error([*base, "--trial-id", "0"])
    assert train_args_error([*base, "--trial-id", "1"]) is None
    assert train_args_error([*base, "-optimize"]) is None
    assert train_args_error(["--algo", "pmac", "--env", "Pendulum-v1", "--trial-id", "0"]) is None  # no storage: unused
    # a trial id without its study loads nothing either (rl-zoo3 needs storage, study name and id)
    pendulum = ["--algo", "pmac", "--env", "Pendulum-v1"]
    assert "(--study-name given)" in train_args_error([*pendulum, "--study-name", "s", "--trial-id", "2"])
    assert "(--storage given)" in train_args_error([*pendulum, "--storage", "sqlite:///x.db", "--trial-id", "2"])
    assert "(neither given)" in train_args_error([*pendulum, "--trial-id", "2"])
    assert train_args_error([*pendulum, "--trial-id", "2", "-optimize"]) is None


def test_auto_sampler_without_optunahub_is_a_clear_error(zoo_main, capsys, monkeypatch):
    import importlib.util

    from sb3_pmac.zoo import train_args_error

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optunahub" else find_spec(name, *a))
    base = ["--algo", "pmac", "--env", "Pendulum-v1"]
    assert "--sampler auto needs the optunahub package" in train_args_error([*base, "-optimize", "--sampler", "auto"])
    assert train_args_error([*base, "-optimize", "--sampler", "tpe"]) is None
    assert train_args_error([*base, "-optimize"]) is None  # rl-zoo3's default: tpe
    assert train_args_error([*base, "--sampler", "auto"]) is None  # not optimizing: unused
    assert zoo_main(["train", *base, "-optimize", "--sampler=auto"]) == 2
    assert "pip install optunahub" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["enjoy", "record_video"])
def test_agents_looked_for_in_rl_zoo3s_download_folder_is_a_clear_error(zoo_main, capsys, tmp_path, command):
    from sb3_pmac.zoo import agent_folder_error

    base = ["--algo", "pmac", "--env", "Pendulum-v1"]
    assert zoo_main([command, *base, "--no-render"]) == 2  # instead of a download attempt from the hub
    assert "no pmac agents in rl-trained-agents/pmac" in capsys.readouterr().err
    assert "-f logs" in agent_folder_error([*base, "-f", "my/rl-trained-agents"])
    assert agent_folder_error([*base, "-f", "logs"]) is None  # rl-zoo3 reports a missing run there itself
    assert agent_folder_error(["--algo", "sac", "--env", "Pendulum-v1"]) is None  # SB3's agents are on the hub
    (tmp_path / "rl-trained-agents" / "pmac").mkdir(parents=True)
    assert agent_folder_error(base) is None  # the user's own agents in that folder


def test_adaptation_rate_search_stays_below_1():
    # at alpha = 1 the bounded model-training set is the whole replay buffer: the cost the bound removes comes back
    import optuna

    from sb3_pmac.policy_mixture import bounded_train_size
    from sb3_pmac.zoo_optuna import sample_pmac_params

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = sample_pmac_params(trial, 1, 1, {})
    distribution = trial.distributions["adaptation_rate"]
    assert 0.5 <= distribution.low <= params["adaptation_rate"] <= distribution.high < 1.0
    assert (distribution.low, distribution.high, distribution.log) == (0.5, 0.98, False)  # the documented range
    largest = bounded_train_size(params["model_train_freq"], distribution.high, stored=10**9)
    assert largest <= 100 * params["model_train_freq"]
    # the converted values are on the trial, for the report's user_attrs_* columns (rl-zoo3's SAC records gamma)
    raw = trial.params
    assert trial.user_attrs["gamma"] == pytest.approx(1 - raw["one_minus_gamma"]) == params["gamma"]
    assert trial.user_attrs["rollout_horizon"] == parse_horizon_choice(raw["rollout_horizon"]) == params["rollout_horizon"]
    assert trial.user_attrs["net_arch"] == list(NET_ARCHS[raw["net_arch"]]) == params["policy_kwargs"]["net_arch"]


def test_horizon_choices_parse():
    assert parse_horizon_choice("5") == 5
    assert parse_horizon_choice("20-100-1-15") == [20, 100, 1, 15]
    for choice in HORIZON_CHOICES:
        validate_horizon_schedule(parse_horizon_choice(choice))  # what PMAC's constructor checks
    converted = convert_pmac_params(
        {"adaptation_rate": 0.7, "one_minus_gamma": 0.01, "rollout_horizon": "20-300-1-25", "net_arch": "small", "tau": 0.01}
    )
    assert converted == {
        "adaptation_rate": 0.7,
        "gamma": pytest.approx(0.99),
        "rollout_horizon": [20, 300, 1, 25],
        "policy_kwargs": {"net_arch": [64, 64]},
        "tau": 0.01,
    }


def test_zoo_extra_covers_cli_imports():
    """
    ``pip install .[zoo]`` must bring every distribution the zoo commands import (transitively), ``[postgres]`` the
    PostgreSQL driver and ``[mujoco]`` MuJoCo.
    """
    import importlib.metadata as metadata
    import re

    tree = ast.parse((REPO / "setup.py").read_text())
    setup_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: k.value for k in setup_call.keywords}
    extras = ast.literal_eval(keywords["extras_require"])
    install_requires = ast.literal_eval(keywords["install_requires"])

    def name(req: str) -> str:
        return re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower().replace("_", "-")

    def closure_of(requirements: list[str]) -> set[str]:
        closure, todo = set(), [name(r) for r in requirements]
        while todo:
            dist = todo.pop()
            if dist in closure:
                continue
            closure.add(dist)
            try:
                requires = metadata.requires(dist) or []
            except metadata.PackageNotFoundError:
                continue
            todo += [name(r) for r in requires if "extra ==" not in r]
        return closure

    distributions = metadata.packages_distributions()

    def missing(modules: list[str], closure: set[str]) -> dict:
        return {
            module: distributions.get(module)
            for module in modules
            if not any(d.lower().replace("_", "-") in closure for d in distributions.get(module, []))
        }

    # modules imported by train/enjoy/record_video/plots (rliable: plot_from_file --rliable), -optimize, SQL storages
    # and the launcher
    modules = [
        "rl_zoo3", "optuna", "sqlalchemy", "pandas", "yaml", "matplotlib", "seaborn", "scipy", "rliable",
        "tensorboard", "requests", "huggingface_sb3", "sb3_contrib", "stable_baselines3", "gymnasium",
    ]  # fmt: skip
    assert not missing(modules, closure_of(extras["zoo"] + install_requires)), "not brought by the zoo extra"
    assert not missing(["psycopg2"], closure_of(extras["postgres"])), "not brought by the postgres extra"
    assert not missing(["mujoco"], closure_of(extras["mujoco"])), "not brought by the mujoco extra"
    assert "psycopg2-binary" not in closure_of(extras["zoo"] + install_requires)


# ---------------------------------------------------------------------------------------------------- train / enjoy
@pytest.fixture(scope="module")
def pendulum_runs(tmp_path_factory):
    """Two PMAC runs with the same seed: logs/pmac/Pendulum-v1_1 and _2."""

    def train_twice(cwd: Path) -> None:
        args = ["train", "--algo", "pmac", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--seed", "1"]
        args += ["--eval-freq", "150", "--eval-episodes", "1", *THREADS]
        for i in range(2):
            (cwd / f"stdout{i}.txt").write_text(zoo(args, cwd).stdout)

    cwd = _run_once(tmp_path_factory, "zoo_train", train_twice)
    return cwd, [(cwd / f"stdout{i}.txt").read_text() for i in range(2)]


def test_train_saves_loadable_agent(pendulum_runs):
    from stable_baselines3.common.monitor import load_results

    cwd, outputs = pendulum_runs
    run = cwd / "logs" / "pmac" / "Pendulum-v1_1"
    assert f"Loading hyperparameters from: {HYPERPARAMS / 'pmac.yml'}" in outputs[0]
    assert "Overwriting n_timesteps with n=300" in outputs[0]

    model = PMAC.load(run / "Pendulum-v1.zip", device="cpu")
    assert type(model) is PMAC
    assert model.num_timesteps == 300
    # smoke entry of pmac.yml, read through rl-zoo3
    assert model.learning_starts == 100 and model.model_train_freq == 100 and model.rollout_batch_size == 500
    assert model.model_trainer.max_epochs == 5 and model.dynamics_model.hidden_sizes == [64, 64]
    assert model.adaptation_rate == 0.9 and model.rollout_horizon == 1
    # model steps at 100 and 200 steps: warm-up policy version 0, then 1 and 2
    assert model.policy_version == 2
    obs = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0

    monitor = load_results(str(run))
    assert len(monitor) == 1 and monitor["l"].tolist() == [200]
    assert np.isfinite(monitor["r"]).all()
    evaluations = np.load(run / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [150, 300]
    assert (run / "best_model.zip").is_file()
    config = (run / "Pendulum-v1" / "config.yml").read_text()
    assert "adaptation_rate" in config and "rollout_batch_size" in config


def test_repeated_runs_are_numbered_and_seeded(pendulum_runs):
    import yaml

    cwd, outputs = pendulum_runs
    runs = sorted(p.name for p in (cwd / "logs" / "pmac").iterdir())
    assert runs == ["Pendulum-v1_1", "Pendulum-v1_2"]
    for out, run in zip(outputs, runs, strict=True):
        assert "Seed: 1" in out and f"Log path: logs/pmac/{run}" in out
        with open(cwd / "logs" / "pmac" / run / "Pendulum-v1" / "args.yml") as f:
            assert yaml.load(f, Loader=yaml.UnsafeLoader)["seed"] == 1
    # same seed, same agent
    first, second = (PMAC.load(cwd / "logs" / "pmac" / run / "Pendulum-v1.zip", device="cpu") for run in runs)
    for (key, a), b in zip(first.policy.state_dict().items(), second.policy.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), key
    rewards = [np.load(cwd / "logs" / "pmac" / run / "evaluations.npz")["results"] for run in runs]
    np.testing.assert_array_equal(rewards[0], rewards[1])


def test_enjoy_and_plot(pendulum_runs):
    cwd, _ = pendulum_runs
    args = ["enjoy", "--algo", "pmac", "--env", "Pendulum-v1", "-f", "logs", "--no-render", "-n", "400", "--exp-id", "1"]
    out = zoo([*args, *THREADS], cwd).stdout
    assert "Pendulum-v1_1/Pendulum-v1.zip" in out
    assert "2 Episodes" in out
    mean_reward = float(out.split("Mean reward:")[1].split()[0])
    assert -200 * 16.3 <= mean_reward <= 0.0  # Pendulum's reward per step is in [-16.3, 0]
    assert "Mean episode length: 200.00" in out

    proc = zoo(["plot_train", "--algo", "pmac", "--env", "Pendulum-v1", "-f", "logs", "-w", "1"], cwd)
    assert "Traceback" not in proc.stderr


def test_record_video(pendulum_runs):
    cwd, _ = pendulum_runs
    args = ["record_video", "--algo", "pmac", "--env", "Pendulum-v1", "-f", "logs", "-n", "50", "--exp-id", "1"]
    zoo(args, cwd)
    videos = list((cwd / "logs" / "pmac" / "Pendulum-v1_1" / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000, videos


def test_record_video_env_gets_the_env_kwargs_of_the_runs_config():
    # rl-zoo3's record_video reads env kwargs from args.yml and the command line only; the config's (the YAML
    # entry's, e.g. Ant-v5's include_cfrc_ext_in_observation: false) reach its env through the launcher
    from rl_zoo3 import utils

    from sb3_pmac.zoo import _videos_with_the_training_env_kwargs

    def gravity(**env_kwargs):
        hyperparams = {"env_kwargs": {"g": 5.0, "max_episode_steps": 50}}
        env = utils.create_test_env("Pendulum-v1", n_envs=1, should_render=False, hyperparams=hyperparams,
                                    env_kwargs=env_kwargs)  # fmt: skip
        values = env.envs[0].unwrapped.g, env.envs[0].spec.max_episode_steps
        env.close()
        return values

    assert gravity() == (10.0, 200)  # rl-zoo3 alone
    with _videos_with_the_training_env_kwargs():
        assert gravity() == (5.0, 50)
        assert gravity(g=3.0) == (3.0, 50)  # args.yml / command line over the config, as in enjoy
    assert gravity() == (10.0, 200)  # restored


def test_usage_and_record_video_registration(tmp_path, capsys):
    assert main(["no-such-command"]) == 2  # returns before rl-zoo3 is imported
    assert "train" in capsys.readouterr().err
    assert main([]) == 2 and "usage" in capsys.readouterr().out
    proc = zoo(["record_video", "--help"], tmp_path)
    assert "pmac" in proc.stdout and "mbpo" in proc.stdout


# ---------------------------------------------------------------------------------------------------- Optuna
def test_optimize_two_trials_sqlite(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["train", "--algo", "mbpo", "--env", "Pendulum-v1", "-n", "150", "-f", "logs", "--seed", "3", *THREADS]
    args += [*OPTIMIZE, "--n-trials", "2", "--storage", storage, "--study-name", "mbpo-smoke", "--no-optim-plots"]
    out = zoo(args, tmp_path).stdout
    assert "Number of finished trials:  2" in out

    study = optuna.load_study(study_name="mbpo-smoke", storage=storage)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(study.trials) == 2 and len(trials) == 2
    for trial in trials:
        assert np.isfinite(trial.value) and -200 * 16.3 <= trial.value <= 0.0
        assert set(trial.params) == MBPO_PARAMS
        assert trial.user_attrs["worker"].rsplit(":", 1)[1].isdigit()  # host:pid of the worker
        # the converter (also used by `train --trial-id`) gives arguments MBPO accepts
        hyperparams = convert_pmac_params(trial.params)
        assert trial.user_attrs["gamma"] == pytest.approx(hyperparams["gamma"])  # stored with the study (the report's)
        model = MBPO("MlpPolicy", "Pendulum-v1", buffer_size=100, **hyperparams)
        assert model.real_ratio == trial.params["real_ratio"]
        horizon = parse_horizon_choice(trial.params["rollout_horizon"])
        assert model.rollout_horizon == (horizon if isinstance(horizon, int) else tuple(horizon))
    reports = glob.glob(str(tmp_path / "logs" / "mbpo" / "report_Pendulum-v1_2-trials-150-random-none_*.csv"))
    assert len(reports) == 1
    import pandas as pd

    assert (pd.read_csv(reports[0])["state"] == "COMPLETE").sum() == 2


# ---------------------------------------------------------------------------------------------------- PostgreSQL
def _find_pg_bin() -> Path | None:
    which = shutil.which("initdb")
    candidates = [Path(which).parent] if which else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (random port, socket in a temp dir) with an empty database."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 not installed (pip install -e '.[zoo]')")
    pg_bin = _find_pg_bin()
    if pg_bin is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], capture_output=True, timeout=600)
        pg_bin = _find_pg_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found and none could be installed")
    prefix: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="sb3pmac-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the unprivileged 'postgres' user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(tmp)
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server")
        os.chown(tmp, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else ["su", "postgres", "-s", "/bin/sh", "-c"]
    data, port = tmp / "data", _free_port()

    def as_server_user(cmd: list[str]) -> subprocess.CompletedProcess:
        full = [*prefix, shlex.join(cmd)] if prefix[:1] == ["su"] else [*prefix, *cmd]
        return subprocess.run(full, capture_output=True, text=True, timeout=120)

    started = False
    try:
        init = as_server_user([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"])
        assert init.returncode == 0, init.stdout + init.stderr
        options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        start = as_server_user(
            [str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(tmp / "server.log"), "-w", "-t", "60", "start"]
        )
        started = start.returncode == 0
        assert started, start.stdout + start.stderr + (tmp / "server.log").read_text()
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE optuna_zoo")
        connection.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna_zoo"
    finally:
        if started:
            as_server_user([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)


def test_postgresql_two_workers_share_a_study(postgres_url, tmp_path):
    # The multi-machine recipe (docs/zoo.md): create the study once, then start the workers anywhere.
    create = subprocess.run(
        [sys.executable, "-c", "import sys; from optuna.cli import main; sys.exit(main())", "create-study",
         "--storage", postgres_url, "--study-name", "shared", "--direction", "maximize", "--skip-if-exists"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert create.returncode == 0, create.stdout + create.stderr

    workers, logs = [], []
    try:
        for seed in (1, 2):  # different sampler seeds, as the recipe says
            folder = tmp_path / f"worker{seed}"
            folder.mkdir()
            args = ["train", "--algo", "pmac", "--env", "Pendulum-v1", "-n", "150", "-f", "logs", "--seed", str(seed)]
            args += [*THREADS, *OPTIMIZE, "--n-trials", "2", "--storage", postgres_url, "--study-name", "shared"]
            args += ["--no-optim-plots"]
            logs.append(folder / "output.txt")
            with open(logs[-1], "w") as log:  # a file, not a pipe: nothing blocks while the other worker is read
                cmd = [sys.executable, "-m", "sb3_pmac.zoo", *args]
                workers.append(subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 300
        for proc in workers:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = [log.read_text() for log in logs]
    for proc, out in zip(workers, outputs, strict=True):
        assert proc.returncode == 0, out[-5000:]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(study.trials) == 4
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 4, [t.state for t in study.trials]
    assert sorted(t.number for t in complete) == [0, 1, 2, 3]
    assert all(np.isfinite(t.value) for t in complete)
    assert all(set(t.params) == MBPO_PARAMS | {"adaptation_rate"} for t in complete)
    # each worker ran 2 of the 4 trials: by the worker tag (host:pid) and by each worker's own log
    by_worker: dict[str, list[int]] = {}
    for trial in complete:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert {w.rsplit(":", 1)[1] for w in by_worker} == {str(p.pid) for p in workers}
    assert sorted(len(numbers) for numbers in by_worker.values()) == [2, 2]
    for proc, out in zip(workers, outputs, strict=True):
        mine = sorted(n for w, numbers in by_worker.items() if w.endswith(f":{proc.pid}") for n in numbers)
        logged = sorted(int(line.split("Trial ")[1].split()[0]) for line in out.splitlines() if "] Trial " in line)
        assert logged == mine
        # each worker reports the study as it sees it at its end: at least its own 2 trials
        assert int(out.split("Number of finished trials:")[1].split()[0]) >= 2


# ---------------------------------------------------------------------------------------------------- YAML entries
YAML_CHECK = textwrap.dedent(
    """
    import json, sys, tempfile, traceback, warnings
    from argparse import Namespace
    import yaml
    from sb3_pmac import zoo
    zoo.register()
    zoo.evaluate_with_the_training_env_kwargs()  # as the launcher's main
    from rl_zoo3.exp_manager import ExperimentManager
    from rl_zoo3.utils import ALGOS

    warnings.filterwarnings("ignore")
    results, presets = {}, {}
    log_folder = tempfile.mkdtemp()

    def plain(horizon):
        return horizon if isinstance(horizon, int) else list(horizon)

    def summary(model):
        return {
            "cls": type(model).__name__,
            "obs_shape": list(model.observation_space.shape),
            "rollout_horizon": plain(model.rollout_horizon),
            "termination": type(model.termination_fn).__name__,
            "net_arch": model.policy_kwargs.get("net_arch"),
            "learning_rate": model.lr_schedule(1.0),
            **{key: getattr(model, key) for key in (
                "learning_starts", "gradient_steps", "batch_size", "gamma", "tau", "train_freq", "real_ratio",
                "model_train_freq", "adaptation_rate", "adapt_model_training", "adapt_rollout_starts",
                "rollout_batch_size", "epoch_length", "model_retain_epochs", "ensemble_size", "n_elites",
                "buffer_size",
            )},
            "train_freq": [model.train_freq.frequency, model.train_freq.unit.value],
            "max_epochs": model.model_trainer.max_epochs,
            "hidden_sizes": list(model.dynamics_model.hidden_sizes),
            "normalize_targets": model.dynamics_model.normalize_targets,
        }

    for algo in ("pmac", "mbpo"):
        path = str(zoo.hyperparams_path(algo))
        with open(path) as f:
            env_ids = list(yaml.safe_load(f))
        for env_id in env_ids:
            entry = results[f"{algo}/{env_id}"] = {}
            try:
                # rl-zoo3's own pipeline: read the file, preprocess, build the env, then the model (no learning)
                manager = ExperimentManager(Namespace(), algo, env_id, log_folder, hyperparams={"buffer_size": 1000},
                                            config=path, verbose=0, seed=0, device="cpu")
                hyperparams, saved = manager.read_hyperparameters()
                hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(hyperparams)
                entry["n_timesteps"] = manager.n_timesteps
                entry["env_kwargs"] = manager.env_kwargs
                env = manager.create_envs(1, no_log=True)
                eval_env = manager.create_envs(1, eval_env=True, no_log=True)  # the env of rl-zoo3's EvalCallback
                entry["eval_obs_shape"] = list(eval_env.observation_space.shape)
                eval_env.close()
                hyperparams = manager._preprocess_action_noise(hyperparams, saved, env)
                entry["zoo"] = summary(ALGOS[algo](env=env, seed=0, verbose=0, device="cpu", **hyperparams))
                env.close()
                # the shorthand PMAC("<env>"): the package's own presets (MBPO's are the same)
                if env_id not in presets:
                    presets[env_id] = summary(ALGOS["pmac"](env_id, buffer_size=1000, device="cpu"))
                entry["preset"] = presets[env_id]
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {error}"
                entry["traceback"] = traceback.format_exc()
    with open(sys.argv[1], "w") as f:
        json.dump(results, f)
    """
)


def _yaml_keys(algo: str) -> list[str]:
    import yaml

    with open(HYPERPARAMS / f"{algo}.yml") as f:
        return list(yaml.safe_load(f))


ENTRIES = [(algo, env_id) for algo in ("pmac", "mbpo") for env_id in _yaml_keys(algo)]


@pytest.fixture(scope="module")
def yaml_entries(tmp_path_factory):
    def check(folder: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", YAML_CHECK, str(folder / "entries.json")],
            capture_output=True, text=True, timeout=600, env=_env(), cwd=folder,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    return json.loads((_run_once(tmp_path_factory, "zoo_yaml", check) / "entries.json").read_text())


def test_yaml_covers_tasks_and_versions():
    for algo in ("pmac", "mbpo"):
        keys = set(_yaml_keys(algo))
        expected = {f"{task}-{v}" for task in PAPER_TASKS for v in ("v4", "v5")} | set(SMOKE_ENVS)
        assert keys == expected, keys ^ expected


def test_yaml_paper_tasks_use_the_sac_of_the_papers_base_code():
    import yaml

    for algo in ("pmac", "mbpo"):
        entries = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
        for task in PAPER_TASKS:
            for version in ("v4", "v5"):
                entry = entries[f"{task}-{version}"]  # mbpo_pytorch: fixed alpha 0.2, target update every step
                assert entry["ent_coef"] == 0.2 and entry.get("target_update_interval", 1) == 1, (algo, task, version)


@pytest.mark.parametrize(("algo", "env_id"), ENTRIES, ids=[f"{a}-{e}" for a, e in ENTRIES])
def test_yaml_entry_builds_through_rl_zoo3(yaml_entries, algo, env_id):
    entry = yaml_entries[f"{algo}/{env_id}"]
    if "error" in entry:
        if "mujoco<3" in entry["error"]:  # Pusher-v4 with mujoco >= 3
            pytest.skip(f"{env_id} cannot be built here: {entry['error'][:120]}")
        pytest.fail(entry["traceback"])
    zoo_model, preset = entry["zoo"], entry["preset"]
    assert zoo_model["cls"] == {"pmac": "PMAC", "mbpo": "MBPO"}[algo]
    # same observations, horizon schedule and termination as PMAC("<env>") builds with the package's presets
    assert zoo_model["obs_shape"] == preset["obs_shape"]
    assert entry["eval_obs_shape"] == zoo_model["obs_shape"]  # the evaluation env is the one trained on
    assert zoo_model["rollout_horizon"] == preset["rollout_horizon"]
    assert zoo_model["termination"] == preset["termination"]
    assert zoo_model["buffer_size"] == 1000  # -params override reached the constructor
    assert zoo_model["adapt_model_training"] is zoo_model["adapt_rollout_starts"] is (algo == "pmac")
    name = env_id.split("-")[0]
    if name in ENV_PRESETS:
        horizon = ENV_PRESETS[name].horizon_schedule
        assert zoo_model["rollout_horizon"] == (horizon if isinstance(horizon, int) else list(horizon))
        assert entry["n_timesteps"] == ENV_PRESETS[name].total_timesteps
        assert zoo_model["obs_shape"] == [{"Ant": 27, "Humanoid": 45}.get(name, preset["obs_shape"][0])]
        # Table 2 of the paper, which are also the package defaults
        table2 = {
            "learning_starts": 5000, "gradient_steps": 20, "batch_size": 256, "learning_rate": 3e-4, "real_ratio": 0.05,
            "model_train_freq": 250, "rollout_batch_size": 100_000, "net_arch": [256, 256], "gamma": 0.99,
            "tau": 0.005, "train_freq": [1, "step"], "epoch_length": 1000, "model_retain_epochs": 1,
            "ensemble_size": 7, "n_elites": 5, "adaptation_rate": 0.9, "max_epochs": preset["max_epochs"],
            "hidden_sizes": [200, 200, 200, 200], "normalize_targets": False,
        }  # fmt: skip
        for key, value in table2.items():
            assert zoo_model[key] == pytest.approx(value), key
            if key != "net_arch":  # the shorthand leaves SB3's default net_arch unset in policy_kwargs
                assert preset[key] == pytest.approx(value), key
    else:  # smoke entries: tiny budgets
        assert env_id in SMOKE_ENVS
        assert entry["n_timesteps"] <= 1000
        assert zoo_model["learning_starts"] == 100 and zoo_model["rollout_batch_size"] == 500
        assert zoo_model["gradient_steps"] == 1 and zoo_model["max_epochs"] == 5
        assert zoo_model["hidden_sizes"] == [64, 64] and zoo_model["normalize_targets"]


def test_continue_with_trained_agent_and_its_replay_buffer(tmp_path):
    """docs/zoo.md's recipe: ``--save-replay-buffer``, then ``-i agent.zip`` loads the agent and its buffer file."""
    args = ["train", "--algo", "pmac", "--env", "Pendulum-v1", "-f", "logs", "--seed", "2", "--eval-freq", "-1", *THREADS]
    zoo([*args, "-n", "250", "--save-replay-buffer"], tmp_path)
    first = tmp_path / "logs" / "pmac" / "Pendulum-v1_1"
    assert PMAC.load(first / "Pendulum-v1.zip", device="cpu").policy_version == 2  # model steps at 101 and 201
    assert (first / "replay_buffer.pkl").read_bytes()[:2] == b"PK"  # SB3's file name, sb3-pmac's .npz archive
    zoo([*args, "-n", "150", "-i", str(first / "Pendulum-v1.zip"), "--save-replay-buffer"], tmp_path)
    second = tmp_path / "logs" / "pmac" / "Pendulum-v1_2"
    model = PMAC.load(second / "Pendulum-v1.zip", device="cpu")
    # rl-zoo3 restarts the step counter: the warm-up again, as version 3 of its own, then a model step at 101 (version 4)
    assert model.num_timesteps == 150 and model.policy_version == 4
    model.load_replay_buffer(second / "replay_buffer.pkl")
    versions, counts = model.replay_buffer.version_counts()
    assert versions.tolist() == [0, 1, 2, 3, 4] and counts.sum() == 250 + 150  # the first run's transitions are kept
    assert counts[3] == 101  # the repeated warm-up (and step 101, collected before the model step)


def test_kwargs_strings_are_evaluated_and_pickled_buffers_read_on_request(tmp_path):
    """
    ``dynamics_kwargs`` written as a string in a YAML (as ``policy_kwargs`` is) is evaluated, not refused; ``-i`` with a
    pickled ``replay_buffer.pkl`` (an earlier release's file) fails with the way out, ``--allow-pickle``, which reads it.
    """
    import gymnasium as gym
    import torch as th
    import yaml
    from stable_baselines3.common.save_util import save_to_pkl

    entry = yaml.safe_load(hyperparams_path("pmac").read_text())["Pendulum-v1"]
    entry["dynamics_kwargs"] = "dict(hidden_sizes=[16, 16], activation=nn.Tanh)"  # nn: rl-zoo3's namespace
    entry["model_trainer_kwargs"] = "dict(max_epochs=2)"
    conf = tmp_path / "my_pmac.yml"
    conf.write_text(yaml.safe_dump({"Pendulum-v1": entry}))
    args = ["train", "--algo", "pmac", "--env", "Pendulum-v1", "-f", "logs", "--seed", "3", "--eval-freq", "-1", *THREADS]
    zoo([*args, "-conf", str(conf), "-n", "150"], tmp_path)
    first = tmp_path / "logs" / "pmac" / "Pendulum-v1_1"
    agent = PMAC.load(first / "Pendulum-v1.zip", env=gym.make("Pendulum-v1"), device="cpu")
    assert agent.dynamics_kwargs == {"hidden_sizes": [16, 16], "activation": th.nn.Tanh}
    assert agent.model_trainer_kwargs == {"max_epochs": 2}
    assert agent.dynamics_model.layers[0].weight.shape[-1] == 16

    agent.learn(120)  # a buffer of 120 transitions, pickled next to the agent as an earlier release wrote it
    save_to_pkl(first / "replay_buffer.pkl", agent.replay_buffer)
    more = [*args, "-conf", str(conf), "-n", "30", "-i", str(first / "Pendulum-v1.zip"), "--save-replay-buffer"]
    proc = subprocess.run([sys.executable, "-m", "sb3_pmac.zoo", *more], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=_env())  # fmt: skip
    assert proc.returncode != 0 and "--allow-pickle" in proc.stderr and "sb3_pmac.zoo train -i" in proc.stderr
    zoo([*more, "--allow-pickle"], tmp_path)
    continued = sorted((tmp_path / "logs" / "pmac").glob("Pendulum-v1_*"))[-1]
    model = PMAC.load(continued / "Pendulum-v1.zip", device="cpu")
    model.load_replay_buffer(continued / "replay_buffer.pkl")  # written again as .npz
    assert model.replay_buffer.size() == 120 + 30


def test_samplers_search_spaces():
    """Both samplers search the documented space (MBPO without the adaptation rate); the networks are copies."""
    from sb3_pmac.zoo_optuna import sample_mbpo_params, sample_pmac_params

    for sampler, own in ((sample_pmac_params, {"adaptation_rate"}), (sample_mbpo_params, set())):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        params = sampler(trial, 1, 1, {})
        distributions = trial.distributions
        assert set(distributions) == MBPO_PARAMS | own and ("adaptation_rate" in params) == bool(own)
        assert list(distributions["rollout_horizon"].choices) == HORIZON_CHOICES  # the schedules are searched too
        assert list(distributions["net_arch"].choices) == list(NET_ARCHS)
        gamma = distributions["one_minus_gamma"]
        assert (gamma.low, gamma.high, gamma.log) == (0.001, 0.03, True)
        params["policy_kwargs"]["net_arch"].append(1)  # a trial's network list is its own
    assert NET_ARCHS == {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}
