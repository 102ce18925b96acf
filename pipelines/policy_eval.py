"""Evaluate a TAO policy with the eval harness: Recall@k and validity per kind group on dev and test.

The harness runs the policy as a planner method next to the round-0 baselines, with the prompt form the
policy was trained on (`Policy.prompt_mode`: the run's mode and few-shot examples, or the distilled
request-only prompt), so it is evaluated on exactly the prompts it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.harness import evaluate
from eval.methods import PlannerMethod
from ir_core.types import GROUPS, Policy
from pipelines.backends import PlannerFactory, release
from pipelines.policy_spec import policy_mode, policy_spec, prompt_examples
from pipelines.rundir import RunDir
from pipelines.tao_config import TaoConfig, request_schemas


def summarize(result: dict, method: str, k: int) -> dict:
    """Recall@k and validity per kind group of one method from an eval.harness result."""
    by_kind = result["methods"][method]["by_kind"]
    key = f"recall@{k}"
    return {
        g: {"recall": by_kind[g].get(key), "validity": by_kind[g].get("validity"), "n": by_kind[g].get("n")}
        for g in GROUPS
        if g in by_kind
    }


def evaluate_policy(cfg: TaoConfig, bench: Any, planner: Any, name: str, split: str, out_dir: Path,
                    limit: int | None, baselines: list[str] = (), mode: str | None = None) -> dict:
    """{name: summary, baseline: summary, ...} for one split, the planner prompted in ``mode`` (default: the
    run's); the harness report goes to ``out_dir``."""
    mode = mode or cfg.mode
    examples = prompt_examples(cfg, bench, mode)
    method = PlannerMethod(planner, bench.schema, examples, mode, name=name, batch_size=cfg.eval_batch_size,
                           request_schema=request_schemas(cfg, bench))
    res = evaluate(bench, split, [*baselines, method], engine=cfg.engine, k=cfg.k, out_dir=out_dir,
                   limit=limit, examples=examples, mode=mode)
    return {m: summarize(res, m, cfg.k) for m in (name, *baselines)}


def evaluate_split(cfg: TaoConfig, bench: Any, factory: PlannerFactory, plan_schema: dict | None,
                   rd: RunDir, policy: Policy, r: int, split: str) -> dict:
    """{"policy": summary, "baselines": {name: summary}} of round ``r``'s policy on one split."""
    limit = cfg.eval_dev_limit if split == "dev" else cfg.eval_test_limit
    planner = factory(policy_spec(cfg, policy, plan_schema))
    try:
        res = evaluate_policy(cfg, bench, planner, f"policy-r{r}", split, rd / "eval" / split, limit,
                              baselines=cfg.baselines if r == 0 else [], mode=policy_mode(cfg, policy))
    finally:
        release(planner)
    return {"policy": res.pop(f"policy-r{r}"), "baselines": res}
