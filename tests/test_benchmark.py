"""The benchmark's contract: qrels are the base answers filtered by each variant's constraint."""

from __future__ import annotations

import json

from stark_instruct.filters import matches
from stark_instruct.instructions import complement, constraint_filter, paraphrases
from stark_instruct.records import derive_meta


def _bases(bench) -> dict[str, dict]:
    rows = [json.loads(line) for line in (bench.path / "base_queries.jsonl").read_text().splitlines()]
    return {r["id"]: r for r in rows}


def test_every_variant_is_its_base_answers_filtered_by_its_constraint(tiny_benchmark):
    bases = _bases(tiny_benchmark)
    # Recompute metadata from the raw product records, not from the stored meta table.
    metas = [derive_meta(p) for p in tiny_benchmark.products()]
    rows = tiny_benchmark.queries()
    instructed = [r for r in rows if r["kind"] != "none"]
    assert {r["kind"] for r in instructed} == {"inclusion", "exclusion", "recency"}
    for r in instructed:
        answers = bases[r["base_id"]]["answer_ids"]
        qrels = r["relevant_ids"]
        assert qrels, r["id"]
        assert len(qrels) < len(answers), r["id"]
        node = constraint_filter(r["constraint"])
        assert sorted(qrels) == sorted(a for a in answers if matches(node, metas[a])), r["id"]
        assert r["instruction"] in paraphrases(r["constraint"])
        assert r["merged_query"].startswith(r["query"].rstrip()) and r["instruction"] in r["merged_query"]
    for r in rows:
        if r["kind"] == "none":
            assert sorted(r["relevant_ids"]) == sorted(bases[r["id"]]["answer_ids"])
            assert r["constraint"] is None and r["instruction"] == ""


def test_base_queries_never_cross_splits(tiny_benchmark):
    split_of: dict[str, set] = {}
    for r in tiny_benchmark.queries():
        split_of.setdefault(r["base_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {next(iter(s)) for s in split_of.values()} == {"train", "dev", "test"}


def test_outputs_load_with_datasets_and_trec_qrels_match(tiny_benchmark):
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tiny_benchmark.path / "queries" / "test.jsonl"), split="train")
    assert set(ds.column_names) >= {"id", "base_id", "kind", "query", "instruction", "merged_query",
                                    "constraint", "relevant_ids"}
    trec: dict[str, set] = {}
    for line in (tiny_benchmark.path / "qrels" / "test.trec").read_text().splitlines():
        qid, _, doc, rel = line.split()
        assert rel == "1"
        trec.setdefault(qid, set()).add(int(doc))
    assert trec == {r["id"]: set(r["relevant_ids"]) for r in tiny_benchmark.queries("test")}
    corpus = datasets.load_dataset("parquet", data_files=str(tiny_benchmark.path / "corpus.parquet"), split="train")
    assert len(corpus) == len(tiny_benchmark)


def test_schema_rendering_names_every_field_and_today(tiny_benchmark):
    text = (tiny_benchmark.path / "schema.txt").read_text()
    for f in tiny_benchmark.schema.fields:
        assert f.name in text
    assert tiny_benchmark.schema.reference_date.isoformat() in text


def test_complement_swaps_relevance(tiny_benchmark):
    """Under the complement, a product admitted by the constraint is rejected and vice versa."""
    metas = tiny_benchmark.metas()
    for r in tiny_benchmark.queries("train"):
        if r["constraint"] is None:
            continue
        c, cc = constraint_filter(r["constraint"]), constraint_filter(complement(r["constraint"]))
        for doc in range(0, len(metas), 37):
            if metas[doc][r["constraint"]["field"]] is None:  # missing values satisfy neither bound
                assert not matches(c, metas[doc]) or r["constraint"]["op"] in ("ne", "nin")
                continue
            assert matches(c, metas[doc]) != matches(cc, metas[doc]), (r["constraint"], doc)
        assert complement(complement(r["constraint"]))["op"] == r["constraint"]["op"]
        assert paraphrases(complement(r["constraint"]))


def test_rebuild_is_deterministic_and_skipped_when_done(tiny_benchmark, tmp_path, capsys):
    from stark_instruct.build import build_benchmark

    out = build_benchmark(tmp_path / "again", size=2000, seed=0, queries=120)
    for name in ("queries/train.jsonl", "queries/test.jsonl", "qrels/dev.trec", "schema.json"):
        assert (out / name).read_text() == (tiny_benchmark.path / name).read_text(), name
    before = (out / "manifest.json").stat().st_mtime_ns
    build_benchmark(tmp_path / "again", size=2000, seed=0, queries=120)
    assert (out / "manifest.json").stat().st_mtime_ns == before
    assert "already built" in capsys.readouterr().err
    assert not (tmp_path / "again.partial").exists()
