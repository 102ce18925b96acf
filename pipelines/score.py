"""The score stage of a TAO round, resumable: every candidate plan gets the benchmark reward.

``score_stage`` executes every candidate with the rewards package's scorer (the same parser, executor and
Recall@k as evaluation) and appends reward, validity, error and per-query metrics, plus what selection
needs to tell skill from luck (``make_scorer``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ir_core.io import JsonlAppender, read_jsonl
from ir_core.types import ScoredCandidate, row_key
from pipelines.strategies import decision
from rewards.execute import Executor, score_plan, score_text
from rewards.parse import parse_plan
from rewards.plan import Search, SearchPlan, carries_filter
from stark_instruct.instructions import constraint_filter

SCORED = "scored.jsonl"

# (candidate text, its prompt row) -> the scored fields of the row
Scorer = Callable[[str | None, dict], dict]


def make_scorer(bench: Any, engine: str = "tantivy", k: int = 20) -> Scorer:
    """The reward used everywhere: parse, validate, execute with the benchmark index, Recall@k.

    A scored row is the executor's `RewardResult` (without the ranking, which scored.jsonl does not keep)
    plus what selection needs to tell skill from luck: ``baseline_reward``, the reward of the prompt's
    raw query as the only search (free to compute, and what a sample must beat), ``right_filter``,
    whether the plan filters with the instruction's own constraint (None without an instruction), and
    ``decision``, the "field op" of each filter leaf (what selection balances on).
    """
    executor = Executor(bench.index(engine))
    schema = bench.schema
    baselines: dict[str, float] = {}

    def baseline(prompt: dict) -> float:
        pid = prompt["prompt_id"]
        if pid not in baselines:
            raw = SearchPlan((Search(prompt["query"]),))
            baselines[pid] = score_plan(raw, prompt["relevant_ids"], executor, k).reward
        return baselines[pid]

    def score(text: str | None, prompt: dict) -> dict:
        row = score_text(text, list(prompt["relevant_ids"]), schema, executor, k=k).to_dict()
        del row["ranking"]
        if prompt.get("query"):
            row["baseline_reward"] = baseline(prompt)
        constraint = prompt.get("constraint")
        row["right_filter"] = (None if not constraint
                               else bool(row["valid"]) and obeys_constraint(text, constraint, schema))
        row["decision"] = list(decision(text)) if row["valid"] else []
        return row

    return score


def obeys_constraint(text: str | None, constraint: dict | str | None, schema: Any) -> bool | None:
    """Whether a valid plan filters with the instruction's constraint leaf; None for a plain query."""
    if not constraint:
        return None
    if isinstance(constraint, str):
        constraint = json.loads(constraint)
    return carries_filter(parse_plan(text or "", schema), constraint_filter(constraint, schema))


def score_stage(
    candidates_path: str | Path,
    prompts: Sequence[dict],
    out_path: str | Path,
    scorer: Scorer,
    progress: bool = True,
) -> dict:
    """Append a scored copy of every candidate to ``out_path``, skipping rows scored by an earlier run."""
    by_id = {p["prompt_id"]: p for p in prompts}
    candidates = read_jsonl(candidates_path)
    scored = 0
    with JsonlAppender(out_path, row_key) as out:
        todo = [c for c in candidates if row_key(c) not in out]
        for c in tqdm(todo, desc="score", unit="plan", disable=not progress):
            res = scorer(c.get("text"), by_id[c["prompt_id"]])
            scored += out.append(ScoredCandidate.from_dict({**c, **res}).to_dict())
        total = len(out.keys)
    rows = read_jsonl(out_path)
    return {"rows": total, "scored": scored, **sample_stats(rows)}


def sample_stats(rows: Sequence[dict]) -> dict:
    """What a round's samples were worth: mean and best-of-N reward, the raw-query baseline, how often
    the best sample beat it, and how often the instruction's filter appears (best sample / any sample)."""
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    best = [max(c, key=lambda r: r["reward"]) for c in by_prompt.values()]
    instructed = [c for c in by_prompt.values() if c[0].get("right_filter") is not None]

    def mean(xs: Sequence[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return {
        "mean_reward": mean([r["reward"] for r in rows]) or 0.0,
        "valid_rate": mean([float(bool(r["valid"])) for r in rows]) or 0.0,
        "best_of_n_reward": mean([b["reward"] for b in best]),
        "baseline_reward": mean([b["baseline_reward"] for b in best if b.get("baseline_reward") is not None]),
        "best_beats_baseline": mean([float(b["reward"] > b["baseline_reward"]) for b in best
                                     if b.get("baseline_reward") is not None]),
        "right_filter_any": mean([float(any(r.get("right_filter") for r in c)) for c in instructed]),
        "right_filter_samples": mean([float(bool(r.get("right_filter"))) for c in instructed for r in c]),
    }
