"""
Packaging: the requirements and extras of ``setup.py``, the hyperparameter files as package data (read with
``importlib.resources`` by the rl-zoo3 launcher) in a wheel and in an editable install, and the message a user gets
when MuJoCo is missing.
"""

import ast
import importlib.metadata as metadata
import importlib.resources
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from sb3_pmac import zoo

REPO = Path(__file__).resolve().parent.parent
PACKAGE_HYPERPARAMS = REPO / "sb3_pmac" / "hyperparams"


def _setup_keywords() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text())
    setup_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {k.arg: k.value for k in setup_call.keywords}


def _requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    keywords = _setup_keywords()
    install_requires = [Requirement(r) for r in ast.literal_eval(keywords["install_requires"])]
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in ast.literal_eval(keywords["extras_require"]).items()}
    return install_requires, extras


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _by_name(requirements: list[Requirement]) -> dict[str, Requirement]:
    return {_canonical(r.name): r for r in requirements}


def _lower_bound(requirement: Requirement) -> Version:
    (bound,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return bound


# ---------------------------------------------------------------------------------------------------- requirements
def test_sb3_contrib_is_not_required():
    install_requires, extras = _requirements()
    for requirements in [install_requires, *extras.values()]:
        assert "sb3-contrib" not in _by_name(requirements)
    # and the package does not import it
    for path in (REPO / "sb3_pmac").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "sb3_contrib" for alias in node.names), path
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "sb3_contrib", path


def test_torch_lower_bound_is_stable_baselines3s():
    install_requires, _ = _requirements()
    sb3_torch = next(
        Requirement(r) for r in metadata.requires("stable_baselines3") or [] if _canonical(Requirement(r).name) == "torch"
    )
    assert _lower_bound(_by_name(install_requires)["torch"]) == _lower_bound(sb3_torch) == Version("2.8")


def test_mujoco_is_an_extra_with_an_upper_bound():
    install_requires, extras = _requirements()
    core = _by_name(install_requires)
    assert "mujoco" not in core
    assert core["gymnasium"].extras == set()  # classic-control users do not get MuJoCo
    mujoco_extra = _by_name(extras["mujoco"])
    assert mujoco_extra["gymnasium"].extras == {"mujoco"}
    assert mujoco_extra["gymnasium"].specifier == core["gymnasium"].specifier
    specifier = mujoco_extra["mujoco"].specifier
    installed = Version(metadata.version("mujoco"))
    assert specifier.contains(installed), (specifier, installed)
    assert not specifier.contains(Version(f"{installed.major + 1}.0.0"))
    assert not specifier.contains(Version(f"{installed.major + 1}.0.0rc1"), prereleases=True)


def test_postgres_driver_and_rliable_extras():
    install_requires, extras = _requirements()
    holders = {name for name, reqs in extras.items() if "psycopg2-binary" in _by_name(reqs)}
    assert holders == {"postgres"}
    assert "psycopg2-binary" not in _by_name(install_requires)
    assert "rliable" in _by_name(extras["zoo"])
    # rliable 1.2 -> arch<8, which does not import with pandas 3: rl-zoo3 (which imports rliable) would not start
    assert not _by_name(extras["zoo"])["pandas"].specifier.contains("3.0.0")
    # the Makefile installs what `make demo` and `make test` need
    makefile = (REPO / "Makefile").read_text()
    target = r"^\$\(VENV\)/(\.installed[\w-]*):.*\n\t\$\(PIP\) install -e \"?\.\[([\w,]+)\]"
    installs = dict(re.findall(target, makefile, re.M))
    assert installs[".installed"].split(",") == ["mujoco"]
    assert {"mujoco", "tests", "zoo", "postgres", "docs"} <= set(installs[".installed-tests"].split(","))


