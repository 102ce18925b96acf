"""The harness keeps what finished: a method that fails after others leaves their report on disk."""

from __future__ import annotations

import pytest

from eval.harness import evaluate, query_metrics
from eval.report import read_metrics
from ir_core.io import read_jsonl


class Broken:
    name = "broken"

    def plans(self, rows):
        raise RuntimeError("backend went away")


def test_finished_methods_are_written_when_a_later_one_fails(tiny_benchmark, tmp_path):
    with pytest.raises(RuntimeError, match="backend went away"):
        evaluate(tiny_benchmark, "dev", ["raw", "oracle", Broken()], out_dir=tmp_path, limit=6)
    report = read_metrics(tmp_path)
    assert set(report["methods"]) == {"raw", "oracle"}
    assert (tmp_path / "per_query" / "raw.jsonl").exists()
    # the gain is oracle's mean Recall@20 over raw's, recomputed here from the per-query rows on disk
    mean = {m: [r["metrics"]["recall@20"] for r in read_jsonl(tmp_path / "per_query" / f"{m}.jsonl")]
            for m in ("raw", "oracle")}
    assert len(mean["raw"]) == len(mean["oracle"]) == 6
    expected = sum(mean["oracle"]) / sum(mean["raw"])
    assert report["methods"]["oracle"]["gain_vs_raw"]["all"] == pytest.approx(expected)


def test_no_cutoff_deeper_than_the_search():
    ranking = list(range(30))
    assert "recall@100" in query_metrics(ranking, [3], k=20, depth=100)
    shallow = query_metrics(ranking, [3], k=20, depth=50)
    assert "recall@100" not in shallow and "recall@50" in shallow and "recall@20" in shallow
