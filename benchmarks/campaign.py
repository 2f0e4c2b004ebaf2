"""
The Hopper campaign of issue 14 (PMAC vs MBPO at the paper's settings, 100k steps, seeds 0-2, and SB3's SAC with
rl-zoo3's hyperparameters as the reference), run in the background across sessions.

    python benchmarks/campaign.py start     # resume every unfinished run, two at a time, nice 19, one thread each
    python benchmarks/campaign.py pause     # SIGSTOP the campaign (before a benchmark or the test suite)
    python benchmarks/campaign.py resume    # SIGCONT
    python benchmarks/campaign.py stop      # end it (each run resumes from its last pause at the next start)
    python benchmarks/campaign.py status    # where each run stands
    python benchmarks/campaign.py sync DEST # copy the small result files into DEST's results/campaign (to commit)

Run it from a separate checkout of the campaign's commit (a git worktree), so that the code the runs use does not
change while the package is worked on: every call of a run imports ``sb3_pmac`` from that checkout (``PYTHONPATH``).

    git worktree add --detach ../campaign <commit>
    .venv/bin/python ../campaign/benchmarks/campaign.py start

Each run is ``benchmarks/learning_curves.py`` with ``--max-seconds`` (a resumable pause about every 14 minutes), called
again until it finishes. Runs write to ``results/campaign/Hopper-v4/<algo>/seed_<seed>/``: the small files
(``evaluations.csv``, ``progress.csv``, ``diagnostics.csv``, ``monitor.csv``, ``run.json``) are committed, the pauses'
agents and buffers (``*.zip``, ``*.pkl``, ``*.npz``) are ignored by git.

The campaign's machine can change between sessions (its checkpoints are lost then, and the unfinished runs start
over): ``python benchmarks/campaign_restore.py`` sets the worktree up again (the finished runs' small files copied
into it, the lost attempts' files removed here, ``machine.json`` written). The runner records the machines in
``run.json`` (``machines``) since the eighth session; the Hopper campaign's runner (pinned at ``fd46779``) does not:
when one of its runs starts or starts over, its CPU goes into the committed copy of its folder,
``results/campaign/Hopper-v4/<algo>/seed_<seed>/machine.json`` (``{"cpu": ..., "started": ...}``, written by
``campaign_restore.py`` or by hand from ``lscpu``): the report gives it beside the wall times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "campaign"
ENV_ID = "Hopper-v4"
TIMESTEPS = 100_000
#: The order of the issue: seeds 0 of PMAC and MBPO first, the (cheap) SAC references next, then seeds 1 and 2.
JOBS: list[tuple[str, int]] = [
    ("pmac", 0), ("mbpo", 0), ("sac_zoo", 0), ("sac_zoo", 1), ("sac_zoo", 2),
    ("pmac", 1), ("mbpo", 1), ("pmac", 2), ("mbpo", 2),
]  # fmt: skip
SLOTS = 2
#: The files of a run that are committed (the pauses' agents and buffers are not)
SMALL_FILES = ("evaluations.csv", "progress.csv", "diagnostics.csv", "monitor.csv", "run.json")
PAUSE_EVERY_S = 840
PID_FILE = OUT / "driver.pid"
LOG_FILE = OUT / "driver.log"


def run_dir(algo: str, seed: int) -> Path:
    return OUT / ENV_ID / algo / f"seed_{seed}"


def command(algo: str, seed: int) -> list[str]:
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "learning_curves.py"),
        "--algo", algo, "--env", ENV_ID, "--seed", str(seed), "--timesteps", str(TIMESTEPS),
        "--eval-freq", "1000", "--eval-episodes", "10", "--settings", "paper", "--threads", "1",
        "--max-seconds", str(PAUSE_EVERY_S), "--out", str(OUT),
    ]  # fmt: skip
    if algo != "sac_zoo":
        cmd += ["--diagnostics-freq", "5000", "--diagnostics-horizon", "10"]
    return cmd


def finished(algo: str, seed: int) -> bool:
    path = run_dir(algo, seed) / "run.json"
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))


def log(message: str) -> None:
    with open(LOG_FILE, "a") as file:
        file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def drive() -> None:
    """Two workers take the unfinished jobs in order; each job is called again while it pauses (exit code 3)."""
    lock = threading.Lock()
    pending = [job for job in JOBS if not finished(*job)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)  # this checkout's code

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                algo, seed = pending.pop(0)
            while True:
                log(f"start {algo} seed {seed}")
                try:
                    with open(run_dir(algo, seed).parent / f"seed_{seed}.log", "a") as out:
                        rc = subprocess.call(command(algo, seed), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                except (OSError, subprocess.SubprocessError) as error:  # no fork, no log file: the worker goes on
                    log(f"{algo} seed {seed} could not run ({error!r}); left for the next start")
                    break
                log(f"{algo} seed {seed} exited with {rc}")
                if rc != 3:  # 0: finished; anything else: an error, logged, the next job goes on
                    break

    for algo, seed in pending:
        run_dir(algo, seed).mkdir(parents=True, exist_ok=True)
    threads = [threading.Thread(target=worker) for _ in range(SLOTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log("campaign: no job left")
    if PID_FILE.exists() and PID_FILE.read_text().strip() == str(os.getpid()):
        PID_FILE.unlink()  # ended: a later process with this pid is not the driver


def driver_pid() -> int | None:
    """
    The pid in the pid file if that process is this campaign's driver: a driver killed without removing its file
    (``stop``, a machine restarted) leaves a pid that another process may hold by now, and ``pause`` / ``stop`` would
    signal that process's group.
    """
    if not PID_FILE.exists():
        return None
    try:
        pid = int(PID_FILE.read_text())
    except ValueError:  # empty or cut short: no driver to signal
        return None
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None  # ended
    except OSError:  # no /proc (not Linux)
        arguments = [b""]
    if arguments == [b""]:  # no arguments to read (no /proc, or a process just started): whether that pid lives
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid
    script = os.fsencode(Path(__file__).resolve())  # this checkout's driver, not another checkout's
    is_driver = b"drive" in arguments and any(os.fsencode(Path(os.fsdecode(a)).resolve()) == script for a in arguments if a)
    return pid if is_driver else None


def status() -> None:
    for algo, seed in JOBS:
        path = run_dir(algo, seed) / "evaluations.csv"
        rows = []
        if path.exists():
            with open(path) as file:
                rows = list(csv.DictReader(file))
        last = rows[-1] if rows else None
        started = last is not None or (run_dir(algo, seed) / "run.json").exists()
        state = "finished" if finished(algo, seed) else ("running/paused" if started else "not started")
        where = "no evaluation yet" if started and last is None else ""
        if last is not None:
            hours = float(last["wall_s"]) / 3600
            where = f"step {last['timesteps']}, return {float(last['mean_return']):.0f}, {hours:.2f} h"
        print(f"{algo:8s} seed {seed}: {state:15s} {where}")
    pid = driver_pid()
    print(f"driver: {'pid ' + str(pid) if pid else 'not running'}")


def sync(destination: Path) -> None:
    """
    Copy every run's small files into ``destination/results/campaign`` (the checkout the results are committed in).

    A run that has started here is the run of record: a small file it has not written (yet) is removed from the
    destination, which otherwise would keep an earlier attempt's (a run started over on a new machine has no
    ``diagnostics.csv`` until its first diagnostics step, and the report would mix the two attempts). Runs not started
    here leave the destination's files as they are.
    """
    target_root = destination.resolve() / "results" / "campaign"
    if target_root == OUT.resolve():
        return
    for algo, seed in JOBS:
        if not (run_dir(algo, seed) / "run.json").exists():
            continue
        for name in SMALL_FILES:
            source = run_dir(algo, seed) / name
            target = target_root / source.relative_to(OUT)
            if source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            elif target.exists():
                target.unlink()
                print(f"removed {target}: the run here has not written it (an earlier attempt's)")
    print(f"copied the small files into {target_root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "pause", "resume", "stop", "status", "sync", "drive"])
    parser.add_argument("destination", nargs="?", default=None, help="sync: the checkout to copy the results into")
    args = parser.parse_args()
    action = args.action
    OUT.mkdir(parents=True, exist_ok=True)
    pid = driver_pid()
    if action == "drive":
        drive()
    elif action == "start":
        if pid is not None:
            raise SystemExit(f"the campaign runs already (pid {pid})")
        process = subprocess.Popen(
            ["nice", "-n", "19", sys.executable, __file__, "drive"],
            start_new_session=True,  # its own process group: pause/stop signal the driver and every run at once
            stdout=subprocess.DEVNULL,
            stderr=open(LOG_FILE, "a"),
            cwd=ROOT,
        )
        PID_FILE.write_text(str(process.pid))
        print(f"campaign started (pid {process.pid}); log {LOG_FILE}")
    elif action in ("pause", "resume", "stop"):
        if pid is None:
            raise SystemExit("the campaign is not running")
        sig = {"pause": signal.SIGSTOP, "resume": signal.SIGCONT, "stop": signal.SIGTERM}[action]
        try:
            if action == "stop":
                os.killpg(pid, signal.SIGCONT)
            os.killpg(pid, sig)
        except ProcessLookupError:  # it ended since
            PID_FILE.unlink(missing_ok=True)
            raise SystemExit("the campaign is not running (it ended just now)") from None
        if action == "stop":
            PID_FILE.unlink(missing_ok=True)
        print(f"{action}: sent to process group {pid}")
    elif action == "sync":
        if args.destination is None:
            raise SystemExit("sync needs the destination checkout")
        sync(Path(args.destination))
    else:
        status()


if __name__ == "__main__":
    main()
