"""The Sphinx documentation builds without warnings, has every page, and its code snippets run."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_PMAC_KWARGS

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("furo")

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = (
    "index",
    "install",
    "quickstart",
    "algorithm",
    "hyperparameters",
    "zoo",
    "diagnostics",
    "troubleshooting",
    "results",
    "architecture",
    "api",
    "changelog",
)


def build_html(out: Path) -> None:
    """Build the docs with warnings as errors into ``out`` (a separate process: a clean Sphinx state)."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", "-d", str(out / ".doctrees")]
    result = subprocess.run([*command, str(DOCS), str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"


def test_docs_build(tmp_path: Path) -> None:
    """
    One test (one build, also under pytest-xdist): no warnings, every page built and in the index, the notation table,
    every constructor parameter in hyperparameters.md, every public module in the API reference.
    """
    from sb3_pmac import PMAC

    build_html(tmp_path)
    pages = {page: (tmp_path / f"{page}.html").read_text(encoding="utf-8") for page in PAGES}  # each page exists

    for page in PAGES[1:]:
        assert f'href="{page}.html"' in pages["index"], f"{page} is not in the index toctree"

    notation = pages["algorithm"][pages["algorithm"].index('id="notation"') :]
    for name in ("adaptation_rate", "real_ratio", "rollout_horizon", "replay_buffer", "model_buffer", "dynamics_model"):
        assert f'<span class="pre">{name}</span>' in notation, f"{name} is missing from the notation table"

    for name in inspect.signature(PMAC.__init__).parameters:
        if name not in ("self", "_init_setup_model"):
            assert f'<span class="pre">{name}</span>' in pages["hyperparameters"], f"{name} is missing from hyperparameters.md"

    for name in (
        "sb3_pmac.pmac.PMAC",
        "sb3_pmac.mbpo.MBPO",
        "sb3_pmac.policy_mixture.PolicyMixture",
        "sb3_pmac.buffers.PolicyVersionedReplayBuffer",
        "sb3_pmac.dynamics.ensemble.ProbabilisticEnsemble",
        "sb3_pmac.dynamics.model_trainer.ModelTrainer",
        "sb3_pmac.dynamics.ensemble.mbpo_weight_decays",
        "sb3_pmac.checks.UnsupportedSpaceError",
        "sb3_pmac.horizon.horizon_at",
        "sb3_pmac.termination.get_termination_fn",
        "sb3_pmac.env_presets.make_preset_env",
        "sb3_pmac.fast_sac.train",
        "sb3_pmac.fast_sac.sac_updates",
        "sb3_pmac.zoo.register",
        "sb3_pmac.diagnostics.ModelDiagnosticsCallback",
        "sb3_pmac.diagnostics.evaluate_model",
        "sb3_pmac.diagnostics.evaluate_checkpoints",
        "sb3_pmac.plot.plot_diagnostics",
        "sb3_pmac.plot.plot_curves",
    ):
        assert f'id="{name}"' in pages["api"], f"{name} is missing from the API reference"


# ---------------------------------------------------------------------------------------------- code snippets
#: Values forced on every PMAC/MBPO built by a snippet: the snippets keep the paper's budgets, the test does not.
TINY = TINY_PMAC_KWARGS
MAX_STEPS = 300
#: Text replacements in the snippets (callback periods the tiny budget reaches, one seed instead of five); each must
#: occur somewhere.
REPLACE = {
    "eval_freq=1_000": "eval_freq=100",
    "save_freq=25_000": "save_freq=150",
    "_25000_steps": "_150_steps",
    "for seed in range(5)": "for seed in range(1)",
    "eval_freq=5000, csv_path": "eval_freq=150, csv_path",  # the README's diagnostics callback
}


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of a docs page, or of the README for ``page="README"``."""
    path = DOCS.parent / "README.md" if page == "README" else DOCS / f"{page}.md"
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.slow
def test_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Every ```python block of the README and the user guide runs on its own (a fresh namespace per block, as the docs
    promise), in page order (a block may read files an earlier one wrote), at a tiny budget (patched PMAC).
    """
    pytest.importorskip("tensorboard")
    from sb3_pmac.pmac import PMAC

    original_init, original_learn = PMAC.__init__, PMAC.learn

    def tiny_init(self, *args, **kwargs):
        for key, value in TINY.items():
            kwargs[key] = {**kwargs[key], **value} if isinstance(value, dict) and kwargs.get(key) else value
        original_init(self, *args, **kwargs)

    def short_learn(self, total_timesteps, *args, **kwargs):
        return original_learn(self, min(total_timesteps, MAX_STEPS), *args, **kwargs)

    monkeypatch.setattr(PMAC, "__init__", tiny_init)
    monkeypatch.setattr(PMAC, "learn", short_learn)
    monkeypatch.chdir(tmp_path)
    unused = set(REPLACE)
    n_blocks = 0
    for page in ("README", "quickstart", "algorithm", "hyperparameters", "diagnostics", "architecture"):
        for block in python_blocks(page):
            namespace: dict = {"__name__": f"docs_{page}"}
            for old, new in REPLACE.items():
                if old in block:
                    block = block.replace(old, new)
                    unused.discard(old)
            try:
                exec(compile(block, "README.md" if page == "README" else f"docs/{page}.md", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"snippet of {page}.md failed:\n{block}") from error
            n_blocks += 1
    assert not unused, f"replacements not used (snippets changed?): {unused}"
    assert n_blocks >= 10
