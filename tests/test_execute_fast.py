"""The executor's shortcuts (one-search plans, the fused-plan cache, batch dedupe, worker routing) change no result."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.execute import Executor, _distinct, _routing_key, _spread, score_plan
from rewards.plan import Search, SearchPlan


class RandomIndex:
    """Rankings with score ties, fixed per (query, filter), so fusion can be replayed."""

    def __init__(self, seed: int):
        self.seed = seed

    def search(self, query, filter=None, k=100):
        rng = random.Random(f"{self.seed}:{query}:{filter}")
        docs = rng.sample(range(60), rng.randint(0, 40))
        return [(d, float(rng.randint(1, 3))) for d in docs][:k]


def _reference_fuse(index, plan, depth, rrf_k):
    score, best = {}, {}
    for s in plan.searches:
        for rank, (doc, _) in enumerate(index.search(s.query, s.filter, depth), 1):
            score[doc] = score.get(doc, 0.0) + s.weight / (rrf_k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    return sorted(score, key=lambda d: (-score[d], best[d], d))[:depth]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10), queries=st.lists(st.sampled_from("abcde"), min_size=1, max_size=4),
       weights=st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=4, max_size=4),
       depth=st.integers(1, 50), rrf_k=st.sampled_from([0, 1, 60]))
def test_fusion_equals_the_reference_formula(seed, queries, weights, depth, rrf_k):
    index = RandomIndex(seed)
    plan = SearchPlan(tuple(Search(q, weight=w) for q, w in zip(queries, weights, strict=False)))
    ex = Executor(index, depth=depth, rrf_k=rrf_k)
    expected = _reference_fuse(index, plan, depth, rrf_k)
    assert ex.run(plan) == expected
    assert ex.run(plan) == expected  # from the fused-plan cache


def test_repeated_items_are_scored_once_and_results_are_independent_copies():
    payload = [("x", [1], 20), ("y", [1], 20), ("x", [1], 20), ("x", [2], 20)]
    unique, slots = _distinct(payload)
    assert unique == [("x", [1], 20), ("y", [1], 20), ("x", [2], 20)]
    assert slots == [0, 1, 0, 2]
    ex = Executor(RandomIndex(0))
    scored = [score_plan(SearchPlan((Search(t),)), r, ex) for t, r, _ in unique]
    out = _spread(scored, slots)
    assert out[0] == out[2] and out[0] is not out[2]
    out[2].ranking.append(-1)
    assert out[0].ranking == scored[0].ranking != out[2].ranking


def test_routing_key_is_the_sorted_terms_of_the_first_query():
    text = json.dumps({"searches": [{"query": 'Red "trail" shoes for me', "filter": None}, {"query": "other"}]})
    assert _routing_key(text) == ("red", "shoes", "trail")
    assert _routing_key("no plan here") == _routing_key(None) == ()