# ---------------------------------------------------------------------------------------------------- package data
def test_default_conf_file_is_read_with_importlib_resources(monkeypatch):
    yaml = pytest.importorskip("yaml", reason="pyyaml not installed (pip install -e '.[zoo]')")
    files = importlib.resources.files
    asked = []

    def recording_files(anchor):
        asked.append(anchor)
        return files(anchor)

    monkeypatch.setattr(importlib.resources, "files", recording_files)
    args = zoo.with_default_conf(["--algo", "pmac", "--env", "Hopper-v4"])
    assert asked == ["sb3_pmac"]
    conf_file = Path(args[-1])
    assert args[-2:] == ["--conf-file", str(files("sb3_pmac") / "hyperparams" / "pmac.yml")]
    assert conf_file == PACKAGE_HYPERPARAMS / "pmac.yml"  # source checkout / editable install
    hopper = yaml.safe_load(conf_file.read_text())["Hopper-v4"]
    assert hopper["n_timesteps"] == 125_000 and hopper["rollout_horizon"] == [20, 100, 1, 15]
    assert hopper["adaptation_rate"] == 0.9 and hopper["real_ratio"] == 0.05 and hopper["gradient_steps"] == 20
    assert (REPO / "hyperparams" / "pmac.yml").read_text() == conf_file.read_text()  # the top-level link


