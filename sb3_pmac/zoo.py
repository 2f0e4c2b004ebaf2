"""
rl-zoo3 launcher for PMAC and MBPO.

``python -m sb3_pmac.zoo COMMAND [rl-zoo3 arguments]`` (or the ``sb3-pmac-zoo`` console script) registers the
algorithms ``pmac`` and ``mbpo`` (and their Optuna samplers) with rl-zoo3, then runs rl-zoo3's own command unchanged::

    python -m sb3_pmac.zoo train --algo pmac --env Hopper-v4
    python -m sb3_pmac.zoo train --algo pmac --env Pendulum-v1 -optimize --n-trials 20 --no-optim-plots
    python -m sb3_pmac.zoo enjoy --algo pmac --env Hopper-v4 -f logs/ --no-render
    python -m sb3_pmac.zoo plot_train --algo pmac --env Hopper-v4 -f logs/

For ``--algo pmac``/``mbpo`` without ``-conf``/``--conf-file``, ``train`` reads this package's ``pmac.yml`` /
``mbpo.yml`` (the paper's six tasks, v4 and v5, plus tiny smoke-test entries); ``hyperparams_dir`` prints where they are.
With these algos, an ``--env`` gymnasium does not know, or one the package's file has no entry for (without ``-conf``),
stops ``train`` with a short message and exit status 2 (:func:`train_args_error`) instead of rl-zoo3's traceback.
"""

import argparse
import atexit
import difflib
import functools
import importlib
import importlib.resources
import inspect
import runpy
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, NoReturn

from sb3_pmac.env_kwargs import parse_env_kwargs
from sb3_pmac.zoo_credentials import mask_credentials, mask_saved_credentials, masked_orig_argv

#: rl-zoo3 algorithm names added by :func:`register`
ZOO_ALGOS = ("pmac", "mbpo")
#: The package and folder holding the hyperparameter files (package data, read with :mod:`importlib.resources`)
HYPERPARAMS_PACKAGE = "sb3_pmac"
HYPERPARAMS_FOLDER = "hyperparams"

_extracted_dir: Path | None = None


def hyperparams_dir() -> Path:
    """
    The folder holding ``pmac.yml`` and ``mbpo.yml``: the package data folder ``sb3_pmac/hyperparams``, found with
    :func:`importlib.resources.files` (so an editable install, a source checkout on ``PYTHONPATH`` and an installed
    wheel all find it). A package imported from a zip file has its files copied to a temporary folder (removed at exit).

    :raises FileNotFoundError: when the files are missing from the installed package
    """
    global _extracted_dir
    folder = importlib.resources.files(HYPERPARAMS_PACKAGE) / HYPERPARAMS_FOLDER
    names = [f"{algo}.yml" for algo in ZOO_ALGOS]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"sb3-pmac's hyperparameter files {missing} are missing from the package data ({folder})")
    if isinstance(folder, Path):
        return folder
    if _extracted_dir is None:  # not on the file system (zip import): rl-zoo3 needs file paths
        _extracted_dir = Path(tempfile.mkdtemp(prefix="sb3_pmac_hyperparams_"))
        atexit.register(shutil.rmtree, _extracted_dir, True)
        for name in names:
            (_extracted_dir / name).write_bytes((folder / name).read_bytes())
    return _extracted_dir


def hyperparams_path(algo: str) -> Path:
    """The default hyperparameter file of ``algo`` (``"pmac"`` or ``"mbpo"``)."""
    if algo not in ZOO_ALGOS:
        raise ValueError(f"Unknown algo {algo!r}, expected one of {ZOO_ALGOS}")
    return hyperparams_dir() / f"{algo}.yml"


#: PMAC's keyword-argument hyperparameters that the launcher evaluates from strings, as rl-zoo3 evaluates
#: ``policy_kwargs`` (``dynamics_kwargs: "dict(hidden_sizes=[64, 64])"`` in a YAML or ``-params``)
EVALUATED_KWARGS = ("dynamics_kwargs", "model_trainer_kwargs")


