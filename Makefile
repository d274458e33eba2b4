# Two entry points, both self-contained on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# TensorFlow's C++ notices (oneDNN, cudart, the cuInit error) stay off.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test test-fast typecheck install install-dev lint format bench clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# uv installs the same requirements in about half pip's time here (parallel downloads and
# byte-compiling; 36 s vs 70 s for the dev extra); pip does it when uv cannot.
define install_into_venv
	($(BIN)/python -m pip install --quiet uv && \
	 $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode $(1)) || \
	$(BIN)/python -m pip install --quiet $(1)
endef

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call install_into_venv,-e .)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(call install_into_venv,-e ".[dev]")
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: install, train the digits base models once, stack them, print the leaderboard
demo: install
	$(BIN)/python experiments/digits/train_base_models.py
	$(BIN)/stacking run configs/digits.yaml

## kaggle-demo: install with the kaggle extra, write the breast-cancer tables, export the fold
## plan, train LightGBM as a notebook would (OOF/test files) and as an ONNX fold set, two Keras
## fold sets, stack them, then score every model on the held-out labels (docs/kaggle.md)
.PHONY: kaggle-demo
$(VENV)/.installed-kaggle: pyproject.toml | $(BIN)/python
	$(call install_into_venv,-e ".[kaggle]")
	touch $@ $(VENV)/.installed

kaggle-demo: $(VENV)/.installed-kaggle
	$(BIN)/python experiments/kaggle/make_data.py
	$(BIN)/stacking folds configs/kaggle.yaml --output experiments/kaggle/data/folds.csv
	$(BIN)/python experiments/kaggle/lgbm_oof.py
	$(BIN)/python experiments/kaggle/train_base_models.py
	$(BIN)/stacking run configs/kaggle.yaml
	$(BIN)/python experiments/kaggle/score_holdout.py

## images-demo: write the digits as PNG files, train the image base models, stack them
.PHONY: images-demo
images-demo: install
	$(BIN)/python experiments/images/train_base_models.py
	$(BIN)/stacking run configs/images.yaml

## test: install with the dev extra, lint, type-check, run the whole test suite
## (mypy runs beside pytest: the test workers leave a core idle often enough to hide it;
## its report is printed after the tests', and either failing fails the target)
test: install-dev lint
	@$(BIN)/mypy stacking > .mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder; tests=$$?; \
	wait $$mypy; types=$$?; echo "mypy stacking:"; cat .mypy.log; rm -f .mypy.log; \
	test $$tests -eq 0 && test $$types -eq 0

## test-fast: the unit tests only (no whole experiments, no demo), for the edit-test loop
test-fast: install-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not e2e and not slow" -q

typecheck: install-dev
	$(BIN)/mypy stacking

lint: install-dev
	$(BIN)/ruff check stacking tests experiments
	$(BIN)/ruff format --check stacking tests experiments

format: install-dev
	$(BIN)/ruff format stacking tests experiments
	$(BIN)/ruff check --fix stacking tests experiments

## bench: end to end at 100k rows (ratios to the tutorial loop, matmul peak, warm rerun, RSS;
## ~2 min on a quiet machine), then one compiled call vs model.predict, then one traced function
## per architecture vs one per fold model. For the 1M-row run:
## BENCH_ARGS="--rows 1000000 --rss-counts 2,8 --repeats 1" (~8 min).
bench: install-dev
	$(BIN)/python experiments/benchmarks/bench_end_to_end.py --profile $(BENCH_ARGS)
	$(BIN)/python experiments/benchmarks/bench_inference.py
	$(BIN)/python experiments/benchmarks/bench_shared_trace.py

## mutation: mutmut over the modules that compute reported numbers ([tool.mutmut] in
## pyproject.toml), each mutant against the unit tests that run its code; then the list of
## mutants not killed. Not part of `make test`: metrics, evaluate and numeric (1,136 mutants)
## took 31 min on 2 busy cores. One module: make mutation MUTANTS='stacking.metrics*'.
## Results and the equivalent mutants: docs/mutation.md.
mutation: install-dev
	rm -rf mutants
	$(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf runs .stacking_cache mlflow.db mlruns experiments/digits/models experiments/digits/data \
	       experiments/images/models experiments/images/data mutants
