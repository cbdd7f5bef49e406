# Two commands for a newcomer: `make demo` (main job end to end on a synthetic dataset)
# and `make test` (the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-work
BENCH_WORK ?= $(DEMO_DIR)/model

.PHONY: demo test test-slow bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pseudohealthy demo $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Speed and memory, side by side in one run, on the model `make demo` trained (benchmarks/results/*.json).
bench: $(STAMP)
	$(BIN)/python -u benchmarks/bench_detect.py $(BENCH_WORK)
	$(BIN)/python -u benchmarks/bench_train.py $(BENCH_WORK)

clean-venv:
	rm -rf $(VENV)