def test_hyperparams_from_a_zipped_package(monkeypatch, tmp_path):
    """A package imported from a zip file: its files are copied to a folder that rl-zoo3 can read."""
    archive = tmp_path / "package.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for algo in ("pmac", "mbpo"):
            zf.writestr(f"sb3_pmac/hyperparams/{algo}.yml", f"{algo}-content: 1\n")
    monkeypatch.setattr(importlib.resources, "files", lambda anchor: zipfile.Path(archive, "sb3_pmac/"))
    monkeypatch.setattr(zoo, "_extracted_dir", None)
    folder = zoo.hyperparams_dir()
    assert folder.is_dir() and not folder.is_relative_to(tmp_path)
    assert zoo.hyperparams_path("mbpo").read_text() == "mbpo-content: 1\n"
    assert zoo.with_default_conf(["--algo", "pmac"])[-1] == str(folder / "pmac.yml")
    shutil.rmtree(folder)


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for item in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile"):
        shutil.copy(REPO / item, dest / item)
    for folder in ("sb3_pmac", "tests"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def _throwaway_venv(path: Path) -> tuple[str, dict[str, str], Path]:
    """A venv without packages; the dependencies are borrowed from this interpreter's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = str(path / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True
    ).stdout.strip()
    Path(purelib, "zz_borrowed_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = os.environ.copy()
    env.pop("PYTHONPATH", None)
    env["MPLBACKEND"] = "Agg"
    return python, env, Path(purelib)


def _pip(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _imported_from(python: str, env: dict[str, str], cwd: Path, algo: str) -> list[str]:
    """In a new folder ``cwd``: the file ``sb3_pmac.zoo`` is imported from and the hyperparameter file of ``algo``."""
    cwd.mkdir()
    code = f"import sb3_pmac.zoo as z; print(z.__file__); print(z.hyperparams_path({algo!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=True).stdout.split()


def _launcher(python: str, env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [python, "-m", "sb3_pmac.zoo", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(tmp / "src")
    _pip("wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"))
    (built,) = (tmp / "dist").glob("sb3_pmac-*.whl")
    return built


def test_wheel_metadata_and_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.endswith(".yml")) == ["sb3_pmac/hyperparams/mbpo.yml", "sb3_pmac/hyperparams/pmac.yml"]
    assert not [n for n in names if ".data/" in n]  # no data_files outside the package any more
    for algo in ("pmac", "mbpo"):
        packaged = zipfile.ZipFile(wheel).read(f"sb3_pmac/hyperparams/{algo}.yml")
        assert packaged == (PACKAGE_HYPERPARAMS / f"{algo}.yml").read_bytes()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = {_canonical(r.name): r for r in requires if r.marker is None}
    assert set(core) == {"stable-baselines3", "torch", "gymnasium", "numpy", "tqdm", "rich"}
    assert str(core["torch"].specifier) == ">=2.8"

    def extra(name: str) -> set[str]:
        return {_canonical(r.name) for r in requires if r.marker is not None and r.marker.evaluate({"extra": name})}

    assert extra("mujoco") == {"gymnasium", "mujoco"}
    assert extra("postgres") == {"psycopg2-binary"}
    assert {"rl-zoo3", "optuna", "rliable"} <= extra("zoo") and "psycopg2-binary" not in extra("zoo")


def test_license_ships_in_the_wheel_and_the_sdist_holds_what_the_readme_runs(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Classifier: License :: OSI Approved :: MIT License" in meta
    src = _copy_sources(tmp_path / "src")
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=src, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    (sdist,) = (tmp_path / "dist").glob("sb3_pmac-*.tar.gz")
    import tarfile

    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    # the README's commands (make test) and the whole suite: conftest.py and the saved agents of earlier releases
    assert {"LICENSE", "Makefile", "tests/conftest.py", "tests/data/legacy_pmac.zip"} <= members, sorted(members)
    assert not [name for name in members if "__pycache__" in name]


def test_wheel_install_finds_hyperparams(wheel, tmp_path):
    """A regular (non-editable) install reads pmac.yml/mbpo.yml from site-packages/sb3_pmac/hyperparams."""
    python, env, purelib = _throwaway_venv(tmp_path / "venv")
    _pip("--python", python, "install", "--no-deps", "-q", str(wheel))
    run_dir = tmp_path / "run"
    imported = _imported_from(python, env, run_dir, "pmac")
    assert imported == [str(purelib / "sb3_pmac" / "zoo.py"), str(purelib / "sb3_pmac" / "hyperparams" / "pmac.yml")]
    if importlib.util.find_spec("rl_zoo3") is None:
        return
    where = _launcher(python, env, run_dir, "hyperparams_dir").strip()
    assert Path(where) == purelib / "sb3_pmac" / "hyperparams"
    args = ["train", "--algo", "pmac", "--env", "Pendulum-v1", "-n", "50", "-f", "logs", "--seed", "0", "--eval-freq", "-1"]
    out = _launcher(python, env, run_dir, *args, "--num-threads", "1")
    assert f"Loading hyperparameters from: {Path(where) / 'pmac.yml'}" in out
    assert (run_dir / "logs" / "pmac" / "Pendulum-v1_1" / "Pendulum-v1.zip").is_file()


def test_editable_install_finds_hyperparams(tmp_path):
    """``pip install -e .`` (what the Makefile does) reads them from the source tree's sb3_pmac/hyperparams."""
    pytest.importorskip("setuptools", reason="an editable install needs setuptools")
    src = _copy_sources(tmp_path / "src")
    python, env, _ = _throwaway_venv(tmp_path / "venv")
    _pip("--python", python, "install", "--no-deps", "--no-build-isolation", "-q", "-e", str(src))
    found = _imported_from(python, env, tmp_path / "run", "mbpo")
    assert found == [str(src / "sb3_pmac" / "zoo.py"), str(src / "sb3_pmac" / "hyperparams" / "mbpo.yml")]


# ---------------------------------------------------------------------------------------------------- MuJoCo missing
@pytest.fixture
def without_mujoco(tmp_path) -> dict[str, str]:
    """Environment of a subprocess in which ``import mujoco`` fails, as where the [mujoco] extra is not installed."""
    blocker = tmp_path / "blocker" / "mujoco"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named mujoco (blocked by the test)')\n")
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), str(REPO)])
    env["MPLBACKEND"] = "Agg"
    return env


