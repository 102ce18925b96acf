"""A TAO round's prompts: one row per training query, in the prompt form the policy is sampled with.

The rows (`ir_core.types.PromptRow`) carry what sampling, scoring and selection need: the messages, the
relevance judgements, the query and its constraint, and with `link_request` the request's own schema.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ir_core.io import write_jsonl
from ir_core.types import PromptRow
from rewards.prompts import default_examples, messages_for_query

PROMPTS = "prompts.jsonl"


def build_prompts(
    bench: Any,
    split: str,
    max_prompts: int | None = None,
    seed: int = 0,
    mode: str = "separate",
    examples: Sequence[dict] | None = None,
    window: int = 0,
    request_schema: Callable[[dict], dict] | None = None,
) -> list[dict]:
    """Prompt rows (prompt_id, kind, messages, relevant_ids, query, constraint, json_schema) for a split;
    `request_schema` maps a query row to its own decoding schema (None: the run's one schema).

    A deterministic subset of ``max_prompts`` queries keeps CPU rounds small: window w of a seeded
    permutation, so rounds 1, 2, 3 ... (windows 0, 1, 2 ...) walk through the whole split before any
    prompt comes back; the order of the benchmark is kept so files are stable.
    """
    queries = list(bench.queries(split))
    if max_prompts is not None and len(queries) > max_prompts:
        order = random.Random(seed).sample(range(len(queries)), len(queries))
        start = window * max_prompts
        keep = {order[(start + j) % len(order)] for j in range(max_prompts)}
        queries = [q for i, q in enumerate(queries) if i in keep]
    if examples is None:
        examples = default_examples(bench.schema)
    rows = []
    for q in queries:
        messages = messages_for_query(bench.schema, q, examples, mode)
        rows.append(
            PromptRow(
                prompt_id=str(q["id"]),
                kind=q.get("kind", "none"),
                messages=messages,
                relevant_ids=[int(x) for x in q["relevant_ids"]],
                query=q["query"],
                constraint=q.get("constraint"),
                json_schema=request_schema(q) if request_schema is not None else None,
            ).to_dict()
        )
    return rows


def write_prompts(bench: Any, path: Path, max_prompts: int | None, seed: int, mode: str,
                  examples: Sequence[dict], window: int = 0,
                  request_schema: Callable[[dict], dict] | None = None) -> dict:
    """A round's prompts.jsonl from the training split; returns counts per instruction kind."""
    prompts = build_prompts(bench, "train", max_prompts, seed=seed, mode=mode, examples=examples, window=window,
                            request_schema=request_schema)
    write_jsonl(path, prompts)
    kinds: dict[str, int] = {}
    for p in prompts:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    return {"prompts": len(prompts), "kinds": kinds}
