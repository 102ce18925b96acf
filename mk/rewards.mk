# Search-plan language and recall reward (rewards/, docs/rewards.md).
#   make test-rewards    parser, fuzz (10k completions), metrics, executor and prompt tests
#   make bench-scoring   scoring throughput (plans/s, plans per CPU-second) at 20k and 1M products: the
#                        project's scorer vs tantivy direct, bm25s and rank-bm25 on the same TAO-like sampled
#                        and synthetic plans, 1 and 2 processes, load average recorded; builds
#                        data/bench/synthetic-<size> once (1M: ~4 min) and bm25s's index once beside it
SCORING_SIZES ?= 20000 1000000
SCORING_PLANS ?= 4000
SCORING_OUT ?= runs/bench/scoring.json

.PHONY: test-rewards bench-scoring

test-rewards: venv ## plan parser, fuzz, metrics, executor and prompt tests
	$(PY) -m pytest -q tests/test_plan_parse.py tests/test_plan_fuzz.py tests/test_metrics.py \
		tests/test_execute.py tests/test_prompts.py

bench-scoring: venv ## scoring throughput at 20k and 1M vs tantivy, bm25s, rank-bm25 (runs/bench/scoring.json)
	$(PY) scripts/bench_scoring.py --sizes $(SCORING_SIZES) --plans $(SCORING_PLANS) --out $(SCORING_OUT)
