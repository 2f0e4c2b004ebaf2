"""
Resumable learning-curve runs of PMAC, PMAC with the TV mixture (``pmac_tv``), MBPO and SB3's SAC, one (algorithm, env,
seed) per call.

    python benchmarks/learning_curves.py --algo pmac --env InvertedPendulum-v5 --seed 0 --timesteps 3000 \\
        --eval-freq 500 --out results

Each run writes ``<out>/<env>/<algo>/seed_<seed>/``:

* ``evaluations.csv``: ``timesteps, mean_return, std_return, wall_s`` (deterministic policy, ``--eval-episodes``
  episodes on a separate env every ``--eval-freq`` steps); this is what ``python -m sb3_pmac.plot curves`` reads;
* ``monitor.csv`` (training episodes, SB3 Monitor format) and ``progress.csv`` (SB3 logger, ``time/`` split included);
* ``agent_<timesteps>.zip`` at every evaluation (``--keep-checkpoints``) for offline diagnostics, and
  ``final_buffer.npz`` (PMAC/MBPO; ``final_buffer.pkl``, a pickle, for SAC) at the end;
* ``run.json``: the settings and the code's commit, so that a resumed run refuses other settings, and the machines
  the run went on (``machines``: CPU model and count, from which step; a new entry when a resume finds another).

``--max-seconds S`` stops after the first evaluation past ``S`` seconds, saving the agent and its replay buffer; the
next call with the same arguments resumes from that step (exit code 3 means "not finished yet"). This is how runs
longer than one 10-minute command are made on a borrowed machine. The resume is bit for bit the uninterrupted run: the
pause also saves the training env's state (every wrapper's attributes, MuJoCo's simulator data, the episode in
progress) and the random generators (``resume_<step>_env.pkl``, a pickle the runner reads back: only run folders you
trust), and the next call continues that episode (an env with an attribute that cannot be pickled, e.g. a lambda,
gets a warning and the earlier kind of pause). (Pauses of earlier versions of the runner have no such file: their
resume makes the env anew and resets it, re-seeded with ``--seed``, cutting the episode in progress, and SAC restarts its
random generators.) A run killed between pauses repeats the lost steps: the rows it had written past the pause are removed
from ``evaluations.csv``, ``progress.csv``, ``diagnostics.csv`` and ``monitor.csv`` (the episodes ended after the
pause) when it resumes. The agent and buffer of a pause are written under new names and only then made current
(``resume.json`` is replaced atomically), so a run killed while saving resumes from the previous pause;
``progress.csv`` keeps the rows of every call.

``--settings reduced`` (default) shrinks the per-step cost for CPU budgets and is labelled as such in ``run.json``:
fewer SAC updates per env step (``--gradient-steps``), a shorter warm-up, at most ``--model-max-epochs`` epochs per
model training, and SB3's learned entropy coefficient (``ent_coef="auto"``, the class default until 0.2 replaced it,
so that the reduced runs of docs/results.md reproduce).
``--settings paper`` refuses those options and keeps Table 2's values and the SAC of the paper's base code
(mbpo_pytorch: a fixed entropy coefficient 0.2); ``sac`` then uses the same network sizes, warm-up and updates per
env step as PMAC/MBPO (same update-to-data ratio) without a model. ``sac_zoo`` is SB3's SAC with the installed
rl-zoo3's hyperparameters for the env (Hopper-v4: SB3's defaults, 1 update per step, 10000 warm-up steps), the usual
SB3 reference.

``--diagnostics-freq N`` (PMAC/MBPO) appends :class:`~sb3_pmac.diagnostics.ModelDiagnosticsCallback` rows (local,
global and compounding model error up to ``--diagnostics-horizon``) to ``diagnostics.csv`` every ``N`` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on the path)
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor

from sb3_pmac import MBPO, PMAC
from sb3_pmac.env_presets import make_preset_env
from sb3_pmac.random_state import get_global_rng_states, set_global_rng_states

ALGOS: dict[str, type[SAC]] = {"pmac": PMAC, "pmac_tv": PMAC, "mbpo": MBPO, "sac": SAC, "sac_zoo": SAC}
#: Constructor arguments that define an algorithm variant (``pmac_tv``: PDML's inverse-TV mixture)
VARIANT_KWARGS: dict[str, dict[str, Any]] = {"pmac_tv": {"mixture": "tv"}}
NOT_FINISHED = 3
#: ``--settings paper``: the SAC of the paper's base code (mbpo_pytorch: fixed entropy coefficient 0.2, no entropy
#: tuning; its learning rate 3e-4, tau 0.005, gamma 0.99, target update every step, 256x256 are SB3's defaults too)
PAPER_SAC_KWARGS: dict[str, Any] = {"ent_coef": 0.2}
#: The options of ``--settings reduced`` (refused with ``--settings paper``, not recorded in its ``run.json``)
REDUCED_ONLY = ("gradient_steps", "learning_starts", "model_max_epochs", "rollout_batch_size", "model_train_freq")
#: The keys of ``run.json`` that define a run (a resumed run must have the same)
SETTINGS_KEYS = ("algo", "env", "seed", "timesteps", "eval_freq", "eval_episodes", "settings", "gradient_steps",
                 "learning_starts", "model_max_epochs", "rollout_batch_size", "net_arch", "diagnostics_freq",
                 "diagnostics_horizon", "model_train_freq")  # fmt: skip
#: ... and their values when not given
REDUCED_DEFAULTS: dict[str, int] = {"gradient_steps": 5, "learning_starts": 300, "model_max_epochs": 10}


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
    parser.add_argument("--gradient-steps", type=int, default=None, help="reduced settings: SAC updates per env step (5)")
    parser.add_argument("--learning-starts", type=int, default=None, help="reduced settings: random warm-up steps (300)")
    parser.add_argument("--model-max-epochs", type=int, default=None, help="reduced settings: epochs per model training (10)")
    parser.add_argument("--rollout-batch-size", type=int, default=None, help="reduced settings: rollout starts")
    parser.add_argument("--model-train-freq", type=int, default=None, help="reduced settings: env steps per model step")
    parser.add_argument("--net-arch", type=int, nargs="+", default=None, help="SAC hidden sizes (default 256 256)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-seconds", type=float, default=None, help="pause (resumable) after this much wall time")
    parser.add_argument("--keep-checkpoints", action="store_true", help="save the agent at every evaluation")
    parser.add_argument("--diagnostics-freq", type=int, default=0, help="PMAC/MBPO: model diagnostics every N steps")
    parser.add_argument("--diagnostics-horizon", type=int, default=10, help="compounding-error horizon")
    args = parser.parse_args(argv)
    if args.diagnostics_freq > 0 and not issubclass(ALGOS[args.algo], PMAC):
        parser.error(f"--diagnostics-freq: model diagnostics need a dynamics model (pmac, pmac_tv, mbpo), not {args.algo}")
    given = [name for name in REDUCED_ONLY if getattr(args, name) is not None]
    if args.settings == "paper" and given:
        parser.error(f"{', '.join(_option(name) for name in given)}: reduced settings only (--settings paper keeps Table 2)")
    for name, value in REDUCED_DEFAULTS.items():
        if args.settings == "reduced" and getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.algo == "sac_zoo":
        return zoo_sac_kwargs(args.env)
    kwargs: dict[str, Any] = dict(VARIANT_KWARGS.get(args.algo, {}))
    if args.settings == "reduced":
        kwargs.update(learning_starts=args.learning_starts, gradient_steps=args.gradient_steps)
        if args.algo != "sac":
            kwargs["model_trainer_kwargs"] = dict(max_epochs=args.model_max_epochs)
            kwargs["ent_coef"] = "auto"  # SB3's learned coefficient, as the reduced runs of docs/results.md used
            if args.rollout_batch_size is not None:
                kwargs["rollout_batch_size"] = args.rollout_batch_size
            if args.model_train_freq is not None:
                kwargs["model_train_freq"] = args.model_train_freq
    elif args.algo == "sac":
        # the paper's SAC side of Table 2, with the base code's fixed entropy coefficient as PMAC/MBPO get it
        kwargs.update(learning_starts=5000, gradient_steps=20, **PAPER_SAC_KWARGS)
    else:
        kwargs.update(PAPER_SAC_KWARGS)
    if args.net_arch is not None:
        kwargs["policy_kwargs"] = dict(net_arch=list(args.net_arch))
    return kwargs


def zoo_sac_kwargs(env_id: str) -> dict[str, Any]:
    """``sac_zoo``: the SAC hyperparameters of the installed rl-zoo3 for ``env_id`` (Hopper-v4: learning_starts 10000)."""
    import importlib.resources

    import yaml

    text = (importlib.resources.files("rl_zoo3") / "hyperparams" / "sac.yml").read_text()
    entries = yaml.safe_load(text)
    if env_id not in entries:
        raise SystemExit(f"rl-zoo3's sac.yml has no entry for {env_id}: sac_zoo needs an env rl-zoo3 tuned (e.g. Hopper-v4)")
    entry = dict(entries[env_id])
    for key in ("n_timesteps", "policy", "normalize", "env_wrapper", "frame_stack", "callback"):
        entry.pop(key, None)
    if isinstance(entry.get("policy_kwargs"), str):  # a Python expression in rl-zoo3's files: not evaluated here
        raise SystemExit(f"rl-zoo3's SAC entry for {env_id} has policy_kwargs {entry['policy_kwargs']!r}: not supported")
    return entry


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define a run (``run.json``): a paper run has no reduced-settings options."""
    keys = [key for key in SETTINGS_KEYS if key != "model_train_freq"]
    if getattr(args, "model_train_freq", None) is not None:  # recorded only when set: earlier runs resume unchanged
        keys.append("model_train_freq")
    if args.settings == "paper":
        keys = [key for key in keys if key not in REDUCED_ONLY]
    return {key: getattr(args, key) for key in keys}


