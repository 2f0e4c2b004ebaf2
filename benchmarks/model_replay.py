"""
Replays the model trainings of a real run on its own data, with several model-training configurations side by side:
same data, same policy sequence, only the configuration differs. Two questions:

1. **Local vs global error, PMAC vs MBPO** (paper §3, Fig. 3): does a model trained on the policy mixture
   (``exponential``, Algorithm 1) have a smaller error on the current policy's data than one trained on uniform data
   (``uniform``, MBPO), and a larger error on the whole history?
2. **Bounded model training**: how small a training set and how few gradient steps per round keep the error of
   the model close to that of unbounded training (every stored transition, early stopping)?

    python benchmarks/collect_run_data.py --env Hopper-v4 --timesteps 52000 --out runs/hopper_sac_52k.npz
    python benchmarks/model_replay.py --data runs/hopper_sac_52k.npz --start 2000 --end 50000 --every 1000 \\
        --reference-every 4000 --configs pmac_ref=exponential:full:none pmac_auto_300=exponential:auto:300 \\
        --csv results/Hopper-v4/model_replay/pmac.csv

A configuration is ``name=selection:rows:steps[:flag...]``:

* ``selection``: ``exponential`` (Algorithm 1, ``--alpha``) or ``uniform`` (MBPO);
* ``rows``: training rows drawn per round with :func:`~sb3_pmac.buffers.draw_rows_per_version` (as
  ``PMAC.train_dynamics_model`` draws them): ``full`` (as many as the history holds: PMAC's
  ``model_training="full"``), ``auto`` (``PMAC``'s default: version length x (1 + alpha) / (1 - alpha)) or an int;
* ``steps``: gradient steps per round (``none``: early stopping only, at most ``--reference-max-epochs`` epochs);
* flags: ``bootstrap`` (every ensemble member trains on its own bootstrap resample of the rows), ``normalized``
  (``ProbabilisticEnsemble(normalize_targets=True)``: standardized targets).

At every ``--every`` env steps ``t`` in ``[start, end]`` each configuration trains its own ensemble (warm-started
from its previous round, as PMAC does) on rows drawn from the first ``t`` transitions; configurations with
``rows=full`` train only every ``--reference-every`` steps (they run to convergence, so the warm start matters less,
and they cost the most). After training, each is evaluated (elite-mean prediction of ``[next_obs - obs, reward]``,
raw units, MSE over all entries; ``local_rel``: the local MSE of each dimension over that dimension's variance in the
first ``t`` transitions, averaged over the dimensions, so that small-scale dimensions count alike) on

* ``local``: the next 250 real transitions ``[t, t + 250)``: fresh data of the policy that is about to use the model
  (never trained on);
* ``global``: ``--n-global`` transitions drawn uniformly from the first ``t`` positions (the whole history);

Prints one row per configuration: median local and global error, epochs, gradient steps and seconds per round,
and the ratio of its median local error to its selection's reference over the rounds both trained on.
``--csv`` writes one row per (round, configuration).
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th
from machine import cpu_model

from sb3_pmac.buffers import draw_rows_per_version
from sb3_pmac.dynamics import ModelTrainer, ProbabilisticEnsemble
from sb3_pmac.policy_mixture import PolicyMixture, bounded_train_size

KEYS = ("epochs", "grad_steps", "seconds", "local", "global", "local_rel", "n_rows", "distinct")
LOCAL_WINDOW = 250


@dataclass(frozen=True)
class Config:
    name: str
    selection: str
    rows: str  # "full", "auto" or an int as text
    steps: int | None
    bootstrap: bool = False
    normalize_targets: bool = False

    @property
    def is_reference(self) -> bool:
        return self.rows == "full"


def parse_config(text: str) -> Config:
    name, _, value = text.partition("=")
    parts = value.split(":")
    flags = set(parts[3:])
    if not name or len(parts) < 3 or parts[0] not in ("exponential", "uniform") or not flags <= {"bootstrap", "normalized"}:
        raise SystemExit(f"bad configuration {text!r}: expected name=selection:rows:steps[:bootstrap][:normalized]")
    if parts[1] not in ("full", "auto") and not (parts[1].isdigit() and int(parts[1]) > 0):
        raise SystemExit(f"bad rows {parts[1]!r} in {text!r}: full, auto or a positive number")
    if parts[2].lower() != "none" and not (parts[2].isdigit() and int(parts[2]) > 0):
        raise SystemExit(f"bad steps {parts[2]!r} in {text!r}: none or a positive number")
    steps = None if parts[2].lower() == "none" else int(parts[2])
    return Config(name, parts[0], parts[1], steps, "bootstrap" in flags, "normalized" in flags)


def parse_configs(texts: list[str]) -> list[Config]:
    """The configurations of ``--configs``; ``SystemExit`` for a bad one or a name given twice."""
    configs = [parse_config(text) for text in texts]
    names = [config.name for config in configs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SystemExit(f"configuration names given twice: {', '.join(twice)} (each name is a model and a CSV label)")
    return configs


@dataclass
class RunData:
    """The transitions of a run in collection order, with the policy version of each."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    versions: np.ndarray

    @classmethod
    def from_npz(cls, path: str) -> RunData:
        """The run data of ``path``; ``SystemExit`` with one line for a file that is missing or not run data."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    obs=data["observations"],
                    actions=data["actions"],
                    rewards=data["rewards"],
                    next_obs=data["next_observations"],
                    versions=data["versions"],
                )
        except (OSError, ValueError, KeyError) as error:
            raise SystemExit(f"error: --data {path}: not run data of benchmarks/collect_run_data.py ({error})") from None

    def targets(self, rows: np.ndarray | slice) -> np.ndarray:
        """``[next_obs - obs, reward]`` of ``rows``."""
        return np.concatenate([self.next_obs[rows] - self.obs[rows], self.rewards[rows, None]], axis=1)

    def error(self, model: ProbabilisticEnsemble, rows: np.ndarray | slice, scale: np.ndarray | None = None) -> float:
        """
        MSE of the elite-mean prediction of ``[next_obs - obs, reward]`` on ``rows`` (raw units; with ``scale``, each
        dimension's squared error divided by ``scale`` first).
        """
        with th.no_grad():
            mean, _ = model.predict(th.as_tensor(self.obs[rows]), th.as_tensor(self.actions[rows]))
        squared = (mean.mean(0).numpy() - self.targets(rows)) ** 2
        return float(np.mean(squared if scale is None else squared / scale))


def n_rows_of(config: Config, t: int, version_length: int, alpha: float) -> int:
    if config.rows == "full":
        return t
    if config.rows == "auto":
        return min(t, bounded_train_size(version_length, alpha, t))
    return int(config.rows)


def replay(data: RunData, configs: list[Config], args: argparse.Namespace, end: int) -> list[dict[str, float | str]]:
    """The rounds (Ctrl-C ends early with the rounds done); rows are appended to ``--csv`` as they come."""
    writer = None
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        csv_file = open(args.csv, "w", newline="")
        writer = csv.DictWriter(csv_file, fieldnames=["t", "config", *KEYS])
        writer.writeheader()
    models, trainers = {}, {}
    for config in configs:
        th.manual_seed(args.seed)  # every configuration starts from the same initial ensemble
        models[config.name] = ProbabilisticEnsemble(
            data.obs.shape[1], data.actions.shape[1], normalize_targets=config.normalize_targets
        )
        trainer_kwargs = dict(max_grad_steps=config.steps, bootstrap=config.bootstrap, seed=args.seed)
        trainer_kwargs["max_epochs"] = args.reference_max_epochs if config.steps is None else None
        trainers[config.name] = ModelTrainer(models[config.name], **trainer_kwargs)
    version_length = int(np.bincount(data.versions).max())
    rows_out: list[dict[str, float | str]] = []
    rng = np.random.default_rng(args.seed)
    try:
        for t in range(args.start, end + 1, args.every):
            held, firsts, counts = np.unique(data.versions[:t], return_index=True, return_counts=True)
            local = slice(t, t + LOCAL_WINDOW)
            global_rows = rng.integers(0, t, size=args.n_global)
            variance = np.maximum(data.targets(slice(0, t)).var(axis=0), 1e-12)  # of each target dimension so far
            probabilities = {}
            for mode in {config.selection for config in configs}:
                mixture = PolicyMixture(args.alpha, mode=mode)  # type: ignore[arg-type]
                probabilities[mode] = mixture.probabilities(held, counts)
            line = []
            for config in configs:
                if config.is_reference and (t - args.start) % args.reference_every != 0:
                    continue
                n_rows = n_rows_of(config, t, version_length, args.alpha)
                if config.is_reference and config.selection == "uniform":
                    picks = np.arange(t)  # exact MBPO: every stored transition once
                else:
                    chosen, offsets = draw_rows_per_version(probabilities[config.selection], counts, n_rows)
                    picks = firsts[chosen] + offsets
                info = trainers[config.name].train(
                    data.obs[picks], data.actions[picks], data.rewards[picks], data.next_obs[picks], sample_ids=picks
                )
                row = dict(
                    t=t,
                    config=config.name,
                    epochs=info.epochs,
                    grad_steps=info.grad_steps,
                    seconds=round(info.seconds, 3),
                    local=data.error(models[config.name], local),
                    **{"global": data.error(models[config.name], global_rows)},
                    local_rel=data.error(models[config.name], local, scale=variance),
                    n_rows=len(picks),
                    distinct=len(np.unique(picks)),
                )
                rows_out.append(row)
                if writer is not None:
                    writer.writerow(row)
                    csv_file.flush()
                line.append(
                    f"{config.name} {info.grad_steps} st local {row['local']:.4f} (rel {row['local_rel']:.4f}) "
                    f"global {row['global']:.4f}"
                )
            print(f"t={t}: " + ", ".join(line), flush=True)
    except KeyboardInterrupt:
        print("interrupted: summary of the rounds done")
    return rows_out


def _median_at(run: dict[int, dict[str, float | str]], key: str, steps: list[int]) -> float:
    return float(np.median([float(run[t][key]) for t in steps]))


def summary(rows: list[dict[str, float | str]], configs: list[Config]) -> None:
    by_config = {c.name: {int(float(r["t"])): r for r in rows if r["config"] == c.name} for c in configs}
    references = {c.selection: c.name for c in configs if c.is_reference}
    print(f"{'config':>18} {'rows':>6} {'steps':>6} {'rounds':>6} {'epochs':>7} {'grad steps':>10} {'s/round':>8} "
          f"{'med local':>10} {'med rel':>8} {'med global':>10} {'local vs ref':>12} {'global vs ref':>13}")  # fmt: skip
    for config in configs:
        mine = by_config[config.name]
        if not mine:
            continue
        # (a column added since a CSV was written, e.g. local_rel: NaN)
        values = {key: np.asarray([float(r.get(key) or "nan") for r in mine.values()]) for key in KEYS}
        ratio_local = ratio_global = float("nan")
        reference = references.get(config.selection)
        if reference is not None:
            common = sorted(set(mine) & set(by_config[reference]))
            if common:
                ref = by_config[reference]

                ratio_local = _median_at(mine, "local", common) / _median_at(ref, "local", common)
                ratio_global = _median_at(mine, "global", common) / _median_at(ref, "global", common)
        print(f"{config.name:>18} {config.rows:>6} {config.steps!s:>6} {len(mine):>6} {values['epochs'].mean():>7.1f} "
              f"{values['grad_steps'].mean():>10.0f} {values['seconds'].mean():>8.2f} {np.median(values['local']):>10.4f} "
              f"{np.median(values['local_rel']):>8.4f} "
              f"{np.median(values['global']):>10.4f} {ratio_local:>12.3f} {ratio_global:>13.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="run data (.npz) written by benchmarks/collect_run_data.py")
    parser.add_argument("--start", type=int, default=2000)
    parser.add_argument("--end", type=int, default=50000)
    parser.add_argument("--every", type=int, default=1000, help="env steps between the rounds of bounded configurations")
    parser.add_argument("--reference-every", type=int, default=4000, help="env steps between rounds of rows=full")
    parser.add_argument("--reference-max-epochs", type=int, default=100, help="epoch cap of steps=none configurations")
    parser.add_argument("--configs", nargs="+", default=["pmac_ref=exponential:full:none", "pmac=exponential:auto:300"])
    parser.add_argument("--n-global", type=int, default=5000)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", default=None, help="write one row per (round, configuration)")
    parser.add_argument(
        "--summary",
        nargs="+",
        default=None,
        metavar="CSV",
        help="only print the summary of existing CSVs (configurations compared at common steps)",
    )
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    configs = parse_configs(args.configs)

    if args.summary:
        rows: list[dict[str, float | str]] = []
        for path in args.summary:
            try:
                with open(path) as file:
                    rows += list(csv.DictReader(file))
            except OSError as error:
                raise SystemExit(f"error: --summary {path}: {error.strerror}") from None
        summary(rows, [c for c in configs if any(r.get("config") == c.name for r in rows)])
        return
    if args.data is None:
        parser.error("--data is required (or --summary to print the summary of existing CSVs)")
    for name in ("every", "reference_every", "n_global", "reference_max_epochs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if (args.reference_every % args.every) != 0:
        parser.error("--reference-every must be a multiple of --every")
    data = RunData.from_npz(args.data)
    end = min(args.end, len(data.obs) - LOCAL_WINDOW)
    if args.start < 1 or args.start > end:
        parser.error(
            f"no round between --start {args.start} and {end} (--end {args.end}, or the data's {len(data.obs)} "
            f"transitions less the {LOCAL_WINDOW} of the last round's local error)"
        )
    start_time = time.perf_counter()
    rows = replay(data, configs, args, end)
    print(f"\n{cpu_model()}, {args.threads} thread(s); rounds every {args.every} steps from {args.start} to {end} "
          f"(rows=full every {args.reference_every}); {time.perf_counter() - start_time:.0f} s")  # fmt: skip
    summary(rows, configs)


if __name__ == "__main__":
    main()
