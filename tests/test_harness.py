import datetime as dt
import json

import pytest

from eval.harness import evaluate
from eval.methods import PlannerMethod, resolve_methods, resolve_planner
from eval.report import read_metrics, read_per_query
from eval.run import main
from eval.stats import aggregate
from ir_core.types import PlanResponse
from pipelines.backends import PLANNERS
from stark_instruct.filters import matches
from stark_instruct.instructions import constraint_filter
from stark_instruct.schema import product_schema

SCHEMA = product_schema(dt.date(2024, 1, 1), brands=["acme"], colors=["red"])
BRAND = {"kind": "inclusion", "attribute": "brand", "field": "brand", "op": "eq", "value": "acme"}


class FakeBench:
    """Four queries, one per kind; relevant sets sized so recall values are easy to compute by hand."""

    path = "fake"
    schema = SCHEMA

    def __init__(self):
        self.rows = [
            {"id": "a", "kind": "none", "query": "tent", "instruction": None, "merged_query": "tent",
             "constraint": None, "relevant_ids": [1, 2]},
            {"id": "b", "kind": "inclusion", "query": "tent", "instruction": "only acme",
             "merged_query": "tent only acme", "constraint": BRAND, "relevant_ids": [2]},
            {"id": "c", "kind": "exclusion", "query": "stove", "instruction": "not acme",
             "merged_query": "stove not acme", "constraint": {**BRAND, "kind": "exclusion", "op": "ne"},
             "relevant_ids": [5, 6, 7, 8]},
            {"id": "d", "kind": "recency", "query": "stove", "instruction": "recent",
             "merged_query": "stove recent", "constraint": {"kind": "recency", "attribute": "recency",
                                                             "field": "last_review_date", "op": "gte",
                                                             "value": "2022-01-01"},
             "relevant_ids": [9]},
        ]

    def queries(self, split):
        return list(self.rows)


class FakeExecutor:
    """Rankings by search text; a filtered search returns the filtered ranking."""

    reranker = None
    RANKS = {"tent": [1, 3, 4], "tent only acme": [3, 2], "stove": [5, 6, 0], "stove not acme": [5],
             "stove recent": [9]}

    def run(self, plan, rerank_text=None):
        s = plan.searches[0]
        if s.filter is not None:
            return [9, 5, 6, 7, 8, 2]
        return list(self.RANKS.get(s.query, []))


class FakePlanner:
    name = "fake"

    def __init__(self, texts):
        self.texts, self.seen = texts, []

    def plan(self, requests):
        self.seen.extend(requests)
        return [self.texts[r.id] for r in requests]


def test_aggregate_per_kind_hand_computed():
    records = [{"kind": k, "valid": v, "metrics": {"recall@20": r}}
               for k, v, r in [("none", True, 0.5), ("inclusion", True, 1.0), ("inclusion", False, 0.0),
                               ("exclusion", True, 0.25), ("recency", True, 0.0)]]
    agg = aggregate(records)
    assert agg["none"] == {"n": 1, "validity": 1.0, "recall@20": 0.5}
    assert agg["inclusion"] == {"n": 2, "validity": 0.5, "recall@20": 0.5}
    assert agg["instructed"]["recall@20"] == pytest.approx(1.25 / 4)
    assert agg["instructed"]["validity"] == 0.75
    assert agg["all"]["recall@20"] == pytest.approx(1.75 / 5) and agg["all"]["n"] == 5
    assert "nonsense" not in agg and aggregate(records[:1]).keys() == {"none", "all"}


def test_baselines_on_fake_bench_hand_computed():
    res = evaluate(FakeBench(), "test", ["raw", "concat"], executor=FakeExecutor(), n_resamples=100)
    raw, concat = res["methods"]["raw"], res["methods"]["concat"]
    # raw: a 1/2, b 0, c 2/4, d 0 ; concat: a 1/2, b 1, c 1/4, d 1
    assert raw["by_kind"]["none"]["recall@20"] == 0.5
    assert raw["by_kind"]["instructed"]["recall@20"] == pytest.approx(0.5 / 3)
    assert raw["by_kind"]["all"]["recall@20"] == pytest.approx(1.0 / 4)
    assert raw["by_kind"]["all"]["hit@1"] == pytest.approx(0.5)  # a (doc 1) and c (doc 5) at rank 1
    assert concat["by_kind"]["instructed"]["recall@20"] == pytest.approx(2.25 / 3)
    assert concat["gain_vs_raw"]["instructed"] == pytest.approx(2.25 / 0.5)
    assert concat["gain_vs_raw"]["none"] == 1.0
    assert concat["vs_raw"]["all"]["diff"] == pytest.approx((0 + 1 - 0.25 + 1) / 4)
    assert raw["vs_raw"] == {}
    by_id = {r["id"]: r for r in res["per_query"]["concat"]}
    assert json.loads(by_id["b"]["plan_text"]) == {"searches": [{"query": "tent only acme"}]}
    assert json.loads(res["per_query"]["raw"][1]["plan_text"]) == {"searches": [{"query": "tent"}]}


