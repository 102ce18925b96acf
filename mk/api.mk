# GPT / Claude planner baselines (eval/api_planners.py, docs/api.md). Needs the API clients
# (pip install -e '.[api]') and the keys in the environment: OPENAI_API_KEY, ANTHROPIC_API_KEY.
#   export OPENAI_API_KEY=... ANTHROPIC_API_KEY=...
#   make eval-api MODELS="openai:gpt-5-nano anthropic:claude-sonnet-4-5"
# Results join the baselines' table and chart in $(API_OUT) (raw is re-run so gain vs raw is defined).
MODELS ?= openai:gpt-5-nano anthropic:claude-sonnet-4-5
API_OUT ?= $(or $(EVAL_OUT),runs/eval)
API_SPLIT ?= test
API_CACHE ?= runs/api_cache
API_CONCURRENCY ?= 4
API_MAX_RETRIES ?= 5
API_TIMEOUT ?= 60
API_ARGS ?=

_api_empty :=
_api_space := $(_api_empty) $(_api_empty)
_api_comma := ,
_api_methods = raw,$(subst $(_api_space),$(_api_comma),$(strip $(filter-out raw,$(MODELS))))
_api_env = IR_API_CACHE=$(API_CACHE) IR_API_CONCURRENCY=$(API_CONCURRENCY) \
	IR_API_MAX_RETRIES=$(API_MAX_RETRIES) IR_API_TIMEOUT=$(API_TIMEOUT)

.PHONY: eval-api test-api

eval-api: benchmark ## GPT / Claude planners against raw (MODELS=..., keys in the environment; docs/api.md)
	$(_api_env) $(PY) -m eval.run --bench $(BENCH) --split $(API_SPLIT) --methods $(_api_methods) \
		--out $(API_OUT) $(API_ARGS)

# The API planners against a local stub of both HTTP APIs (no network, no keys needed).
test-api: venv ## the API planner tests against a local stub of both HTTP APIs
	$(PY) -m pytest -q tests/test_api_planners.py
