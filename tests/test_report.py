import json

import pytest

from eval.report import ReportError, read_metrics, read_per_query, safe_name, write_report
from eval.stats import aggregate, gains, vs_baseline

KINDS = ["none", "none", "inclusion", "exclusion", "recency", "inclusion"]


def _records(recalls: list[float], valid: list[bool] | None = None) -> list[dict]:
    valid = valid or [True] * len(recalls)
    return [
        {"id": f"q{i}", "kind": kind, "query": f"query {i}", "instruction": None if kind == "none" else "only x",
         "plan_text": "{}", "plan": {"searches": []} if ok else None, "error": None if ok else "bad_json: x",
         "valid": ok, "metrics": {"recall@20": r, "recall@10": r / 2, "mrr": r}, "retrieved": [i, i + 1],
         "relevant": [i], "usage": {}}
        for i, (kind, r, ok) in enumerate(zip(KINDS, recalls, valid, strict=True))
    ]


def _result(per_query: dict[str, list[dict]], usage: dict | None = None, n_queries: int = 6) -> dict:
    methods = {}
    for name, recs in per_query.items():
        methods[name] = {"by_kind": aggregate(recs), "errors": {}, "usage": (usage or {}).get(name, {}),
                         "seconds_plan": 0.0, "seconds_total": 0.0}
    base = per_query.get("raw")
    for name, res in methods.items():
        res["gain_vs_raw"] = gains(res["by_kind"], methods.get("raw", {}).get("by_kind"), "recall@20")
        res["vs_raw"] = vs_baseline(per_query[name], base, "recall@20") if base and name != "raw" else {}
    config = {"bench": "b", "split": "test", "engine": "bm25", "k": 20, "headline": "recall@20", "limit": None,
              "n_queries": n_queries, "queries_sha": "abc", "n_resamples": 200, "seed": 0}
    return {"config": config, "methods": methods, "comparisons": [], "per_query": per_query}


RAW = [0.5, 0.3, 0.2, 0.1, 0.0, 0.4]
ORACLE = [0.5, 0.3, 0.8, 0.6, 0.9, 1.0]


def test_report_files_and_tables(tmp_path):
    report = write_report(_result({"raw": _records(RAW), "oracle": _records(ORACLE)}), tmp_path)
    for name in ("metrics.json", "metrics.md", "recall_by_kind.png", "per_query/raw.jsonl", "per_query/oracle.jsonl"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "recall_by_kind.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert "per_query" not in saved and saved["methods"].keys() == {"raw", "oracle"}
    oracle = report["methods"]["oracle"]
    assert oracle["by_kind"]["instructed"]["recall@20"] == pytest.approx((0.8 + 0.6 + 0.9 + 1.0) / 4)
    assert oracle["gain_vs_raw"]["instructed"] == pytest.approx(3.3 / 0.7)
    assert oracle["gain_vs_raw"]["none"] == pytest.approx(1.0)
    assert report["methods"]["raw"]["gain_vs_raw"]["all"] == pytest.approx(1.0)
    md = (tmp_path / "metrics.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| oracle |")]
    assert len(table) == 2  # headline table and full table
    assert "0.825" in table[0]  # instructed recall of the oracle
    assert "4.71" in table[0]  # its gain over raw
    assert "| method | none (n=2) | inclusion (n=2) |" in md
    rows = read_per_query(tmp_path, "oracle", report)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(6)] and rows[2]["metrics"]["recall@20"] == 0.8


def test_merge_adds_methods_and_rebuilds_comparisons(tmp_path):
    write_report(_result({"raw": _records(RAW), "concat": _records(RAW)}), tmp_path)
    api = [min(1.0, r + 0.3) for r in RAW]
    usage = {"openai:gpt-x": {"n_reported": 6, "total": {"input_tokens": 600, "cost_usd": 0.012},
                              "per_query": {"input_tokens": 100.0, "cost_usd": 0.002}}}
    merged = write_report(_result({"openai:gpt-x": _records(api, [True] * 5 + [False])}, usage), tmp_path)
    assert list(merged["methods"]) == ["raw", "concat", "openai:gpt-x"]
    on_disk = read_metrics(tmp_path)
    assert list(on_disk["methods"]) == ["raw", "concat", "openai:gpt-x"]
    new = on_disk["methods"]["openai:gpt-x"]
    # CI against raw computed from raw's per-query log written by the earlier run
    assert new["vs_raw"]["all"]["low"] > 0
    assert new["gain_vs_raw"]["all"] == pytest.approx(sum(api) / sum(RAW))
    assert on_disk["methods"]["concat"]["vs_raw"]["all"]["diff"] == 0.0
    assert (tmp_path / f"per_query/{safe_name('openai:gpt-x')}.jsonl").is_file()
    md = (tmp_path / "metrics.md").read_text()
    assert "| openai:gpt-x |" in md and "0.0120" in md and "| concat |" in md
    # re-evaluating a method replaces it instead of duplicating it
    again = write_report(_result({"concat": _records(ORACLE)}), tmp_path)
    assert list(again["methods"]) == ["raw", "concat", "openai:gpt-x"]
    assert again["methods"]["concat"]["by_kind"]["all"]["recall@20"] == pytest.approx(sum(ORACLE) / 6)


def test_merge_refuses_incomparable_runs(tmp_path):
    write_report(_result({"raw": _records(RAW)}), tmp_path)
    other = _result({"oracle": _records(ORACLE)})
    other["config"]["split"] = "dev"
    with pytest.raises(ReportError, match="split"):
        write_report(other, tmp_path)
    assert not (tmp_path / "per_query/oracle.jsonl").exists()  # nothing written on refusal
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(ReportError, match="not valid JSON"):
        write_report(_result({"raw": _records(RAW)}), tmp_path)


def test_safe_name():
    assert safe_name("hf:models/smollm2") == "hf_models_smollm2"
    assert safe_name("raw+rerank") == "raw+rerank"
