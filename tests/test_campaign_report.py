"""
The campaign report (benchmarks/campaign_report.py) on a tiny fake results tree: the returns table against values
computed by hand, partial runs marked, the wall-time split, the IQM inside its interval, and the markdown replaced
between the markers with the rest of the document byte-identical.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install -e '.[zoo]')")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "campaign_report.py"
ENV = "Hopper-v4"
TARGET = 30_000
# (algo, seed): (last step, return at step s = slope * s + offset)
RUNS = {
    ("pmac", 0): (30_000, 1 / 100, 0.0),
    ("pmac", 1): (30_000, 1 / 100, 50.0),
    ("mbpo", 0): (30_000, 1 / 200, 0.0),
    ("mbpo", 1): (27_000, 1 / 200, 10.0),  # partial: stopped at 27 000 of 30 000
}


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("campaign_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_run(root: Path, algo: str, seed: int, last: int, slope: float, offset: float) -> None:
    run_dir = root / ENV / algo / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    steps = range(1000, last + 1, 1000)
    # wall time: 1 s per 1000 warm-up steps (up to 5000), then 12 s per 1000 steps
    wall = {step: step / 1000 if step <= 5000 else 5 + 12 * (step - 5000) / 1000 for step in steps}
    rows = "".join(f"{step},{slope * step + offset:.3f},1.0,{wall[step]:.1f}\n" for step in steps)
    (run_dir / "evaluations.csv").write_text("timesteps,mean_return,std_return,wall_s\n" + rows)
    progress = ["time/total_timesteps,train/n_updates,time/model_train_s,time/rollout_s,time/sac_s"]
    for step in steps:
        trained = step - 5000
        # cumulative: model training 2 s, rollouts 0.4 s, SAC 8 s per 1000 steps after the warm-up (rest: 1.6 s)
        timings = f"{20 * trained},{2 * trained / 1000},{0.4 * trained / 1000},{8 * trained / 1000}" if trained > 0 else ",,,"
        progress.append(f"{step},{timings}")
    (run_dir / "progress.csv").write_text("\n".join(progress) + "\n")
    diagnostics = ["timesteps,local_obs_mse,local_reward_mse,global_obs_mse,global_reward_mse,compounding_obs_mse_h1,"
                   "compounding_obs_mse_h2"]  # fmt: skip
    for step in range(10_000, last + 1, 10_000):
        diagnostics.append(f"{step},{0.01 * (seed + 1)},0.1,{0.02 * (seed + 1)},0.2,0.01,0.05")
    (run_dir / "diagnostics.csv").write_text("\n".join(diagnostics) + "\n")
    record = {"algo": algo, "env": ENV, "seed": seed, "timesteps": TARGET, "eval_episodes": 10, "eval_freq": 1000,
              "diagnostics_freq": 10_000, "agent_kwargs": {"ent_coef": 0.2}, "commit": "abcdef0123",
              "finished": last == TARGET}  # fmt: skip
    if (algo, seed) == ("pmac", 1):  # later runners record the machines in run.json, a new one at a resume on another
        record["machines"] = [{"cpu": "CPU A", "cpus": 2, "from_step": 0}, {"cpu": "CPU B", "cpus": 4, "from_step": 12_000}]
    (run_dir / "run.json").write_text(json.dumps(record))
    if (algo, seed) == ("mbpo", 1):  # the machine is recorded by hand, for some runs only
        (run_dir / "machine.json").write_text(json.dumps({"cpu": "Some CPU 9000", "started": "2026-12-01"}))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "campaign"
    for (algo, seed), (last, slope, offset) in RUNS.items():
        write_run(root, algo, seed, last, slope, offset)
    return root


def test_returns_table_by_hand(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    rows = {(row.step, row.algo): row for row in report.score_rows(campaign, (25_000, 30_000), ("pmac", "mbpo"), 5000)}
    # window t-4000..t: the mean of s / 100 over s = 21 000 ... 25 000 is 230; seed 1 is 50 higher
    pmac = rows[25_000, "pmac"]
    assert pmac.scores == pytest.approx([230.0, 280.0])
    assert (pmac.mean, pmac.std) == pytest.approx((255.0, 25.0))
    assert rows[30_000, "pmac"].mean == pytest.approx(305.0)
    assert rows[25_000, "mbpo"].scores == pytest.approx([115.0, 125.0])
    # the partial run has not reached 30 000: one run counted
    mbpo = rows[30_000, "mbpo"]
    assert mbpo.scores == pytest.approx([140.0]) and mbpo.n_runs == 2 and mbpo.furthest == 30_000
    assert report.window_score(campaign["mbpo"][1], 30_000) is None

    split = report.wall_time(campaign["pmac"][0])
    assert split.trained_steps == 25_000 and split.hours == pytest.approx(305 / 3600)
    expected = {"total": 12.0, "model training": 2.0, "rollouts": 0.4, "SAC": 8.0, "rest": 1.6}
    assert split.per_1000 == pytest.approx(expected)

    status = "\n".join(report.status_table(campaign, ("pmac", "mbpo"), (0, 1, 2)))
    assert "| MBPO | 1 | partial: 27 000 of 30 000 steps | 145 at 27 000 | 0.07 h | Some CPU 9000 |" in status
    assert "| PMAC | 0 | finished | 300 at 30 000 | 0.08 h | not recorded |" in status
    assert "| CPU A, 2 CPUs from step 0; CPU B, 4 CPUs from step 12000 |" in status
    assert "| PMAC | 2 | not started | - | - | - |" in status
    table = "\n".join(report.returns_table(list(rows.values()), 2, with_iqm=False))
    assert "| 25 000 | PMAC | 2 of 2 | 0: 230, 1: 280 | 255 ± 25 | - |" in table
    assert "| 30 000 | MBPO | 1 of 2 | 0: 140 | 140 ± 0 | - |" in table
    assert "not given in text" in table and "2326 ± 1130" in table
    wall = "\n".join(report.wall_table(campaign, ("pmac", "mbpo")))
    # 5 s of warm-up + 12 s per 1000 of 22 000 trained steps = 0.07 h; 3000 steps left at 12 s: 0.08 h in all
    assert "| MBPO seed 1 | 27 000 | 0.07 h | 0.1 h | 22 000 | 12 | 2 | 0 | 8 | 2 |" in wall
    assert "| PMAC seed 0 | 30 000 | 0.08 h | done |" in wall
    assert report.compounding_steps(campaign, (25_000, 30_000)) == [25_000.0, 30_000.0]


def test_replace_between_markers_keeps_the_rest(report):
    head = "# Results\n\nBefore, unchanged: ünïcode, trailing spaces  \n\n## Campaign\n\n"
    tail = "\n\nConclusion (written when the runs finish).\n\n## After\n\nlast line without newline"
    document = f"{head}{report.START_MARKER}\nold generated text\n{report.END_MARKER}{tail}"
    replaced = report.replace_between_markers(document, "\nnew text\n\n| a |\n")
    assert replaced == f"{head}{report.START_MARKER}\nnew text\n\n| a |\n{report.END_MARKER}{tail}"
    assert report.replace_between_markers(replaced, "new text\n\n| a |") == replaced  # idempotent
    with pytest.raises(ValueError, match="expected one"):
        report.replace_between_markers(head + tail, "x")


@pytest.fixture
def rliable_rows(report, results: Path) -> list:
    """The score rows at 25 000 and 30 000 steps of PMAC and MBPO; the test is skipped without rliable."""
    try:
        report.load_rliable()
    except report.MissingRliable as error:
        pytest.skip(str(error))
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    return report.score_rows(campaign, (25_000, 30_000), ("pmac", "mbpo"), 5000)


def test_iqm_and_full_report(report, results: Path, tmp_path: Path, rliable_rows):
    rows = rliable_rows
    report.add_iqm(rows, reps=200)
    for row in rows:
        assert row.iqm is not None and row.ci is not None
        assert row.ci[0] <= row.iqm <= row.ci[1]
        assert min(row.scores) <= row.ci[0] and row.ci[1] <= max(row.scores)
    assert rows[0].iqm == pytest.approx(255.0)  # two runs: the IQM trims nothing

    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    head, tail = "# Results\n\nkept as is\n\n", "\n\nConclusion (written when the runs finish).\n"
    doc.write_text(f"{head}{report.START_MARKER}\nplaceholder\n{report.END_MARKER}{tail}")
    figures = tmp_path / "docs" / "results"
    argv = ["--results", str(results), "--doc", str(doc), "--figures", str(figures), "--algos", "pmac", "mbpo",
            "--seeds", "0", "1", "--steps", "25000", "30000", "--x-max", "30000", "--reps", "200"]  # fmt: skip
    assert report.main(argv) == 0
    text = doc.read_text()
    assert text.startswith(head + report.START_MARKER + "\n") and text.endswith(report.END_MARKER + tail)
    assert "placeholder" not in text and "**Partial results**: 4 of 4 runs started, 3 finished" in text
    assert "MBPO seed 1 at 27 000" in text
    assert "| 25 000 | PMAC | 2 of 2 | 0: 230, 1: 280 | 255 ± 25 | 255 [230, 280] |" in text
    assert "| 30 000 | MBPO | 1 of 2 | 0: 140 | 140 ± 0 | 140 (1 run: no interval) |" in text
    assert "commit `abcdef0`" in text
    for name in (report.CURVES_PNG, report.MODEL_ERROR_PNG):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](results/{name})" in text
    assert np.isfinite(rows[-1].iqm)
    assert "### Campaign: PMAC against MBPO at equal steps" in text
    assert "| 25 000 | 2 / 2 | +135 | 1.00 | 0.17 (0.17) |" in text
    assert "| 30 000 | 1 / 1 | +140 | 1.00 | 0.50 (0.50) |" in text
    assert "| 25 000 | PMAC | 2 | 0.015 ± 0.005 | 0.03 ± 0.01 | 0.5 ± 0 | 0.05 ± 0 |" in text
    assert "At 0 of the 3 diagnostics steps that runs of both have reached, PMAC's local error" in text
    assert "#### The bound" not in text and "which this campaign does not run." in text  # no control CSV


def test_iqm_trims_from_four_runs_on(report):
    """rliable's IQM is the mean of the middle half: with 4 runs the two middle ones (the mean would be 257.5)."""
    pytest.importorskip("rliable")
    four = report.ScoreRow(25_000, "pmac", [0.0, 10.0, 20.0, 1000.0], 4, 25_000)
    three = report.ScoreRow(25_000, "mbpo", [0.0, 10.0, 1000.0], 3, 25_000)
    report.add_iqm([four, three], reps=200)
    assert four.iqm == pytest.approx(15.0) and four.mean == pytest.approx(257.5)
    assert three.iqm == pytest.approx(three.mean)  # 25 % of 3 runs is less than one run: nothing trimmed


