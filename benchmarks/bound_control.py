"""
How much of a run's model error is the bounded model training's? A control for the PMAC vs MBPO comparison.

The campaign trains both algorithms' models with the bounded trainer (a fixed budget per round). MBPO's uniform
selection spreads that budget over the whole history, PMAC's over recent policies, so the bound may cost MBPO more than
PMAC. This script takes a checkpoint of a run (agent + its replay buffer), measures the model diagnostics of the model
the run trained (``saved``), then retrains that model on the same buffer as MBPO's code trains every round
(``model_training="full"``: as many rows as the buffer holds, early stopping, warm-started from the saved model), once
with each selection (Algorithm 1's weights and uniform), and measures again on the same fresh transitions of the same
policy (same seed). The actor is never changed: only the model differs between rows. Each retraining stops after at
most ``--max-epochs`` epochs (100, the cap of ``model_replay.py``'s whole-buffer reference): warm-started from a
bounded model, early stopping alone had not ended after 365 epochs (74 000 gradient steps, ~45 min) on MBPO seed 1's
57 000 transitions.

    python benchmarks/bound_control.py --agent run/resume_57000.zip --buffer run/resume_57000_buffer.pkl \\
        --allow-pickle --env Hopper-v4 --label mbpo_seed1 --csv results/campaign/Hopper-v4/bound_control.csv
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
from collections.abc import Sequence

import gymnasium as gym
import torch as th

from sb3_pmac import PMAC
from sb3_pmac.buffer_files import load_buffers
from sb3_pmac.diagnostics import evaluate_model
from sb3_pmac.diagnostics.checkpoints import check_spaces, load_agent
from sb3_pmac.dynamics.model_trainer import ModelTrainingInfo
from sb3_pmac.env_presets import make_preset_env

COLUMNS = [
    "label",
    "num_timesteps",
    "config",
    "selection",
    "train_rows",
    "epochs",
    "grad_steps",
    "max_grad_steps",
    "train_s",
    "local_obs_mse",
    "local_reward_mse",
    "global_obs_mse",
    "global_reward_mse",
    "compounding_h10",
]
SELECTIONS = ("exponential", "uniform")


def _row(label: str, agent: PMAC, config: str, selection: str, diag: dict, info: ModelTrainingInfo | None) -> dict:
    """
    One CSV row. The saved model's row (``info`` None) gives the run's per-round bounds instead of a measured training:
    its training-set size (``train_rows``) and ``max_grad_steps``; a retraining's row gives what it did.
    """
    return {
        "label": label,
        "num_timesteps": agent.num_timesteps,
        "config": config,
        "selection": selection,
        "train_rows": info.n_train + info.n_holdout if info else agent.model_training_rows(),
        "epochs": info.epochs if info else "",
        "grad_steps": info.grad_steps if info else "",
        "max_grad_steps": "" if info or agent.model_trainer.max_grad_steps is None else agent.model_trainer.max_grad_steps,
        "train_s": round(info.seconds, 1) if info else "",
        **{key: diag[key] for key in ("local_obs_mse", "local_reward_mse", "global_obs_mse", "global_reward_mse")},
        "compounding_h10": diag["compounding_obs_mse_h10"],
    }


def control_rows(
    agent: PMAC,
    env: gym.Env,
    label: str,
    selections: Sequence[str] = SELECTIONS,
    seed: int = 0,
    verbose: int = 0,
    max_epochs: int | None = None,
) -> list[dict]:
    """
    The diagnostics of ``agent``'s model as saved, then of that model retrained on the agent's whole replay buffer
    (``model_training="full"``: early stopping, at most ``max_epochs``) with each selection in ``selections``, each
    from the saved model and trainer state. The agent is left with the saved model.

    :param agent: a PMAC or MBPO agent with its replay buffer
    :param env: evaluation env (raw observations), reset by every measurement
    :param label: name of the run in the rows
    :param selections: ``"exponential"`` (Algorithm 1's weights) and/or ``"uniform"`` (MBPO)
    :param seed: seed of the measurements (the same fresh transitions for every row)
    :param max_epochs: epochs at most per retraining (None: until early stopping only, as MBPO's code)
    :param verbose: the retrainings' verbosity (:class:`~sb3_pmac.dynamics.model_trainer.ModelTrainer`: 2, a line per epoch)
    :return: one row (the CSV's columns) per model
    """
    own = "exponential" if agent.adapt_model_training else "uniform"
    rows = [_row(label, agent, "saved", own, evaluate_model(agent, env, horizon=10, seed=seed), None)]
    saved = (agent.model_trainer, agent.model_training, agent.adapt_model_training)
    for selection in selections:
        trainer = copy.deepcopy(saved[0])  # with its model: the copies train, the saved trainer and model stay as saved
        trainer.max_grad_steps, trainer.max_epochs = None, max_epochs  # MBPO's code: None, until early stopping
        trainer.verbose = verbose
        agent.dynamics_model = trainer.model
        agent.model_trainer, agent.model_training = trainer, "full"
        agent.adapt_model_training = selection == "exponential"
        info = agent.train_dynamics_model()
        rows.append(_row(label, agent, "full", selection, evaluate_model(agent, env, horizon=10, seed=seed), info))
    agent.model_trainer, agent.model_training, agent.adapt_model_training = saved
    agent.dynamics_model = agent.model_trainer.model
    return rows


def load_inputs(agent_path: str, buffer_path: str, env_id: str, allow_pickle: bool) -> tuple[PMAC, gym.Env]:
    """
    The checkpoint's agent with its replay buffer, and the evaluation env; ``ValueError`` (one line, said before any
    retraining) for files that cannot be read, an agent of another algorithm (e.g. SAC), an env that cannot be made or
    does not fit the agent, or a buffer of another step than the agent's.
    """
    try:
        env = make_preset_env(env_id)
    except (gym.error.Error, TypeError) as error:
        raise ValueError(f"cannot make --env {env_id}: {error}") from None
    try:
        agent = load_agent(agent_path, device="cpu")
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"cannot load --agent {agent_path} as a PMAC or MBPO agent: {error}") from None
    check_spaces(agent, env, env_id)
    try:
        buffer = load_buffers(buffer_path, agent.observation_space, agent.action_space, allow_pickle=allow_pickle)[0]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"cannot load --buffer {buffer_path} for the agent: {error}") from None
    steps = buffer.n_written * buffer.n_envs
    if steps != agent.num_timesteps:
        raise ValueError(
            f"--buffer {buffer_path} holds {steps} steps and --agent {agent_path} was saved at {agent.num_timesteps}: "
            "pass the buffer saved with that checkpoint"
        )
    agent.replay_buffer = buffer
    return agent, env


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Command line: see the module's docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", required=True, help="saved agent zip (a run's checkpoint)")
    parser.add_argument("--buffer", required=True, help="its replay buffer file")
    parser.add_argument("--allow-pickle", action="store_true", help="read a pickled buffer file (trusted files only)")
    parser.add_argument("--env", required=True)
    parser.add_argument("--label", required=True, help="name of the run in the CSV")
    parser.add_argument("--csv", required=True, help="CSV file the rows are appended to")
    parser.add_argument("--seed", type=int, default=0, help="seed of the diagnostics (fresh transitions)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=100,
        help="epochs at most per retraining (0: until early stopping only, as MBPO's code; warm-started from a bounded "
        "model on ~60k rows that took more than 365 epochs). Default 100, the cap of model_replay.py's reference",
    )
    parser.add_argument("--verbose", type=int, default=1, help="2: a line per training epoch")
    parser.add_argument("--selections", nargs="+", default=list(SELECTIONS), choices=list(SELECTIONS))
    args = parser.parse_args(argv)
    if os.path.exists(args.csv):  # said before the retrainings (minutes each), not after
        with open(args.csv, newline="") as file:
            header = next(csv.reader(file), [])
        if header != COLUMNS:
            parser.error(f"{args.csv} has other columns than this script writes ({', '.join(COLUMNS)}); pass a new --csv")
    th.set_num_threads(args.threads)

    if args.max_epochs < 0:
        parser.error(f"--max-epochs must be 0 (no cap) or positive, got {args.max_epochs}")
    try:
        agent, env = load_inputs(args.agent, args.buffer, args.env, args.allow_pickle)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    rows = control_rows(agent, env, args.label, args.selections, args.seed, args.verbose, args.max_epochs or None)
    for row in rows:
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    new = not os.path.exists(args.csv)
    os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
    with open(args.csv, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