def _wrap_preprocess_hyperparams(marker: str, wrapper: Callable[[Callable, Any, dict[str, Any]], Any]) -> None:
    """
    Replace rl-zoo3's ``ExperimentManager._preprocess_hyperparams`` by ``wrapper(original, self, hyperparams)`` once
    (``marker`` tells whether it was done; the markers of earlier wrappers are kept).
    """
    from rl_zoo3 import exp_manager

    manager = exp_manager.ExperimentManager
    if getattr(manager._preprocess_hyperparams, marker, False):
        return
    preprocess = manager._preprocess_hyperparams

    @functools.wraps(preprocess)
    def _preprocess_hyperparams(self: Any, hyperparams: dict[str, Any]) -> Any:
        return wrapper(preprocess, self, hyperparams)

    setattr(_preprocess_hyperparams, marker, True)
    manager._preprocess_hyperparams = _preprocess_hyperparams  # type: ignore[method-assign]


def evaluate_kwargs_strings() -> None:
    """
    Make rl-zoo3 evaluate :data:`EVALUATED_KWARGS` written as strings, as it evaluates ``policy_kwargs`` (with
    ``eval``, on the user's own YAML and command line). Idempotent.
    """
    from rl_zoo3 import exp_manager

    def evaluate_strings(preprocess: Callable, self: Any, hyperparams: dict[str, Any]) -> Any:
        for key in EVALUATED_KWARGS:
            if isinstance(hyperparams.get(key), str):
                # rl-zoo3's own rule for policy_kwargs, in the namespace it evaluates them in (nn, th, np, ...)
                hyperparams[key] = eval(hyperparams[key], vars(exp_manager))
        return preprocess(self, hyperparams)

    _wrap_preprocess_hyperparams("_sb3_pmac_kwargs", evaluate_strings)


def evaluate_with_the_training_env_kwargs() -> None:
    """
    Make rl-zoo3's evaluation env use the ``env_kwargs`` of the hyperparameter file's entry, as its training env does,
    unless ``--eval-env-kwargs`` is given. rl-zoo3 (2.9) passes the file's ``env_kwargs`` to the evaluation env only
    when ``--env-kwargs`` is also given on the command line; otherwise the agent, trained on e.g. the 27 observations of
    ``Ant-v5`` with ``include_cfrc_ext_in_observation: false`` (this package's files), met the env's 105 at its first
    evaluation, and every ``-optimize`` trial was pruned. Idempotent.
    """

    def share_env_kwargs(preprocess: Callable, self: Any, hyperparams: dict[str, Any]) -> Any:
        result = preprocess(self, hyperparams)
        if getattr(self, "_eval_env_kwargs_args", None) is None:  # no --eval-env-kwargs
            self.eval_env_kwargs = self.env_kwargs
        return result

    _wrap_preprocess_hyperparams("_sb3_pmac_eval_env_kwargs", share_env_kwargs)


@contextmanager
def _videos_with_the_training_env_kwargs() -> Iterator[None]:
    """
    While ``record_video`` runs: its env gets the ``env_kwargs`` of the run's saved ``config.yml`` (the hyperparameter
    file's, as ``enjoy`` reads them), under those of the run's ``args.yml`` and the command line. rl-zoo3's
    ``record_video`` (2.9) reads only the latter, so the video env of an agent trained on ``Ant-v5``'s 27 observations
    had 105 and the agent did not load.
    """
    from rl_zoo3 import utils

    create_test_env = utils.create_test_env
    signature = inspect.signature(create_test_env)

    @functools.wraps(create_test_env)
    def with_saved_env_kwargs(*args: Any, **kwargs: Any) -> Any:
        call = signature.bind(*args, **kwargs)
        saved = (call.arguments.get("hyperparams") or {}).get("env_kwargs")
        if isinstance(saved, dict):
            call.arguments["env_kwargs"] = {**saved, **(call.arguments.get("env_kwargs") or {})}
        return create_test_env(*call.args, **call.kwargs)

    utils.create_test_env = with_saved_env_kwargs
    try:
        yield
    finally:
        utils.create_test_env = create_test_env


#: ``train`` option of the launcher (not rl-zoo3's): ``-i`` reads a pickled ``replay_buffer.pkl`` next to the agent
ALLOW_PICKLE_OPTION = "--allow-pickle"