def test_missing_mujoco_names_the_extra(without_mujoco, tmp_path):
    # the demo (`make demo`): a one-line error, no traceback
    demo = subprocess.run(
        [sys.executable, "-m", "sb3_pmac.demo", "--timesteps", "10", "--output", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300, env=without_mujoco, cwd=tmp_path,
    )  # fmt: skip
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "pip install 'sb3-pmac[mujoco]'" in demo.stderr and "Traceback" not in demo.stderr
    # PMAC("<id>") and make_preset_env; a classic-control task still works
    script = (
        "import gymnasium as gym\n"
        "from sb3_pmac import PMAC\n"
        "from sb3_pmac.env_presets import make_preset_env\n"
        "PMAC('Pendulum-v1', buffer_size=100)\n"
        "for make in (lambda: PMAC('Hopper-v5'), lambda: PMAC('Walker2d-v4', use_presets=False),"
        " lambda: make_preset_env('Ant-v5')):\n"
        "    try:\n"
        "        make()\n"
        "    except gym.error.DependencyNotInstalled as error:\n"
        "        print('ERROR', error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=300, env=without_mujoco
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    errors = [line for line in out.stdout.splitlines() if line.startswith("ERROR")]
    assert [e.split()[1] for e in errors] == ["Hopper-v5", "Walker2d-v4", "Ant-v5"]
    assert all("pip install 'sb3-pmac[mujoco]'" in e for e in errors), errors
    # the rl-zoo3 launcher
    if importlib.util.find_spec("rl_zoo3") is not None:
        args = ["train", "--algo", "pmac", "--env", "Hopper-v4", "-n", "10", "-f", str(tmp_path / "logs")]
        proc = subprocess.run(
            [sys.executable, "-m", "sb3_pmac.zoo", *args], capture_output=True, text=True, timeout=300,
            env=without_mujoco, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "install sb3-pmac's MuJoCo extra: pip install 'sb3-pmac[mujoco]'" in proc.stderr
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------- the demo
def test_demo_runs_and_explains_v4_once(tmp_path, capsys):
    """A tiny ``make demo``: trains, saves, reloads, evaluates; gymnasium's v4 "out of date" warning is replaced by
    one line saying why v4."""
    import warnings

    from sb3_pmac import MBPO, PMAC, demo

    # 260 steps: the random warm-up (240), a model step once 250 transitions are stored (one interaction epoch), SAC
    argv = ["--timesteps", "260", "--learning-starts", "240", "--gradient-steps", "3", "--rollout-batch-size", "50",
            "--model-max-epochs", "1", "--eval-episodes", "1", "--output", str(tmp_path / "agent"),
            "--no-progress-bar"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean_return = demo.main(argv)
    out = capsys.readouterr().out
    assert not [w for w in caught if "out of date" in str(w.message)]
    assert "Hopper-v4: the version of the paper's comparisons" in out and "--env Hopper-v5" in out
    assert f"over 1 episodes: {mean_return:.1f}" in out and (tmp_path / "agent.zip").is_file()
    assert 0.0 < mean_return < 1000.0  # a Hopper episode of a barely trained agent: falls within a few dozen steps
    # the command line's settings reached the agent it trained and saved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        demo.main([*argv[:-3], "--output", str(tmp_path / "mbpo"), "--algo", "mbpo", "--no-progress-bar"])
        agents = {PMAC: PMAC.load(tmp_path / "agent"), MBPO: MBPO.load(tmp_path / "mbpo")}
    for cls, agent in agents.items():
        assert type(agent) is cls and agent.num_timesteps == 260
        assert agent.adapt_model_training == agent.adapt_rollout_starts == (cls is PMAC)  # as trained: MBPO is uniform
        assert (agent.learning_starts, agent.gradient_steps, agent.rollout_batch_size) == (240, 3, 50)
        assert agent.model_trainer_kwargs == {"max_epochs": 1} and agent.n_model_steps == 1
        assert agent._n_updates == 3 * (260 - 240)


def test_demo_defaults_are_the_documented_ones():
    """The short-budget defaults of the demo's docstring (20 model epochs: 10 let the first model drift)."""
    from sb3_pmac import demo

    args = demo.parse_args([])
    assert (args.env, args.algo, args.timesteps, args.paper_settings) == ("Hopper-v4", "pmac", 3000, False)
    assert (args.learning_starts, args.gradient_steps, args.rollout_batch_size) == (1000, 2, 10_000)
    assert (args.model_max_epochs, args.eval_episodes, args.seed) == (20, 5, 0)
