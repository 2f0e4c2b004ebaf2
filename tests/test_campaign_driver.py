"""
``benchmarks/campaign.py`` beyond ``sync``: the runs' command line (the settings docs/results.md gives), the job order,
the environment and files of each call, ``status``, and ``start`` / ``pause`` / ``resume`` / ``stop``.

Nothing here starts the campaign or a run: ``subprocess.call`` and ``subprocess.Popen`` are replaced, and the signals
of ``pause`` / ``resume`` / ``stop`` go to the process group of a ``sleep`` this test starts in a session of its own
(the pid file is the test's, in a temporary folder).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

#: the campaign runs on Linux (nice, process groups), and these tests read /proc
pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "campaign.py"
RUNNER = BENCHMARKS / "learning_curves.py"


@pytest.fixture
def runner_args():
    """``benchmarks/learning_curves.py``'s own argument parser (the runs' command lines must parse there)."""
    sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: its folder's helpers (machine.py) import
    try:
        spec = importlib.util.spec_from_file_location("learning_curves_under_review", RUNNER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module.parse_args


@pytest.fixture
def own_process():
    """
    A process of this test only, leader of its own process group (what ``start`` makes of the driver), whose arguments
    end as the driver's (this checkout's ``campaign.py`` and ``drive``): ``driver_pid`` takes no other process for it.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(SCRIPT), "drive"], start_new_session=True
    )
    assert wait_for(lambda: arguments_readable(process.pid))
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(10)


def call_main(campaign, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["campaign.py", *argv])
    campaign.main()


def arguments_readable(pid: int) -> bool:
    """Whether the process's arguments can be read yet (``/proc/<pid>/cmdline`` is empty for a moment after Popen)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes() != b""


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------------- the runs
@pytest.mark.parametrize("algo, seed", [("pmac", 0), ("mbpo", 2), ("sac_zoo", 1)])
def test_command_is_the_documented_run(campaign, runner_args, algo, seed):
    """docs/results.md: paper settings, 100 000 steps, one thread, 10 deterministic evaluation episodes every 1000
    steps, model diagnostics (PMAC, MBPO) every 5000 steps up to h = 10, a pause every 840 s."""
    cmd = campaign.command(algo, seed)
    assert cmd[:2] == [sys.executable, str(campaign.ROOT / "benchmarks" / "learning_curves.py")]
    args = runner_args(cmd[2:])
    assert (args.algo, args.env, args.seed, args.timesteps, args.settings) == (algo, "Hopper-v4", seed, 100_000, "paper")
    assert (args.eval_freq, args.eval_episodes, args.threads, args.max_seconds) == (1000, 10, 1, 840.0)
    assert Path(args.out) == campaign.OUT  # the run writes where run_dir, status and sync look
    assert Path(args.out) / args.env / args.algo / f"seed_{args.seed}" == campaign.run_dir(algo, seed)
    expected_diagnostics = (0, 10) if algo == "sac_zoo" else (5000, 10)
    assert (args.diagnostics_freq, args.diagnostics_horizon) == expected_diagnostics


def test_drive_starts_with_seed_0_of_pmac_then_mbpo(campaign, monkeypatch):
    """The issue's order, from a fresh campaign (nothing finished): PMAC's seed 0 first, then MBPO's, then SAC."""
    monkeypatch.setattr(campaign, "SLOTS", 1)
    calls = []
    monkeypatch.setattr(
        campaign.subprocess, "call",
        lambda cmd, **kwargs: calls.append((cmd[cmd.index("--algo") + 1], int(cmd[cmd.index("--seed") + 1]))) or 0,
    )  # fmt: skip
    campaign.drive()
    assert calls == [
        ("pmac", 0), ("mbpo", 0), ("sac_zoo", 0), ("sac_zoo", 1), ("sac_zoo", 2),
        ("pmac", 1), ("mbpo", 1), ("pmac", 2), ("mbpo", 2),
    ]  # fmt: skip


