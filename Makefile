# sb3-pmac developer commands. Everything runs inside ./.venv, created on first use.
#   make demo   -> create .venv, install sb3-pmac with its [mujoco] extra, train PMAC on Hopper-v4 (short run), save,
#                  reload, evaluate
#   make test   -> create/update .venv with the [mujoco], [tests], [zoo], [postgres] and [docs] extras and run the tests
# Pick another PyTorch build with e.g. `make demo TORCH_SPEC="torch==2.5.1"` (default below: the CPU build where pip
# finds it under that spec; PyPI's default Linux wheel is a CUDA build, see docs/install.md).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?= -n 2 --durations=15
DEMO_ARGS ?=

.PHONY: demo test test-slow lint format type doc clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(PIP) install "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: $(VENV)/.created setup.py sb3_pmac/version.txt
	$(PIP) install -e ".[mujoco]"
	touch $@

$(VENV)/.installed-tests: $(VENV)/.installed Makefile
	$(PIP) install -e ".[mujoco,tests,zoo,postgres,docs]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-tests
	$(PIP) install -e ".[mujoco,tests,zoo,postgres,docs,dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m sb3_pmac.demo $(DEMO_ARGS)

test: $(VENV)/.installed-tests
	$(PY) -m pytest $(PYTEST_ARGS) tests

test-slow: $(VENV)/.installed-tests
	$(PY) -m pytest -m slow -v tests

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check sb3_pmac tests benchmarks setup.py

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format sb3_pmac tests benchmarks setup.py
	$(VENV)/bin/ruff check --fix sb3_pmac tests benchmarks setup.py

type: $(VENV)/.installed-dev
	$(VENV)/bin/mypy sb3_pmac

doc: $(VENV)/.installed-dev
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
