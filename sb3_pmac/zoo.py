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
"""

import argparse
import importlib.metadata
import runpy
import site
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path

#: rl-zoo3 algorithm names added by :func:`register`
ZOO_ALGOS = ("pmac", "mbpo")
#: Where the hyperparameter files are installed by ``setup.py`` (``data_files``), relative to the install prefix
DATA_SUBDIR = Path("share", "sb3-pmac", "hyperparams")


def hyperparams_dir() -> Path:
    """
    The folder holding ``pmac.yml`` and ``mbpo.yml``.

    In a source checkout (editable install) it is ``hyperparams/`` at the repository top level; an installed wheel puts
    the files under ``<prefix>/share/sb3-pmac/hyperparams`` (found through the distribution's file list, so any install
    scheme works: virtualenv, ``--user``, ``--prefix``).

    :raises FileNotFoundError: when neither is found
    """
    source = Path(__file__).resolve().parent.parent / "hyperparams"
    candidates = [source]
    try:
        dist = importlib.metadata.distribution("sb3-pmac")
        for file in dist.files or []:
            if file.name == "pmac.yml" and "hyperparams" in file.parts:
                candidates.append(Path(str(dist.locate_file(file))).resolve().parent)
    except importlib.metadata.PackageNotFoundError:
        pass
    for prefix in (sys.prefix, sysconfig.get_path("data"), site.getuserbase()):
        candidates.append(Path(prefix) / DATA_SUBDIR)
    for candidate in candidates:
        if (candidate / "pmac.yml").is_file() and (candidate / "mbpo.yml").is_file():
            return candidate
    raise FileNotFoundError(
        "sb3-pmac's hyperparameter files (pmac.yml, mbpo.yml) were not found; looked in: "
        + ", ".join(str(c) for c in dict.fromkeys(candidates))
    )


def hyperparams_path(algo: str) -> Path:
    """The default hyperparameter file of ``algo`` (``"pmac"`` or ``"mbpo"``)."""
    if algo not in ZOO_ALGOS:
        raise ValueError(f"Unknown algo {algo!r}, expected one of {ZOO_ALGOS}")
    return hyperparams_dir() / f"{algo}.yml"


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


def with_default_conf(args: Sequence[str]) -> list[str]:
    """
    ``train`` arguments with ``--conf-file <pmac.yml|mbpo.yml>`` appended when the algo is ours and no ``-conf`` /
    ``--conf-file`` is given (parsed like rl-zoo3 does: ``--algo=pmac``, abbreviations, ...).
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", type=str, default=None)
    parser.add_argument("-conf", "--conf-file", type=str, default=None)
    try:
        known, _ = parser.parse_known_args(list(args))
    except (SystemExit, argparse.ArgumentError):
        return list(args)  # malformed: let rl-zoo3's own parser report it
    if known.algo in ZOO_ALGOS and known.conf_file is None:
        return [*args, "--conf-file", str(hyperparams_path(known.algo))]
    return list(args)


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
    try:
        commands = _commands()
    except ImportError as error:
        print(f"rl-zoo3 is not installed ({error}); install the extra: pip install 'sb3-pmac[zoo]'", file=sys.stderr)
        return 1
    register()
    if command == "train":
        args = with_default_conf(args)
    saved_argv = sys.argv
    sys.argv = [f"sb3_pmac.zoo {command}", *args]
    try:
        commands[command]()
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
