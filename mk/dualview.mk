# Dual-view (polarity-reversal) training of an instruction-aware encoder; see docs/dualview.md.
#   make dual-view                      pairs -> plain / single-view / dual-view arms -> FollowIR-format eval + reranking
#   make dual-view DV_ARGS="--budget 2048 --max-seq-length 128"   any pipelines.dualview.run option
#   make followir-mteb DV_MODEL=runs/dualview/models/dual/model     the real FollowIR tasks via mteb (needs the HF hub)
DV_OUT ?= runs/dualview
DV_ARGS ?=
DV_MODEL ?= $(DV_OUT)/models/dual/model

.PHONY: dual-view dual-view-test followir-mteb

dual-view: venv benchmark ## dual-view encoder training, p-MRR and reranking (docs/dualview.md)
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled DUALVIEW_TQDM=0 \
		$(PY) -m pipelines.dualview.run --bench $(BENCH) --out $(DV_OUT) $(DV_ARGS)

dual-view-test: venv ## the p-MRR, FollowIR, rerank and dual-view tests
	$(PY) -m pytest -q tests/test_pmrr.py tests/test_followir.py tests/test_rerank.py tests/test_dualview.py

followir-mteb: venv ## the real FollowIR tasks through mteb (DV_MODEL=...; needs the HF hub)
	$(PY) -m eval.followir --model $(DV_MODEL) --out $(DV_OUT)/followir_mteb.json

# Audits of pairs, batches and the FollowIR-format set, plus a gradient probe per (view, instruction kind).
.PHONY: dual-view-diagnose
dual-view-diagnose: venv benchmark ## audits of pairs and batches plus a gradient probe per view and kind
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m pipelines.dualview.diagnose --bench $(BENCH) --out $(DV_OUT)/diagnosis.json