def test_planner_invalid_and_backend_errors_score_zero():
    good = json.dumps({"searches": [{"query": "stove", "filter": {"field": "brand", "op": "ne", "value": "acme"}}]})
    planner = FakePlanner({
        "a": PlanResponse("here you go: " + json.dumps({"searches": [{"query": "tent"}]}),
                          usage={"input_tokens": 100, "output_tokens": 10, "cost_usd": 0.5}),
        "b": PlanResponse('{"searches": [{"query": "tent", "filter": {"field": "maker", "op": "eq", "value": "x"}}]}',
                          usage={"input_tokens": 120, "output_tokens": 30, "cost_usd": 0.25}),
        "c": PlanResponse(good),
        "d": PlanResponse(None, error="HTTP 429 rate limited"),
    })
    res = evaluate(FakeBench(), "test", ["raw", planner], executor=FakeExecutor(), n_resamples=100)
    fake = res["methods"]["fake"]
    recs = {r["id"]: r for r in res["per_query"]["fake"]}
    assert recs["a"]["valid"] and recs["a"]["metrics"]["recall@20"] == 0.5
    assert not recs["b"]["valid"] and recs["b"]["error"].startswith("unknown_field")
    assert set(recs["b"]["metrics"].values()) == {0.0} and "recall@100" in recs["b"]["metrics"]
    assert recs["d"]["error"] == "backend_error: HTTP 429 rate limited" and recs["d"]["plan_text"] is None
    assert recs["c"]["metrics"]["recall@20"] == 1.0 and recs["c"]["plan"]["searches"][0]["filter"]["op"] == "ne"
    assert fake["by_kind"]["all"]["validity"] == 0.5
    assert fake["errors"] == {"unknown_field": 1, "backend_error": 1}
    assert fake["usage"]["total"] == {"input_tokens": 220, "output_tokens": 40, "cost_usd": 0.75}
    assert fake["usage"]["n_reported"] == 2
    assert fake["run"]["mode"] == "separate" and fake["run"]["n_examples"] == 8  # TAO's default examples
    assert "mode" not in res["methods"]["raw"]["run"]
    # prompts come from rewards.prompts with the instruction in the system spec
    system = planner.seen[1].messages[0]["content"]
    assert "only acme" in system and planner.seen[1].messages[-1]["content"] == "tent"


def test_merged_mode_puts_instruction_in_query():
    planner = FakePlanner({r: PlanResponse(None, error="x") for r in "abcd"})
    PlannerMethod(planner, SCHEMA, mode="merged").plans(FakeBench().rows)
    assert planner.seen[1].messages[-1]["content"] == "tent only acme"


def test_resolve_planner_specs(monkeypatch):
    with pytest.raises(ValueError, match="unknown planner backend 'foo'"):
        resolve_planner("foo:bar", FakeBench())
    with pytest.raises(ValueError, match="<backend>:<model>"):
        resolve_planner("hf", FakeBench())
    with pytest.raises(ValueError, match="unknown method 'rwa'"):
        resolve_methods(["raw", "rwa"], FakeBench())
    with pytest.raises(ValueError, match="unknown planner backend"):
        resolve_methods(["raw", "foo:x"], FakeBench())
    made = {}

    class Fake:
        def __init__(self, spec):
            made.update(model=spec.model, tool_schema=spec.plan_schema)
            self.name = spec.model

        def plan(self, requests):
            return []

    monkeypatch.setitem(PLANNERS, "openai", Fake)
    methods = resolve_methods(["raw", "openai:gpt-x"], FakeBench())
    assert [m.name for m in methods] == ["raw", "openai:gpt-x"]
    assert made["model"] == "gpt-x" and made["tool_schema"]["title"] == "SearchPlan"
    assert len(methods[1].examples) == 8  # the default few-shot examples TAO trains with
    with pytest.raises(ValueError, match="duplicate"):
        resolve_methods(["raw", "raw"], FakeBench())


class ReverseReranker:
    def rerank(self, text, doc_ids):
        self.last_text = text
        return list(reversed(doc_ids))


