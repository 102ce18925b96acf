"""Instructed variants of a base query, with qrels filtered programmatically by their constraint.

Each base query with answer set A yields at most one inclusion, one exclusion and one recency variant;
a variant is kept only if its qrels are non-empty and strictly smaller than A, so every instruction
changes what counts as relevant.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

from stark_instruct.filters import matches
from stark_instruct.instructions import constraint_filter, merge, paraphrase, recency_constraint

RECENCY_YEARS = (1, 2, 3, 5)
RATING_BOUNDS = (4.0, 4.5)
SELECTIVE_SHARE = 0.4


def _candidates(answers: list[int], metas: list[dict], display: dict[str, str],
                reference_date: dt.date) -> dict[str, list[dict]]:
    """Every constraint that splits A into a non-empty strict subset, grouped by kind."""
    out: dict[str, list[dict]] = {"inclusion": [], "exclusion": [], "recency": []}
    brands = Counter(metas[a]["brand"] for a in answers if metas[a]["brand"])
    colors = Counter(c for a in answers for c in metas[a]["color"])
    for b, _ in brands.most_common(3):
        d = display.get(b, b)
        out["inclusion"].append({"kind": "inclusion", "attribute": "brand", "field": "brand", "op": "eq", "value": b, "display": d})
        out["exclusion"].append({"kind": "exclusion", "attribute": "brand", "field": "brand", "op": "ne", "value": b, "display": d})
    for c, _ in colors.most_common(3):
        out["inclusion"].append({"kind": "inclusion", "attribute": "color", "field": "color", "op": "contains", "value": c})
        out["exclusion"].append({"kind": "exclusion", "attribute": "color", "field": "color", "op": "ne", "value": c})
    prices = sorted(metas[a]["price"] for a in answers if metas[a]["price"] is not None)
    if len(prices) >= 2:
        low = prices[len(prices) // 3]  # a budget that rules out most of the answers, as budgets do
        bound = float(max(5, round(low / 5) * 5))
        out["inclusion"].append({"kind": "inclusion", "attribute": "price", "field": "price", "op": "lte", "value": bound})
    for r in RATING_BOUNDS:
        out["inclusion"].append({"kind": "inclusion", "attribute": "rating", "field": "rating", "op": "gte", "value": r})
    for w in RECENCY_YEARS:
        out["recency"].append(recency_constraint(reference_date, w))
    return out


def make_variants(base: dict, metas: list[dict], reference_date: dt.date, rng: random.Random,
                  display: dict[str, str] | None = None) -> list[dict]:
    """Rows for one base query: kind "none" (the base query itself) plus its instructed variants.

    Every row carries the base's `query_constraint` (the metadata its query implies, None where the source
    does not know it): for oracles and reports only, never for a planner.
    """
    answers = list(base["answer_ids"])
    implied = base.get("query_constraint")
    rows = [{
        "id": base["id"], "base_id": base["id"], "split": base["split"], "kind": "none",
        "query": base["query"], "instruction": "", "merged_query": base["query"], "constraint": None,
        "relevant_ids": answers, "query_constraint": implied,
    }]
    for kind, cands in _candidates(answers, metas, display or {}, reference_date).items():
        valid = []
        for c in cands:
            node = constraint_filter(c)
            qrels = [a for a in answers if matches(node, metas[a])]
            if 0 < len(qrels) < len(answers):
                valid.append((c, qrels))
        if not valid:
            continue
        # An instruction is worth writing when it changes the answer a lot: prefer selective constraints.
        selective = [(c, q) for c, q in valid if len(q) <= SELECTIVE_SHARE * len(answers)]
        valid = selective or valid
        if kind == "exclusion":
            # "Not X" is worth saying when X is common among the answers: keep the ones that remove the most.
            fewest = min(len(q) for _, q in valid)
            valid = [(c, q) for c, q in valid if len(q) == fewest]
        c, qrels = rng.choice(valid)
        instruction = paraphrase(c, rng)
        rows.append({
            "id": f"{base['id']}-{kind}", "base_id": base["id"], "split": base["split"], "kind": kind,
            "query": base["query"], "instruction": instruction, "merged_query": merge(base["query"], instruction),
            "constraint": c, "relevant_ids": qrels, "query_constraint": implied,
        })
    return rows
