"""
``benchmarks/campaign_restore.py``: after a machine was not handed back, the finished runs' small files go into the new
campaign worktree (else the driver runs them again), and the unfinished runs' lost attempt leaves this checkout's
working tree (git keeps it) with a ``machine.json`` for the new attempt.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def restore_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("campaign_restore_under_test", BENCHMARKS / "campaign_restore.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def write_run(root: Path, algo: str, seed: int, finished: bool, commit: str = "abc123", diagnostics: bool = True) -> Path:
    folder = root / "results" / "campaign" / "Hopper-v4" / algo / f"seed_{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"commit": commit, "finished": finished}))
    for name in ("evaluations.csv", "progress.csv", "monitor.csv") + (("diagnostics.csv",) if diagnostics else ()):
        (folder / name).write_text(f"{algo} {seed} {name}")
    (folder / "machine.json").write_text('{"cpu": "the lost one"}')
    return folder


def test_finished_runs_are_copied_and_unfinished_ones_start_over(restore_module, tmp_path):
    checkout, worktree = tmp_path / "main", tmp_path / "campaign"
    finished = write_run(checkout, "pmac", 0, finished=True)
    sac = write_run(checkout, "sac_zoo", 1, finished=True, diagnostics=False)
    lost = write_run(checkout, "mbpo", 2, finished=False)
    done = restore_module.restore(checkout, worktree, cpu="Some CPU (family 6, model 1), 2 vCPU", started="now")
    copied = worktree / finished.relative_to(checkout)
    names = {"run.json", "evaluations.csv", "progress.csv", "monitor.csv", "diagnostics.csv"}
    assert {path.name for path in copied.iterdir()} == names  # the small files, not machine.json (it stays here)
    assert (copied / "evaluations.csv").read_text() == "pmac 0 evaluations.csv"
    assert not (worktree / sac.relative_to(checkout) / "diagnostics.csv").exists()
    # the lost attempt leaves the working tree: only the new machine.json is left, until the first sync
    assert [path.name for path in lost.iterdir()] == ["machine.json"]
    machine = json.loads((lost / "machine.json").read_text())
    assert machine["cpu"] == "Some CPU (family 6, model 1), 2 vCPU" and machine["started"] == "now"
    assert "started over" in machine["note"]
    assert not (worktree / lost.relative_to(checkout)).exists()  # the driver starts it from step 0
    assert done == [
        "pmac seed 0: finished, small files copied into the worktree",
        "sac_zoo seed 1: finished, small files copied into the worktree",
        "mbpo seed 2: unfinished, starts over (lost attempt's small files removed, machine.json)",
    ]


def test_the_campaign_commit_is_the_one_every_run_recorded(restore_module, tmp_path):
    write_run(tmp_path, "pmac", 0, finished=True, commit="fd46779")
    write_run(tmp_path, "mbpo", 2, finished=False, commit="fd46779")
    assert restore_module.campaign_commit(tmp_path) == "fd46779"
    write_run(tmp_path, "sac_zoo", 0, finished=True, commit="0000000")
    with pytest.raises(SystemExit, match="record 2 commits"):
        restore_module.campaign_commit(tmp_path)


def test_the_cpu_is_described_as_the_machine_files_give_it(restore_module):
    description = restore_module.cpu_description()
    assert description.endswith("vCPU") and "family" in description  # (Linux: /proc/cpuinfo)
