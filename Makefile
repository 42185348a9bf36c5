# Two commands on a fresh machine: `make run` trains the default experiment, `make test` tests.
# Both create the virtual environment first when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision pinned to releases that install from this machine's disk; override for others.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: venv run test test-fast lint docs mutants bench bench-process bench-step bench-sweep bench-threads clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	# hydra-optuna-sweeper (Optuna 2) once registered hydra/sweeper=optuna too: drop it from older venvs
	$(PY) -m pip uninstall --quiet --yes hydra-optuna-sweeper 2>/dev/null || true
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m trainer $(ARGS)

# The tests run on every core (pytest-xdist), a test file per worker (--dist loadfile), so that a
# module-scoped fixture (one sweep read by several tests) runs once; files in collection order, the
# heaviest first (tests/conftest.py HEAVY_FIRST). WORKERS=0: in one process.
WORKERS ?= auto
XDIST = -n $(WORKERS) --dist loadfile --no-loadscope-reorder

# Python's compiled files written and reused (__pycache__, ignored by git): the suite starts ~60
# interpreters, and a machine that sets PYTHONDONTWRITEBYTECODE=1 would have each one compile the
# trainer and the tests again (~0.2 CPU s an interpreter, ~3 s of pytest's collection a worker).
test test-fast mutants: export PYTHONDONTWRITEBYTECODE :=

test: $(STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or anchor fails.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

# Hand-written faults in important behaviour, each run against the tests that should notice it
# (docs/development.md); fails when one survives.
mutants: $(STAMP)
	$(PY) scripts/mutants.py $(ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py $(ARGS)
	$(PY) scripts/bench_process.py

# Single-run speed from outside the process: `python -m trainer` against a bare loop, wall times.
bench-process: $(STAMP)
	$(PY) scripts/bench_process.py $(ARGS)

# One training step, variant by variant (fused or default SGD, gathers, in-place ReLU), in-process.
bench-step: $(STAMP)
	$(PY) scripts/bench_step.py $(ARGS)

bench-sweep: $(STAMP)  # basic launcher, vectorized launcher and the floor (scripts/floor_sweep.py), one thread each
	$(PY) scripts/bench.py --sweep $(ARGS)

# 1 vs 2 torch threads under each OpenMP wait policy, idle and with one core kept busy (docs/guides/speed.md).
bench-threads: $(STAMP)
	$(PY) scripts/bench_threads.py $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache site
