"""
Set the Hopper campaign up again on a machine that lost it (a machine not handed back between sessions has no campaign
worktree and no checkpoints: the unfinished runs start over, issue 14's rule).

    python benchmarks/campaign_restore.py                 # from the working checkout, after `make .venv/.installed-dev`
    .venv/bin/python ../campaign/benchmarks/campaign.py start

It adds the campaign's worktree at the commit the runs record in ``run.json`` (``git worktree add --detach ../campaign
<commit>``) unless it exists, copies the finished runs' small files into it (the driver would run them again
otherwise), and for each unfinished run whose files this checkout holds (the attempt lost with the machine): removes
the small files that the new attempt writes as it goes (``diagnostics.csv`` would otherwise keep the lost attempt's
rows until the first diagnostics step: the pinned ``campaign.py sync`` does not remove it; git history keeps the lost
attempt) and writes ``machine.json`` with this machine's CPU and the start time. Then commit, and say in
docs/results.md's campaign notes which attempt starts and where the lost one's files are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import ENV_ID, JOBS, SMALL_FILES
from machine import cpu_model


def cpu_description() -> str:
    """The CPU as the campaign's ``machine.json`` files give it: model name, family and model, vCPUs."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    family = f" (family {fields['cpu family']}, model {fields['model']})" if {"cpu family", "model"} <= fields.keys() else ""
    return f"{cpu_model()}{family}, {os.cpu_count()} vCPU"


def run_files(root: Path, algo: str, seed: int) -> Path:
    return root / "results" / "campaign" / ENV_ID / algo / f"seed_{seed}"


def read_run(folder: Path) -> dict:
    path = folder / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def campaign_commit(checkout: Path) -> str:
    """The commit every run of the campaign recorded (``run.json``'s ``commit``); they must agree."""
    commits = {read_run(run_files(checkout, algo, seed)).get("commit") for algo, seed in JOBS} - {None}
    if len(commits) != 1:
        raise SystemExit(f"the runs record {len(commits)} commits ({sorted(commits)}): expected one")
    return commits.pop()


def restore(checkout: Path, worktree: Path, cpu: str, started: str) -> list[str]:
    """
    Copy the finished runs' small files from ``checkout`` into ``worktree``; for each unfinished run with files in
    ``checkout``, remove its small files there and write its ``machine.json``. Returns what was done, a line each.
    """
    done = []
    for algo, seed in JOBS:
        source = run_files(checkout, algo, seed)
        run = read_run(source)
        if run.get("finished"):
            target = run_files(worktree, algo, seed)
            target.mkdir(parents=True, exist_ok=True)
            for name in SMALL_FILES:
                if (source / name).exists():
                    shutil.copyfile(source / name, target / name)
            done.append(f"{algo} seed {seed}: finished, small files copied into the worktree")
        elif run:
            for name in SMALL_FILES:
                (source / name).unlink(missing_ok=True)
            machine = {"cpu": cpu, "started": started, "note": "started over: the attempt before lost its checkpoints "
                       "with the machine; its small files are in git history (the last campaign sync commit)"}  # fmt: skip
            (source / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
            done.append(f"{algo} seed {seed}: unfinished, starts over (lost attempt's small files removed, machine.json)")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--worktree", type=Path, default=None, help="default: ../campaign beside the checkout")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    worktree = (args.worktree or checkout.parent / "campaign").resolve()
    if (worktree / "results" / "campaign" / "driver.pid").exists():
        raise SystemExit(f"{worktree} holds a campaign already (driver.pid): nothing to restore")
    if not worktree.exists():
        commit = campaign_commit(checkout)
        subprocess.run(["git", "-C", str(checkout), "worktree", "prune"], check=True)
        subprocess.run(["git", "-C", str(checkout), "worktree", "add", "--detach", str(worktree), commit], check=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for line in restore(checkout, worktree, cpu_description(), started):
        print(line)
    print(f"next: {checkout / '.venv/bin/python'} {worktree / 'benchmarks/campaign.py'} start; commit the changes here")


if __name__ == "__main__":
    main()
