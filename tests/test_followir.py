"""FollowIR format: the benchmark-built set, mteb-layout round trip, the fixture through mteb's loader, metrics."""

import math
import random
from pathlib import Path

import pytest

from eval.followir import (
    average_precision,
    build_followir_set,
    candidate_order_results,
    evaluate_encoder,
    load_followir,
    load_mteb_task,
    ndcg_at_k,
    save_followir_set,
    score_results,
)

FIXTURE = Path(__file__).parent / "fixtures" / "followir"


def check_fixture(fs):
    assert fs.qrel_diff == {"1": ["d1", "d4"], "2": ["d5"]}
    assert fs.qrels["1-og"] == {"d1": 1, "d2": 1, "d4": 1} and fs.qrels["1-changed"] == {"d2": 1}
    assert fs.top_ranked["2-changed"] == ["d3", "d5", "d1"]
    assert fs.instructions["1-changed"].endswith("not made by Lumia.")
    assert fs.queries["1-og"] == fs.queries["1-changed"] == "camping lantern"
    assert len(fs.corpus) == 5 and "butane" in fs.corpus["d3"]
    assert sorted(fs.qids) == ["1", "2"]


def test_fixture_loads_through_mteb_loader():
    check_fixture(load_followir(FIXTURE))


def test_fixture_loads_as_a_registered_followir_task():
    fs = load_mteb_task("Core17InstructionRetrieval", dataset_path=FIXTURE)
    assert fs.name == "Core17InstructionRetrieval"
    check_fixture(fs)


def test_fixture_scores_by_hand():
    fs = load_followir(FIXTURE)
    results = {  # the changed run pushes d1 from 1 to 3 and d4 from 4 to 4; d5 from 2 to 1
        "1-og": {"d1": 4, "d2": 3, "d3": 2, "d4": 1}, "1-changed": {"d2": 4, "d3": 3, "d1": 2, "d4": 1},
        "2-og": {"d3": 3, "d5": 2, "d1": 1}, "2-changed": {"d5": 3, "d3": 2, "d1": 1},
    }
    out = score_results(fs, results)
    q1, q2 = ((1 - 1 / 3) + 0.0) / 2, 1 / 2 - 1
    assert out["p-MRR"] == pytest.approx((q1 + q2) / 2)
    assert out["og/n"] == 2 and out["n_pairs"] == 2
    # og nDCG@5: q1 ranks d1, d2, (d3), d4 -> (1 + 1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/2)
    q1_ndcg = (1 + 1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    assert out["og/nDCG@5"] == pytest.approx((q1_ndcg + 1.0) / 2)
    assert out["og/per_query_nDCG@5"] == pytest.approx({"1-og": q1_ndcg, "2-og": 1.0})  # for paired CIs
    assert out["og/MAP"] == pytest.approx(((1 + 1 + 3 / 4) / 3 + 1.0) / 2)


def test_metrics_match_pytrec_eval():
    import pytrec_eval

    rng = random.Random(3)
    qrels, run = {}, {}
    for q in range(20):
        docs = [f"d{i}" for i in range(40)]
        qrels[f"q{q}"] = {d: rng.choice([1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 8))}
        run[f"q{q}"] = {d: float(rng.randint(0, 30)) for d in rng.sample(docs, 25)}  # ties, misses
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5", "map_cut.1000"}).evaluate(run)
    for q in qrels:
        assert ndcg_at_k(run[q], qrels[q], 5) == pytest.approx(scores[q]["ndcg_cut_5"], abs=1e-4)
        assert average_precision(run[q], qrels[q]) == pytest.approx(scores[q]["map_cut_1000"], abs=1e-4)


@pytest.fixture(scope="module")
def built(tiny_benchmark):
    return build_followir_set(tiny_benchmark, "test", k=20)


def test_built_set_pairs_og_with_changed(tiny_benchmark, built):
    fs = built
    rows = {r["id"]: r for r in tiny_benchmark.queries("test")}
    assert fs.qids and set(fs.kinds.values()) <= {"inclusion", "exclusion", "recency"}
    for q in fs.qids:
        og, ch = q + "-og", q + "-changed"
        assert fs.top_ranked[og] == fs.top_ranked[ch] and len(fs.top_ranked[og]) <= 20
        assert fs.instructions[og] == "" and fs.instructions[ch] == rows[q]["instruction"]
        for d in fs.qrel_diff[q]:  # removed by the instruction, and a candidate
            assert d in fs.qrels[og] and d not in fs.qrels[ch] and d in fs.top_ranked[og]
        assert set(fs.qrels[ch]) == {str(i) for i in rows[q]["relevant_ids"]}
    assert set(fs.corpus) == {d for ids in fs.top_ranked.values() for d in ids}


def test_instruction_blind_ranking_scores_zero(built):
    out = score_results(built, candidate_order_results(built))
    assert out["p-MRR"] == 0.0
    assert 0 < out["og/nDCG@5"] <= 1


def test_round_trip_through_mteb_layout(built, tmp_path):
    save_followir_set(built, tmp_path / "set")
    back = load_followir(tmp_path / "set")
    assert back.qrel_diff == built.qrel_diff and back.top_ranked == built.top_ranked
    assert back.qrels == built.qrels and back.corpus == built.corpus
    assert {q: back.query_text(q) for q in back.queries} == {q: built.query_text(q) for q in built.queries}


class QueryPrefixModel:
    """An encoder that reads only a text's first three words: blind to an appended instruction."""

    def encode(self, texts, **kwargs):
        import numpy as np

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split()[:3]:
                out[i, hash(w) % 64] += 1.0
            out[i, -1] += 0.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_an_instruction_blind_encoder_scores_zero_p_mrr(built):
    out = evaluate_encoder(QueryPrefixModel(), built)
    assert out["n_pairs"] == len(built.qids)
    assert out["p-MRR"] == 0.0 and all(out[f"p-MRR/{k}"] == 0.0 for k in set(built.kinds.values()))