def test_end_to_end_tiny_benchmark(tiny_benchmark, tmp_path):
    bench = tiny_benchmark
    res = evaluate(bench, "test", ["raw", "concat", "oracle"], out_dir=tmp_path, n_resamples=200)
    rows = {r["id"]: r for r in bench.queries("test")}
    raw = {r["id"]: r for r in res["per_query"]["raw"]}
    n_instructed = 0
    for rec in res["per_query"]["oracle"]:
        row = rows[rec["id"]]
        assert rec["query"] == row["query"] and rec["valid"]
        if row["kind"] == "none":
            assert rec["plan"] == raw[rec["id"]]["plan"]
            continue
        n_instructed += 1
        node = constraint_filter(row["constraint"])
        # the oracle never returns a document that violates the instruction ...
        assert all(matches(node, bench.meta(d)) for d in rec["retrieved"])
        # ... and, every relevant document satisfying it, can only move relevant documents up
        assert rec["metrics"]["recall@20"] >= raw[rec["id"]]["metrics"]["recall@20"] - 1e-9
    assert n_instructed > 0
    by = res["methods"]
    assert by["oracle"]["by_kind"]["instructed"]["recall@20"] > by["raw"]["by_kind"]["instructed"]["recall@20"]
    assert by["oracle"]["vs_raw"]["instructed"]["low"] > 0
    assert json.loads(raw[next(iter(raw))]["plan_text"])["searches"][0]["query"] == bench.queries("test")[0]["query"]
    # a planner that writes the oracle plan scores exactly like the oracle
    oracle_texts = {r["id"]: PlanResponse(r["plan_text"]) for r in res["per_query"]["oracle"]}
    again = evaluate(bench, "test", [FakePlanner(oracle_texts)], out_dir=tmp_path, n_resamples=200)
    assert again["methods"]["fake"]["by_kind"] == by["oracle"]["by_kind"]
    report = read_metrics(tmp_path)
    assert list(report["methods"]) == ["raw", "concat", "oracle", "fake"]
    assert len(read_per_query(tmp_path, "fake", report)) == len(rows)


def test_rerank_uses_merged_query_and_suffix(tiny_benchmark):
    reranker = ReverseReranker()
    plain = evaluate(tiny_benchmark, "test", ["raw"], limit=5, n_resamples=50)
    res = evaluate(tiny_benchmark, "test", ["raw", "oracle"], rerank=reranker, limit=5, n_resamples=50)
    assert set(res["methods"]) == {"raw+rerank", "oracle+rerank"}
    assert res["methods"]["oracle+rerank"]["vs_raw"]  # compared with the reranked raw
    last = tiny_benchmark.queries("test")[4]
    assert reranker.last_text == last["merged_query"]
    # the reranker reorders the executor's full fused ranking, and only the logged head is kept
    from rewards.execute import Executor
    from rewards.plan import Search, SearchPlan

    first = tiny_benchmark.queries("test")[0]
    fused = Executor(tiny_benchmark.index(), depth=100).run(SearchPlan([Search(first["query"])]))
    assert plain["per_query"]["raw"][0]["retrieved"] == fused[:20]
    assert res["per_query"]["raw+rerank"][0]["retrieved"] == list(reversed(fused))[:20]


def test_cli_prints_table_and_merges(tiny_benchmark, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["--bench", str(tiny_benchmark.path), "--split", "dev", "--out", str(out), "--limit", "12",
            "--resamples", "50"]
    assert main([*args, "--methods", "raw", "oracle"]) == 0
    printed = capsys.readouterr().out
    assert "| oracle |" in printed and "| method |" in printed
    assert main([*args, "--methods", "concat", "--compare", "concat,oracle"]) == 0
    report = read_metrics(out)
    assert list(report["methods"]) == ["raw", "oracle", "concat"]
    assert report["comparisons"][0]["a"] == "concat"
    # a different limit is a different query set: refused, not mixed
    assert main([*args[:-4], "--limit", "5", "--methods", "raw"]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert main(["--bench", str(tmp_path / "missing")]) == 2
    assert main([*args, "--methods", "nope:x"]) == 2


def test_methods_is_a_list_like_compare():
    from eval.run import EvalArgs
    from ir_core.config import parse_config

    def methods(*argv):
        return parse_config([EvalArgs], ["--methods", *argv], {})[0].methods

    assert methods("raw", "hf:models/x") == methods("raw,hf:models/x") == ["raw", "hf:models/x"]
    assert EvalArgs().methods == ["raw", "concat", "oracle"]


def test_recorded_plans_replay_a_per_query_log(tmp_path):
    """`plans:<log>` executes the recorded plan texts again: same recall as the run that wrote them."""
    first = evaluate(FakeBench(), "test", ["concat"], executor=FakeExecutor(), n_resamples=100, out_dir=tmp_path / "a")
    log = tmp_path / "a" / "per_query" / "concat.jsonl"
    rows = [r for r in read_per_query(tmp_path / "a", "concat") if r["id"] != "d"]  # one query missing
    rows[0]["plan_text"] = "not json"  # and one invalid
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = evaluate(FakeBench(), "test", [f"plans:{log}"], executor=FakeExecutor(), n_resamples=100)
    got = {r["id"]: r for r in res["per_query"]["plans:concat"]}
    want = {r["id"]: r for r in first["per_query"]["concat"]}
    assert got["b"]["metrics"] == want["b"]["metrics"] and got["c"]["metrics"] == want["c"]["metrics"]
    assert got["d"]["error"].startswith("missing_plan") and not got["a"]["valid"]