@contextmanager
def _pickled_buffers_allowed(allowed: bool) -> Iterator[None]:
    """While a command runs: ``PMAC.load_replay_buffer`` reads pickles (earlier sb3-pmac's and SB3's buffer files)."""
    if not allowed:
        yield
        return
    from sb3_pmac.pmac import PMAC

    load_replay_buffer = PMAC.__dict__["load_replay_buffer"]
    PMAC.load_replay_buffer = functools.partialmethod(load_replay_buffer, allow_pickle=True)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        PMAC.load_replay_buffer = load_replay_buffer  # type: ignore[method-assign]


def register() -> None:
    """
    Add ``pmac`` and ``mbpo`` to rl-zoo3: its algorithm table (``rl_zoo3.ALGOS``, read when the command line parsers are
    built) and its Optuna sampler/converter tables. Idempotent; must run before an rl-zoo3 command starts.
    """
    from rl_zoo3 import hyperparams_opt
    from rl_zoo3.utils import ALGOS

    from sb3_pmac.mbpo import MBPO
    from sb3_pmac.pmac import PMAC
    from sb3_pmac.zoo_optuna import convert_pmac_params, sample_mbpo_params, sample_pmac_params

    ALGOS["pmac"] = PMAC
    ALGOS["mbpo"] = MBPO
    hyperparams_opt.HYPERPARAMS_SAMPLER["pmac"] = sample_pmac_params
    hyperparams_opt.HYPERPARAMS_SAMPLER["mbpo"] = sample_mbpo_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["pmac"] = convert_pmac_params
    hyperparams_opt.HYPERPARAMS_CONVERTER["mbpo"] = convert_pmac_params


#: rl-zoo3's ``train --env`` when none is given
ZOO_DEFAULT_ENV = "CartPole-v1"


class _QuietParser(argparse.ArgumentParser):
    """An argument parser that raises :class:`argparse.ArgumentError` where it would print an error and exit."""

    def error(self, message: str) -> NoReturn:
        raise argparse.ArgumentError(None, message)


def _parse_train_args(args: Sequence[str]) -> argparse.Namespace | None:
    """
    The ``train`` arguments the launcher looks at (``--algo``, ``--env``, ``--env-kwargs``, ``--gym-packages``,
    ``-conf``, ``-optimize``, ``--storage``, ``--study-name``, ``--trial-id``), parsed like
    rl-zoo3 parses them (``--env=Hopper-v4``, abbreviations, its defaults); ``None`` when they are malformed, which
    rl-zoo3's own parser then reports.

    :param args: the arguments of ``train``
    :return: the parsed arguments, the others ignored
    """
    parser = _QuietParser(add_help=False)
    parser.add_argument("--algo", type=str, default=None)
    parser.add_argument("--env", type=str, default=None)  # None: rl-zoo3's default, ZOO_DEFAULT_ENV
    parser.add_argument("--env-kwargs", nargs="+", default=None)  # (also makes "--en" ambiguous, as for rl-zoo3)
    parser.add_argument("--gym-packages", type=str, nargs="+", default=[])
    parser.add_argument("-conf", "--conf-file", type=str, default=None)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true", default=False)
    parser.add_argument("--storage", type=str, default=None)
    parser.add_argument("--study-name", type=str, default=None)
    parser.add_argument("--trial-id", type=int, default=None)
    parser.add_argument("--sampler", type=str, default="tpe")
    try:
        known, _ = parser.parse_known_args(list(args))
    except argparse.ArgumentError:
        return None
    return known


def with_default_conf(args: Sequence[str]) -> list[str]:
    """
    ``train`` arguments with ``--conf-file <pmac.yml|mbpo.yml>`` appended when the algo is ours and no ``-conf`` /
    ``--conf-file`` is given (parsed like rl-zoo3 does: ``--algo=pmac``, abbreviations, ...).

    :param args: the arguments of ``train``
    :return: the arguments to pass on to rl-zoo3
    """
    known = _parse_train_args(args)
    if known is not None and known.algo in ZOO_ALGOS and known.conf_file is None:
        return [*args, "--conf-file", str(hyperparams_path(known.algo))]
    return list(args)


def _close_matches(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'A', 'B'?)`` with the closest of ``candidates``, or ``""`` when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=3)
    return f" (did you mean {', '.join(repr(match) for match in matches)}?)" if matches else ""