@pytest.mark.parametrize("outer", [None, "/elsewhere/lib"])
def test_drive_calls_run_in_the_checkout_with_one_thread_and_a_log_per_run(campaign, monkeypatch, outer):
    if outer is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", outer)
    monkeypatch.setattr(campaign, "JOBS", [("mbpo", 1)])
    seen = []

    def call(cmd, stdout, stderr, env, cwd):
        seen.append((Path(stdout.name), stderr, env, cwd))
        stdout.write("run output\n")
        return 0

    monkeypatch.setattr(campaign.subprocess, "call", call)
    campaign.drive()
    [(log, stderr, env, cwd)] = seen
    # this checkout's code first, the caller's path after it
    assert env["PYTHONPATH"] == (str(campaign.ROOT) if outer is None else os.pathsep.join([str(campaign.ROOT), outer]))
    assert all(env[name] == "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
    assert cwd == campaign.ROOT  # learning_curves.py runs from the checkout, as `start` runs the driver
    # the run's output and errors go to <algo>/seed_<seed>.log beside its folder (git-ignored: results/campaign/**/*.log)
    assert log == campaign.run_dir("mbpo", 1).parent / "seed_1.log" and stderr == subprocess.STDOUT
    assert log.read_text() == "run output\n"


# ---------------------------------------------------------------------------------------------------- status
def test_status_gives_each_runs_last_evaluation(campaign, monkeypatch, capsys, own_process):
    header = "timesteps,mean_return,std_return,wall_s\n"
    write(campaign.run_dir("pmac", 0) / "run.json", json.dumps({"finished": True}))
    write(campaign.run_dir("pmac", 0) / "evaluations.csv", header + "99000,3300.4,10,35000\n100000,3348.6,12,36000\n")
    write(campaign.run_dir("mbpo", 0) / "run.json", json.dumps({"finished": False}))
    write(campaign.run_dir("mbpo", 0) / "evaluations.csv", header + "1000,20.2,1,90\n2000,35.7,2,5400\n")
    write(campaign.run_dir("sac_zoo", 1) / "run.json", json.dumps({"finished": False}))  # started, not evaluated yet
    campaign.PID_FILE.write_text(str(own_process.pid))
    campaign.status()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(campaign.JOBS) + 1
    assert lines[0].split() == ["pmac", "seed", "0:", "finished", "step", "100000,", "return", "3349,", "10.00", "h"]
    assert lines[1].split() == ["mbpo", "seed", "0:", "running/paused", "step", "2000,", "return", "36,", "1.50", "h"]
    assert lines[2].split() == ["sac_zoo", "seed", "0:", "not", "started"]
    assert lines[3].split() == ["sac_zoo", "seed", "1:", "running/paused", "no", "evaluation", "yet"]
    assert all(line.split()[3:] == ["not", "started"] for line in lines[4:-1])
    assert lines[-1] == f"driver: pid {own_process.pid}"


def test_a_pid_file_of_an_ended_driver_is_not_running(campaign, monkeypatch, capsys):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(30)
    write(campaign.PID_FILE, str(ended.pid))
    assert campaign.driver_pid() is None
    campaign.status()
    assert capsys.readouterr().out.splitlines()[-1] == "driver: not running"
    for action in ("pause", "resume", "stop"):
        with pytest.raises(SystemExit, match="the campaign is not running"):
            call_main(campaign, monkeypatch, action)


# ---------------------------------------------------------------------------------------------------- start
def test_start_runs_the_driver_at_nice_19_in_its_own_session_once(campaign, monkeypatch, capsys, own_process):
    started = []

    def popen(args, **kwargs):
        started.append((args, kwargs))
        kwargs["stderr"].close()
        return SimpleNamespace(pid=own_process.pid)  # stands for the driver: a live process of this test

    monkeypatch.setattr(campaign.subprocess, "Popen", popen)
    call_main(campaign, monkeypatch, "start")
    [(args, kwargs)] = started
    assert args == ["nice", "-n", "19", sys.executable, str(SCRIPT), "drive"]
    assert kwargs["start_new_session"] is True  # pause/stop signal its process group: never the caller's
    assert kwargs["cwd"] == campaign.ROOT and kwargs["stderr"].name == str(campaign.LOG_FILE)
    assert campaign.PID_FILE.read_text() == str(own_process.pid) and campaign.driver_pid() == own_process.pid
    assert f"campaign started (pid {own_process.pid})" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=f"the campaign runs already \\(pid {own_process.pid}\\)"):
        call_main(campaign, monkeypatch, "start")
    assert len(started) == 1


