"""
Resumable learning-curve runs of PMAC, PMAC with the TV mixture (``pmac_tv``), MBPO and SB3's SAC, one (algorithm, env,
seed) per call.

    python benchmarks/learning_curves.py --algo pmac --env InvertedPendulum-v5 --seed 0 --timesteps 3000 \\
        --eval-freq 500 --out results

Each run writes ``<out>/<env>/<algo>/seed_<seed>/``:

* ``evaluations.csv``: ``timesteps, mean_return, std_return, wall_s`` (deterministic policy, ``--eval-episodes``
  episodes on a separate env every ``--eval-freq`` steps); this is what ``python -m sb3_pmac.plot curves`` reads;
* ``monitor.csv`` (training episodes, SB3 Monitor format) and ``progress.csv`` (SB3 logger, ``time/`` split included);
* ``agent_<timesteps>.zip`` at every evaluation (``--keep-checkpoints``) for offline diagnostics;
* ``run.json``: the settings, so that a resumed run refuses other settings.

``--max-seconds S`` stops after the first evaluation past ``S`` seconds, saving the agent and its replay buffer; the
next call with the same arguments resumes exactly there (exit code 3 means "not finished yet"). This is how runs
longer than one 10-minute command are made on a borrowed machine.

``--settings reduced`` (default) shrinks the per-step cost for CPU budgets and is labelled as such in ``run.json``:
fewer SAC updates per env step (``--gradient-steps``), a shorter warm-up, at most ``--model-max-epochs`` epochs per
model training. ``--settings paper`` keeps Table 2's values. SAC uses the same network sizes, warm-up and updates per
env step as PMAC/MBPO (same update-to-data ratio), without a model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from sb3_pmac import MBPO, PMAC
from sb3_pmac.env_presets import make_preset_env

ALGOS: dict[str, type[SAC]] = {"pmac": PMAC, "pmac_tv": PMAC, "mbpo": MBPO, "sac": SAC}
#: Constructor arguments that define an algorithm variant (``pmac_tv``: PDML's inverse-TV mixture)
VARIANT_KWARGS: dict[str, dict[str, Any]] = {"pmac_tv": {"mixture": "tv"}}
NOT_FINISHED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGOS), required=True)
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=3000)
    parser.add_argument("--eval-freq", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--out", default="results")
    parser.add_argument("--settings", choices=["reduced", "paper"], default="reduced")
    parser.add_argument("--gradient-steps", type=int, default=5, help="reduced settings: SAC updates per env step")
    parser.add_argument("--learning-starts", type=int, default=300, help="reduced settings: random warm-up steps")
    parser.add_argument("--model-max-epochs", type=int, default=10, help="reduced settings: epochs per model training")
    parser.add_argument("--rollout-batch-size", type=int, default=None, help="reduced settings: rollout starts")
    parser.add_argument("--net-arch", type=int, nargs="+", default=None, help="SAC hidden sizes (default 256 256)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-seconds", type=float, default=None, help="pause (resumable) after this much wall time")
    parser.add_argument("--keep-checkpoints", action="store_true", help="save the agent at every evaluation")
    return parser.parse_args(argv)


def agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(VARIANT_KWARGS.get(args.algo, {}))
    if args.settings == "reduced":
        kwargs.update(learning_starts=args.learning_starts, gradient_steps=args.gradient_steps)
        if args.algo != "sac":
            kwargs["model_trainer_kwargs"] = dict(max_epochs=args.model_max_epochs)
            if args.rollout_batch_size is not None:
                kwargs["rollout_batch_size"] = args.rollout_batch_size
    elif args.algo == "sac":
        kwargs.update(learning_starts=5000, gradient_steps=20)  # the paper's SAC side of Table 2
    if args.net_arch is not None:
        kwargs["policy_kwargs"] = dict(net_arch=list(args.net_arch))
    return kwargs


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["algo", "env", "seed", "timesteps", "eval_freq", "eval_episodes", "settings", "gradient_steps",
            "learning_starts", "model_max_epochs", "rollout_batch_size", "net_arch"]  # fmt: skip
    return {key: getattr(args, key) for key in keys}


def run(args: argparse.Namespace) -> int:
    th.set_num_threads(args.threads)
    gym.logger.min_level = 40
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    run_dir = Path(args.out) / args.env / args.algo / f"seed_{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_record(args)
    settings_file = run_dir / "run.json"
    resume_file, buffer_file = run_dir / "resume.zip", run_dir / "resume_buffer.pkl"
    if settings_file.exists():
        previous = json.loads(settings_file.read_text())
        previous_settings = {key: previous.get(key) for key in settings}
        if previous_settings != settings:
            raise SystemExit(f"{run_dir} holds a run with other settings: {previous_settings}")
        if previous.get("finished"):
            print(f"{run_dir}: already finished")
            return 0

    algo_class = ALGOS[args.algo]
    train_env = Monitor(make_preset_env(args.env), str(run_dir / "monitor.csv"), override_existing=not resume_file.exists())
    if resume_file.exists():
        model = algo_class.load(resume_file, env=train_env, device=args.device)
        model.load_replay_buffer(buffer_file)
        print(f"Resuming {run_dir} at step {model.num_timesteps}")
    else:
        kwargs = agent_kwargs(args)
        model = algo_class("MlpPolicy", train_env, seed=args.seed, device=args.device, **kwargs)
        settings_file.write_text(json.dumps({**settings, "agent_kwargs": kwargs, "finished": False}, indent=1))
        with open(run_dir / "evaluations.csv", "w", newline="") as file:
            csv.writer(file).writerow(["timesteps", "mean_return", "std_return", "wall_s"])
    model.set_logger(configure(str(run_dir), ["csv"]))
    eval_env = Monitor(make_preset_env(args.env))
    wall = _previous_wall(run_dir)
    start = time.perf_counter()

    while model.num_timesteps < args.timesteps:
        chunk = min(args.eval_freq - model.num_timesteps % args.eval_freq, args.timesteps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False, log_interval=10**9)
        model.dump_logs()  # one progress.csv row per evaluation (train/, rollout/, time/ keys)
        eval_env.reset(seed=args.seed + 10_000 + model.num_timesteps)
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
        elapsed = wall + time.perf_counter() - start
        with open(run_dir / "evaluations.csv", "a", newline="") as file:
            csv.writer(file).writerow([model.num_timesteps, f"{mean:.3f}", f"{std:.3f}", f"{elapsed:.1f}"])
        print(f"{args.algo} {args.env} seed {args.seed}: step {model.num_timesteps} return {mean:.1f} +/- {std:.1f} "
              f"({elapsed:.0f} s)", flush=True)  # fmt: skip
        if args.keep_checkpoints:
            model.save(run_dir / f"agent_{model.num_timesteps}")
        if (
            args.max_seconds is not None
            and time.perf_counter() - start > args.max_seconds
            and (model.num_timesteps < args.timesteps)
        ):
            model.save(resume_file)
            model.save_replay_buffer(buffer_file)
            print(f"Paused at step {model.num_timesteps}; run the same command again to resume")
            return NOT_FINISHED

    model.save(run_dir / "final_agent")
    model.save_replay_buffer(run_dir / "final_buffer.pkl")
    for path in (resume_file, buffer_file):
        if path.exists():
            os.remove(path)
    record = json.loads(settings_file.read_text())
    record.update(finished=True, wall_s=round(wall + time.perf_counter() - start, 1))
    if hasattr(model, "_timings"):
        record["time_split_s"] = {key: round(value, 1) for key, value in model._timings.items()}
    settings_file.write_text(json.dumps(record, indent=1))
    return 0


def _previous_wall(run_dir: Path) -> float:
    with open(run_dir / "evaluations.csv") as file:
        rows = list(csv.DictReader(file))
    return float(rows[-1]["wall_s"]) if rows else 0.0


if __name__ == "__main__":
    sys.exit(run(parse_args()))
