# Evaluation harness (eval/): baselines and planners on StaRK-Instruct; reports under $(EVAL_OUT).
EVAL_OUT ?= runs/eval
EVAL_SPLIT ?= test
EVAL_METHODS ?= raw,concat,oracle,oracle_full
EVAL_ENGINE ?= tantivy
EVAL_ARGS ?=

.PHONY: eval-baselines eval

# raw, concat, oracle and oracle_full on the test split of the default benchmark (merged into $(EVAL_OUT)).
eval-baselines: benchmark ## raw / concat / oracle / oracle_full on the test split into $(EVAL_OUT) (docs/eval.md)
	$(PY) -m eval.run --bench $(BENCH) --split $(EVAL_SPLIT) --methods raw concat oracle oracle_full \
		--engine $(EVAL_ENGINE) --out $(EVAL_OUT) $(EVAL_ARGS)

# Any methods, merged into the existing report: make eval EVAL_METHODS=hf:models/smollm2
eval: benchmark ## any methods, merged into $(EVAL_OUT) (EVAL_METHODS=hf:models/smollm2-135m-instruct)
	$(PY) -m eval.run --bench $(BENCH) --split $(EVAL_SPLIT) --methods $(EVAL_METHODS) \
		--engine $(EVAL_ENGINE) --out $(EVAL_OUT) $(EVAL_ARGS)
