# Offline TAO rounds (pipelines/tao.py) and the training throughput benchmark. Docs: docs/tao.md.
TAO_CONFIG ?= configs/tao/smollm2-cpu.yaml
TAO_RUN ?= runs/tao
TAO_ARGS ?=

.PHONY: tao tao-dpo tao-seeds bench-train bench-eval bench-sampling bench-levers

# best-of-N rejection-sampling fine-tuning (SFT) for the rounds in $(TAO_CONFIG); resumes if interrupted.
tao: model benchmark ## TAO rounds with best-of-n SFT, $(TAO_CONFIG) (docs/tao.md)
	$(PY) -m pipelines.tao --config $(TAO_CONFIG) --benchmark $(BENCH) --run-dir $(TAO_RUN) $(TAO_ARGS)

# Same budget, DPO pairs (best vs worst plan) instead of SFT: compare $(TAO_RUN)/rounds.md with $(TAO_RUN)-dpo/rounds.md.
tao-dpo: model benchmark ## the same rounds with DPO pairs
	$(PY) -m pipelines.tao --config $(TAO_CONFIG) --benchmark $(BENCH) --run-dir $(TAO_RUN)-dpo \
		--strategy dpo $(TAO_ARGS)

# The demo recipe ($(DEMO_CONFIG)) with TAO seeds 0, 1, 2 (prompts, samples and training all follow the
# seed), each in its own run dir, then their mean, spread and worst seed on test: runs/tao-seeds/summary.md.
TAO_SEEDS ?= 0 1 2
tao-seeds: model benchmark ## the demo recipe with TAO seeds 0 1 2, mean / spread / worst (runs/tao-seeds)
	for s in $(TAO_SEEDS); do \
		$(PY) -m pipelines.tao --config $(DEMO_CONFIG) --benchmark $(BENCH) --run-dir $(DEMO_RUN)-seed$$s \
			--seed $$s --no-progress $(TAO_ARGS) || exit 1; \
	done
	$(PY) scripts/tao_seeds.py $(foreach s,$(TAO_SEEDS),$(DEMO_RUN)-seed$(s)) --out runs/tao-seeds

# SFT training throughput of SmolLM2-135M on the demo's rows, side by side: tokens/s and row-epochs/min of
# the pre-issue-21 recipe ("today"), each change alone, the new defaults ("fast"), and the distilled
# request-only rows. docs/model.md, "Throughput".
BENCH_TRAIN_ARGS ?= --steps 3 --variants today,threads-1,full-ft,bf16-weights,no-dropout,label-head,batch-8,fast,fast-batch-8,request-today,request-fast
bench-train: model benchmark ## SFT training tokens/s and row-epochs/min, variants side by side
	$(PY) scripts/bench_training.py --model $(MODEL_DIR) --benchmark $(BENCH) $(BENCH_TRAIN_ARGS) \
		--out runs/bench/training.json

# The greedy dev + test evaluation of the untrained model as a TAO round runs it (one engine, both splits).
bench-eval: model benchmark ## time a round's greedy dev + test evaluation
	$(PY) scripts/bench_eval.py --config $(DEMO_CONFIG) --out runs/bench/eval.json

# Greedy vs sampled plan rewards per temperature on training prompts (does best-of-n beat greedy?).
bench-sampling: model benchmark ## greedy vs sampled plan rewards per temperature
	$(PY) scripts/bench_sampling_reward.py --config $(DEMO_CONFIG) --temperatures 0.3 0.6 0.9 --prompts 16 \
		--out runs/bench/sampling_reward.json

# What each prompt/decoding lever does to the untrained planner, greedy on dev (docs/tao.md "Third pass").
LEVERS_ARGS ?= --limit 160
bench-levers: model benchmark ## what each prompt/decoding lever does to the untrained planner
	$(PY) scripts/bench_levers.py --bench $(BENCH) $(LEVERS_ARGS) --out runs/bench/levers.json
