"""p-MRR against hand-computed cases and against mteb's own implementation."""

import math
import random

import pytest

from eval.pmrr import p_mrr, p_mrr_from_results, p_mrr_per_query, pair_score, rank_changes, rank_of


def test_rank_of_breaks_ties_by_larger_id_and_ranks_missing_after_the_end():
    run = {"a": 1.0, "b": 1.0, "c": 0.5}
    assert [rank_of(run, d) for d in ("b", "a", "c")] == [1, 2, 3]
    assert rank_of(run, "zzz") == 4
    assert rank_of({}, "a") == 1


def test_document_moving_down_scores_positive_and_up_negative():
    og = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    down = {"q": {"b": 3.0, "c": 2.0, "a": 1.0}}  # a: rank 1 -> 3
    assert p_mrr(og, down, {"q": ["a"]}) == pytest.approx(1 - 1 / 3)
    assert p_mrr(down, og, {"q": ["a"]}) == pytest.approx(1 / 3 - 1)  # rank 3 -> 1
    assert p_mrr(og, og, {"q": ["b"]}) == 0.0
    assert pair_score(2, 5) == pytest.approx(0.6)
    assert pair_score(5, 2) == pytest.approx(-0.6)


def test_missing_document_gets_rank_len_plus_one():
    og = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    changed = {"q": {"a": 3.0, "c": 1.0, "d": 0.5}}  # b (og rank 2) is gone: rank 4 of 3 docs
    assert p_mrr(og, changed, {"q": ["b"]}) == pytest.approx(1 - 2 / 4)


def test_ties_follow_score_then_id_descending():
    og = {"q": {"a": 1.0, "b": 1.0, "c": 0.5}}  # b, a, c -> a at 2
    changed = {"q": {"a": 0.2, "b": 0.9, "c": 0.9}}  # c, b, a -> a at 3
    assert p_mrr(og, changed, {"q": ["a"]}) == pytest.approx(1 - 2 / 3)


def test_average_per_query_before_over_queries():
    og = {"q1": {"a": 4, "b": 3, "c": 2, "d": 1}, "q2": {"a": 3, "b": 2, "c": 1}}
    changed = {"q1": {"a": 3, "b": 4, "c": 1, "d": 2}, "q2": {"b": 3, "c": 2, "a": 1}}
    # q1: a 1->2 (+0.5), c 3->4 (+0.25), d 4->3 (-0.25) => mean 1/6; q2: a 1->3 (+2/3)
    per_query = p_mrr_per_query(og, changed, {"q1": ["a", "c", "d"], "q2": ["a"]})
    assert per_query["q1"] == pytest.approx((0.5 + 0.25 - 0.25) / 3)
    assert per_query["q2"] == pytest.approx(2 / 3)
    assert p_mrr(og, changed, {"q1": ["a", "c", "d"], "q2": ["a"]}) == pytest.approx((1 / 6 + 2 / 3) / 2)


def test_queries_missing_from_a_run_are_skipped_and_empty_is_nan():
    og = {"q": {"a": 2, "b": 1}}
    changed = {"q": {"b": 2, "a": 1}}
    assert p_mrr(og, changed, {"q": ["a"], "ghost": ["a"]}) == pytest.approx(0.5)
    assert len(rank_changes(og, changed, {"ghost": ["a"]})) == 0
    assert math.isnan(p_mrr(og, changed, {}))


def test_mteb_results_layout():
    results = {"q-og": {"a": 2, "b": 1}, "q-changed": {"b": 2, "a": 1}}
    assert p_mrr_from_results(results, {"q": ["a"]}) == pytest.approx(0.5)


def test_matches_mteb_on_random_runs_with_ties_and_missing_docs():
    from mteb._evaluators.retrieval_metrics import calculate_pmrr

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(30)]
    og, changed, diff = {}, {}, {}
    for q in range(25):
        qid = f"q{q}"
        og[qid] = {d: float(rng.randint(0, 5)) for d in rng.sample(docs, 20)}  # coarse scores: many ties
        changed[qid] = {d: float(rng.randint(0, 5)) for d in rng.sample(docs, 20)}
        diff[qid] = rng.sample(docs, rng.randint(1, 6))  # some absent from one or both runs
    ours = p_mrr(og, changed, diff)
    theirs = calculate_pmrr({f"{q}-og": r for q, r in og.items()}, {f"{q}-changed": r for q, r in changed.items()}, diff)
    assert ours == pytest.approx(float(theirs), abs=1e-12)
