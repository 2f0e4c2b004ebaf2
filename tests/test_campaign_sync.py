"""
``benchmarks/campaign.py sync``: the small files of the runs that have started in the campaign's checkout replace
the destination's, a file such a run has not written is removed (an earlier attempt's), runs not started there are
left alone.
"""

import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "campaign.py"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sync_replaces_a_restarted_run_and_leaves_others(campaign, tmp_path):
    destination = tmp_path / "checkout"
    target = destination / "results" / "campaign" / "Hopper-v4"
    # The destination holds a first attempt of PMAC seed 2 (with diagnostics) and a finished MBPO seed 0
    for name in ("run.json", "evaluations.csv", "diagnostics.csv", "progress.csv"):
        write(target / "pmac" / "seed_2" / name, f"first attempt {name}")
    write(target / "pmac" / "seed_2" / "machine.json", "by hand")
    write(target / "mbpo" / "seed_0" / "diagnostics.csv", "finished run's diagnostics")
    # The campaign's checkout: PMAC seed 2 started over, no diagnostics step reached yet; MBPO seed 0 not run here
    source = campaign.run_dir("pmac", 2)
    write(source / "run.json", json.dumps({"finished": False}))
    write(source / "evaluations.csv", "timesteps,mean_return\n5000,56\n")
    write(source / "progress.csv", "second attempt progress")

    campaign.sync(destination)

    run = target / "pmac" / "seed_2"
    assert (run / "evaluations.csv").read_text() == "timesteps,mean_return\n5000,56\n"
    assert (run / "progress.csv").read_text() == "second attempt progress"
    assert json.loads((run / "run.json").read_text()) == {"finished": False}
    assert not (run / "diagnostics.csv").exists()  # the first attempt's would be mixed into the report
    assert (run / "machine.json").read_text() == "by hand"  # not a run file: left alone
    assert (target / "mbpo" / "seed_0" / "diagnostics.csv").read_text() == "finished run's diagnostics"
    assert not (target / "mbpo" / "seed_1").exists()  # nothing is made for runs that did not start here


def test_sync_into_its_own_checkout_does_nothing(campaign, tmp_path):
    source = campaign.run_dir("pmac", 0)
    write(source / "run.json", "{}")
    own_checkout = campaign.OUT.parent.parent
    campaign.sync(own_checkout)
    assert (source / "run.json").read_text() == "{}"


def test_drive_runs_the_unfinished_jobs_in_order_and_calls_a_paused_run_again(campaign, monkeypatch):
    import os

    monkeypatch.setattr(campaign, "LOG_FILE", campaign.OUT / "driver.log")  # not the checkout's log
    monkeypatch.setattr(campaign, "SLOTS", 1)  # one worker: the calls come in the job order
    write(campaign.run_dir("pmac", 0) / "run.json", json.dumps({"finished": True}))
    write(campaign.run_dir("mbpo", 0) / "run.json", json.dumps({"finished": False}))
    exit_codes = {("mbpo", 0): [3, 3], ("sac_zoo", 0): [1]}  # paused twice then finishes; an error: the next job
    calls = []

    def call(cmd, stdout, stderr, env, cwd):
        algo, seed = cmd[cmd.index("--algo") + 1], int(cmd[cmd.index("--seed") + 1])
        calls.append((algo, seed, cmd))
        assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONPATH"].split(os.pathsep)[0] == str(campaign.ROOT)
        codes = exit_codes.get((algo, seed), [])
        return codes.pop(0) if codes else 0

    monkeypatch.setattr(campaign.subprocess, "call", call)
    campaign.drive()
    assert [(algo, seed) for algo, seed, _ in calls] == [
        ("mbpo", 0), ("mbpo", 0), ("mbpo", 0), ("sac_zoo", 0), ("sac_zoo", 1), ("sac_zoo", 2),
        ("pmac", 1), ("mbpo", 1), ("pmac", 2), ("mbpo", 2),
    ]  # fmt: skip
    for algo, _, cmd in calls:  # model diagnostics only for the model-based algorithms
        assert ("--diagnostics-freq" in cmd) == (algo != "sac_zoo") and "--max-seconds" in cmd
    assert "campaign: no job left" in (campaign.OUT / "driver.log").read_text()


def test_drive_runs_two_jobs_at_once(campaign, monkeypatch):
    import threading

    monkeypatch.setattr(campaign, "LOG_FILE", campaign.OUT / "driver.log")
    monkeypatch.setattr(campaign, "JOBS", campaign.JOBS[:4])
    campaign.OUT.mkdir(parents=True)
    barrier = threading.Barrier(2, timeout=10)
    done = []

    def call(cmd, **kwargs):
        barrier.wait()  # BrokenBarrierError (the job is not counted) unless two runs are in flight together
        done.append(cmd[cmd.index("--algo") + 1])
        return 0

    monkeypatch.setattr(campaign.subprocess, "call", call)
    campaign.drive()
    assert sorted(done) == sorted(algo for algo, _ in campaign.JOBS[:4])
