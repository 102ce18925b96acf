"""The real-data path: STaRK-Amazon's processed format and query CSVs, clean and dirty."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fakes.skb import review, write_skb

from stark_instruct.records import DataError
from stark_instruct.stark_amazon import load_products, read_query_csv, read_split_ids

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "stark-amazon-qa"
NAN = float("nan")


def test_processed_format_loads_and_normalises_known_dirt(tmp_path):
    stats: Counter = Counter()
    products = list(load_products(write_skb(tmp_path), stats))
    assert len(products) == 12 and [p.doc_id for p in products] == list(range(12))
    assert stats["missing_brand"] == 6  # NaN and "" brands are counted, not fatal
    assert stats["nan_vote"] == 6 and stats["non_product_nodes"] == 1
    from stark_instruct.records import derive_meta

    metas = [derive_meta(p) for p in products]
    assert metas[0]["brand"] == "salomon" and metas[2]["brand"] is None
    assert metas[0]["price"] == 14.99 and metas[1]["price"] is None and metas[2]["price"] == 10.0
    assert metas[0]["rating"] == 4.5 and str(metas[0]["last_review_date"]) == "2018-10-02"
    assert products[1].review[0]["vote"] == 3 and products[0].review[1]["vote"] == 1024


@pytest.mark.parametrize("bad, field, reason", [
    ({"title": None}, "title", "missing"),
    ({"brand": 42}, "brand", "expected a string"),
    ({"review": [review("yesterday")]}, "review[0].reviewTime", "unparseable reviewTime"),
    ({"review": [review("01 2, 2015", overall=9)]}, "review[0].overall", "outside 1-5"),
    ({"feature": 3.5}, "feature", "expected a list"),
])
def test_bad_records_name_file_row_and_field(tmp_path, bad, field, reason):
    record = {"asin": "X", "title": "t", "brand": "b", "review": [], "qa": []}
    record.update(bad)
    write_skb(tmp_path, n=2, overrides={7: record})
    with pytest.raises(DataError) as e:
        list(load_products(tmp_path))
    assert e.value.row == 7 and e.value.field == field and reason in str(e.value)
    assert "node_info.pkl" in str(e.value)


def _csv(tmp_path, text: str) -> Path:
    p = tmp_path / "q.csv"
    p.write_text(text)
    return p


def test_query_csv_parses_answer_ids_as_data(tmp_path):
    rows = read_query_csv(_csv(tmp_path, 'id,query,answer_ids\n5,"shoes, light","[3, 1, 3]"\n'))
    assert rows == [{"id": 5, "query": "shoes, light", "answer_ids": [3, 1]}]
    with pytest.raises(DataError, match=r"q\.csv:2: answer_ids: ") as e:
        read_query_csv(_csv(tmp_path, 'id,query,answer_ids\n5,q,"__import__(\'os\').system(\'x\')"\n'))
    assert e.value.field == "answer_ids"


@pytest.mark.parametrize("text, row, field", [
    ('id,query,answer_ids\n1,q,"[1]"\n2,q\n', 3, None),  # malformed row
    ('id,query,answer_ids\nx,q,"[1]"\n', 2, "id"),
    ('id,query,answer_ids\n1,,"[1]"\n', 2, "query"),
    ('id,query,answer_ids\n1,q,"[1, ""a""]"\n', 2, "answer_ids"),
    ('id,query,answer_ids\n1,q,"[1]"\n2,q,"[99]"\n', 3, "answer_ids"),  # id not in the knowledge base
    ('id,question,answer_ids\n1,q,"[1]"\n', 1, "query"),
])
def test_query_csv_errors_name_file_line_and_field(tmp_path, text, row, field):
    with pytest.raises(DataError) as e:
        read_query_csv(_csv(tmp_path, text), known_ids=set(range(10)))
    assert e.value.row == row and e.value.field == field and "q.csv" in str(e.value)


@pytest.mark.skipif(not REAL.exists(), reason="real STaRK-Amazon query files are not beside this checkout")
def test_real_query_files_parse():
    synth = read_query_csv(REAL / "stark_qa" / "stark_qa.csv")
    human = read_query_csv(REAL / "stark_qa" / "stark_qa_human_generated_eval.csv")
    assert len(synth) == 9100 and len(human) == 81
    assert all(0 <= a < 957_192 for r in synth + human for a in r["answer_ids"])
    splits = {s: read_split_ids(REAL / "split" / f"{s}.index") for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [5910, 1548, 1642]
    assert set().union(*splits.values()) <= {r["id"] for r in synth}


def test_builder_runs_on_the_real_format(tmp_path):
    from stark_instruct.benchmark import Benchmark
    from stark_instruct.build import build_benchmark

    write_skb(tmp_path / "skb", n=40)
    qdir = tmp_path / "qa"
    (qdir / "stark_qa").mkdir(parents=True)
    (qdir / "stark_qa" / "stark_qa_human_generated_eval.csv").write_text(
        'id,query,answer_ids,answer_ids_source\n0,light trail runner shoe,"[1, 3, 5, 7, 9, 11, 0, 2]","[1]"\n')
    out = build_benchmark(tmp_path / "bench", source="stark", stark_root=str(tmp_path / "skb"),
                          stark_queries=str(qdir), query_set="human")
    bench = Benchmark.load(out)
    rows = bench.queries("test")
    assert rows[0]["kind"] == "none" and len(rows) >= 2
    assert bench.schema.reference_date.isoformat() == "2018-10-02"
    assert bench.index().search("trail runner", None, 5)
    assert "missing_brand" in (out / "card.md").read_text()
    # STaRK queries carry no machine-readable attributes: the query metadata is recorded as unknown.
    assert all(r["query_constraint"] is None for r in bench.queries())
    assert "none recorded" in (out / "card.md").read_text()


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    from stark_instruct.build import main

    write_skb(tmp_path / "skb", n=4, overrides={2: {"title": "x", "review": [review("13 45, 2015")]}})
    with pytest.raises(SystemExit) as e:
        main(["--source", "stark", "--stark-root", str(tmp_path / "skb"), "--out", str(tmp_path / "b"),
              "--stark-queries", str(tmp_path)])
    msg = capsys.readouterr().err
    assert e.value.code == 2 and msg.count("\n") == 1
    assert msg.startswith("error: ") and "node_info.pkl: node 2: review[0].reviewTime: " in msg
    with pytest.raises(SystemExit) as e:
        main(["--source", "stark", "--stark-root", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "no node_info.pkl found" in capsys.readouterr().err
