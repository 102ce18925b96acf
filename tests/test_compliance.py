"""Compliance beside recall: violations@k, the op table, and the query metadata the benchmark records."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys

import pytest

from eval.compliance import (
    annotate,
    op_checks,
    op_table,
    op_verdict,
    plan_filters,
    violations,
    violations_by_kind,
)
from eval.harness import evaluate
from stark_instruct.benchmark import Benchmark, oracle_filter
from stark_instruct.filters import All, Leaf, matches
from stark_instruct.instructions import constraint_filter
from stark_instruct.records import derive_meta

RED = {"kind": "inclusion", "attribute": "color", "field": "color", "op": "contains", "value": "red"}
NOT_ACME = {"kind": "exclusion", "attribute": "brand", "field": "brand", "op": "ne", "value": "acme"}
UNDER_40 = {"kind": "inclusion", "attribute": "price", "field": "price", "op": "lte", "value": 40.0}
RATED_4 = {"kind": "inclusion", "attribute": "rating", "field": "rating", "op": "gte", "value": 4.0}
RECENT = {"kind": "recency", "attribute": "recency", "field": "last_review_date", "op": "gte", "value": "2023-06-30"}
IMPLIED = {"all": [{"field": "category", "op": "contains", "value": "tents"},
                   {"field": "color", "op": "contains", "value": "red"}]}


def _plan(*filters: dict | None) -> dict:
    return {"searches": [{"query": "tent", **({"filter": f} if f else {})} for f in filters]}


def _leaf(field: str, op: str, value) -> dict:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(("constraint", "plan", "verdict", "exact"), [
    (RED, _plan(_leaf("color", "contains", "red")), "right", True),
    (RED, _plan(_leaf("color", "eq", "Red")), "right", True),  # eq on a multi-valued field: has the value
    (RED, _plan(_leaf("color", "in", ["red"])), "right", True),
    (RED, _plan(_leaf("color", "in", ["red", "blue"])), "right", False),
    (RED, _plan(_leaf("color", "eq", "blue")), "right", False),  # right op, another value
    (RED, _plan(_leaf("color", "ne", "red")), "opposite", False),  # the inversion issue 20 measured
    (RED, _plan({"not": _leaf("color", "contains", "red")}), "opposite", False),
    (RED, _plan(_leaf("brand", "eq", "acme")), "none", False),  # a filter, but not on the field
    (RED, _plan(None), "none", False),
    (RED, None, "invalid", False),
    (RED, _plan(_leaf("color", "ne", "red"), _leaf("color", "contains", "red")), "right", True),  # best wins
    (NOT_ACME, _plan(_leaf("brand", "nin", ["acme"])), "right", True),
    (NOT_ACME, _plan(_leaf("brand", "eq", "acme")), "opposite", False),
    (UNDER_40, _plan(_leaf("price", "lte", 40)), "right", True),
    (UNDER_40, _plan(_leaf("price", "lt", 40)), "right", False),
    (UNDER_40, _plan(_leaf("price", "gte", 40)), "opposite", False),
    (UNDER_40, _plan(_leaf("price", "eq", 40)), "other", False),
    (UNDER_40, _plan({"all": [_leaf("brand", "eq", "acme"), _leaf("price", "gt", 40)]}), "opposite", False),
    (RATED_4, _plan(_leaf("rating", "gt", 4)), "right", False),
    (RATED_4, _plan(_leaf("rating", "lt", 4)), "opposite", False),
    (RATED_4, _plan({"not": _leaf("rating", "lt", 4)}), "right", False),  # not below 4 = at least 4, not exact
    (RECENT, _plan(_leaf("last_review_date", "gte", "2023-06-30")), "right", True),
    (RECENT, _plan(_leaf("last_review_date", "lte", "2023-06-30")), "opposite", False),
    (RECENT, _plan(_leaf("last_review_date", "ne", "2023-06-30")), "other", False),
])
def test_op_verdict_classifies_the_plan_op_against_the_constraint(constraint, plan, verdict, exact):
    assert op_verdict(plan_filters(plan), constraint_filter(constraint)) == (verdict, exact)


def test_op_checks_cover_the_instruction_and_the_query_metadata():
    row = {"kind": "inclusion", "constraint": UNDER_40, "query_constraint": IMPLIED}
    record = {"valid": True, "plan": _plan({"all": [_leaf("price", "gte", 40), _leaf("category", "eq", "tents")]})}
    assert op_checks(record, row) == [
        {"source": "instruction", "kind": "inclusion", "attribute": "price", "verdict": "opposite", "exact": False},
        {"source": "query", "kind": "query", "attribute": "category", "verdict": "right", "exact": True},
        {"source": "query", "kind": "query", "attribute": "color", "verdict": "none", "exact": False},
    ]
    # an old benchmark row (no query_constraint) and a base query (no constraint) check what they have
    assert op_checks(record, {"kind": "none", "constraint": None}) == []
    assert [c["verdict"] for c in op_checks({"valid": False, "plan": None}, {"kind": "exclusion",
                                                                            "constraint": NOT_ACME})] == ["invalid"]


METAS = [
    {"brand": "acme", "color": ["red"], "price": 30.0, "rating": 4.5, "last_review_date": dt.date(2024, 1, 1)},
    {"brand": "zed", "color": ["blue"], "price": 50.0, "rating": 3.0, "last_review_date": dt.date(2020, 1, 1)},
    {"brand": "zed", "color": ["red", "blue"], "price": None, "rating": None, "last_review_date": None},
]


@pytest.mark.parametrize(("constraint", "ranking", "k", "broken"), [
    (NOT_ACME, [0, 1, 2], 20, 1),  # the excluded brand shown once
    (NOT_ACME, [1, 2, 0], 2, 0),  # ... but not in the top 2
    (RED, [0, 1, 2], 20, 1),  # a colour not asked for
    (UNDER_40, [0, 1, 2], 20, 2),  # over the ceiling, and no price (left out of qrels the same way)
    (RATED_4, [0, 1, 2], 20, 2),
    (RECENT, [0, 1, 2], 20, 2),
])
def test_violations_count_top_k_results_that_break_the_constraint(constraint, ranking, k, broken):
    v = violations(ranking, constraint, METAS.__getitem__, k)
    assert v == {"k": k, "shown": min(k, len(ranking)), "broken": broken}


def test_violations_by_kind_averages_queries_that_showed_results():
    records = [
        {"kind": "none", "violations": None},
        {"kind": "inclusion", "violations": {"k": 20, "shown": 4, "broken": 1}},
        {"kind": "inclusion", "violations": {"k": 20, "shown": 2, "broken": 2}},
        {"kind": "exclusion", "violations": {"k": 20, "shown": 0, "broken": 0}},  # invalid plan: left out
        {"kind": "recency", "violations": {"k": 20, "shown": 10, "broken": 0}},
    ]
    assert violations_by_kind(records) == {
        "inclusion": {"n": 2, "violations@20": 0.625},
        "exclusion": {"n": 0, "violations@20": None},
        "recency": {"n": 1, "violations@20": 0.0},
        "instructed": {"n": 3, "violations@20": pytest.approx((0.25 + 1.0 + 0.0) / 3)},
    }
    assert violations_by_kind([{"kind": "none", "violations": None}]) == {}


def test_op_table_counts_verdicts_per_kind_and_constraint():
    def check(kind, attribute, verdict, exact=False, source="instruction"):
        return {"source": source, "kind": kind, "attribute": attribute, "verdict": verdict, "exact": exact}

    records = [
        {"checks": [check("inclusion", "color", "opposite"), check("query", "category", "none", source="query")]},
        {"checks": [check("inclusion", "color", "right", True), check("query", "category", "right", True,
                                                                       source="query")]},
        {"checks": [check("exclusion", "brand", "right", True)]},
        {"checks": [check("inclusion", "color", "invalid")]},
        {"checks": []},
    ]
    zero = dict.fromkeys(("right", "opposite", "other", "none", "invalid"), 0)
    assert op_table(records) == [
        {"source": "instruction", "kind": "inclusion", "attribute": "color", "n": 3, "exact": 1,
         **zero, "right": 1, "opposite": 1, "invalid": 1},
        {"source": "instruction", "kind": "exclusion", "attribute": "brand", "n": 1, "exact": 1, **zero, "right": 1},
        {"source": "query", "kind": "query", "attribute": "category", "n": 2, "exact": 1, **zero, "right": 1,
         "none": 1},
    ]


def test_oracle_filter_joins_the_instruction_and_the_query_metadata():
    row = {"id": "q", "kind": "exclusion", "constraint": NOT_ACME, "query_constraint": IMPLIED}
    assert oracle_filter(row) == Leaf("brand", "ne", "acme")
    assert oracle_filter(row, full=True) == All((Leaf("brand", "ne", "acme"), Leaf("category", "contains", "tents"),
                                                 Leaf("color", "contains", "red")))
    assert oracle_filter({"kind": "none", "constraint": None, "query_constraint": IMPLIED}, full=True) == All(
        (Leaf("category", "contains", "tents"), Leaf("color", "contains", "red")))
    assert oracle_filter({"kind": "none", "constraint": None}, full=True) is None  # unknown: no filter
    with pytest.raises(ValueError, match="has no constraint"):
        oracle_filter({"id": "x", "kind": "inclusion", "constraint": None}, full=True)


def test_every_answer_has_the_metadata_its_query_implies(tiny_benchmark):
    """The recorded query metadata is implied: every relevant product satisfies it (and the constraint)."""
    metas = [derive_meta(p) for p in tiny_benchmark.products()]  # from the records, not the meta table
    rows = tiny_benchmark.queries()
    assert all(r["query_constraint"] for r in rows)
    colours = 0
    for r in rows:
        node = oracle_filter(r, full=True)
        assert all(matches(node, metas[d]) for d in r["relevant_ids"]), r["id"]
        fields = [leaf["field"] for leaf in r["query_constraint"]["all"]]
        assert fields in (["category"], ["category", "color"])
        colours += fields == ["category", "color"]
    assert 0 < colours < len(rows)


def test_harness_reports_oracle_full_violations_and_ops(tiny_benchmark, tmp_path):
    res = evaluate(tiny_benchmark, "test", ["raw", "oracle", "oracle_full"], out_dir=tmp_path, n_resamples=50)
    methods = res["methods"]
    for name in ("oracle", "oracle_full"):  # a filter on the constraint shows nothing that breaks it
        assert all(v["violations@20"] == 0.0 for v in methods[name]["violations"].values())
    assert methods["raw"]["violations"]["instructed"]["violations@20"] > 0.2
    by = {m: methods[m]["by_kind"] for m in methods}
    assert by["oracle_full"]["none"]["recall@20"] > by["oracle"]["none"]["recall@20"] == by["raw"]["none"]["recall@20"]
    assert by["oracle_full"]["instructed"]["recall@20"] > by["oracle"]["instructed"]["recall@20"]
    raw_ops = {(r["kind"], r["attribute"]): r for r in methods["raw"]["ops"]}
    assert all(r["none"] == r["n"] for r in raw_ops.values())  # raw never filters
    full_ops = methods["oracle_full"]["ops"]
    assert all(r["right"] == r["exact"] == r["n"] for r in full_ops)
    assert "category" in {r["attribute"] for r in full_ops if r["kind"] == "query"}
    record = res["per_query"]["raw"][-1]
    assert record["violations"]["shown"] == 20 and record["checks"]
    text = (tmp_path / "metrics.md").read_text()
    assert "| oracle_full |" in text and "**violations@20**" in text
    assert "Plan ops per constraint" not in text  # baselines only: no planner op table
    # logs annotate the same way afterwards (what the demo report does with older runs)
    row = {r["id"]: r for r in tiny_benchmark.queries("test")}[record["id"]]
    again = annotate({k: v for k, v in record.items() if k not in ("violations", "checks")}, row,
                     tiny_benchmark.meta, 20)
    assert again["violations"] == record["violations"] and again["checks"] == record["checks"]


class InvertingPlanner:
    """Writes the opposite of every instruction: the failure issue 20 found in the tuned planner."""

    name = "inverter"
    FLIP = {"eq": "ne", "contains": "ne", "ne": "eq", "lte": "gte", "gte": "lte"}

    def plans(self, rows):
        from eval.methods import _plan_output, _single_search
        from stark_instruct.instructions import constraint_filter

        out = []
        for row in rows:
            c = row["constraint"]
            node = constraint_filter({**c, "op": self.FLIP[c["op"]]}) if c else None
            out.append(_plan_output(_single_search(row["query"], node)))
        return out


def test_planner_op_table_shows_inverted_ops(tiny_benchmark, tmp_path):
    res = evaluate(tiny_benchmark, "test", ["raw", InvertingPlanner()], out_dir=tmp_path, n_resamples=50)
    ops = res["methods"]["inverter"]["ops"]
    instructed = [r for r in ops if r["source"] == "instruction"]
    assert instructed and all(r["opposite"] == r["n"] and r["right"] == 0 for r in instructed)
    assert res["methods"]["inverter"]["violations"]["instructed"]["violations@20"] > 0.9
    text = (tmp_path / "metrics.md").read_text()
    line = next(li for li in text.splitlines() if li.startswith("| inverter | exclusion |"))
    n = next(r["n"] for r in instructed if r["kind"] == "exclusion" and r["attribute"] == line.split(" | ")[2])
    assert line.endswith(f"| {n} | 0 (0) | {n} | 0 | 0 | 0 |")


def test_a_benchmark_built_before_query_constraint_still_evaluates(tiny_benchmark, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_benchmark.path, old)
    for path in (old / "queries").glob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "query_constraint"}) + "\n"
                                for r in rows))
    bench = Benchmark.load(old)
    assert all(r["query_constraint"] is None for r in bench.queries("test"))
    res = evaluate(bench, "test", ["raw", "oracle", "oracle_full"], n_resamples=50)
    # unknown query metadata: oracle_full is the instruction oracle, query by query
    assert res["per_query"]["oracle_full"] == res["per_query"]["oracle"]
    assert all(r["kind"] != "query" for r in res["methods"]["oracle_full"]["ops"])


def test_demo_report_prints_both_ceilings_and_compliance(tiny_benchmark, tmp_path, capsys, monkeypatch):
    """Round 0 evaluated raw, concat and oracle (today's demo config) and a planner with an older log format:
    the demo report adds oracle_full on the same queries and annotates the older log."""
    import importlib.util
    from pathlib import Path

    from eval.report import read_metrics

    src = tmp_path / "tao" / "round-00" / "eval" / "test"
    planner = InvertingPlanner()
    planner.name = "policy-r0"
    evaluate(tiny_benchmark, "test", ["raw", "concat", "oracle", planner], out_dir=src, n_resamples=50)
    log = src / "per_query" / "policy-r0.jsonl"  # strip compliance, as a log written before it existed
    log.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k not in ("checks", "violations")})
                           + "\n" for line in log.read_text().splitlines()))
    (tmp_path / "tao" / "best.json").write_text(json.dumps({"round": 0}))
    script = Path(__file__).resolve().parents[1] / "scripts" / "demo_report.py"
    spec = importlib.util.spec_from_file_location("demo_report", script)
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "demo_report", demo)  # its dataclass resolves annotations there
    spec.loader.exec_module(demo)
    demo.main(["--run-dir", str(tmp_path / "tao"), "--out", str(tmp_path / "demo")])
    report = read_metrics(tmp_path / "demo")
    assert list(report["methods"]) == ["raw", "concat", "oracle", "oracle_full", "untrained", "tao"]
    assert report["methods"]["oracle_full"]["violations"]["instructed"]["violations@20"] == 0.0
    for name in ("untrained", "tao"):
        ops = [r for r in report["methods"][name]["ops"] if r["source"] == "instruction"]
        assert ops and all(r["opposite"] == r["n"] for r in ops)
    text = capsys.readouterr().out
    assert "| oracle_full |" in text and "| oracle |" in text and "| tao | inclusion |" in text
