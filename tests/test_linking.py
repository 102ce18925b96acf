"""Value linking over the whole request: corpus aliases, hostile text, the per-request conjunction schema,
and the same linker on STaRK-Amazon's processed format."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import time

import jsonschema
import pytest

from rewards.plan import forced_tail, request_plan_schema
from stark_instruct.linking import corpus_aliases
from stark_instruct.schema import MAX_LINKED_PER_FIELD, IndexSchema, product_schema

REF = dt.date(2024, 2, 29)


def _corpus() -> tuple[list[dict], list[dict]]:
    """140 products: tents and shoes in red (described as crimson or scarlet), navy ("midnight blue") and
    blue, and 80 other things in black."""
    texts, metas = [], []
    shades = (("red", "crimson"), ("red", "scarlet"), ("navy", "midnight blue"), ("blue", "blue"))
    for i in range(60):
        kind, cats = ("Tent", ["camping", "tents"]) if i < 40 else ("Running Shoes", ["footwear", "running shoes"])
        color, shade = shades[i % 4]
        texts.append({"title": f"Acme Light {kind} {i}", "description": [f"Available in {shade}.", "Light and strong."]})
        metas.append({"category": cats, "color": [color]})
    for i in range(80):
        texts.append({"title": f"Acme Light Gadget {i}", "description": ["Light and strong."]})
        metas.append({"category": ["accessories"], "color": ["black"]})
    return texts, metas


def _schema() -> IndexSchema:
    texts, metas = _corpus()
    values = {"brand": ["acme", "lumia"], "color": ["red", "navy", "blue"],
              "category": ["camping", "tents", "footwear", "running shoes"]}
    return product_schema(REF, ["acme"], ["red"], ["tents"], values).with_aliases(corpus_aliases(texts, metas))


SCHEMA = _schema()


def test_corpus_aliases_name_values_by_the_words_their_products_carry():
    aliases = SCHEMA.aliases
    assert {(f, v) for f, v, *_ in aliases["crimson"]} == {("color", "red")}
    assert {(f, v) for f, v, *_ in aliases["midnight"]} == {("color", "navy")}
    assert {(f, v) for f, v, *_ in aliases["tent"]} == {("category", "tents"), ("category", "camping")}
    assert "light" not in aliases and "acme" not in aliases  # on every product: names nothing
    # a word seen on fewer than MIN_PRODUCTS products says nothing (the numbers in the titles)
    assert not any(w.isdigit() for w in aliases)
    # the aliases survive schema.json
    again = IndexSchema.from_json(json.loads(json.dumps(SCHEMA.to_json())))
    assert again.aliases == SCHEMA.aliases


def test_the_whole_request_links_by_alias_and_by_name():
    assert SCHEMA.mentioned_values("a crimson tent, nothing from Lumia") == [
        ("brand", "lumia"), ("category", "tents"), ("category", "camping"), ("color", "red")]
    # two words in a row naming one field's values are one name: the surer word's
    assert ("color", "blue") not in SCHEMA.mentioned_values("a midnight blue tent")
    assert ("color", "navy") in SCHEMA.mentioned_values("a midnight blue tent")
    assert SCHEMA.mentioned_values("running shoes")[0] == ("category", "running shoes")


@pytest.mark.parametrize("text", [
    "", "   ", "\x00\x01\x02 tent\x00red", "knotred cannotred predred", "redtent crimsoned tents2",
    "🙂🙂 ‮ \u200b\u200b", "a tank top", "'; DROP TABLE products; --", "\ud800 lone surrogate",
])
def test_odd_text_links_nothing_spurious_and_never_raises(text):
    found = SCHEMA.mentioned_values(text)
    if "tent\x00red" in text:  # NUL separates words like a space: both words are named
        assert found == [("category", "tents"), ("category", "camping"), ("color", "red")]
    else:
        assert found == []
    request_plan_schema(SCHEMA, text if text.strip() else "x", text)  # never raises


def test_value_inside_a_product_name_or_another_word_is_not_linked():
    # "not red" inside a product name written as one word, a value inside another word
    assert SCHEMA.mentioned_values("the NotRed Trail Pack by Acmeco") == []
    assert SCHEMA.mentioned_values("lumiatech tentative scarletts") == []


def test_a_long_request_is_fast_and_capped():
    text = ("red navy blue crimson tent lumia acme running shoes " * 200)[:10_000]
    t0 = time.perf_counter()
    found = SCHEMA.mentioned_values(text)
    js = request_plan_schema(SCHEMA, text, text, max_query_chars=100)
    assert time.perf_counter() - t0 < 1.0
    assert all(sum(f == field for f, _ in found) <= MAX_LINKED_PER_FIELD for field, _ in found)
    assert len(json.dumps(js)) < 5_000
    junk = "x" * 10_000
    assert SCHEMA.mentioned_values(junk) == [] and request_plan_schema(SCHEMA, junk, junk)


def _one(query: str, filt: dict | None) -> dict:
    return {"searches": [{"filter": filt, "query": query}]}


def test_a_request_without_instructions_may_filter_on_what_its_query_names():
    js = request_plan_schema(SCHEMA, "a crimson tent", None)
    both = {"all": [{"field": "category", "op": "eq", "value": "tents"}, {"field": "color", "op": "eq", "value": "red"}]}
    jsonschema.validate(_one("a crimson tent", both), js)
    jsonschema.validate(_one("a crimson tent", None), js)
    jsonschema.validate(_one("a crimson tent", {"all": [{"field": "color", "op": "ne", "value": "red"}]}), js)
    for leaf in ({"field": "color", "op": "eq", "value": "navy"},  # not named
                 {"field": "color", "op": "in", "value": ["red"]},  # a synonym of eq
                 {"field": "color", "op": "contains", "value": "red"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_one("a crimson tent", {"all": [leaf]}), js)
    for bad in ({"any": both["all"]}, {"not": both["all"][0]},  # only conjunctions
                both["all"][0],  # one shape: a list of leaves, however many
                {"all": both["all"] * 2}, {"all": []}):  # 1 to 3 leaves
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_one("a crimson tent", bad), js)
    # with instructions: three leaves over query and instruction values; numbers only from instructions
    js = request_plan_schema(SCHEMA, "a crimson 2 person tent", "Nothing from Lumia, under $40.")
    three = {"all": [{"field": "category", "op": "eq", "value": "tents"}, {"field": "color", "op": "eq", "value": "red"},
                     {"field": "brand", "op": "ne", "value": "lumia"}]}
    jsonschema.validate(_one("a crimson 2 person tent", three), js)
    jsonschema.validate(_one("a crimson 2 person tent", {"all": [{"field": "price", "op": "lte", "value": 40}]}), js)
    for bad in ({"field": "price", "op": "eq", "value": 40}, {"field": "rating", "op": "gte", "value": 2}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_one("a crimson 2 person tent", {"all": [bad]}), js)
    # a bare leaf under max_depth=1; the forced tail still applies to one-search schemas
    one = request_plan_schema(SCHEMA, "a crimson tent", None, max_searches=1, max_depth=1)
    jsonschema.validate(_one("a crimson tent", both["all"][0]), one)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_one("a crimson tent", both), one)
    tail = forced_tail(request_plan_schema(SCHEMA, "a crimson tent", None, max_searches=1))
    assert tail is not None and tail.text.endswith('"a crimson tent"}]}')


def test_request_turn_lists_the_values_of_the_whole_request():
    from rewards.prompts import build_messages

    turn = build_messages(SCHEMA, "a crimson tent", "Nothing from Lumia.", mode="compact")[-1]["content"]
    assert turn.endswith('Index values named in the query: category "tents", category "camping", color "red".\n'
                         'Index values named in the instructions: brand "lumia".')
    plain = build_messages(SCHEMA, "a sturdy pack", None, mode="compact")[-1]["content"]
    assert "Index values" not in plain


def test_stark_amazon_processed_format_links_with_the_same_code(tmp_path):
    """The StaRK fixture (tests/fakes/skb.py, the processed layout), built into a benchmark: its
    schema links brands, colours and categories from the request, aliases learnt from its own corpus."""
    from fakes.skb import write_skb

    from stark_instruct.benchmark import Benchmark
    from stark_instruct.build import build_benchmark

    root = write_skb(tmp_path / "skb", n=40)
    path = root / "processed" / "cache" / "brand-category-color" / "node_info.pkl"
    info = pickle.loads(path.read_bytes())
    for i in range(0, 40, 4):  # lamps are Lighting products, in a colour their descriptions call "ember"
        info[i].update(title=f"Glow lamp {i}", category=["Sports & Outdoors", "Lighting"], color=["Orange"],
                       description=["A bright lamp in ember."])
    path.write_bytes(pickle.dumps(info))
    qdir = tmp_path / "qa"
    (qdir / "stark_qa").mkdir(parents=True)
    (qdir / "stark_qa" / "stark_qa_human_generated_eval.csv").write_text(
        'id,query,answer_ids,answer_ids_source\n0,light trail runner shoe,"[1, 3, 5, 7, 9, 11, 0, 2]","[1]"\n')
    bench = Benchmark.load(build_benchmark(tmp_path / "bench", source="stark", stark_root=str(root),
                                           stark_queries=str(qdir), query_set="human"))
    schema = bench.schema
    found = schema.mentioned_values("An ember lamp, black, but not from Coleman")
    assert ("brand", "coleman") in found and ("color", "black") in found
    assert ("color", "orange") in found and ("category", "lighting") in found  # by the corpus's own aliases
    js = request_plan_schema(schema, "an ember lamp", None)
    jsonschema.validate(_one("an ember lamp", {"all": [
        {"field": "category", "op": "eq", "value": "lighting"}, {"field": "color", "op": "eq", "value": "orange"}]}), js)
