import datetime as dt
import json

import pytest

from rewards.execute import BatchScorer, Executor, RewardResult, score_batch, score_plan, score_text
from rewards.plan import Search, SearchPlan
from stark_instruct.filters import Leaf, matches, to_json
from stark_instruct.instructions import constraint_filter
from stark_instruct.schema import product_schema


class FakeIndex:
    """Fixed rankings per query, recording calls, so fusion arithmetic can be checked by hand."""

    def __init__(self, rankings):
        self.rankings = rankings
        self.calls = []

    def search(self, query, filter=None, k=100):
        self.calls.append((query, filter, k))
        return [(d, 10.0 - i) for i, d in enumerate(self.rankings.get(query, []))][:k]


SCHEMA = product_schema(dt.date(2025, 6, 30))


def plan(*searches):
    return SearchPlan(tuple(searches))


def test_rrf_scores_and_tie_breaking_by_hand():
    idx = FakeIndex({"a": [1, 2, 3], "b": [3, 4, 1]})
    ex = Executor(idx, rrf_k=60)
    # fused: 1 = 1/61 + 1/63, 3 = 1/63 + 1/61 (tie, best rank 1 both -> doc_id), 2 = 1/62, 4 = 1/62 (tie -> id)
    assert ex.run(plan(Search("a"), Search("b"))) == [1, 3, 2, 4]
    assert ex.run(plan(Search("b"), Search("a"))) == [1, 3, 2, 4]  # order of searches does not matter


def test_weights_scale_contributions():
    idx = FakeIndex({"a": [1, 2], "b": [2, 1]})
    assert Executor(idx).run(plan(Search("a", weight=1.0), Search("b", weight=2.0))) == [2, 1]
    assert Executor(idx).run(plan(Search("a", weight=3.0), Search("b", weight=2.0))) == [1, 2]


def test_best_rank_breaks_score_ties_before_doc_id():
    # doc 9: 1/(0+2) + 1/(0+2) = 1.0 with best rank 2; doc 5: 1/(0+1) = 1.0 with best rank 1
    idx = FakeIndex({"a": [5, 9], "b": [7, 9]})
    assert Executor(idx, rrf_k=0).run(plan(Search("a"), Search("b"))) == [5, 7, 9]


def test_fusion_is_deterministic_and_truncated_to_depth():
    idx = FakeIndex({"a": list(range(50)), "b": list(range(49, -1, -1)), "c": list(range(100, 130))})
    ex = Executor(idx, depth=20)
    p = plan(Search("a"), Search("b"), Search("c"))
    first = ex.run(p)
    assert len(first) == 20
    assert all(Executor(idx, depth=20).run(p) == first for _ in range(3))
    assert all(k == 20 for _, _, k in idx.calls)


def test_cache_reuses_equal_searches():
    idx = FakeIndex({"a": [1, 2]})
    ex = Executor(idx, cache_size=2)
    f1, f2 = Leaf("price", "lt", 20.0), Leaf("price", "lt", 20)  # equal filters, different Python values
    ex.run(plan(Search("a", f1)))
    ex.run(plan(Search("a", f2), Search("a", f1)))
    assert len(idx.calls) == 1 and ex.hits == 2 and ex.misses == 1
    ex.run(plan(Search("b"), Search("c")))  # evicts ("a", f1)
    ex.run(plan(Search("a", f1)))
    assert len(idx.calls) == 4


class ReverseReranker:
    def rerank(self, text, doc_ids):
        self.seen = (text, list(doc_ids))
        return list(reversed(doc_ids))


def test_reranker_applies_only_with_text():
    idx = FakeIndex({"a": [1, 2, 3]})
    rr = ReverseReranker()
    ex = Executor(idx, reranker=rr)
    assert ex.run(plan(Search("a"))) == [1, 2, 3]
    assert ex.run(plan(Search("a")), rerank_text="a only acme") == [3, 2, 1]
    assert rr.seen == ("a only acme", [1, 2, 3])
    with pytest.raises(ValueError, match="no reranker"):
        Executor(idx).run(plan(Search("a")), rerank_text="x")


def test_reranker_output_is_checked():
    class Bad:
        def rerank(self, text, doc_ids):
            return doc_ids + [999]

    with pytest.raises(ValueError, match="permutation"):
        Executor(FakeIndex({"a": [1]}), reranker=Bad()).run(plan(Search("a")), rerank_text="x")
    with pytest.raises(TypeError, match="rerank"):
        Executor(FakeIndex({}), reranker=object())


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"depth": 2.5}, {"rrf_k": -1}, {"rrf_k": float("nan")}])
def test_bad_executor_arguments(kwargs):
    with pytest.raises(ValueError):
        Executor(FakeIndex({}), **kwargs)


