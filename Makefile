# One venv for everything: `make quickstart` trains the quick Table 3 ablation and prints it;
# `make test` runs the test suite. Both create the venv first if it is missing.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: quickstart test venv clean bench-scale-smoke

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

quickstart: venv
	$(BIN)/harness run ablations/distillation.yaml --profile quick --executor local
	$(BIN)/harness report --table 3 --profile quick

test: venv
	$(BIN)/python -m pytest -q

# benchmarks/scale.py at its smallest sizes (seconds): the real figures come from its defaults
bench-scale-smoke: venv
	$(BIN)/python benchmarks/scale.py --sizes 100,300 --epochs 1 --repeat 1
	$(BIN)/python benchmarks/planner.py --tables 10 --budgets 8

clean:
	rm -rf runs