def settings_differences(recorded: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """
    How a run's ``run.json`` (``recorded``) and this call's settings differ, one ``key: recorded (this call: value)``
    each. Keys absent on one side count as ``None`` (``model_train_freq`` is recorded only when set); the
    reduced-settings options that earlier versions recorded for paper runs (the unused defaults) are not compared.
    """
    keys = dict.fromkeys([*settings, *(key for key in recorded if key in SETTINGS_KEYS)])
    if settings.get("settings") == "paper" and recorded.get("settings") == "paper":
        keys = {key: None for key in keys if key not in REDUCED_ONLY}
    return [f"{key}: {recorded.get(key)!r} (this call: {settings.get(key)!r})" for key in keys
            if recorded.get(key) != settings.get(key)]  # fmt: skip


def code_commit() -> str:
    """The commit of the code that runs (``+dirty`` when the working tree has changes), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (written next to it as it is, line endings included, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, newline="")
    os.replace(tmp, path)


def write_csv_atomically(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` by a CSV of ``rows`` under the header ``columns`` (:func:`write_atomically`)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


class AppendingCSV(KVWriter):
    """SB3 logger output that appends one row per dump to a CSV kept across calls (the header grows with new keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        row = {key: value for key, value in key_values.items() if "csv" not in (key_excluded.get(key) or ())}
        rows, columns = [], []
        if self.path.exists():
            with open(self.path, newline="") as file:
                reader = csv.DictReader(file)
                columns, rows = list(reader.fieldnames or []), list(reader)
        columns += [key for key in row if key not in columns]
        rows.append({key: "" if value is None else value for key, value in row.items()})
        write_csv_atomically(self.path, columns, rows)


def check_args(args: argparse.Namespace) -> None:
    """Refuse budgets the loop cannot run (before anything is written into the run's folder)."""
    for name in ("timesteps", "eval_freq", "eval_episodes"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    th.set_num_threads(args.threads)
    gym.logger.min_level = 40
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    run_dir = Path(args.out) / args.env / args.algo / f"seed_{args.seed}"
    with _removed_if_the_start_fails(run_dir):
        settings = settings_record(args)
        settings_file = run_dir / "run.json"
        pointer_file = run_dir / "resume.json"
        if settings_file.exists():
            previous = json.loads(settings_file.read_text())
            differences = settings_differences(previous, settings)
            if differences:
                raise SystemExit(f"{run_dir} holds a run with other settings: {'; '.join(differences)}")
            if previous.get("finished"):
                print(f"{run_dir}: already finished")
                return 0

        algo_class = ALGOS[args.algo]
        resume = json.loads(pointer_file.read_text()) if pointer_file.exists() else None
        if resume is not None and "monitor_rows" in resume:  # (pauses of earlier versions did not count them)
            _keep_monitor_rows(run_dir / "monitor.csv", resume["monitor_rows"])
        train_env = Monitor(make_preset_env(args.env), str(run_dir / "monitor.csv"), override_existing=resume is None)
        if resume is not None:
            model = resume_pause(algo_class, run_dir, resume, train_env, args.device)
            for name, column in STEP_COLUMNS.items():  # the rows of a call killed after this pause: its steps are redone
                _drop_rows_after(run_dir / name, column, model.num_timesteps)
            print(f"Resuming {run_dir} at step {model.num_timesteps}")
        else:
            for name in STEP_COLUMNS:  # a call killed before its first pause: the run starts over
                (run_dir / name).unlink(missing_ok=True)
            kwargs = agent_kwargs(args)
            model = algo_class("MlpPolicy", train_env, seed=args.seed, device=args.device, **kwargs)
            record = {**settings, "agent_kwargs": kwargs, "commit": code_commit(), "finished": False}
            write_atomically(settings_file, json.dumps(record, indent=1))
            with open(run_dir / "evaluations.csv", "w", newline="") as file:
                csv.writer(file).writerow(["timesteps", "mean_return", "std_return", "wall_s"])
        record_machine(settings_file, model.num_timesteps)
    model.set_logger(Logger(folder=str(run_dir), output_formats=[AppendingCSV(run_dir / "progress.csv")]))
    eval_env = Monitor(make_preset_env(args.env))
    callback = None
    if args.diagnostics_freq > 0 and isinstance(model, PMAC):
        from sb3_pmac.diagnostics import ModelDiagnosticsCallback

        callback = ModelDiagnosticsCallback(
            make_preset_env(args.env),
            eval_freq=args.diagnostics_freq,
            csv_path=run_dir / "diagnostics.csv",
            horizon=args.diagnostics_horizon,
            seed=args.seed,
        )
    wall = _previous_wall(run_dir)
    start = time.perf_counter()

    while model.num_timesteps < args.timesteps:
        chunk = min(args.eval_freq - model.num_timesteps % args.eval_freq, args.timesteps - model.num_timesteps)
        model.learn(chunk, callback=callback, reset_num_timesteps=False, log_interval=10**9)
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
            write_pause(run_dir, train_env, model)
            print(f"Paused at step {model.num_timesteps}; run the same command again to resume")
            return NOT_FINISHED

    model.save(run_dir / "final_agent")
    model.save_replay_buffer(run_dir / f"final_buffer{buffer_suffix(model)}")
    record = json.loads(settings_file.read_text())
    record.update(finished=True, wall_s=round(wall + time.perf_counter() - start, 1), final_commit=code_commit())
    if hasattr(model, "_timings"):
        record["time_split_s"] = {key: round(value, 1) for key, value in model._timings.items()}
    write_atomically(settings_file, json.dumps(record, indent=1))  # finished first: a kill below cannot restart it
    if pointer_file.exists():
        os.remove(pointer_file)
    _remove_other_pauses(run_dir, keep=None)
    return 0


@contextlib.contextmanager
def _removed_if_the_start_fails(run_dir: Path) -> Iterator[None]:
    """
    Make ``run_dir`` for the block; if the block fails before the run's ``run.json`` exists (an unknown env id, agent
    options the class refuses), remove the folders it made, so that a typo leaves no empty run behind.
    """
    made = next((path for path in reversed([run_dir, *run_dir.parents]) if not path.exists()), None)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if made is not None and not (run_dir / "run.json").exists():
            shutil.rmtree(made, ignore_errors=True)
        raise


def record_machine(settings_file: Path, step: int) -> None:
    """Add this machine to ``run.json``'s ``machines`` when the run starts, or resumes on another machine."""
    record = json.loads(settings_file.read_text())
    machine = {"cpu": cpu_model(), "cpus": os.cpu_count()}
    machines = record.setdefault("machines", [])
    if not machines or {key: machines[-1].get(key) for key in machine} != machine:
        machines.append({**machine, "from_step": step, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
        write_atomically(settings_file, json.dumps(record, indent=1))


def write_pause(run_dir: Path, train_env: gym.Env, model: SAC) -> None:
    """Save agent, buffers and run state under new names, then make them current (``resume.json``, replaced atomically)."""
    run_state = run_state_bytes(train_env, model)
    pause = {
        "agent": f"resume_{model.num_timesteps}.zip",
        "buffer": f"resume_{model.num_timesteps}_buffer{buffer_suffix(model)}",
        "env_state": f"resume_{model.num_timesteps}_env.pkl",
        "monitor_rows": _monitor_rows(run_dir / "monitor.csv"),  # the episodes ended before the pause
    }
    model.save(run_dir / pause["agent"])
    model.save_replay_buffer(run_dir / pause["buffer"])
    if run_state is None:
        del pause["env_state"]
    else:
        (run_dir / pause["env_state"]).write_bytes(run_state)  # (current only once resume.json names it)
    write_atomically(run_dir / "resume.json", json.dumps(pause))  # the new files become current only now
    _remove_other_pauses(run_dir, keep=pause)


def resume_pause(algo_class: type[SAC], run_dir: Path, pause: dict[str, Any], train_env: gym.Env, device: str) -> SAC:
    """The agent of a pause with its buffers, on ``train_env`` put back in its state at the pause (when saved)."""
    load_kwargs: dict[str, Any] = {"restore_random_state": True} if issubclass(algo_class, PMAC) else {}
    if "env_state" in pause:  # the env continues where the pause left it: no reset
        load_kwargs["force_reset"] = False
    model = algo_class.load(run_dir / pause["agent"], env=train_env, device=device, **load_kwargs)
    load_pause_buffer(model, run_dir / pause["buffer"])
    if "env_state" in pause:
        restore_run_state(run_dir / pause["env_state"], train_env, model)
    return model


def buffer_suffix(model: SAC) -> str:
    """PMAC/MBPO write their buffers as ``.npz`` (read without pickle); SB3's SAC pickles them (``.pkl``)."""
    return ".npz" if isinstance(model, PMAC) else ".pkl"


def load_pause_buffer(model: SAC, path: Path) -> None:
    """
    Load a pause's replay buffer. A PMAC/MBPO pause written as ``.pkl`` by an earlier version of this runner is a
    pickle: read with ``allow_pickle=True``, as this runner's own file (SB3's SAC always reads pickles).
    """
    if isinstance(model, PMAC):
        model.load_replay_buffer(path, allow_pickle=path.suffix == ".pkl")
    else:
        model.load_replay_buffer(path)


def _remove_other_pauses(run_dir: Path, keep: dict[str, str] | None) -> None:
    keep_names = set(keep.values()) if keep else set()
    buffers = [path for suffix in (".npz", ".pkl") for path in run_dir.glob(f"resume_*_buffer{suffix}")]
    for path in [*run_dir.glob("resume_*.zip"), *buffers, *run_dir.glob("resume_*_env.pkl"), *run_dir.glob("*.tmp")]:
        if path.name not in keep_names:
            os.remove(path)


#: Attributes of the env's layers that are not state: the next layer, files, the simulator's model (constant; its data is
#: state), renderers, specs, spaces (the agent samples from its own action space, saved with it) and constructor records
_NOT_ENV_STATE = {"env", "results_writer", "model", "mujoco_renderer", "spec", "_cached_spec", "_ezpickle_args",
                  "_ezpickle_kwargs", "_action_space", "_observation_space", "action_space", "observation_space",
                  "_metadata", "metadata"}  # fmt: skip


def env_layers(env: gym.Env) -> list[gym.Env]:
    """The wrappers of ``env`` from the outermost, then the env itself."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def run_state_bytes(env: gym.Env, model: SAC) -> bytes | None:
    """
    What a pause needs besides agent and buffer to go on bit for bit, pickled: the state of every layer of the training
    env (its attributes, MuJoCo's ``MjData`` whole) and the random generators (the process-wide ones and the agent's
    action space's, which SB3's ``SAC.load`` re-seeds). One pickle, so that an object two layers share (a wrapper
    holding the env's generator) is shared again when restored. ``None``, with a warning, when an attribute cannot be
    pickled (a lambda): that pause resumes as earlier pauses did, with the env made anew and reset.
    """
    layers = [
        (type(layer).__name__, {key: value for key, value in vars(layer).items() if key not in _NOT_ENV_STATE})
        for layer in env_layers(env)
    ]
    run_state = {
        "layers": layers,
        "rng": get_global_rng_states(model.device),
        "action_space_rng": model.action_space.np_random,
    }
    try:
        return pickle.dumps(run_state)
    except Exception as error:
        culprits = [f"{name}.{key}" for name, state in layers for key, value in state.items() if not _picklable(value)]
        warnings.warn(
            f"{', '.join(culprits) or 'the run state'} of the training env cannot be saved ({error}): this pause resumes "
            "with the env made anew and reset, not bit for bit as the uninterrupted run",
            UserWarning,
            stacklevel=2,
        )
        return None


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def restore_run_state(path: Path, env: gym.Env, model: SAC) -> None:
    """Put the training env (made anew, not reset) and the generators back as :func:`run_state_bytes` saved them."""
    with open(path, "rb") as file:
        run_state = pickle.load(file)  # the runner's own file (see the module's docstring)
    layers = env_layers(env)
    names = [type(layer).__name__ for layer in layers]
    if names != [name for name, _ in run_state["layers"]]:
        raise SystemExit(f"{path}: saved for an env of layers {[n for n, _ in run_state['layers']]}, this one has {names}")
    for layer, (_, state) in zip(layers, run_state["layers"], strict=True):
        for key, value in state.items():
            if type(value).__name__ == "MjData":
                import mujoco

                mujoco.mj_copyData(getattr(layer, key), layer.model, value)  # the renderer keeps its data object
            else:
                setattr(layer, key, value)
    set_global_rng_states(run_state["rng"], model.device)
    model.action_space._np_random = run_state["action_space_rng"]


#: The run's CSV files with a step column (``monitor.csv`` has none: the pause counts its rows, see
#: :func:`_keep_monitor_rows`)
STEP_COLUMNS = {"evaluations.csv": "timesteps", "progress.csv": "time/total_timesteps", "diagnostics.csv": "timesteps"}


def _drop_rows_after(path: Path, column: str, step: int) -> None:
    """Remove the rows of ``path`` whose ``column`` is past ``step`` (the file is replaced atomically when it changes)."""
    if not path.exists():
        return
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        columns, rows = list(reader.fieldnames or []), list(reader)
    kept = [row for row in rows if not row.get(column) or float(row[column]) <= step]
    if len(kept) < len(rows):
        write_csv_atomically(path, columns, kept)


#: A Monitor file's lines before its episodes: the JSON line and the CSV header
MONITOR_HEADER_LINES = 2


def _monitor_rows(path: Path) -> int:
    """The episodes in a Monitor file (SB3 flushes each one)."""
    with open(path) as file:
        return max(sum(1 for _ in file) - MONITOR_HEADER_LINES, 0)


def _keep_monitor_rows(path: Path, rows: int) -> None:
    """Keep the first ``rows`` episodes of a Monitor file: those of a call killed after the pause are redone."""
    if not path.exists():
        return
    with open(path) as file:
        lines = file.readlines()
    if len(lines) > rows + MONITOR_HEADER_LINES:
        write_atomically(path, "".join(lines[: rows + MONITOR_HEADER_LINES]))


def _previous_wall(run_dir: Path) -> float:
    with open(run_dir / "evaluations.csv") as file:
        rows = list(csv.DictReader(file))
    return float(rows[-1]["wall_s"]) if rows else 0.0


if __name__ == "__main__":
    sys.exit(run(parse_args()))
