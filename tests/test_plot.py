"""
``sb3_pmac.plot``: readers (runner CSV, SB3 ``evaluations.npz``, Monitor files), seed aggregation (interpolation and
truncation checked against hand-computed values), the figures' data and the command line.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install -e '.[zoo]')")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sb3_pmac.plot import (
    Curve,
    PlotError,
    aggregate,
    compounding_columns,
    format_table,
    identify_run,
    load_diagnostics,
    load_evaluations_csv,
    load_evaluations_npz,
    load_monitor,
    load_runs,
    main,
    plot_curves,
    plot_diagnostics,
    smooth,
    summarize_runs,
)
from sb3_pmac.plot.runs import UNKNOWN_ENV

ENV = "Toy-v0"
# Three seeds with different evaluation grids; seed 0 is the shortest (ends at 400), so the others are cut there.
SEEDS = {
    0: ([100, 200, 300, 400], [0.0, 10.0, 20.0, 30.0]),
    1: ([100, 300, 500], [5.0, 25.0, 45.0]),  # no eval at 200 and 400: interpolated, 15 and 35
    2: ([100, 200, 300, 400, 500, 600], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
}
# By hand: at steps 100, 200, 300, 400 the seeds are (0, 5, 1), (10, 15, 2), (20, 25, 3), (30, 35, 4)
EXPECTED_STEPS = [100, 200, 300, 400]
EXPECTED_MEAN = [2.0, 9.0, 16.0, 23.0]
EXPECTED_STD = [float(np.std(values)) for values in [(0, 5, 1), (10, 15, 2), (20, 25, 3), (30, 35, 4)]]
SAC_STEPS, SAC_VALUES = [100, 200, 300, 400], [[50.0, 52.0], [60.0, 70.0], [80.0, 80.0], [90.0, 94.0]]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def write_runner_run(root: Path, algo: str, seed: int, steps, returns, env: str = ENV) -> Path:
    """A run directory as written by benchmarks/learning_curves.py."""
    run_dir = root / env / algo / f"seed_{seed}"
    run_dir.mkdir(parents=True)
    rows = "".join(f"{step},{value:.3f},0.000,{i:.1f}\n" for i, (step, value) in enumerate(zip(steps, returns, strict=True)))
    (run_dir / "evaluations.csv").write_text("timesteps,mean_return,std_return,wall_s\n" + rows)
    (run_dir / "run.json").write_text(json.dumps({"algo": algo, "env": env, "seed": seed, "finished": True}))
    # a Monitor file too: the evaluations must be preferred
    (run_dir / "monitor.csv").write_text('#{"t_start": 0.0, "env_id": "Toy-v0"}\nr,l,t\n-1000.0,10,0.1\n')
    return run_dir


def write_zoo_run(logs: Path, algo: str, run: int, steps, results, env: str = ENV) -> Path:
    """An rl-zoo3 run folder: <logs>/<algo>/<env>_<run>/evaluations.npz and <env>/config.yml."""
    run_dir = logs / algo / f"{env}_{run}"
    (run_dir / env).mkdir(parents=True)
    (run_dir / env / "config.yml").write_text("!!python/object/apply:collections.OrderedDict []\n")
    np.savez(run_dir / "evaluations.npz", timesteps=np.array(steps), results=np.array(results), ep_lengths=np.ones((4, 2)))
    return run_dir


@pytest.fixture
def runner_results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed, (steps, returns) in SEEDS.items():
        write_runner_run(root, "pmac", seed, steps, returns)
    return root


def test_aggregate_interpolates_and_truncates():
    steps, mean, std = aggregate(list(SEEDS.values()))
    np.testing.assert_array_equal(steps, EXPECTED_STEPS)
    np.testing.assert_allclose(mean, EXPECTED_MEAN)
    np.testing.assert_allclose(std, EXPECTED_STD)

    # same steps for every run: kept as they are; ddof=1 is the sample std
    steps, mean, std = aggregate([([0, 10], [1.0, 3.0]), ([0, 10], [3.0, 7.0])], ddof=1)
    np.testing.assert_array_equal(steps, [0, 10])
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [np.sqrt(2.0), np.sqrt(8.0)])

    # evenly spaced grid over the common range [100, 400]
    steps, mean, _ = aggregate(list(SEEDS.values()), grid=4)
    np.testing.assert_allclose(steps, EXPECTED_STEPS)
    np.testing.assert_allclose(mean, EXPECTED_MEAN)

    # x_max cuts before the common range is computed; a later start (seed at 200) moves the common range
    steps, mean, _ = aggregate(list(SEEDS.values()), x_max=300)
    np.testing.assert_array_equal(steps, [100, 200, 300])
    steps, mean, _ = aggregate([([200, 400], [10.0, 30.0]), ([100, 300, 500], [0.0, 20.0, 40.0])])
    np.testing.assert_array_equal(steps, [200, 300, 400])
    np.testing.assert_allclose(mean, [(10 + 10) / 2, (20 + 20) / 2, (30 + 30) / 2])

    # unsorted input, a repeated step (resumed run re-evaluating it: the last row wins) and nan are handled
    steps, mean, _ = aggregate([([300, 100, 200, 200, 400], [3.0, 1.0, 99.0, 2.0, np.nan])])
    np.testing.assert_array_equal(steps, [100, 200, 300])
    np.testing.assert_allclose(mean, [1.0, 2.0, 3.0])

    with pytest.raises(PlotError, match="do not overlap"):
        aggregate([([0, 1], [0.0, 0.0]), ([2, 3], [0.0, 0.0])])
    with pytest.raises(PlotError, match="no data"):
        aggregate([])


def test_partial_runs_without_truncation(runner_results: Path):
    # truncate=False: each step averages the seeds that reach it (seed 0 ends at 400, seed 1 at 500, seed 2 at 600)
    steps, mean, std = aggregate(list(SEEDS.values()), truncate=False)
    np.testing.assert_array_equal(steps, [100, 200, 300, 400, 500, 600])
    np.testing.assert_allclose(mean[:4], EXPECTED_MEAN)
    np.testing.assert_allclose(mean[4:], [(45 + 5) / 2, 6.0])
    np.testing.assert_allclose(std[4:], [20.0, 0.0])
    _, _, std = aggregate(list(SEEDS.values()), truncate=False, ddof=1)
    assert np.isnan(std[-1])  # one run: no sample std

    summary = summarize_runs(load_runs(runner_results, verbose=False), truncate=False)[ENV]["pmac"]
    np.testing.assert_array_equal(summary.n_at, [3, 3, 3, 3, 2, 1])
    assert not summary.truncated
    figure = plot_curves(load_runs(runner_results, verbose=False), truncate=False)
    assert figure.axes[0].lines[0].get_label() == "PMAC (3 runs to 400 steps, 2 to 500, 1 to 600)"


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 3), [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0]), 1), [1.0, 3.0])
    # smoothing happens on each run before interpolation
    _, mean, _ = aggregate([([0, 1, 2, 3], [1.0, 3.0, 5.0, 7.0])], window=2)
    np.testing.assert_allclose(mean, [1.0, 2.0, 4.0, 6.0])


def test_load_runs_runner_layout(runner_results: Path):
    for path in (runner_results, runner_results / ENV, runner_results / ENV / "pmac"):
        runs = load_runs(path)
        assert list(runs) == [ENV] and list(runs[ENV]) == ["pmac"]
        curves = sorted(runs[ENV]["pmac"], key=lambda curve: curve.run)
        assert [curve.run for curve in curves] == ["seed_0", "seed_1", "seed_2"]
        assert {curve.source for curve in curves} == {"eval_csv"}  # preferred over monitor.csv
        np.testing.assert_array_equal(curves[1].steps, SEEDS[1][0])
        np.testing.assert_allclose(curves[1].returns, SEEDS[1][1])
    summary = summarize_runs(load_runs(runner_results))[ENV]["pmac"]
    assert summary.n_seeds == 3 and summary.truncated and summary.longest == 600
    np.testing.assert_allclose(summary.mean, EXPECTED_MEAN)
    # one file: that run only
    steps, returns = load_evaluations_csv(runner_results / ENV / "pmac" / "seed_0" / "evaluations.csv")
    np.testing.assert_array_equal(steps, SEEDS[0][0])
    np.testing.assert_allclose(returns, SEEDS[0][1])
    assert len(load_runs(runner_results / ENV / "pmac" / "seed_0" / "evaluations.csv")[ENV]["pmac"]) == 1
    # --min-steps drops the short run
    assert len(load_runs(runner_results, min_steps=500, verbose=False)[ENV]["pmac"]) == 2


def test_monitor_reader(tmp_path: Path):
    header = '#{"t_start": 1700000000.0, "env_id": "Toy-v0"}\n'
    (tmp_path / "monitor.csv").write_text(header + "r,l,t\n1.5,10,0.5\n2.5,20,1.0\n-3.0,5,1.2\n")
    steps, returns = load_monitor(tmp_path / "monitor.csv")
    np.testing.assert_array_equal(steps, [10, 30, 35])
    np.testing.assert_allclose(returns, [1.5, 2.5, -3.0])
    assert identify_run(tmp_path)[1] == "Toy-v0"  # env from the Monitor header

    # a resumed run appends rows whose t restarts: file order is kept; a half-written last line is dropped
    (tmp_path / "monitor.csv").write_text(header + "r,l,t\n1.0,10,5.0\n2.0,10,6.0\n3.0,10,0.5\n4.0,1")
    steps, returns = load_monitor(tmp_path)
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_allclose(returns, [1.0, 2.0, 3.0])

    # VecEnv: 0.monitor.csv, 1.monitor.csv merged by wall-clock time
    vec = tmp_path / "vec"
    vec.mkdir()
    (vec / "0.monitor.csv").write_text(header + "r,l,t\n1.0,10,0.1\n3.0,10,0.3\n")
    (vec / "1.monitor.csv").write_text(header + "r,l,t\n2.0,4,0.2\n4.0,4,0.4\n")
    steps, returns = load_monitor(vec)
    np.testing.assert_array_equal(steps, [10, 14, 24, 28])
    np.testing.assert_allclose(returns, [1.0, 2.0, 3.0, 4.0])
    # ... within each resumed part: the appended rows (t restarts) come after the first part's rows of every file
    (vec / "0.monitor.csv").write_text(header + "r,l,t\n1.0,10,0.1\n3.0,10,0.3\n-1.0,10,0.15\n-3.0,10,0.35\n")
    (vec / "1.monitor.csv").write_text(header + "r,l,t\n2.0,4,0.2\n4.0,4,0.4\n-2.0,4,0.25\n-4.0,4,0.45\n")
    steps, returns = load_monitor(vec)
    np.testing.assert_allclose(returns, [1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0])
    np.testing.assert_array_equal(steps, [10, 14, 24, 28, 38, 42, 52, 56])

    # --source monitor on the runner layout: training episode returns, on a 200-point grid
    root = tmp_path / "results"
    for seed in range(2):
        run_dir = write_runner_run(root, "sac", seed, [100], [0.0])
        (run_dir / "monitor.csv").write_text(header + "r,l,t\n" + "".join(f"{seed + i},{10},{i}\n" for i in range(10)))
    summary = summarize_runs(load_runs(root, source="monitor"))[ENV]["sac"]
    assert summary.sources == ("monitor",) and len(summary.steps) == 200
    assert summary.steps[0] == 10 and summary.steps[-1] == 100
    np.testing.assert_allclose(summary.mean[-1], (9 + 10) / 2)
    np.testing.assert_allclose(summary.std[-1], 0.5)


def test_npz_reader_and_zoo_layout(tmp_path: Path):
    logs = tmp_path / "logs"
    run_dir = write_zoo_run(logs, "sac", 1, SAC_STEPS, SAC_VALUES)
    steps, returns = load_evaluations_npz(run_dir / "evaluations.npz")
    np.testing.assert_array_equal(steps, SAC_STEPS)
    np.testing.assert_allclose(returns, [51.0, 65.0, 80.0, 92.0])
    assert identify_run(run_dir) == ("sac", ENV, f"{ENV}_1")
    # without the config sub-folder: the env comes from the folder name (with an rl-zoo3 --uuid suffix too)
    bare = logs / "td3" / f"{ENV}_12_0f8fad5b-d9cb-469f-a165-70867728950e"
    bare.mkdir(parents=True)
    np.savez(bare / "evaluations.npz", timesteps=np.array([1, 2]), results=np.array([[1.0], [2.0]]))
    assert identify_run(bare) == ("td3", ENV, bare.name)
    unversioned = tmp_path / "runs" / "pmac_1"  # a folder of one's own, not rl-zoo3's <env id>_<n>: no env read from it
    unversioned.mkdir(parents=True)
    assert identify_run(unversioned) == ("runs", UNKNOWN_ENV, "pmac_1")

    runs = load_runs(logs)
    assert sorted(runs[ENV]) == ["sac", "td3"]
    assert runs[ENV]["sac"][0].source == "eval_npz"
    # ALGO=PATH renames every run found there; --algos filters
    runs = load_runs([f"baseline={logs / 'sac'}"], algos=["baseline"])
    assert list(runs[ENV]) == ["baseline"]


def test_cli_without_matplotlib_says_which_extra(runner_results: Path, tmp_path: Path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it raises ImportError
    assert main(["curves", str(runner_results), "--out", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err
    assert "the plots need matplotlib" in err and "pip install 'sb3-pmac[zoo]'" in err and "Traceback" not in err


def test_cli_curves_png_svg_and_table(runner_results: Path, tmp_path: Path, capsys):
    write_zoo_run(runner_results, "sac", 1, SAC_STEPS, SAC_VALUES)  # mixed sources: zoo logs next to runner results
    png, svg = tmp_path / "figs" / "curves.png", tmp_path / "figs" / "curves.svg"
    assert main(["curves", str(runner_results), "--out", str(png), "--out", str(svg), "--title", "Toy"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = svg.read_text()
    assert "<svg" in text and "PMAC (3 runs" in text

    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].split() == ["algo", "env", "runs", "final", "return", "steps"]
    pmac = next(line.split() for line in lines if line.startswith("pmac"))
    sac = next(line.split() for line in lines if line.startswith("sac"))
    assert pmac[:5] == ["pmac", ENV, "3", "23.00", "±"] and float(pmac[5]) == pytest.approx(EXPECTED_STD[-1], abs=0.005)
    assert pmac[6:] == ["400", "(longest", "600)"]
    assert sac[:6] == ["sac", ENV, "1", "92.00", "±", "0.00"] and sac[6] == "400"
    assert "truncated to 400" in out.err
    assert main(["curves", str(runner_results), "--out", str(tmp_path / "a.png"), "--out", str(tmp_path / "b.xyz")]) == 1
    assert "unknown image format" in capsys.readouterr().err and not (tmp_path / "a.png").exists()

    # the figure's data: one panel, lines in PREFERRED_ORDER, y = the seed means
    figure = plot_curves(load_runs(runner_results, verbose=False), labels=["pmac=PMAC (ours)"], title="Toy")
    (ax,) = figure.axes
    assert ax.get_title() == ENV
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), EXPECTED_STEPS)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), EXPECTED_MEAN)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [51.0, 65.0, 80.0, 92.0])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["PMAC (ours) (3 runs, cut at 400 steps)", "SAC (1 run)"]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # the std band of the first algorithm
    assert band.max() == pytest.approx(EXPECTED_MEAN[-1] + EXPECTED_STD[-1])

    # --algos orders and filters, --labels in --algos order, one panel per env
    write_runner_run(runner_results, "mbpo", 0, [100, 200], [1.0, 2.0], env="Other-v0")
    figure = plot_curves(load_runs(runner_results, verbose=False), algos=["sac", "pmac"], labels=["S", "P"])
    assert [ax.get_title() for ax in figure.axes if ax.get_visible()] == [ENV]
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == [
        "S (1 run)",
        "P (3 runs, cut at 400 steps)",
    ]
    figure = plot_curves(load_runs(runner_results, verbose=False))
    assert [ax.get_title() for ax in figure.axes] == ["Other-v0", ENV]
    with pytest.raises(PlotError, match="one label per --algos"):
        plot_curves(load_runs(runner_results, verbose=False), algos=["pmac"], labels=["a", "b"])


def test_format_table_single_run():
    curve = Curve("a", "E", "seed_0", np.array([1.0, 2.0]), np.array([3.0, 4.0]), "eval_csv", Path())
    table = format_table(summarize_runs({"E": {"a": [curve]}}))
    assert table.splitlines()[1].split() == ["a", "E", "1", "4.00", "±", "0.00", "2"]


def test_empty_directory_is_a_clear_error(tmp_path: Path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(PlotError, match=r"No readable runs in .*empty.*evaluations\.csv"):
        load_runs(tmp_path / "empty")
    assert main(["curves", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 1
    assert "No readable runs" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    # a run that has not evaluated yet (header only) is no data either
    run_dir = tmp_path / "started" / ENV / "pmac" / "seed_0"
    run_dir.mkdir(parents=True)
    (run_dir / "evaluations.csv").write_text("timesteps,mean_return,std_return,wall_s\n")
    with pytest.raises(PlotError, match="no data yet"):
        load_runs(tmp_path / "started")
    with pytest.raises(PlotError, match="no such file"):
        load_runs(tmp_path / "missing")
    with pytest.raises(PlotError, match="No readable diagnostics"):
        load_diagnostics([tmp_path / "empty"])


HORIZONS = list(range(1, 13))  # h10, h11, h12 sort after h9 only if sorted as numbers


def write_diagnostics(path: Path, rows: list[dict[str, float]], mixture: bool = True) -> Path:
    columns = [
        "timesteps",
        "local_obs_mse",
        "local_reward_mse",
        "global_obs_mse",
        "global_reward_mse",
        "mixture_effective_versions",
        "mixture_newest_1_share",
        "mixture_newest_5_share",
    ]
    columns += sorted(f"compounding_obs_mse_h{h}" for h in HORIZONS)  # string order: h1, h10, h11, h12, h2, ...
    lines = [",".join(columns)]
    for row in rows:
        cells = [row.get(column, float("nan")) for column in columns]
        lines.append(
            ",".join(
                "" if (not mixture and name.startswith("mixture")) else f"{cell}"
                for name, cell in zip(columns, cells, strict=True)
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def diagnostics_rows(scale: float) -> list[dict[str, float]]:
    rows = []
    for step in (1000, 2000, 3000):
        row = {
            "timesteps": step,
            "local_obs_mse": scale * 0.01 * step / 1000,
            "global_obs_mse": scale * 0.1 * step / 1000,
            "local_reward_mse": 0.5,
            "global_reward_mse": 0.7,
            "mixture_effective_versions": step / 1000 + 0.5,
        }
        row.update({f"compounding_obs_mse_h{h}": scale * step * h for h in HORIZONS})
        rows.append(row)
    return rows


def test_compounding_columns_numeric_order():
    names = [
        "timesteps",
        "compounding_obs_mse_h10",
        "compounding_obs_mse_h2",
        "compounding_obs_mse_h9",
        "compounding_obs_mse_h1",
    ]
    assert compounding_columns(names) == [(1, names[4]), (2, names[2]), (9, names[3]), (10, names[1])]


def test_diagnostics_files_in_folders_of_ones_own_naming(tmp_path: Path):
    """``--csv pmac=runs/pmac_1/diagnostics.csv --csv mbpo=runs/mbpo_1/diagnostics.csv``: one env, two algorithms."""
    for algo in ("pmac", "mbpo"):
        (tmp_path / "runs" / f"{algo}_1").mkdir(parents=True)
        write_diagnostics(tmp_path / "runs" / f"{algo}_1" / "diagnostics.csv", diagnostics_rows(1.0))
    runs = load_diagnostics([f"{algo}={tmp_path / 'runs' / f'{algo}_1' / 'diagnostics.csv'}" for algo in ("pmac", "mbpo")])
    assert list(runs) == [UNKNOWN_ENV] and sorted(runs[UNKNOWN_ENV]) == ["mbpo", "pmac"]


def test_diagnostics_plot_and_cli(tmp_path: Path):
    pmac_csv = write_diagnostics(tmp_path / "pmac_diag.csv", diagnostics_rows(1.0))
    mbpo_csv = write_diagnostics(tmp_path / "mbpo_diag.csv", diagnostics_rows(2.0), mixture=False)
    runs = load_diagnostics([f"pmac={pmac_csv}", f"mbpo={mbpo_csv}"])
    figure = plot_diagnostics(runs)
    errors, compounding, mixture = figure.axes

    assert errors.get_yscale() == "log" and compounding.get_yscale() == "log"
    # (a) one color per algorithm, solid local / dashed global
    by_label = {line.get_label().removesuffix(" (1 run)"): line for line in errors.lines}  # the legend counts runs
    assert set(by_label) == {"PMAC local", "PMAC global", "MBPO local", "MBPO global"}
    np.testing.assert_allclose(by_label["PMAC local"].get_ydata(), [0.01, 0.02, 0.03])
    np.testing.assert_allclose(by_label["MBPO global"].get_ydata(), [0.2, 0.4, 0.6])
    assert by_label["PMAC local"].get_linestyle() == "-" and by_label["PMAC global"].get_linestyle() == "--"
    assert by_label["PMAC local"].get_color() == by_label["PMAC global"].get_color() != by_label["MBPO local"].get_color()
    assert by_label["PMAC local"].get_marker() in ("None", None, "")  # three points: a plain line
    # (b) every compounding column, h in numeric order, at the last row
    np.testing.assert_array_equal(compounding.lines[0].get_xdata(), HORIZONS)
    np.testing.assert_allclose(compounding.lines[0].get_ydata(), [3000.0 * h for h in HORIZONS])
    np.testing.assert_allclose(compounding.lines[1].get_ydata(), [6000.0 * h for h in HORIZONS])
    assert "step 3,000" in compounding.get_title()
    # (c) MBPO has no mixture data: only PMAC's line
    assert [line.get_label() for line in mixture.lines] == ["PMAC (1 run)"]
    np.testing.assert_allclose(mixture.lines[0].get_ydata(), [1.5, 2.5, 3.5])

    # --at-step: each run's last row at or before it; a list of steps: one compounding panel each
    figure = plot_diagnostics(runs, at_step=2500)
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), [2000.0 * h for h in HORIZONS])
    figure = plot_diagnostics(runs, at_step=[1000, 3000], panels=("errors", "compounding"))
    assert [ax.get_title() for ax in figure.axes[1:]] == ["Compounding error (step 1,000)", "Compounding error (step 3,000)"]
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), [1000.0 * h for h in HORIZONS])
    # a shorter seed: cut to it by default, or (truncate=False) the seeds present at each step
    short = write_diagnostics(tmp_path / "short.csv", diagnostics_rows(3.0)[:2])
    seeds = load_diagnostics([f"pmac={pmac_csv}", f"pmac={short}"])
    np.testing.assert_allclose(plot_diagnostics(seeds, panels=("errors",)).axes[0].lines[0].get_ydata(), [0.02, 0.04])
    local = plot_diagnostics(seeds, panels=("errors",), truncate=False).axes[0].lines[0]
    np.testing.assert_allclose(local.get_ydata(), [0.02, 0.04, 0.03])

    # runner layout: seeds averaged; CLI, one figure and --separate files
    root = tmp_path / "results"
    for seed, scale in enumerate((1.0, 3.0)):
        write_diagnostics(root / ENV / "pmac" / f"seed_{seed}" / "diagnostics.csv", diagnostics_rows(scale))
    figure = plot_diagnostics(load_diagnostics([root]))
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), [6000.0 * h for h in HORIZONS])
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), [0.02, 0.04, 0.06])
    assert figure.texts[0].get_text() == ENV  # suptitle

    out = tmp_path / "diag.png"
    assert main(["diagnostics", "--csv", f"pmac={pmac_csv}", "--csv", f"mbpo={mbpo_csv}", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["diagnostics", str(root), "--separate", "--out", str(tmp_path / "sep.svg"), "--kind", "reward"]) == 0
    for panel in ("errors", "compounding", "mixture"):
        assert "<svg" in (tmp_path / f"sep_{panel}.svg").read_text()
    assert not (tmp_path / "sep.svg").exists()

    # several envs: one must be chosen
    write_diagnostics(root / "Other-v0" / "pmac" / "seed_0" / "diagnostics.csv", diagnostics_rows(1.0))
    with pytest.raises(PlotError, match="several envs"):
        plot_diagnostics(load_diagnostics([root]))
    assert main(["diagnostics", str(root), "--env", "Other-v0", "--out", str(tmp_path / "other.png")]) == 0


def test_diagnostics_of_runs_of_different_lengths_say_so_and_compare_equal_steps(tmp_path: Path, capsys):
    pmac_csv = write_diagnostics(tmp_path / "pmac.csv", diagnostics_rows(1.0))  # rows at 1000, 2000, 3000
    short = write_diagnostics(tmp_path / "short.csv", diagnostics_rows(3.0)[:2])  # a seed still running: to 2000
    seeds = load_diagnostics([f"pmac={pmac_csv}", f"pmac={short}"])
    errors, compounding, mixture = plot_diagnostics(seeds).axes
    note = capsys.readouterr().err
    # (a), (c): cut to the shortest run, which the legend and a note say
    assert errors.lines[0].get_label() == "PMAC local (2 runs, cut at 2,000)"
    assert mixture.lines[0].get_label() == "PMAC (2 runs, cut at 2,000)"
    assert "runs end between 2000 and 3000 steps; cut at 2000" in note
    # (b) by default at the last step every run has reached: both seeds' rows of step 2000, not 3000 mixed with 2000
    np.testing.assert_allclose(compounding.lines[0].get_ydata(), [(2000.0 + 6000.0) / 2 * h for h in HORIZONS])
    assert compounding.get_title() == "Compounding error (step 2,000)" and compounding.lines[0].get_label() == "PMAC (2 runs)"
    # at a step the short seed has not reached: without it (its row of step 2000 is another training stage)
    at_3000 = plot_diagnostics(seeds, at_step=3000, panels=("compounding",)).axes[0]
    np.testing.assert_allclose(at_3000.lines[0].get_ydata(), [3000.0 * h for h in HORIZONS])
    assert at_3000.lines[0].get_label() == "PMAC (1 run)" and "without short" in capsys.readouterr().err
    # truncate=False: the longest run's last step
    longest = plot_diagnostics(seeds, panels=("compounding",), truncate=False).axes[0]
    assert longest.get_title() == "Compounding error (step 3,000)"
    # one or two points get markers (a bare line of one point does not show)
    one_row = write_diagnostics(tmp_path / "one.csv", diagnostics_rows(1.0)[:1])
    single = plot_diagnostics(load_diagnostics([f"pmac={one_row}"]), panels=("errors",)).axes[0]
    assert single.lines[0].get_marker() == "o"


def test_diagnostics_inputs_counted_once_and_appended_runs_split(tmp_path: Path, capsys):
    root = tmp_path / "results"
    for seed in (0, 1):
        write_diagnostics(root / ENV / "pmac" / f"seed_{seed}" / "diagnostics.csv", diagnostics_rows(1.0 + seed))
    runs = load_diagnostics([root, root / ENV / "pmac" / "seed_0", root / ENV / "pmac" / "seed_0" / "diagnostics.csv"])
    assert [run.run for run in runs[ENV]["pmac"]] == ["seed_0", "seed_1"]  # a run found three times counts once
    # a file two runs appended to (the callback's csv_path reused): the last run's rows, with a note
    rows = diagnostics_rows(1.0) + diagnostics_rows(5.0)[:2]
    twice = write_diagnostics(tmp_path / "twice.csv", rows)
    (run,) = load_diagnostics([f"pmac={twice}"])[UNKNOWN_ENV]["pmac"]
    np.testing.assert_array_equal(run.columns["timesteps"], [1000, 2000])
    np.testing.assert_allclose(run.columns["local_obs_mse"], [0.05, 0.10])
    assert "holds the rows of 2 runs (timesteps go back at rows 4)" in capsys.readouterr().err
    # a file of one's own naming beside runner results of one env: that env (it used to be another "unknown env")
    mine = load_diagnostics([root, f"mine={twice}"])
    assert list(mine) == [ENV] and sorted(mine[ENV]) == ["mine", "pmac"]
    assert sorted(load_diagnostics([f"mine={twice}"], envs=[ENV])[ENV]) == ["mine"]
    with pytest.raises(PlotError, match=r"no diagnostics for env Hopper-v4 .*found envs \['Toy-v0'\]"):
        load_diagnostics([root], envs=["Hopper-v4"])
    # files that are not diagnostics: skipped with the reason
    binary = tmp_path / "buffer.npz"
    binary.write_bytes(b"\x93NUMPY\xb0\xff\x00" * 10)
    evaluations = tmp_path / "evaluations.csv"
    evaluations.write_text("timesteps,mean_return,std_return,wall_s\n1000,1.0,0.0,1.0\n")
    with pytest.raises(PlotError, match="No readable diagnostics"):
        load_diagnostics([binary, evaluations])
    err = capsys.readouterr().err
    assert "buffer.npz: not a readable CSV file" in err and "evaluations.csv: no model-diagnostics columns" in err


def test_diagnostics_cli_refuses_what_would_draw_nothing(tmp_path: Path, capsys):
    pmac_csv = write_diagnostics(tmp_path / "pmac.csv", diagnostics_rows(1.0))
    out = str(tmp_path / "d.png")
    assert main(["diagnostics", "--csv", f"pmac={pmac_csv}", "--algos", "sac", "--out", out]) == 1
    assert "none of --algos sac in the inputs (found pmac)" in capsys.readouterr().err
    assert main(["diagnostics", "--csv", f"pmac={pmac_csv}", "--at-step", "50", "--out", out]) == 1
    assert "before every run's first row (step 1000)" in capsys.readouterr().err
    assert not Path(out).exists()
    for option in ("--smooth", "--n-points"):
        with pytest.raises(SystemExit):
            main(["curves", str(tmp_path), option, "0"])
        assert "expected a positive integer" in capsys.readouterr().err


def test_curves_inputs_counted_once_and_settings_kept_apart(runner_results: Path, capsys):
    runs = load_runs([runner_results, runner_results / ENV / "pmac" / "seed_0"])
    assert [curve.run for curve in runs[ENV]["pmac"]] == ["seed_0", "seed_1", "seed_2"]  # not seed_0 twice
    assert "different settings" not in capsys.readouterr().err
    run_json = runner_results / ENV / "pmac" / "seed_0" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "settings": "reduced"}))
    run_json = runner_results / ENV / "pmac" / "seed_1" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "settings": "paper"}))
    load_runs(runner_results)
    assert "pmac on Toy-v0 averages runs of different settings (paper, reduced" in capsys.readouterr().err
    # one grid point: the last common step (it was the first)
    summary = summarize_runs(load_runs(runner_results, verbose=False), n_points=1, verbose=False)[ENV]["pmac"]
    np.testing.assert_array_equal(summary.steps, [400])
    assert summary.mean[-1] == pytest.approx(EXPECTED_MEAN[-1])


def test_label_pairs_match_algorithms_whatever_the_case(runner_results: Path):
    figure = plot_curves(load_runs(runner_results, verbose=False), labels=["PMAC=PMAC (ours)"])
    (ax,) = figure.axes
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["PMAC (ours) (3 runs, cut at 400 steps)"]
    plt.close(figure)


def test_diagnostics_cli_accepts_at_step_at_the_first_row(tmp_path: Path):
    pmac_csv = write_diagnostics(tmp_path / "pmac.csv", diagnostics_rows(1.0))
    out = tmp_path / "d.png"
    assert main(["diagnostics", "--csv", f"pmac={pmac_csv}", "--at-step", "1000", "--out", str(out)]) == 0
    assert out.is_file()


def test_cli_curves_table_follows_algos_and_smooth(runner_results: Path, tmp_path: Path, capsys):
    write_zoo_run(runner_results, "sac", 1, SAC_STEPS, SAC_VALUES)
    args = ["curves", str(runner_results), "--algos", "sac", "pmac", "--smooth", "2", "--out", str(tmp_path / "c.png")]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["sac", "pmac"]  # in --algos order
    # each seed smoothed over 2 points before the seeds are aligned: at 400, (25 + 25 + 3.5) / 3, not 23 unsmoothed
    assert lines[2].split()[3] == "17.83" and lines[1].split()[3] == "86.00"  # sac: (80 + 92) / 2, not 92
