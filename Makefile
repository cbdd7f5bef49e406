# Two commands for a newcomer: `make demo` (main job end to end on a synthetic dataset)
# and `make test` (the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-work
BENCH_WORK ?= $(DEMO_DIR)/model

.PHONY: demo test test-slow bench bench-split benchmark benchmark-data bench-samples dev-data bench-budget bench-confounds clean-venv

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

# A phantom whose truth.json records another realism mode than the generator's default (one made before the
# realistic default records 'legacy', or nothing) or another seed than wanted is not reused:
# $(call set_aside_other_phantom,DIR,SEED) moves DIR, with what was prepared and trained from it, to DIR.legacy or
# DIR.seed-N (it stops if that exists), so all is made again.
PHANTOM_OTHER = $(BIN)/python -c "import json, sys; from pseudohealthy.phantom.realism import Realism; \
	t = json.load(open(sys.argv[1])); m = t.get('realism', {}).get('mode') or 'legacy'; \
	print(m if m != Realism().mode else ('' if t.get('seed') == int(sys.argv[2]) else 'seed-%s' % t.get('seed')))"
set_aside_other_phantom = if test -f $(1)/bids_truth/truth.json; then \
	other=$$($(PHANTOM_OTHER) $(1)/bids_truth/truth.json $(2)) || exit 1; \
	if test -n "$$other"; then \
	if test -e $(1).$$other; then echo "$(1) holds a $$other phantom and $(1).$$other exists: move one away"; exit 1; fi; \
	echo "$(1) holds a $$other phantom: moving it to $(1).$$other and making the one wanted"; \
	mv $(1) $(1).$$other; fi; fi

# The paper's comparison (method, ablations, baselines) on a benchmark phantom separate from the demo's
# (30 patients, 20 controls: 10 test patients, 5 test controls, 4 + 3 validation subjects). Seed 4: a fresh one,
# never looked at while choosing (seeds 0 demo, 1 earlier tests, 2 the legacy benchmark, 3 development).
# Makes and prepares it if missing, trains every model that is missing, writes $(BENCH_DIR)/model/benchmark/.
# A third of its test patients have small, faint lesions (--subtle-test-share).
BENCH_DIR ?= bench-work
BENCH_SEED ?= 4
benchmark-data: $(STAMP)
	$(call set_aside_other_phantom,$(BENCH_DIR),$(BENCH_SEED))
	test -f $(BENCH_DIR)/bids_truth/truth.json || $(BIN)/pseudohealthy phantom $(BENCH_DIR)/bids --patients 30 \
		--controls 20 --seed $(BENCH_SEED) --subtle-test-share 0.34 --truth-dir $(BENCH_DIR)/bids_truth
	test -f $(BENCH_DIR)/model/splits.tsv || $(BIN)/pseudohealthy prepare $(BENCH_DIR)/bids $(BENCH_DIR)/model \
		--preset quick --set data.test_control_fraction=0.3

# Every stochastic method at BENCH_SAMPLES pseudo-healthy draws per slice (4: none is compared at its noisiest;
# about 22 h on 2 cores, resumable in sittings; BENCH_SAMPLES=1 takes about 5 h), 3 noise seeds, settings swept
# on validation only.
# The generalisation row (full_transfer): the demo's model (demo phantom, seed 0), exported as one file and scored
# on the benchmark's test subjects without retraining (`make demo` runs first when its model is missing).
BENCH_SAMPLES ?= 4
BENCH_METHODS ?= all
DEMO_MODEL ?= $(BENCH_DIR)/demo-model.zip
$(DEMO_MODEL): | benchmark-data
	$(BIN)/pseudohealthy demo $(DEMO_DIR)
	$(BIN)/pseudohealthy export-model $(DEMO_DIR)/model $(DEMO_MODEL)

benchmark: benchmark-data $(DEMO_MODEL)
	$(BIN)/pseudohealthy benchmark $(BENCH_DIR)/model --methods $(BENCH_METHODS) --samples $(BENCH_SAMPLES) \
		--transfer-model $(DEMO_MODEL)

# The speed split by source on the benchmark's fresh test patients, at the settings `benchmark` chose for `full`
# on validation subjects (after `make benchmark`). Hours on 2 cores (the paper-style loop dominates): it
# writes every (run, seed) as it finishes and resumes when started again. Run it with nothing else running.
bench-split: $(STAMP)
	$(BIN)/python -u benchmarks/bench_detect.py $(BENCH_DIR)/model --split-only \
		--config $(BENCH_DIR)/model/benchmark/configs/full.yaml --name detect_split_benchmark

# How many pseudo-healthy draws per slice: N = 1, 2, 4, 8 over 3 seeds (chosen on validation subjects).
bench-samples: benchmark-data
	for k in classifier translator; do $(BIN)/pseudohealthy train $(BENCH_DIR)/model --model $$k --resume; done
	$(BIN)/python -u benchmarks/bench_samples.py $(BENCH_DIR)/model

# The development set (docs/experiments.md): every choice is iterated on here and on validation subjects,
# never on a test set. Its own phantom (seed 3): 32 patients, half of them marked test = the 16 development
# patients, half of those with small faint lesions; 24 controls, a third held out = 8 development controls.
# Prepared with the quick preset and the bright tail kept (data.intensity_max 3; benchmarks/dev_workdirs.py clip
# derives the clipped range from it without preparing again).
DEV_DIR ?= dev-work
DEV_SEED ?= 3
dev-data: $(STAMP)
	$(call set_aside_other_phantom,$(DEV_DIR),$(DEV_SEED))
	test -f $(DEV_DIR)/bids_truth/truth.json || $(BIN)/pseudohealthy phantom $(DEV_DIR)/bids --patients 32 \
		--controls 24 --seed $(DEV_SEED) --test-share 0.5 --subtle-test-share 0.5 --truth-dir $(DEV_DIR)/bids_truth
	test -f $(DEV_DIR)/model/splits.tsv || $(BIN)/pseudohealthy prepare $(DEV_DIR)/bids $(DEV_DIR)/model \
		--preset quick --set data.intensity_max=3 --set data.test_control_fraction=0.34

# Quality against compute on the development set (docs/experiments.md): translator budgets at 3 mm and 2 mm,
# scored beside the FLAIR z-score, with the preset's detection at one draw per slice (BUDGET_SETTINGS; on a GPU
# pass diffusion.samples=4 or more). Hours on 2 cores; resumable (re-run to continue).
BUDGET_SETTINGS ?= diffusion.samples=1
bench-budget: dev-data
	$(BIN)/python -u benchmarks/bench_budget.py $(DEV_DIR) --settings "$(BUDGET_SETTINGS)"

# What each confound of the realistic phantom costs whom (docs/phantom.md): the development phantom rendered again
# with one confound at a time, scored by the two no-learning references and by our networks trained once on the
# full development phantom (trained here if missing). Hours on 2 cores; resumable (re-run to continue).
# Ours as measured in docs/phantom.md: one draw, central matching, reinsertion; with and without the normative residual.
CONFOUND_OURS = diffusion.samples=1 method.histogram_matching=central diffusion.reinsert=true
bench-confounds: dev-data
	for k in classifier translator; do $(BIN)/pseudohealthy train $(DEV_DIR)/model --model $$k --resume; done
	$(BIN)/python -u benchmarks/bench_confounds.py $(DEV_DIR) --model $(DEV_DIR)/model \
		--settings "$(CONFOUND_OURS) method.normative=false" --also ours_normative "$(CONFOUND_OURS) method.normative=true"

clean-venv:
	rm -rf $(VENV)
