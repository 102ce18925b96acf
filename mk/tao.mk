# Offline TAO rounds (pipelines/tao.py) and the training throughput benchmark. Docs: docs/tao.md.
TAO_CONFIG ?= configs/tao/smollm2-cpu.yaml
TAO_RUN ?= runs/tao
TAO_ARGS ?=

.PHONY: tao tao-dpo bench-train bench-sampling bench-levers

# best-of-N rejection-sampling fine-tuning (SFT) for the rounds in $(TAO_CONFIG); resumes if interrupted.
tao: model benchmark ## TAO rounds with best-of-n SFT, $(TAO_CONFIG) (docs/tao.md)
	$(PY) -m pipelines.tao --config $(TAO_CONFIG) --benchmark $(BENCH) --run-dir $(TAO_RUN) $(TAO_ARGS)

# Same budget, DPO pairs (best vs worst plan) instead of SFT: compare $(TAO_RUN)/rounds.md with $(TAO_RUN)-dpo/rounds.md.
tao-dpo: model benchmark ## the same rounds with DPO pairs
	$(PY) -m pipelines.tao --config $(TAO_CONFIG) --benchmark $(BENCH) --run-dir $(TAO_RUN)-dpo \
		--strategy dpo $(TAO_ARGS)

# SFT training tokens/s with SmolLM2-135M + LoRA on this machine: float32 1 thread (the CPU default) vs
# bf16 autocast with 1 and 2 threads, 16 rows (~18k tokens) each, side by side. docs/model.md.
BENCH_TRAIN_ARGS ?= --steps 4 --grad-accum 4 --setups float32:1,bfloat16:1,bfloat16:2
bench-train: model benchmark ## SFT training tokens/s, float32 vs bf16, 1 and 2 threads
	$(PY) scripts/bench_training.py --model $(MODEL_DIR) --benchmark $(BENCH) $(BENCH_TRAIN_ARGS) \
		--out runs/bench/training.json

# Greedy vs sampled plan rewards per temperature on training prompts (does best-of-n beat greedy?).
bench-sampling: model benchmark ## greedy vs sampled plan rewards per temperature
	$(PY) scripts/bench_sampling_reward.py --config $(DEMO_CONFIG) --temperatures 0.3 0.6 0.9 --prompts 16 \
		--out runs/bench/sampling_reward.json

# What each prompt/decoding lever does to the untrained planner, greedy on dev (docs/tao.md "Third pass").
LEVERS_ARGS ?= --limit 160
bench-levers: model benchmark ## what each prompt/decoding lever does to the untrained planner
	$(PY) scripts/bench_levers.py --bench $(BENCH) $(LEVERS_ARGS) --out runs/bench/levers.json
