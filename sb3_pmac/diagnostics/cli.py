"""
``python -m sb3_pmac.diagnostics``: the diagnostics of saved agents (:func:`~sb3_pmac.diagnostics.evaluate_checkpoints`)
as a table per agent and rows appended to a CSV file.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from sb3_pmac.diagnostics.checkpoints import ALGOS, evaluate_checkpoints
from sb3_pmac.diagnostics.metrics import DiagnosticsConfig
from sb3_pmac.diagnostics.schema import check_diagnostics_csv
from sb3_pmac.env_kwargs import parse_env_kwarg

EXAMPLES = r"""examples:
  python -m sb3_pmac.diagnostics run/agent_50000.zip --env Hopper-v4 --buffer run/final_buffer.npz --upto 50000 \
      --horizon 10 --csv diagnostics.csv --seed 0
  python -m sb3_pmac.diagnostics run/agent_*.zip --env Hopper-v4 --buffer run/final_buffer.npz --csv diagnostics.csv
  python -m sb3_pmac.diagnostics logs/pmac/Hopper-v4_1/rl_model_*_steps.zip --env Hopper-v4 \
      --buffer logs/pmac/Hopper-v4_1/replay_buffer.pkl   # rl-zoo3 run: an .npz despite the name (vecnormalize.pkl: auto)
"""


def _parse_upto(value: str) -> int | str:
    if value in ("auto", "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--upto must be an int, 'auto' or 'all', got {value!r}") from None


def _parse_env_kwarg(value: str) -> tuple[str, Any]:
    """``KEY:VALUE`` (rl-zoo3's form); the value read as a Python literal (``2.0``, ``True``, ``(1, 2)``), else as text."""
    try:
        return parse_env_kwarg(value, text_fallback=True)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line of ``python -m sb3_pmac.diagnostics``."""
    parser = argparse.ArgumentParser(
        prog="python -m sb3_pmac.diagnostics",
        description="Model diagnostics (local/global/compounding error, policy-mixture statistics) of saved agents.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = DiagnosticsConfig()  # one option per field, named after it (main builds the config from them)
    parser.add_argument("agents", nargs="+", metavar="AGENT_ZIP", help="saved agent(s); several: checkpoints of one run")
    parser.add_argument("--env", required=True, help="environment id (evaluated on make_preset_env(ENV))")
    parser.add_argument(
        "--env-kwargs",
        type=_parse_env_kwarg,
        nargs="+",
        default=[],
        metavar="KEY:VALUE",
        help="keyword arguments the training env was made with (rl-zoo3's env_kwargs), e.g. --env-kwargs g:2.0",
    )
    parser.add_argument("--buffer", default=None, help="replay buffer file (global error and mixture statistics)")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read a --buffer file that is a pickle (buffer files of earlier versions); reading a pickle executes "
        "the code it holds: only for files you trust",
    )
    parser.add_argument(
        "--upto",
        type=_parse_upto,
        default="auto",
        help="only buffer positions < UPTO; 'auto' (default): each agent's own step count, so that a checkpoint is "
        "measured on the data it had collected (a run continued with rl-zoo3's train -i is placed after the first run's "
        "data); 'all': the whole buffer (e.g. for a buffer that wrapped around)",
    )
    parser.add_argument(
        "--vecnormalize",
        default="auto",
        metavar="PATH|auto|none",
        help="VecNormalize statistics the policy sees observations through (agents trained with normalize: true), "
        "loaded frozen and without reward normalization as rl-zoo3's enjoy does; a pickle: only for files you trust. "
        "auto (default): the file found next to each agent (rl-zoo3's <agent folder>/<ENV>/vecnormalize.pkl, or SB3's "
        "<prefix>_vecnormalize_<steps>_steps.pkl checkpoint; printed when found), else raw observations. none: raw "
        "observations. Statistics of another step than the agent's (rl-zoo3 saves them at the end of a run) warn",
    )
    parser.add_argument("--horizon", type=int, default=None, help="compounding steps (default: max of the schedule)")
    parser.add_argument(
        "--csv", default=None, help="CSV file the rows are appended to (new, or a diagnostics CSV: others are refused)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=sorted(ALGOS), default=None, help="class to load with (default: as saved)")
    parser.add_argument("--n-local", type=int, default=defaults.n_local)
    parser.add_argument("--n-global", type=int, default=defaults.n_global)
    parser.add_argument("--n-trajectories", type=int, default=defaults.n_trajectories)
    parser.add_argument("--newest-k", type=int, nargs="+", default=list(defaults.newest_k))
    parser.add_argument("--model-prediction", choices=["mean", "sample"], default=defaults.model_prediction)
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """
    ``python -m sb3_pmac.diagnostics AGENT_ZIP [AGENT_ZIP ...] --env ENV_ID [--env-kwargs KEY:VALUE ...]
    [--buffer BUFFER_NPZ] [--allow-pickle]
    [--upto N|auto|all] [--vecnormalize PATH|auto|none] [--horizon H] [--csv out.csv] [--seed S] [--algo pmac|mbpo]``:
    print the diagnostics of each agent as a table and append them to the CSV (an existing file that is not a
    diagnostics CSV is refused, unchanged). An agent that does not fit ``--env``, a ``VecNormalize`` file that does not
    fit it, an ``--upto auto`` that cannot be told, an ``--env`` or ``--env-kwargs`` gymnasium cannot make, or a file
    that is missing or cannot be read (e.g. a folder as ``--csv``) end the command with the error's message.

    :param argv: command-line arguments (default: ``sys.argv[1:]``)
    :return: the rows
    """
    args = parse_args(argv)
    if args.csv is not None:
        try:
            check_diagnostics_csv(args.csv)
        except (ValueError, OSError) as error:  # not a diagnostics CSV, a folder, a file that cannot be read
            raise SystemExit(f"error: --csv {error}") from None
    upto = None if args.upto == "all" else args.upto
    # inputs that do not fit (a missing or unreadable file, an unknown --env or --env-kwargs it does not take,
    # --horizon 0, --upto beyond the buffer): the message, no traceback
    try:
        config = DiagnosticsConfig(
            **{field.name: getattr(args, field.name) for field in dataclasses.fields(DiagnosticsConfig)}
        )
        return evaluate_checkpoints(
            args.agents,
            args.env,
            args.buffer,
            args.csv,
            config,
            upto=upto,
            algo=args.algo,
            device=args.device,
            verbose=1,
            allow_pickle=args.allow_pickle,
            vecnormalize=args.vecnormalize,
            env_kwargs=dict(args.env_kwargs),
        )
    except (ValueError, OSError) as error:  # (DiagnosticsInputError is a ValueError)
        raise SystemExit(f"error: {error}") from None