def unregistered_env_error(env_id: str, gym_packages: Sequence[str] = ()) -> str | None:
    """
    The error message for an ``env_id`` that gymnasium does not know, as rl-zoo3's ``train`` looks it up: in
    gymnasium's registry after importing ``gym_packages`` (its ``--gym-packages``) and rl-zoo3's own environments
    (``rl_zoo3.import_envs``, only when the id is not found without them).

    :param env_id: the ``--env`` of ``train``
    :param gym_packages: modules that register environments when imported
    :return: the message, or ``None`` when the id is registered, or when a module of ``gym_packages`` fails to import
        (rl-zoo3 reports that)
    """
    import gymnasium as gym

    try:
        for module in gym_packages:
            importlib.import_module(module)
    except Exception:  # rl-zoo3 imports them again and reports the failure
        return None
    if env_id not in gym.registry:
        with suppress(ImportError):
            importlib.import_module("rl_zoo3.import_envs")
    if env_id in gym.registry:
        return None
    imported = f" (after importing --gym-packages {' '.join(gym_packages)})" if gym_packages else ""
    return (
        f"error: the env id {env_id!r} is not registered with gymnasium{imported}"
        f'{_close_matches(env_id, gym.registry)}. `python -c "import gymnasium; gymnasium.pprint_registry()"` lists '
        "the registered ids; an environment of another package is registered by importing that package: pass its "
        "module with --gym-packages MODULE."
    )


def hyperparams_entries(algo: str) -> list[str]:
    """
    The entries (top-level keys) of this package's hyperparameter file of ``algo``.

    :param algo: ``"pmac"`` or ``"mbpo"``
    :return: the env ids (and any ``default``/``atari`` entry) in the file's order
    """
    import yaml

    with open(hyperparams_path(algo)) as file:
        return list(yaml.safe_load(file) or {})


def missing_entry_error(algo: str, env_id: str) -> str | None:
    """
    The error message for training ``algo`` on ``env_id`` with this package's hyperparameter file (no ``-conf``) when
    the file has no entry rl-zoo3 would use for ``env_id`` (the id itself, or a ``default`` entry; the files have no
    ``atari`` entry, and PMAC does not support Atari's discrete actions).

    :param algo: ``"pmac"`` or ``"mbpo"``
    :param env_id: the ``--env`` of ``train``
    :return: the message, or ``None`` when the file has an entry for ``env_id``
    """
    entries = hyperparams_entries(algo)
    if env_id in entries or "default" in entries:
        return None
    return (
        f"error: sb3-pmac's hyperparameter file {hyperparams_path(algo)} has no entry for {env_id!r}"
        f"{_close_matches(env_id, entries)}. Its entries: {', '.join(entries)}. To train {algo} on {env_id}, write "
        "your own file with an entry for it (a copy of this one is a start) and pass it with -conf my.yml; see "
        "docs/zoo.md (Hyperparameter files)."
    )


def train_env_kwargs(algo: str, env_id: str, conf_file: str | None, cli_env_kwargs: Sequence[str] | None) -> dict | None:
    """
    The env kwargs rl-zoo3 will make the training env with: ``--env-kwargs KEY:VALUE ...`` when given (they replace
    the file's), else the ``env_kwargs`` of the hyperparameter file's entry for ``env_id`` (``-conf``, else this
    package's file; its ``default`` entry when it has none for the id).

    :param algo: ``"pmac"`` or ``"mbpo"``
    :param env_id: the ``--env`` of ``train``
    :param conf_file: the ``-conf`` file, or None
    :param cli_env_kwargs: the ``--env-kwargs`` items, or None
    :return: the kwargs (none for a ``-conf`` file that does not exist), or ``None`` when they cannot be read here (a
        Python ``-conf`` file, a value rl-zoo3 would evaluate as code): the checks that need them are then left to
        rl-zoo3
    """
    import yaml

    if cli_env_kwargs is not None:
        try:
            return parse_env_kwargs(cli_env_kwargs)
        except ValueError:
            return None
    path = Path(conf_file) if conf_file is not None else hyperparams_path(algo)
    if path.suffix not in (".yml", ".yaml"):
        return None
    if not path.is_file():
        return {}  # rl-zoo3 reports the missing file; the env's own spaces can still be checked
    try:
        with open(path) as file:
            entries = yaml.safe_load(file) or {}
    except (OSError, yaml.YAMLError):
        return None
    entry = entries.get(env_id, entries.get("default")) if isinstance(entries, dict) else None
    value = entry.get("env_kwargs", {}) if isinstance(entry, dict) else {}
    return dict(value) if isinstance(value, dict) else None


