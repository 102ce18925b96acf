"""Search-plan language, parsing, execution and the recall reward (see docs/CONTRACTS.md)."""

from rewards.execute import BatchScorer, Executor, RewardResult, score_batch, score_plan, score_text
from rewards.metrics import all_metrics, hit_at_k, recall_at_k, reciprocal_rank
from rewards.parse import PlanError, parse_plan
from rewards.plan import Search, SearchPlan, plan_json_schema, plan_to_json
from rewards.prompts import build_messages, default_examples, render_prompt

__all__ = [
    "BatchScorer", "Executor", "PlanError", "RewardResult", "Search", "SearchPlan", "all_metrics",
    "build_messages", "default_examples", "hit_at_k", "parse_plan", "plan_json_schema", "plan_to_json",
    "recall_at_k", "reciprocal_rank", "render_prompt", "score_batch", "score_plan", "score_text",
]