def test_score_text_valid_and_invalid():
    ex = Executor(FakeIndex({"tent": [4, 8, 15, 16, 23, 42]}))
    r = score_text('```json\n{"searches": [{"query": "tent"}]}\n```', {8, 42, 99}, SCHEMA, ex, k=3)
    assert r.valid and r.error_code is None and r.n_searches == 1
    assert r.ranking == [4, 8, 15, 16, 23, 42] and r.retrieved == 6
    assert r.reward == pytest.approx(1 / 3)
    assert r.metrics["recall@10"] == pytest.approx(2 / 3) and r.metrics["mrr"] == pytest.approx(1 / 2)

    bad = score_text('{"searches": [{"query": "tent", "filter": {"field": "size", "op": "eq", "value": 1}}]}',
                     {8}, SCHEMA, ex)
    assert (bad.reward, bad.valid, bad.error_code, bad.n_searches, bad.ranking) == (0.0, False, "unknown_field", 0, [])
    assert "size" in bad.error and bad.metrics["recall@20"] == 0.0
    assert score_text(None, {8}, SCHEMA, ex).error_code == "no_output"
    with pytest.raises(ValueError, match="relevant set is empty"):
        score_text("{}", set(), SCHEMA, ex)
    assert RewardResult(**bad.to_dict()) == bad


def test_score_plan_k_is_the_reward_cutoff():
    ex = Executor(FakeIndex({"x": list(range(30))}))
    p = plan(Search("x"))
    assert score_plan(p, {0, 25}, ex, k=20).reward == 0.5
    assert score_plan(p, {0, 25}, ex, k=26).reward == 1.0


# ---- real engines and the batch scorer on the tiny benchmark ----------------------------------------

@pytest.fixture(scope="module", params=["tantivy", "bm25"])
def engine(request, tiny_benchmark):
    return tiny_benchmark.index(request.param)


def test_filters_are_pushed_into_the_engine(engine, tiny_benchmark):
    metas = tiny_benchmark.metas()
    brand = tiny_benchmark.schema.field("brand").examples[0]
    p = plan(Search("tent waterproof", Leaf("brand", "ne", brand)), Search("jacket", Leaf("brand", "eq", brand)))
    ex = Executor(engine)
    ranking = ex.run(p)
    per_search = [[d for d, _ in ex.search(s.query, s.filter)] for s in p.searches]
    assert per_search[0] and per_search[1], "both searches should match something in 2k products"
    union = set(per_search[0]) | set(per_search[1])
    assert set(ranking) <= union and len(ranking) == min(ex.depth, len(union))
    for s, docs in zip(p.searches, per_search, strict=True):
        assert all(matches(s.filter, metas[d]) for d in docs)


def _items(bench, n=40):
    rows = [r for r in bench.queries("dev") if r["constraint"]][:n]
    items = []
    for r in rows:
        flt = to_json(constraint_filter(r["constraint"]))
        items.append((json.dumps({"searches": [{"query": r["query"], "filter": flt}]}), r["relevant_ids"]))
    items += [("no plan here", rows[0]["relevant_ids"]), (None, rows[1]["relevant_ids"]),
              ('{"searches": [{"query": "x", "filter": {"field": "size", "op": "eq", "value": 1}}]}',
               rows[2]["relevant_ids"])]
    return items


def test_oracle_plans_beat_raw_queries(tiny_benchmark):
    """The executor rewards following the instruction: base query + constraint filter scores higher."""
    ex = Executor(tiny_benchmark.index("tantivy"))
    rows = [r for r in tiny_benchmark.queries("test") if r["kind"] == "inclusion"]
    raw = [score_text(json.dumps({"searches": [{"query": r["query"]}]}), r["relevant_ids"],
                      tiny_benchmark.schema, ex).reward for r in rows]
    oracle = [score_text(json.dumps({"searches": [{"query": r["query"], "filter": to_json(
        constraint_filter(r["constraint"]))}]}), r["relevant_ids"], tiny_benchmark.schema, ex).reward for r in rows]
    assert len(rows) >= 10
    assert sum(oracle) > sum(raw)


def test_score_batch_matches_in_process_scoring_and_keeps_order(tiny_benchmark):
    items = _items(tiny_benchmark)
    ex = Executor(tiny_benchmark.index("tantivy"))
    expected = [score_text(t, r, tiny_benchmark.schema, ex) for t, r in items]
    with BatchScorer(tiny_benchmark.path, processes=2) as scorer:
        two = scorer.score(items)
        again = scorer.score(items[::-1])  # the pool is reusable across batches
    one = score_batch(items, tiny_benchmark.path, processes=1)
    assert two == expected and one == expected and again == expected[::-1]
    assert [r.error_code for r in two[-3:]] == ["no_json", "no_output", "unknown_field"]
    assert all(r.valid for r in two[:-3]) and any(r.reward > 0 for r in two)


def test_batch_scorer_reports_worker_errors(tiny_benchmark, tmp_path):
    with pytest.raises(FileNotFoundError):
        score_batch([("{}", [1])], tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown engine"):
        score_batch(_items(tiny_benchmark, 3), tiny_benchmark.path, engine="nope", processes=2)
    with pytest.raises(ValueError, match="non-empty relevant"):
        score_batch([("{}", [])], tiny_benchmark.path, processes=1)