def unsupported_actions_error(
    algo: str, env_id: str, env_given: bool = True, env_kwargs: dict[str, Any] | None = None
) -> str | None:
    """
    The error message for an env whose action space PMAC cannot handle (not a bounded Box), found by making the env
    once with the kwargs the run will use; ``None`` when it is supported or when the env cannot be made here (rl-zoo3
    then reports why).

    :param algo: ``"pmac"`` or ``"mbpo"``
    :param env_id: a registered env id
    :param env_given: whether the user gave the id (else it is rl-zoo3's default, which the message says)
    :param env_kwargs: the env's keyword arguments (:func:`train_env_kwargs`)
    :return: the message, or ``None``
    """
    import gymnasium as gym
    import numpy as np

    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except Exception:
        return None
    action_space = env.action_space
    env.close()
    if (
        isinstance(action_space, gym.spaces.Box)
        and np.all(np.isfinite(action_space.low))
        and np.all(np.isfinite(action_space.high))
    ):
        return None
    default = "" if env_given else " (rl-zoo3's default when --env is not given)"
    return (
        f"error: {algo} needs a continuous action space with finite bounds (gymnasium.spaces.Box), and {env_id!r}"
        f"{default} has {action_space}; the paper's tasks (Hopper, Walker2d, HalfCheetah, Ant, Humanoid, Pusher) and "
        "other MuJoCo or classic-control tasks with continuous actions (Pendulum-v1, InvertedPendulum-v5, ...) work."
    )


def train_args_error(args: Sequence[str]) -> str | None:
    """
    The error message for ``train`` arguments that would stop rl-zoo3 with a traceback before training, or train
    other than asked: for ``--algo pmac``/``mbpo``, a study that would load no trial (:func:`trial_args_error`), an
    ``--env`` gymnasium does not know (:func:`unregistered_env_error`), one without bounded continuous actions with the
    run's env kwargs (:func:`unsupported_actions_error`) or, without ``-conf``, one this package's hyperparameter file
    has no entry for (:func:`missing_entry_error`). Other algos, a ``--gym-packages`` module that fails to import and
    the entries of a user's own ``-conf`` file are left to rl-zoo3.

    :param args: the arguments of ``train``
    :return: the message, or ``None``
    """
    known = _parse_train_args(args)
    if known is None or known.algo not in ZOO_ALGOS:
        return None
    for module in known.gym_packages:
        try:
            importlib.import_module(module)
        except Exception:  # rl-zoo3 imports them again and reports the failure, which the checks below would hide
            return None
    env_id = ZOO_DEFAULT_ENV if known.env is None else known.env
    error = trial_args_error(known) or sampler_args_error(known)
    if error is None:
        error = unregistered_env_error(env_id, known.gym_packages)
    if error is None:
        env_kwargs = train_env_kwargs(known.algo, env_id, known.conf_file, known.env_kwargs)
        if env_kwargs is not None:
            error = unsupported_actions_error(known.algo, env_id, env_given=known.env is not None, env_kwargs=env_kwargs)
    if error is None and known.conf_file is None:
        error = missing_entry_error(known.algo, env_id)
    return error


