"""
``make demo``: train PMAC for a short budget, save it, reload it and evaluate it on a separate environment.

    python -m sb3_pmac.demo --env Hopper-v4 --timesteps 3000

The defaults keep the paper's algorithm (Algorithm 2 with Algorithm 1's mixture, model training every 250 steps,
7-member ensemble, 5% real data) but shrink the budget so that the run takes about a minute on 2 idle CPU cores: a
shorter random warm-up, fewer SAC updates per step and smaller rollout batches. Use the paper's values with
``--paper-settings`` (hours on a CPU).
"""

import argparse
import os
import sys
import time
import warnings

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_pmac import MBPO, PMAC
from sb3_pmac.env_presets import make_preset_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4", help="gymnasium env id")
    parser.add_argument("--algo", choices=["pmac", "mbpo"], default="pmac")
    parser.add_argument("--timesteps", type=int, default=3000, help="environment steps")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random warm-up steps (paper: 5000)")
    parser.add_argument("--gradient-steps", type=int, default=2, help="SAC updates per env step (paper: 20)")
    parser.add_argument("--rollout-batch-size", type=int, default=10_000, help="model rollout starts (paper: 100k)")
    # 20, not fewer: with 10 epochs on the 1000 warm-up transitions (about 40 gradient steps) the first model drifts
    # out of the data's range in about a fifth of its predictions (and PMAC warns)
    parser.add_argument("--model-max-epochs", type=int, default=20, help="bound on epochs per model training")
    parser.add_argument("--paper-settings", action="store_true", help="use the paper's values for all of the above")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--output", default="demo_output/pmac_demo", help="where to save the agent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-progress-bar", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    with warnings.catch_warnings():  # the filter below stays inside the demo (main is also called in-process)
        return _run(parse_args(argv))


def _run(args: argparse.Namespace) -> float:
    if args.threads > 0:
        th.set_num_threads(args.threads)
    algo_class = PMAC if args.algo == "pmac" else MBPO
    kwargs = {}
    if not args.paper_settings:
        kwargs = dict(
            learning_starts=args.learning_starts,
            gradient_steps=args.gradient_steps,
            rollout_batch_size=args.rollout_batch_size,
            model_trainer_kwargs=dict(max_epochs=args.model_max_epochs),
        )
    settings = "paper" if args.paper_settings else "demo"
    print(f"Training {algo_class.__name__} on {args.env} for {args.timesteps} steps ({settings} settings)")
    if args.env.endswith("-v4"):
        # v4 is the version the paper's comparisons (and the Hopper campaign) use: say so once instead of gymnasium's
        # "out of date" warning at every gym.make
        warnings.filterwarnings("ignore", message=r".*is out of date", category=DeprecationWarning)
        print(f"({args.env}: the version of the paper's comparisons; gymnasium's newer v5 works too, e.g. --env "
              f"{args.env[:-1]}5)")  # fmt: skip
    start = time.perf_counter()
    model = algo_class(args.env, verbose=0, seed=args.seed, **kwargs)
    model.learn(args.timesteps, progress_bar=not args.no_progress_bar)
    train_seconds = time.perf_counter() - start
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    model.save(args.output)
    del model

    loaded = algo_class.load(args.output, device="cpu")
    eval_env = Monitor(make_preset_env(args.env))  # a separate env instance (paper, Appendix D.1)
    eval_env.reset(seed=args.seed + 1000)
    mean_return, std_return = evaluate_policy(
        loaded, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True, return_episode_rewards=False
    )
    assert isinstance(mean_return, float) and isinstance(std_return, float)
    eval_env.close()
    print(f"Saved to {args.output}.zip; training took {train_seconds:.0f} s")
    print(f"Mean return of the reloaded agent over {args.eval_episodes} episodes: {mean_return:.1f} +/- {std_return:.1f}")
    return float(mean_return)


if __name__ == "__main__":
    try:
        main()
    except gym.error.DependencyNotInstalled as error:  # e.g. MuJoCo missing: the message says what to install
        sys.exit(f"error: {error}")