# ---------------------------------------------------------------------------------------------------- signals
def test_pause_resume_and_stop_signal_the_drivers_process_group(campaign, monkeypatch, capsys, own_process):
    pid = own_process.pid
    write(campaign.PID_FILE, str(pid))
    call_main(campaign, monkeypatch, "pause")
    assert wait_for(lambda: state(pid) == "T"), state(pid)
    call_main(campaign, monkeypatch, "resume")
    assert wait_for(lambda: state(pid) != "T"), state(pid)
    call_main(campaign, monkeypatch, "pause")
    assert wait_for(lambda: state(pid) == "T"), state(pid)
    call_main(campaign, monkeypatch, "stop")  # a paused campaign ends too (SIGTERM needs it continued)
    assert own_process.wait(5) == -signal.SIGTERM
    assert not campaign.PID_FILE.exists()  # the driver had no chance to remove it
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == ["pause", "resume", "pause", "stop"]
    assert f"sent to process group {pid}" in out


def test_a_live_process_that_is_not_the_driver_is_not_taken_for_it(campaign, monkeypatch, capsys):
    """A pid file left by a driver that was killed: its pid may belong to another process by now."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert wait_for(lambda: arguments_readable(other.pid))
        write(campaign.PID_FILE, str(other.pid))
        assert campaign.driver_pid() is None
        with pytest.raises(SystemExit, match="the campaign is not running"):
            call_main(campaign, monkeypatch, "stop")
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait(10)


def test_the_driver_removes_its_pid_file_when_no_job_is_left(campaign, monkeypatch):
    monkeypatch.setattr(campaign, "JOBS", [("mbpo", 1)])
    monkeypatch.setattr(campaign.subprocess, "call", lambda cmd, **kwargs: 0)
    write(campaign.PID_FILE, str(os.getpid()))
    campaign.drive()
    assert not campaign.PID_FILE.exists()
    write(campaign.PID_FILE, "1")  # another driver's file (started since): left alone
    campaign.drive()
    assert campaign.PID_FILE.read_text() == "1"


def test_a_run_that_cannot_start_is_logged_and_the_next_jobs_go_on(campaign, monkeypatch):
    monkeypatch.setattr(campaign, "SLOTS", 1)
    monkeypatch.setattr(campaign, "JOBS", [("pmac", 2), ("mbpo", 2)])
    calls = []

    def call(cmd, **kwargs):
        algo = cmd[cmd.index("--algo") + 1]
        calls.append(algo)
        if algo == "pmac":
            raise OSError(12, "Cannot allocate memory")
        return 0

    monkeypatch.setattr(campaign.subprocess, "call", call)
    campaign.drive()
    assert calls == ["pmac", "mbpo"]
    log = campaign.LOG_FILE.read_text()
    assert "pmac seed 2 could not run" in log and "Cannot allocate memory" in log
    assert "mbpo seed 2 exited with 0" in log and log.rstrip().endswith("campaign: no job left")


def test_an_unreadable_pid_file_is_no_driver_and_a_driver_that_ends_meanwhile_is_said(campaign, monkeypatch, own_process):
    write(campaign.PID_FILE, "")  # cut short
    assert campaign.driver_pid() is None
    write(campaign.PID_FILE, str(own_process.pid))

    def ended(pid, sig):
        raise ProcessLookupError

    with monkeypatch.context() as patched, pytest.raises(SystemExit, match="ended just now"):
        patched.setattr(campaign.os, "killpg", ended)  # the driver ends between the check and the signal
        call_main(campaign, monkeypatch, "stop")
    assert not campaign.PID_FILE.exists()


def test_another_checkouts_driver_is_not_this_campaigns(campaign, tmp_path):
    other_script = tmp_path / "elsewhere" / "benchmarks" / "campaign.py"
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(other_script), "drive"], start_new_session=True
    )
    try:
        assert wait_for(lambda: arguments_readable(other.pid))
        write(campaign.PID_FILE, str(other.pid))
        assert campaign.driver_pid() is None
    finally:
        other.kill()
        other.wait(10)