def test_steps_to_reach_a_score_by_hand(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    # the score at t is the mean of t - 4000 ... t: PMAC seed 0 (t - 2000) / 100, seed 1 50 more; MBPO seed 0
    # (t - 2000) / 200, seed 1 10 more (stopped at 27 000)
    assert report.threshold_table(campaign, ("pmac", "mbpo"), window=5000, thresholds=(100, 250)) == [
        "| run | score ≥ 100 | score ≥ 250 |",
        "| --- | --- | --- |",
        "| PMAC seed 0 | 12 000 | 27 000 |",
        "| PMAC seed 1 | 7 000 | 22 000 |",
        "| MBPO seed 0 | 22 000 | not by 30 000 |",
        "| MBPO seed 1 | 20 000 | not by 27 000 |",
    ]


def test_targets_by_hand(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    rows = [
        report.ScoreRow(50_000, "pmac", [3100.0, 2900.0, 3300.0], 3, 50_000),
        report.ScoreRow(50_000, "mbpo", [1000.0, 3500.0, 900.0], 3, 50_000),
        report.ScoreRow(100_000, "pmac", [3400.0, 2800.0], 2, 100_000),
        report.ScoreRow(100_000, "mbpo", [3600.0, 3700.0], 2, 100_000),
    ]
    for row in rows:  # with 3 runs or fewer the IQM is the mean (add_iqm's test)
        row.iqm = row.mean
    table = report.targets_table(rows, campaign, n_seeds=3)
    assert table[2] == (
        "| PMAC's mean return at 100 000 steps >= 3000 | 3100 (runs: 3400, 2800) (so far: 2 of 3 runs) | pending (yes so "
        "far) |"
    )
    assert table[3] == (
        "| PMAC's IQM above MBPO's from 50 000 steps on | 50 000: 3100 vs 1800; 100 000: 3100 vs 3650 (so far: 2 of 3 "
        "runs) | pending (no, 1 of 2 steps so far) |"
    )
    wins, compared = report.local_error_wins(campaign)
    assert table[4].startswith(f"| PMAC's local one-step error below MBPO's | at {wins} of the {compared} diagnostics")
    assert (wins, compared) == (0, 3)  # the fixture's PMAC errors are the higher
    assert table[4].endswith("| no on each agent's own data; not a like-for-like test (see the model errors) |")
    rows[2].scores.append(3300.0)
    rows[3].scores.append(3000.0)
    assert "(so far" not in report.targets_table(rows, campaign, n_seeds=3)[2]  # all 3 runs there


def test_pmac_against_mbpo(report, rliable_rows):
    at_25k, at_30k = report.compare(rliable_rows)
    # 25 000: PMAC [230, 280], MBPO [115, 125] (s / 200 over 21 000 ... 25 000, seed 1 10 higher): PMAC ahead in all
    # 4 pairs; the exact one-sided p-value is then the smallest 2 runs of each allow, 1 / C(4, 2) = 1 / 6
    assert (at_25k.step, at_25k.n_a, at_25k.n_b) == (25_000, 2, 2)
    assert at_25k.mean_difference == pytest.approx(135.0) and at_25k.p_improvement == 1.0
    assert at_25k.p_value == pytest.approx(1 / 6) and at_25k.smallest_p_value == pytest.approx(1 / 6)
    # 30 000: MBPO seed 1 stopped at 27 000: compared on seed 0 alone, PMAC 280 against MBPO 140 (PMAC seed 1 is left
    # out too); smallest p-value 1 / C(2, 1)
    assert (at_30k.n_a, at_30k.n_b) == (1, 1) and at_30k.mean_difference == pytest.approx(280.0 - 140.0)
    assert at_30k.p_value == pytest.approx(1 / 2) == at_30k.smallest_p_value
    # 3 runs of each, PMAC ahead in 8 of 9 pairs: P = 8/9; p = P(U >= 8) under the null = 2 of the 20 rank orders
    three = [report.ScoreRow(1000, "pmac", [3.0, 5.0, 6.0], 3, 1000), report.ScoreRow(1000, "mbpo", [1.0, 2.0, 4.0], 3, 1000)]
    (c,) = report.compare(three)
    assert c.p_improvement == pytest.approx(8 / 9) and c.p_value == pytest.approx(2 / 20) and c.smallest_p_value == 0.05
    # MBPO ahead: P below one half, p large
    (behind,) = report.compare([three[0], report.ScoreRow(1000, "mbpo", [7.0, 8.0, 9.0], 3, 1000)])
    assert behind.p_improvement == 0.0 and behind.p_value == 1.0 and behind.mean_difference == pytest.approx(14 / 3 - 8)
    assert report.compare([report.ScoreRow(1000, "pmac", [1.0], 1, 1000)]) == []  # no MBPO score: nothing to compare


def test_model_error_table_by_hand(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    # diagnostics every 10 000 steps: seed s has local 0.01 (s + 1), global 0.02 (s + 1), compounding h2 0.05
    at_25k, mbpo_25k, at_30k, mbpo_30k = report.model_error_rows(campaign, (25_000, 30_000), ("pmac", "mbpo"))
    assert (at_25k.step, at_25k.algo) == (25_000, "pmac")
    assert at_25k.local == pytest.approx([0.01, 0.02]) and at_25k.global_ == pytest.approx([0.02, 0.04])  # rows at 20 000
    assert at_25k.ratios == pytest.approx([0.5, 0.5]) and at_25k.compounding == pytest.approx([0.05, 0.05])
    assert at_25k.horizon == 2
    assert mbpo_25k.local == pytest.approx([0.01, 0.02])
    assert mbpo_30k.local == pytest.approx([0.01])  # MBPO seed 1 stopped at 27 000: not counted at 30 000
    assert report.diagnostics_at(campaign["mbpo"][1], 30_000) is None
    assert report.diagnostics_at(campaign["pmac"][0], 9_999) is None  # no row yet
    table = "\n".join(report.model_error_table([at_25k, mbpo_25k, at_30k, mbpo_30k]))
    assert "compounding obs MSE, h = 2 |" in table
    assert "| 25 000 | PMAC | 2 | 0.015 ± 0.005 | 0.03 ± 0.01 | 0.5 ± 0 | 0.05 ± 0 |" in table
    assert "| 30 000 | MBPO | 1 | 0.01 | 0.02 | 0.5 | 0.05 |" in table
    # equal local errors at every shared step (10 000 and 20 000 both seeds; 30 000 PMAC 0.015 against MBPO 0.01)
    assert report.local_error_wins(campaign) == (0, 3)
    assert report.local_error_wins(campaign, "mbpo", "pmac") == (1, 3)


def test_bound_control_table(report, results: Path, tmp_path: Path):
    path = results / ENV / report.BOUND_CONTROL_CSV
    assert report.bound_control_table(report.bound_control_records(path)) == []  # no control run: no table (and no subsection)
    header = ("label,num_timesteps,config,selection,train_rows,epochs,grad_steps,max_grad_steps,train_s,local_obs_mse,"
              "local_reward_mse,global_obs_mse,global_reward_mse,compounding_h10\n")  # fmt: skip
    path.write_text(
        header + "mbpo_seed1,57000,saved,uniform,4750,,,400,,0.02272,0.0001,0.01897,0.00008,0.1262\n"
        "mbpo_seed1,57000,full,exponential,57000,41,7052,,1203.4,0.004,0.0001,0.02,0.00008,0.03\n"
    )
    table = report.bound_control_table(report.bound_control_records(path))
    assert table[2] == (
        "| MBPO seed 1 | 57 000 | as the run trained it (bounded) | uniform (MBPO) | 4 750 | ≤ 400 per training | - | "
        "0.0227 | 0.019 | 0.126 |"
    )
    assert table[3] == (
        "| MBPO seed 1 | 57 000 | retrained on the whole buffer | Algorithm 1 | 57 000 | 7 052 | 1203.4 | 0.004 | 0.02 | "
        "0.03 |"
    )
    assert len(table) == 4
    with open(path, "a") as file:  # measured later: an earlier checkpoint of MBPO, a PMAC checkpoint
        file.write("pmac_seed0,20000,saved,exponential,4750,,,400,,0.01,0.0001,0.02,0.00008,0.1\n")
        file.write("mbpo_seed1,40000,saved,uniform,3000,,,,,0.03,0.0001,0.02,0.00008,0.1\n")  # (no max_grad_steps)
    runs = [row.split(" | ")[:2] for row in report.bound_control_table(report.bound_control_records(path))[2:]]
    assert runs == [["| MBPO seed 1", "40 000"], ["| MBPO seed 1", "57 000"], ["| MBPO seed 1", "57 000"],
                    ["| PMAC seed 0", "20 000"]]  # fmt: skip
    assert report.bound_control_table(report.bound_control_records(path))[4] == table[3]  # a checkpoint's rows in their order
    assert (
        "| uniform (MBPO) | 3 000 | - | - |" in report.bound_control_table(report.bound_control_records(path))[2]
    )  # the bounds as recorded
    options = report.ReportOptions(results=results, doc=tmp_path / "results.md", figures=tmp_path / "figures",
                                   algos=("pmac", "mbpo"), seeds=(0, 1), steps=(25_000, 30_000), x_max=30_000,
                                   iqm=False)  # fmt: skip
    text = report.report_markdown(report.load_campaign(results, ENV, ("pmac", "mbpo")), options)
    assert "#### The bound on the runs' own data" in text and table[3] in text
    assert "which this campaign does not run; what that changes for the models of these runs" in text


def test_critic_peaks_by_hand(report, results: Path, tmp_path: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    assert report.critic_peaks(campaign["pmac"][0]) is None  # no critic logged: no row, and no section
    assert report.critic_table(campaign, ("pmac", "mbpo")) == report.critic_table({}, ())
    options = report.ReportOptions(results=results, doc=tmp_path / "results.md", figures=tmp_path / "figures",
                                   algos=("pmac", "mbpo"), seeds=(0, 1), steps=(25_000, 30_000), x_max=30_000,
                                   iqm=False)  # fmt: skip
    assert "### Campaign critics" not in report.report_markdown(campaign, options)

    run_dir = results / ENV / "mbpo" / "seed_0"  # a critic that diverges at 11 000 steps and recovers
    (run_dir / "progress.csv").write_text(
        "time/total_timesteps,train/critic_loss,train/actor_loss\n"
        "5000,,\n6000,50,-100\n11000,30000,-9000\n20000,20,-250\n31000,12,-300\n35000,15,-280\n"
    )
    (run_dir / "monitor.csv").write_text(
        '#{"t_start": 0, "env_id": "Hopper-v4"}\nr,l,t\n40,10,1\n300,100,2\n150,200,3\n'  # 4/step, but 10 steps only
    )
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    peaks = report.critic_peaks(campaign["mbpo"][0])
    assert (peaks.critic_loss, peaks.critic_step, peaks.q_estimate, peaks.q_step) == (30000, 11000, 9000, 11000)
    assert (peaks.late_critic_loss, peaks.late_q_estimate) == (15, 300)  # from 30 000 on: 31 000 and 35 000
    assert peaks.return_scale == pytest.approx(3 / (1 - 0.99))  # 300 over 100 steps; the 10-step episode left out
    table = report.critic_table(campaign, ("pmac", "mbpo"))
    assert table[2:] == ["| MBPO seed 0 | 30000 (11 000) | 9000 (11 000) | 15.0, 300 | 300 |"]
    text = report.report_markdown(campaign, options)
    assert "### Campaign critics" in text and table[2] in text


def test_print_draws_nothing_and_unknown_algos_are_errors(report, results: Path, tmp_path: Path, capsys):
    figures = tmp_path / "figures"
    doc = tmp_path / "results.md"
    doc.write_text(f"{report.START_MARKER}\nkept\n{report.END_MARKER}\n")
    base = ["--results", str(results), "--doc", str(doc), "--figures", str(figures), "--seeds", "0", "1",
            "--steps", "25000", "--x-max", "30000", "--reps", "50"]  # fmt: skip
    assert report.main([*base, "--algos", "pmac", "mbpo", "--print"]) == 0
    out = capsys.readouterr().out
    assert "| 25 000 | PMAC | 2 of 2 | 0: 230, 1: 280 | 255 ± 25 |" in out
    assert "](figures/" in out  # the figures are referenced ...
    assert not figures.exists()  # ... and not drawn
    assert "kept" in doc.read_text()  # nor the document touched

    assert report.main([*base, "--algos", "pmac", "pmca", "--print"]) == 1  # a typo: no runs, no known algorithm
    captured = capsys.readouterr()
    assert captured.out == "" and "--algos pmca: no runs under" in captured.err
    assert report.main([*base, "--algos", "pmac", "sac_zoo", "--print"]) == 0  # known, not started yet: fine
    assert "SB3 SAC (rl-zoo3) | 0 | not started" in capsys.readouterr().out


def test_gaits_by_hand(report, results: Path, tmp_path: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    assert report.gait(campaign["pmac"][0]) is None  # no monitor.csv: no row, and no section
    run_dir = results / ENV / "mbpo" / "seed_1"
    episodes = "".join(f"{3.0 * length},{length},{i}\n" for i, length in enumerate([5, 5, 1000, 200, 1000]))
    (run_dir / "monitor.csv").write_text('#{"t_start": 0, "env_id": "Hopper-v4"}\nr,l,t\n' + episodes)
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    found = report.gait(campaign["mbpo"][1], last=3)  # the last three: 1000, 200, 1000 steps
    assert (found.episodes, found.length, found.episode_return, found.at_limit) == (3, 2200 / 3, 6600 / 3, 2)
    assert found.per_step == pytest.approx(3.0)
    table = report.gait_table(campaign, ("pmac", "mbpo"))
    assert table[2:] == ["| MBPO seed 1 | 27 000 | 5 | 442 | 1326 | 3.00 | 2 of 5 |"]  # 5 episodes: fewer than 20
    options = report.ReportOptions(results=results, doc=tmp_path / "results.md", figures=tmp_path / "figures",
                                   algos=("pmac", "mbpo"), seeds=(0, 1), steps=(25_000,), x_max=30_000,
                                   iqm=False)  # fmt: skip
    text = report.report_markdown(campaign, options, draw=False)
    assert "### Campaign gaits" in text and table[2] in text


def test_selection_pairs_by_hand(report, results: Path, tmp_path: Path):
    """Checkpoints retrained with both selections are paired; a checkpoint with one retraining is not."""
    path = results / ENV / report.BOUND_CONTROL_CSV
    header = ("label,num_timesteps,config,selection,train_rows,epochs,grad_steps,max_grad_steps,train_s,local_obs_mse,"
              "local_reward_mse,global_obs_mse,global_reward_mse,compounding_h10\n")  # fmt: skip
    path.write_text(
        header + "mbpo_seed1,57000,saved,uniform,4750,,,400,,0.5,0,0.5,0,0.5\n"
        "mbpo_seed1,57000,full,uniform,57000,100,20400,,600,0.02,0,0.01,0,0.2\n"
        "mbpo_seed1,57000,full,exponential,57000,40,8000,,300,0.015,0,0.03,0,0.3\n"
        "pmac_seed2,64000,full,exponential,64000,20,4000,,100,0.004,0,0.02,0,0.01\n"
        "pmac_seed2,64000,full,uniform,64000,100,25000,,700,0.002,0,0.01,0,0.02\n"
        "pmac_seed1,58000,full,exponential,58000,15,3000,,100,0.005,0,0.02,0,0.01\n"  # no uniform retraining
    )
    pairs = report.selection_pairs(report.bound_control_records(path))
    assert [(pair.run, pair.step) for pair in pairs] == [("mbpo_seed1", 57_000), ("pmac_seed2", 64_000)]
    assert pairs[0].ratio("local") == pytest.approx(0.75) and pairs[0].ratio("global") == pytest.approx(3.0)
    assert pairs[1].ratio("local") == pytest.approx(2.0) and pairs[1].ratio("h10") == pytest.approx(0.5)
    table = report.selection_pairs_table(pairs)
    assert table[2] == "| MBPO seed 1 | 57 000 | 0.015 / 0.02 = 0.75 | 0.03 / 0.01 = 3.00 | 0.3 / 0.2 = 1.50 |"
    assert table[3] == "| PMAC seed 2 | 64 000 | 0.004 / 0.002 = 2.00 | 0.02 / 0.01 = 2.00 | 0.01 / 0.02 = 0.50 |"
    assert table[-1].startswith(
        "Algorithm 1's retrained model has the lower local error at 1 of the 2 paired checkpoints, the lower global "
        "error at 0 and the lower compounding error at h = 10 at 1 (2 seeds: 1 and 2;"
    )
    assert report.selection_pairs_table([]) == []
    options = report.ReportOptions(results=results, doc=tmp_path / "results.md", figures=tmp_path / "figures",
                                   algos=("pmac", "mbpo"), seeds=(0, 1), steps=(25_000, 30_000), x_max=30_000,
                                   iqm=False)  # fmt: skip
    text = report.report_markdown(report.load_campaign(results, ENV, ("pmac", "mbpo")), options)
    assert table[2] in text and table[-1] in text
    assert "the bound control below (2 seeds: 1 and 2)" in text  # counted from the file, not written by hand


def test_p_value_stays_exact_with_tied_scores(report):
    """
    With a tie between the two sides the p-value still comes from the exact distribution of the rank sum over the
    C(6, 3) = 20 orders of the runs (a multiple of 1/20), not from the normal approximation that scipy's default method
    switches to on ties (0.134 here).
    """
    pytest.importorskip("rliable")
    pmac, mbpo = [3.0, 5.0, 6.0], [1.0, 3.0, 4.0]  # one tie (3 against 3): 7.5 of the 9 pairs won
    (c,) = report.compare([report.ScoreRow(1000, "pmac", pmac, 3, 1000), report.ScoreRow(1000, "mbpo", mbpo, 3, 1000)])
    assert c.p_improvement == pytest.approx(7.5 / 9)  # ties count half
    assert c.p_value * 20 == pytest.approx(round(c.p_value * 20))
    assert 3 / 20 <= c.p_value <= 5 / 20 and c.smallest_p_value == 0.05


def test_add_iqm_is_reproducible_and_leaves_the_global_generator_alone(report):
    pytest.importorskip("rliable")

    def rows():
        return [report.ScoreRow(25_000, "pmac", [0.0, 10.0, 20.0, 1000.0, 40.0, 300.0], 6, 25_000)]

    first, second = rows(), rows()
    np.random.seed(1)
    report.add_iqm(first, reps=200)
    np.random.seed(2)  # another global state before the call: the same report
    report.add_iqm(second, reps=200)
    assert first[0].ci == second[0].ci and first[0].iqm == second[0].iqm

    np.random.seed(3)
    expected = np.random.random_sample(5)
    np.random.seed(3)
    report.add_iqm(rows(), reps=200)
    np.testing.assert_array_equal(np.random.random_sample(5), expected)  # the caller's draws go on as without the call


def test_steps_to_reach_a_score_use_the_window_given(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac",))
    run = campaign["pmac"][0]  # returns s / 100 at step s
    assert report.first_step_reaching(run, 100, window=1000) == 10_000  # one evaluation: 10 000 / 100
    assert report.first_step_reaching(run, 100, window=5000) == 12_000  # mean of 8 000 ... 12 000
    table = report.threshold_table(campaign, ("pmac",), window=1000, thresholds=(100,))
    assert table[2] == "| PMAC seed 0 | 10 000 |"


def test_critic_peaks_have_their_own_steps_and_late_starts_at_late_step(report, results: Path):
    run_dir = results / ENV / "mbpo" / "seed_0"
    (run_dir / "progress.csv").write_text(
        "time/total_timesteps,train/critic_loss,train/actor_loss\n"
        "6000,50,-100\n11000,30000,-200\n20000,20,-9000\n30000,40,-500\n35000,15,-280\n"
    )
    peaks = report.critic_peaks(report.load_campaign(results, ENV, ("mbpo",))["mbpo"][0])
    assert (peaks.critic_loss, peaks.critic_step) == (30000, 11_000)
    assert (peaks.q_estimate, peaks.q_step) == (9000, 20_000)  # the Q peak's own step, not the critic loss's
    assert (peaks.late_critic_loss, peaks.late_q_estimate) == (40, 500)  # the row at 30 000 itself is late


def test_a_resumed_run_keeps_the_last_row_of_a_repeated_step(report, results: Path):
    """A run resumed from its 25 000-step checkpoint evaluates 26 000 ... 30 000 again: the later rows count."""
    evaluations = results / ENV / "pmac" / "seed_0" / "evaluations.csv"
    again = "".join(
        f"{s},{s / 100 + 1000:.3f},1.0,{400 + 12 * (s - 25_000) / 1000:.1f}\n" for s in range(26_000, 30_001, 1000)
    )
    evaluations.write_text(evaluations.read_text() + again)
    run = report.load_campaign(results, ENV, ("pmac",))["pmac"][0]
    assert len(run.steps) == len(run.wall_s) == 30
    assert report.window_score(run, 30_000) == pytest.approx(1280.0)  # mean of 26 000 ... 30 000 over 100, plus 1000
    split = report.wall_time(run)
    assert split.hours == pytest.approx(460 / 3600)
    assert split.per_1000["total"] == pytest.approx((460 - 5) / 25)  # after the 5 s of warm-up, 25 000 trained steps


def test_targets_met_with_exactly_n_seeds_runs_are_not_pending(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    rows = [report.ScoreRow(100_000, "pmac", [3100.0, 3200.0, 3300.0], 3, 100_000),
            report.ScoreRow(100_000, "mbpo", [1000.0, 1100.0, 1200.0], 3, 100_000)]  # fmt: skip
    for row in rows:
        row.iqm = row.mean
    table = report.targets_table(rows, campaign, n_seeds=3)
    assert table[2].endswith("| yes |") and table[3].endswith("| yes, 1 of 1 steps |")


def test_diagnostics_at_takes_the_last_row_at_or_before_the_step(report, results: Path):
    run = report.load_campaign(results, ENV, ("pmac", "mbpo"))["pmac"][0]  # diagnostics at 10 000, 20 000, 30 000
    assert report.diagnostics_at(run, 20_000)["timesteps"] == 20_000  # the row at the step itself
    assert report.diagnostics_at(run, 29_999)["timesteps"] == 20_000  # the last one before, not the first


def test_bound_control_records_sort_steps_as_numbers(report, tmp_path: Path):
    path = tmp_path / "bound_control.csv"
    path.write_text("label,num_timesteps,config\nmbpo_seed1,10000,saved\nmbpo_seed1,9000,saved\n")
    assert [r["num_timesteps"] for r in report.bound_control_records(path)] == ["9000", "10000"]


def test_replace_between_markers_refuses_markers_in_the_wrong_order(report):
    with pytest.raises(ValueError, match="expected one"):
        report.replace_between_markers(f"a\n{report.END_MARKER}\nb\n{report.START_MARKER}\nc", "x")


def test_status_table_lists_runs_of_seeds_not_asked_for(report, results: Path):
    campaign = report.load_campaign(results, ENV, ("pmac", "mbpo"))
    status = "\n".join(report.status_table(campaign, ("pmac",), (0,)))
    assert "| PMAC | 1 | finished |" in status