def trial_args_error(known: argparse.Namespace) -> str | None:
    """
    The error message for ``--storage``/``--study-name``/``--trial-id`` that would load nothing: rl-zoo3 loads a
    trial's hyperparameters only for ``--trial-id N`` with N >= 1 (it reads 0, Optuna's first trial, as not given) and
    both ``--storage`` and ``--study-name``, and there is no flag for the best trial; without ``-optimize`` the run
    would silently train with the file's values.

    :param known: the parsed ``train`` arguments (:func:`_parse_train_args`)
    :return: the message, or ``None``
    """
    if known.optimize_hyperparameters:
        return None
    if not (known.storage and known.study_name):
        if known.trial_id is None or known.trial_id < 1:
            return None
        given = "--storage" if known.storage else "--study-name" if known.study_name else "neither"
        return (
            f"error: --trial-id {known.trial_id} loads nothing without both --storage and --study-name ({given} given): "
            "rl-zoo3 reads a trial only from a named study in a storage, and the run would train with the "
            "hyperparameter file's values; pass the study's --storage and --study-name."
        )
    if known.trial_id is not None and known.trial_id >= 1:
        return None
    storage = mask_credentials(known.storage)  # (printed: no password; libpq finds it in PGPASSWORD or ~/.pgpass)
    best = (
        f"python -c \"import optuna; print(optuna.load_study(study_name='{known.study_name}', storage='{storage}')"
        '.best_trial.number)"'
    )
    if known.trial_id == 0:
        problem = "--trial-id 0 loads nothing: rl-zoo3 reads 0 (Optuna's first trial) as no trial id"
        advice = "pass trial 0's values with -params KEY:VALUE ... (the study's report csv lists them)"
    else:
        problem = "--storage and --study-name without -optimize or --trial-id load nothing"
        advice = f"pass --trial-id N (N >= 1) to retrain trial N; the best trial's number: {best}"
    return f"error: {problem}, and the run would train with the hyperparameter file's values; {advice}."


def sampler_args_error(known: argparse.Namespace) -> str | None:
    """
    The error message for ``-optimize --sampler auto`` without the ``optunahub`` package, which rl-zoo3 imports for it
    only once the env is built (``ModuleNotFoundError``); the ``[zoo]`` extra does not bring it, as the AutoSampler
    it loads is fetched from the OptunaHub registry over the network when the study starts.

    :param known: the parsed ``train`` arguments (:func:`_parse_train_args`)
    :return: the message, or ``None``
    """
    import importlib.util

    if not known.optimize_hyperparameters or known.sampler != "auto" or importlib.util.find_spec("optunahub") is not None:
        return None
    return (
        "error: --sampler auto needs the optunahub package (not in sb3-pmac's [zoo] extra; rl-zoo3 loads the "
        "AutoSampler from the OptunaHub registry, over the network, when the study starts): pip install optunahub, or "
        "use --sampler tpe (rl-zoo3's default) or random."
    )


#: rl-zoo3's ``enjoy``/``record_video`` folder when ``-f``/``--folder`` is not given (that of its downloaded agents)
ZOO_DEFAULT_FOLDER = "rl-trained-agents"


def agent_folder_error(args: Sequence[str]) -> str | None:
    """
    The error message for ``enjoy``/``record_video`` of ``--algo pmac``/``mbpo`` in rl-zoo3's folder of downloaded
    agents (its default ``-f rl-trained-agents``) when that folder holds no agent of the algo: rl-zoo3 would then try
    to download one from the SB3 organisation's hub, which has none of PMAC or MBPO, and fail with an unrelated message.

    :param args: the arguments of ``enjoy`` or ``record_video``
    :return: the message, or ``None``
    """
    parser = _QuietParser(add_help=False)
    parser.add_argument("--algo", type=str, default=None)
    parser.add_argument("-f", "--folder", type=str, default=ZOO_DEFAULT_FOLDER)
    try:
        known, _ = parser.parse_known_args(list(args))
    except argparse.ArgumentError:
        return None
    if known.algo not in ZOO_ALGOS or ZOO_DEFAULT_FOLDER not in known.folder or (Path(known.folder) / known.algo).is_dir():
        return None
    default = " (rl-zoo3's default -f)" if known.folder == ZOO_DEFAULT_FOLDER else ""
    return (
        f"error: no {known.algo} agents in {Path(known.folder) / known.algo}: {known.folder}{default} is where rl-zoo3 "
        f"keeps the SB3 agents it downloads, and none are {known.algo}'s. Pass the folder train wrote to: -f logs "
        "(train's default)."
    )


def missing_zoo_module() -> str | None:
    """The first module of the ``[zoo]`` extra the launcher needs that is not installed (None: all are)."""
    import importlib.util

    return next((name for name in ("rl_zoo3", "yaml") if importlib.util.find_spec(name) is None), None)


