# Two commands for a newcomer: `make demo` (main job end to end on a synthetic dataset)
# and `make test` (the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-work
BENCH_WORK ?= $(DEMO_DIR)/model

.PHONY: demo test test-slow bench benchmark clean-venv

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

# The paper's comparison (method, ablations, baselines) on the demo's synthetic data: makes the dataset
# if missing, prepares it, trains every model that is missing and writes $(DEMO_DIR)/model/benchmark/.
benchmark: $(STAMP)
	test -f $(DEMO_DIR)/bids_truth/truth.json || $(BIN)/pseudohealthy phantom $(DEMO_DIR)/bids --patients 8 \
		--controls 8 --seed 0 --truth-dir $(DEMO_DIR)/bids_truth --preview
	$(BIN)/pseudohealthy benchmark $(DEMO_DIR)/model --bids $(DEMO_DIR)/bids --methods all

clean-venv:
	rm -rf $(VENV)
