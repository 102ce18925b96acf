"""Edit search: a local search around each prompt's best sample, in the request's own action space.

With a per-request schema (`rewards.plan.request_plan_schema`) a plan's decision is its filter: a
conjunction of leaves (field, op, value) over the values the request names. A small policy's N samples
rarely contain the plan that obeys every part of a request, and when the best of them carries the wrong
op on one leaf, best-of-N teaches that op and DPO has no sample with the flip to contrast it with. So
after scoring, each prompt's best sample is improved by hill climbing over its one-edit neighbours
(drop a leaf, change a leaf's op or value, add a leaf the schema allows), each scored with the same reward, for
up to `steps` moves, a move only when it strictly raises the reward. Every plan it scored is kept as a
candidate (sample_idx from N up, `source: "edit"`), so selection sees the improved plan to teach and,
one edit away from it, the worse plans that differ in exactly one decision: what a DPO pair should
contrast (`pipelines.strategies`).

It reads only the request's decoding schema (the leaves it allows) and the reward; never the query's
recorded constraint. Written by hand because no library searches a JSON-schema-defined action space.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ir_core.io import JsonlAppender, read_jsonl
from ir_core.types import ScoredCandidate, row_key

EXPLORED = "explored.jsonl"

Leaf = tuple[str, str, object]  # (field, op, value)


def schema_leaves(json_schema: dict | None) -> tuple[list[Leaf], int]:
    """Every leaf a per-request schema allows and the most leaves its conjunction may have ([] and 0
    for a schema that is not a request schema with a filter)."""
    defs = (json_schema or {}).get("$defs", {})
    alts = defs.get("leaf", {}).get("anyOf", [])
    out: list[Leaf] = []
    for alt in alts:
        props = alt.get("properties", {})
        fields = props.get("field", {}).get("enum", [])
        ops = props.get("op", {}).get("enum", [])
        values = props.get("value", {}).get("enum", [])
        out += [(f, op, v) for f in fields for op in ops for v in values]
    node = (defs.get("filter", {}).get("anyOf") or [{}])[0]
    max_leaves = node.get("properties", {}).get("all", {}).get("maxItems", 1) if "properties" in node else 1
    return out, max_leaves if out else 0


def plan_leaves(text: str | None) -> tuple[Leaf, ...] | None:
    """The leaves of a one-search request plan's filter, in order; None when the text is not one."""
    try:
        plan = json.loads(text or "")
        (search,) = plan["searches"]
        node = search["filter"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if node is None:
        return ()
    children = node["all"] if isinstance(node, dict) and "all" in node else [node]
    try:
        return tuple((c["field"], c["op"], c["value"]) for c in children)
    except (KeyError, TypeError):
        return None


def render(leaves: Sequence[Leaf], query: str, bare_leaf: bool = False) -> str:
    """A request plan's text as the constrained decoder writes it: compact JSON, filter before query."""
    nodes = [{"field": f, "op": op, "value": v} for f, op, v in leaves]
    filt = None if not nodes else nodes[0] if bare_leaf else {"all": nodes}
    return json.dumps({"searches": [{"filter": filt, "query": query}]}, ensure_ascii=False, separators=(",", ":"))


def neighbours(leaves: tuple[Leaf, ...], allowed: Sequence[Leaf], max_leaves: int) -> list[tuple[Leaf, ...]]:
    """The plans one edit away: drop a leaf, change one leaf's op or its value (another value of its
    field), add an allowed leaf on a (field, value) the plan does not filter on yet (never two leaves
    on one value: `eq` and `ne` of one value contradict, two `eq`s repeat)."""
    out: list[tuple[Leaf, ...]] = []
    used = {(f, v) for f, _, v in leaves}
    for i, (f, op, v) in enumerate(leaves):
        out.append(leaves[:i] + leaves[i + 1:])
        # the same value with another op, or the same op on another value of the field
        out += [leaves[:i] + ((f2, op2, v2),) + leaves[i + 1:] for f2, op2, v2 in allowed
                if f2 == f and ((v2 == v and op2 != op) or (op2 == op and v2 != v and (f2, v2) not in used))]
    if len(leaves) < max_leaves:
        out += [leaves + (leaf,) for leaf in allowed if (leaf[0], leaf[2]) not in used]
    return out


def _key(leaves: tuple[Leaf, ...]) -> frozenset:
    return frozenset(leaves)


def explore_prompt(prompt: dict, cands: Sequence[ScoredCandidate], score: Callable[[str | None, dict], dict],
                   steps: int) -> list[ScoredCandidate]:
    """Hill-climb from the prompt's best valid sample; the new plans scored on the way, as candidates."""
    allowed, max_leaves = schema_leaves(prompt.get("json_schema"))
    query = prompt.get("query")
    if not allowed or not query:
        return []
    # a bare leaf where the filter node is not {"all": [...]} (max_filter_depth 1)
    depth1 = "properties" not in (prompt["json_schema"]["$defs"].get("filter", {}).get("anyOf") or [{}])[0]
    seen: dict[frozenset, float] = {}
    starts = []
    for c in cands:
        leaves = plan_leaves(c.text) if c.valid else None
        if leaves is not None:
            seen[_key(leaves)] = max(seen.get(_key(leaves), 0.0), float(c.reward))
            starts.append((float(c.reward), -len(leaves), leaves))
    if not starts:
        return []
    reward, _, current = max(starts, key=lambda s: (s[0], s[1]))
    new: list[ScoredCandidate] = []
    next_idx = max(c.sample_idx for c in cands) + 1
    for _ in range(steps):
        best_move = None
        for nb in neighbours(current, allowed, max_leaves):
            k = _key(nb)
            if k not in seen:
                text = render(nb, query, depth1)
                row = ScoredCandidate.from_dict({"prompt_id": prompt["prompt_id"], "sample_idx": next_idx,
                                                 "text": text, "source": "edit", **score(text, prompt)})
                next_idx += 1
                new.append(row)
                seen[k] = float(row.reward)
            # strictly better, then fewer leaves
            if seen[k] > reward and (best_move is None or (seen[k], -len(nb)) > (best_move[0], -len(best_move[1]))):
                best_move = (seen[k], nb)
        if best_move is None:
            break
        reward, current = best_move
    return new


def explore_stage(scored: Sequence[dict], prompts: Sequence[dict], out_path: str | Path,
                  score: Callable[[str | None, dict], dict], steps: int, progress: bool = True) -> dict:
    """Append every prompt's edit-search plans, searched from its scored rows (`scored`, the score stage's
    rows), to `out_path` (a prompt already there is skipped)."""
    by_prompt: dict[str, list[ScoredCandidate]] = defaultdict(list)
    for r in scored:
        by_prompt[r["prompt_id"]].append(ScoredCandidate.from_dict(r))
    before = read_jsonl(out_path) if Path(out_path).exists() else []
    done = {r["prompt_id"] for r in before}
    added = improved = 0
    with JsonlAppender(out_path, row_key) as out:
        for p in tqdm(prompts, desc="explore", unit="prompt", disable=not progress):
            cands = by_prompt.get(p["prompt_id"])
            if not cands or p["prompt_id"] in done:
                continue
            rows = explore_prompt(p, cands, score, steps)
            added += sum(out.append(r.to_dict()) for r in rows)
            improved += bool(rows) and max(r.reward for r in rows) > max(c.reward for c in cands)
    return {"rows": len(before) + added, "added": added, "prompts_improved": improved, "steps": steps}
