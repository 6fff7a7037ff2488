# One venv for everything: `make quickstart` trains the quick Table 3 ablation and prints it;
# `make test` runs the test suite over the machine's cores, `make test-fast` its fast lane (no test marked slow:
# no training, no job processes, no SLURM or PostgreSQL). Each creates the venv first if it is missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

# pytest-xdist workers: one per core; the SLURM tests share one worker (their xdist_group, tests/conftest.py)
PYTEST_WORKERS ?= auto

.PHONY: quickstart test test-fast venv clean bench-scale-smoke

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

quickstart: venv
	$(BIN)/harness run ablations/distillation.yaml --profile quick --executor local
	$(BIN)/harness report --table 3 --profile quick

test: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

test-fast: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

# benchmarks/scale.py at its smallest sizes (seconds): the real figures come from its defaults
bench-scale-smoke: venv
	$(BIN)/python benchmarks/scale.py --sizes 100,300 --epochs 1 --repeat 1
	$(BIN)/python benchmarks/planner.py --tables 10 --budgets 8

clean:
	rm -rf runs
