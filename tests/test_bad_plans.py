"""Bad inputs, class 2 (poison rows): no accepted plan can crash a search, a scoring run or a stage."""

from __future__ import annotations

import json

import pytest

from ir_core.io import read_jsonl, write_jsonl
from pipelines.score import make_scorer, score_stage
from rewards.execute import EngineError, Executor, run_plan, score_plan, score_text
from rewards.parse import ERROR_CODES, PlanError, parse_plan
from rewards.plan import Search, SearchPlan
from stark_instruct.filters import Leaf

# The finding: a keyword value that parses (JSON "\ud800" decodes to a lone surrogate) but that tantivy
# refuses ("Expected Str type for field brand"); one such sample crashed every resume of a TAO round.
POISON = r'{"searches": [{"query": "trail shoe", "filter": {"field": "brand", "op": "eq", "value": "a\ud800b"}}]}'


def _plan(query: str = "trail shoe", value=None, field: str = "brand", op: str = "eq") -> str:
    search = {"query": query}
    if value is not None:
        search["filter"] = {"field": field, "op": op, "value": value}
    return json.dumps({"searches": [search]}, ensure_ascii=False)


def test_the_exact_poison_value_is_a_typed_error_with_reward_zero(tiny_benchmark):
    with pytest.raises(PlanError) as e:
        parse_plan(POISON, tiny_benchmark.schema)
    assert e.value.code == "bad_text" and "U+D800" in e.value.reason
    res = score_text(POISON, [1, 2], tiny_benchmark.schema, Executor(tiny_benchmark.index("tantivy")))
    assert (res.reward, res.valid, res.error_code) == (0.0, False, "bad_text")
    json.dumps(res.to_dict(), ensure_ascii=False).encode("utf-8")  # the reason itself can be written


@pytest.mark.parametrize("text", [
    _plan(value="brand\x00name"),  # NUL
    _plan(value="bra\x07nd"),  # a control character
    _plan(value=["ok", "bad\x1b[2J"], op="in", field="category"),  # an escape sequence in a list value
    _plan(query="trail \x00 shoe"),
    _plan(query="trail \x7f shoe"),
    r'{"searches": [{"query": "trail \udc00 shoe"}]}',
    r'{"searches": [{"query": "x", "filter": {"not": {"field": "color", "op": "eq", "value": "\udbff"}}}]}',
])
def test_what_the_engine_cannot_take_is_rejected_by_the_parser(tiny_benchmark, text):
    with pytest.raises(PlanError) as e:
        parse_plan(text, tiny_benchmark.schema)
    assert e.value.code in ("bad_text", "bad_query") and e.value.code in ERROR_CODES


def test_ordinary_spacing_and_unicode_still_parse(tiny_benchmark):
    plan = parse_plan(_plan(query="trail\tshoe\nfor kids", value="Café Ünïcode 日本"), tiny_benchmark.schema)
    assert plan.searches[0].query == "trail\tshoe\nfor kids"


def test_any_engine_failure_is_an_invalid_plan_and_the_run_goes_on(tiny_benchmark):
    ex = Executor(tiny_benchmark.index("tantivy"))
    poisoned = SearchPlan((Search("trail shoe", Leaf("brand", "eq", "a\ud800b")),))  # past the parser
    res = score_plan(poisoned, [1], ex)
    assert (res.reward, res.valid, res.error_code) == (0.0, False, "engine_error")
    assert "Expected Str type" in res.error
    with pytest.raises(EngineError) as e:  # what the harness and other callers get: a PlanError
        run_plan(ex, poisoned)
    assert isinstance(e.value, PlanError) and e.value.code == "engine_error"
    assert score_plan(SearchPlan((Search("trail shoe"),)), [1], ex).valid  # the executor still works


class _FlakyIndex:
    """An engine that fails on one query, as a damaged index or an engine bug would."""

    def __init__(self, inner):
        self.inner = inner

    def search(self, query, filter=None, k=100):
        if "boom" in query:
            raise OSError("segment file unreadable")
        return self.inner.search(query, filter, k)


def test_the_score_stage_finishes_with_poison_rows_and_records_why(tiny_benchmark, tmp_path, monkeypatch):
    prompts = [{"prompt_id": "p0", "relevant_ids": [1, 2, 3]}]
    texts = [POISON, _plan("boom shoe"), _plan("trail shoe"), None]
    write_jsonl(tmp_path / "candidates.jsonl",
                [{"prompt_id": "p0", "sample_idx": i, "text": t} for i, t in enumerate(texts)])
    bench_index = tiny_benchmark.index("tantivy")
    monkeypatch.setattr(tiny_benchmark, "index", lambda engine="tantivy": _FlakyIndex(bench_index))
    info = score_stage(tmp_path / "candidates.jsonl", prompts, tmp_path / "scored.jsonl",
                       make_scorer(tiny_benchmark), progress=False)
    rows = {r["sample_idx"]: r for r in read_jsonl(tmp_path / "scored.jsonl")}
    assert info["rows"] == 4 and sorted(rows) == [0, 1, 2, 3]
    assert rows[0]["error_code"] == "bad_text" and rows[1]["error_code"] == "engine_error"
    assert "segment file unreadable" in rows[1]["error"] and rows[2]["valid"]
    assert all(rows[i]["reward"] == 0.0 for i in (0, 1, 3))


def test_random_unicode_in_every_string_never_crashes_the_tantivy_path(tiny_benchmark):
    """Seeded fuzz through the real engine: control characters, surrogates, non-characters, astral
    planes in queries and in keyword values of every op; each plan scores or is a known invalid code."""
    import random

    rng = random.Random(12)
    pools = [(0, 0x20), (0x20, 0x7F), (0x7F, 0xA0), (0xA0, 0x3000), (0xD800, 0xE000), (0xFFF0, 0x10000),
             (0x1F600, 0x1F650), (0x10FFF0, 0x110000)]

    def text() -> str:
        return "".join(chr(rng.randrange(*rng.choice(pools))) for _ in range(rng.choice([1, 3, 12, 40])))

    ex = Executor(tiny_benchmark.index("tantivy"))
    codes = set()
    for _ in range(150):
        field = rng.choice(["brand", "category", "color"])
        op = rng.choice(["eq", "ne", "in", "nin", "contains"])
        value = [text(), text()] if op in ("in", "nin") else text()
        raw = json.dumps({"searches": [{"query": text(), "filter": {"field": field, "op": op, "value": value}}]},
                         ensure_ascii=rng.random() < 0.5)
        res = score_text(raw, [1, 2], tiny_benchmark.schema, ex)
        assert res.valid or res.error_code in ERROR_CODES
        codes.add(res.error_code)
    assert "bad_text" in codes and None in codes and "engine_error" not in codes  # the parser caught them