def _run_module(module: str) -> Callable[[], None]:
    def run() -> None:
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    return run


def _commands() -> dict[str, Callable[[], None]]:
    from rl_zoo3.enjoy import enjoy
    from rl_zoo3.plots import all_plots, plot_from_file, plot_train
    from rl_zoo3.train import train

    return {
        "train": train,
        "enjoy": enjoy,
        # a script without a function in rl-zoo3: run as __main__ in this process (so that our registration holds)
        "record_video": _run_module("rl_zoo3.record_video"),
        "plot_train": plot_train,
        "plot_from_file": plot_from_file,
        "all_plots": all_plots,
    }


COMMANDS = ("train", "enjoy", "record_video", "plot_train", "plot_from_file", "all_plots", "hyperparams_dir")

USAGE = f"""usage: python -m sb3_pmac.zoo COMMAND [ARGS...]   (or: sb3-pmac-zoo COMMAND [ARGS...])

Runs rl-zoo3's COMMAND with the algorithms 'pmac' and 'mbpo' registered.
COMMAND: {", ".join(COMMANDS)}
ARGS: rl-zoo3's arguments of that command (see `python -m sb3_pmac.zoo COMMAND --help`).
For `train --algo pmac|mbpo` without -conf/--conf-file, the hyperparameters come from sb3-pmac's pmac.yml/mbpo.yml.
`train ... -i AGENT --allow-pickle` (not an rl-zoo3 option) also reads a pickled replay_buffer.pkl next to AGENT
(earlier sb3-pmac or SB3 files; reading a pickle runs the code it holds: only for files you trust).
dynamics_kwargs and model_trainer_kwargs may be strings, evaluated as rl-zoo3 evaluates policy_kwargs.
There, an --env that gymnasium does not know, or that these files have no entry for, exits with status 2.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of ``python -m sb3_pmac.zoo`` and ``sb3-pmac-zoo``.

    :param argv: ``[COMMAND, *ARGS]`` (default: ``sys.argv[1:]``)
    :return: exit status
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, args = argv[0].replace("-", "_"), argv[1:]
    if command == "hyperparams_dir":
        print(hyperparams_dir())
        return 0
    if command not in COMMANDS:
        print(f"Unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    missing = missing_zoo_module()  # (found without importing rl-zoo3, which patches gymnasium for the process)
    if missing is not None:  # first: the checks below need the extra's packages too (PyYAML)
        print(f"rl-zoo3 is not installed (no module {missing!r}); install the extra: pip install 'sb3-pmac[zoo]'",
              file=sys.stderr)  # fmt: skip
        return 1
    problem = (
        train_args_error(args)
        if command == "train"
        else agent_folder_error(args)
        if command in ("enjoy", "record_video")
        else None
    )
    if problem is not None:  # instead of rl-zoo3's traceback
        print(problem, file=sys.stderr)
        return 2
    try:
        commands = _commands()
    except ImportError as error:
        print(f"rl-zoo3 is not installed ({error}); install the extra: pip install 'sb3-pmac[zoo]'", file=sys.stderr)
        return 1
    import gymnasium as gym

    from sb3_pmac.env_presets import MUJOCO_EXTRA, mujoco_installed

    register()
    mask_saved_credentials()
    evaluate_kwargs_strings()
    evaluate_with_the_training_env_kwargs()
    allow_pickle = command == "train" and ALLOW_PICKLE_OPTION in args
    if command == "train":
        args = with_default_conf([arg for arg in args if arg != ALLOW_PICKLE_OPTION])
    saved_argv = sys.argv
    sys.argv = [f"sb3_pmac.zoo {command}", *args]  # the real values: rl-zoo3 connects with them
    try:
        videos = _videos_with_the_training_env_kwargs() if command == "record_video" else nullcontext()
        with masked_orig_argv(), _pickled_buffers_allowed(allow_pickle), videos:
            commands[command]()
    except gym.error.DependencyNotInstalled as error:
        if mujoco_installed():
            raise
        print(f"error: {error}\nMuJoCo is not installed; install sb3-pmac's MuJoCo extra: {MUJOCO_EXTRA}", file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
