"""Schema linking: keyword values recorded in the index schema, enum-constrained decoding schemas, date
anchors in the rendered schema, and the check that a plan carries an instruction's filter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from types import SimpleNamespace

import jsonschema
import pytest

from rewards.parse import parse_plan
from rewards.plan import Search, SearchPlan, carries_filter, plan_json_schema
from stark_instruct.filters import All, Leaf, Not
from stark_instruct.instructions import constraint_filter
from stark_instruct.schema import IndexSchema, product_schema

REF = dt.date(2024, 2, 29)
VALUES = {"brand": ["acme", "northpeak", "lumia"], "color": ["red", "black"], "category": ["tents"]}
SCHEMA = product_schema(REF, ["acme"], ["red"], ["tents"], VALUES)


def _plan(brand: str) -> dict:
    return {"searches": [{"query": "tent", "filter": {"field": "brand", "op": "eq", "value": brand}}]}


def test_schema_records_keyword_values_and_round_trips():
    assert SCHEMA.field("brand").values == ("acme", "northpeak", "lumia")
    assert SCHEMA.field("price").values == ()
    again = IndexSchema.from_json(json.loads(json.dumps(SCHEMA.to_json())))
    assert again == SCHEMA
    # a schema written before values were recorded still loads, with none
    old = SCHEMA.to_json()
    for f in old["fields"]:
        del f["values"]
    del old["date_anchors"]
    assert IndexSchema.from_json(old).field("brand").values == ()


def test_render_lists_date_anchors_that_are_calendar_years_before_today():
    text = SCHEMA.render()
    assert "1 year ago = 2023-02-28" in text and "2 years ago = 2022-02-28" in text
    assert "4 years" not in text and "10 years ago = 2014-02-28" in text
    assert "years ago" not in dataclasses.replace(SCHEMA, date_anchors=False).render()


def test_linked_schema_only_admits_values_the_index_holds():
    linked = plan_json_schema(SCHEMA, link_values=True)
    free = plan_json_schema(SCHEMA)
    jsonschema.validate(_plan("northpeak"), linked)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_plan("nosuchbrand"), linked)
    jsonschema.validate(_plan("nosuchbrand"), free)  # the language itself accepts any brand
    in_list = {"searches": [{"query": "t", "filter": {"field": "color", "op": "nin", "value": ["red", "pink"]}}]}
    jsonschema.validate(in_list, free)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(in_list, linked)
    # a linked plan is still a plan the parser accepts
    assert parse_plan(json.dumps(_plan("northpeak")), SCHEMA).searches[0].filter == Leaf("brand", "eq", "northpeak")


def test_carries_filter_matches_the_constraint_leaf_in_any_equivalent_form():
    color = constraint_filter({"field": "color", "op": "contains", "value": "red"}, SCHEMA)
    brand_out = constraint_filter({"field": "brand", "op": "ne", "value": "acme"}, SCHEMA)

    def plan(*filters):
        return SearchPlan(tuple(Search("tent", f) for f in filters))

    assert carries_filter(plan(Leaf("color", "eq", "red")), color)
    assert carries_filter(plan(None, All((Leaf("price", "lte", 40.0), Leaf("color", "in", ("red",))))), color)
    assert not carries_filter(plan(Leaf("color", "in", ("red", "black"))), color)
    assert not carries_filter(plan(Not(Leaf("color", "eq", "red"))), color)  # negated: the opposite
    assert not carries_filter(plan(None), color)
    assert carries_filter(plan(Leaf("brand", "nin", ("acme",))), brand_out)
    assert not carries_filter(plan(Leaf("brand", "eq", "acme")), brand_out)


def test_linked_to_keeps_only_the_values_the_text_names():
    assert SCHEMA.linked_to("Please leave out Lumia.").field("last_review_date") is None  # not about time
    assert SCHEMA.linked_to("Only recent reviews.").field("last_review_date").values[0] == "2023-02-28"
    linked = SCHEMA.linked_to("Please leave out Lumia, under $40 with 4.5+ stars, reviewed in recent years.")
    assert linked.field("brand").values == ("lumia",)
    assert linked.field("color") is None and linked.field("category") is None
    assert linked.field("price").values == (40,) and linked.field("rating").values == (4.5,)  # money is a price
    assert SCHEMA.linked_to("at most 30 dollars").field("price").values == (30,)
    assert SCHEMA.linked_to("at most 30 dollars").field("rating") is None
    assert linked.field("last_review_date").values[:2] == ("2023-02-28", "2022-02-28")  # no year count: all
    recent = SCHEMA.linked_to("Reviews from the last 3 years.")
    assert recent.field("last_review_date").values == ("2021-02-28",) and recent.field("price") is None
    assert SCHEMA.linked_to("reviewed within the past year").field("first_review_date").values == ("2023-02-28",)
    assert SCHEMA.linked_to("in the last four years").field("last_review_date").values == ("2020-02-29",)
    assert SCHEMA.linked_to("").fields == ()
    assert dataclasses.replace(SCHEMA, date_anchors=False).linked_to("recent reviews").fields == ()


def _one(query: str, filt: dict | None) -> dict:
    return {"searches": [{"query": query, "filter": filt}]}


def test_request_schema_fixes_the_query_and_grounds_every_filter_value():
    from rewards.plan import request_plan_schema

    js = request_plan_schema(SCHEMA, " a light tent ", "Don't show anything from Lumia, reviewed this year.",
                             max_searches=1, max_depth=1)
    jsonschema.validate(_one("a light tent", {"field": "brand", "op": "ne", "value": "lumia"}), js)
    jsonschema.validate(_one("a light tent", {"field": "last_review_date", "op": "gte", "value": "2023-02-28"}), js)
    assert list(js["$defs"]["search"]["properties"]) == ["filter", "query"]  # decided first, sorted-key safe
    with pytest.raises(jsonschema.ValidationError):  # one linked value: no list or contains synonyms of eq/ne
        jsonschema.validate(_one("a light tent", {"field": "brand", "op": "nin", "value": ["lumia"]}), js)
    jsonschema.validate(_one("a light tent", None), js)
    for bad in (_one("tent", None),  # the query is the request's own text
                _one("a light tent", {"field": "brand", "op": "ne", "value": "acme"}),  # a brand never named
                _one("a light tent", {"field": "color", "op": "ne", "value": "red"}),
                _one("a light tent", {"field": "last_review_date", "op": "gte", "value": "2023-03-01"}),
                {"searches": [_one("a light tent", None)["searches"][0]] * 2}):  # max_searches
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, js)
    # without instructions there is nothing to filter on
    plain = request_plan_schema(SCHEMA, "a light tent", None)
    jsonschema.validate(_one("a light tent", None), plain)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_one("a light tent", {"field": "brand", "op": "eq", "value": "lumia"}), plain)
    with pytest.raises(ValueError, match="query"):
        request_plan_schema(SCHEMA, "  ", "Only Lumia.")


def test_query_schema_reads_a_row_like_its_prompt():
    from rewards.prompts import query_schema

    row = {"query": "a light tent", "instruction": "Only Lumia.", "merged_query": "a light tent Only Lumia."}
    lumia = {"all": [{"field": "brand", "op": "eq", "value": "lumia"}]}
    sep = query_schema(SCHEMA, row, "chat")
    jsonschema.validate(_one("a light tent", lumia), sep)
    merged = query_schema(SCHEMA, row, "merged")
    jsonschema.validate(_one("a light tent Only Lumia.", lumia), merged)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_one("a light tent", None), merged)


def test_forced_tail_is_what_every_one_search_request_plan_ends_with():
    from pipelines.backends.vllm import completion_responses
    from rewards.plan import forced_tail, request_plan_schema

    js = request_plan_schema(SCHEMA, 'a "light" tent', "Only Lumia.", max_searches=1, max_depth=1)
    tail = forced_tail(js)
    assert tail is not None and tail.stop == ',"query":'
    for flt in ({"field": "brand", "op": "eq", "value": "lumia"}, None):
        full = json.dumps({"searches": [{"filter": flt, "query": 'a "light" tent'}]}, separators=(",", ":"))
        head, sep, _ = full.partition(tail.stop)
        assert sep and tail.stop not in head and head + tail.text == full
        jsonschema.validate(json.loads(head + tail.text), js)
    # more than one search, a free query, or the global schema: nothing after the filter is forced
    assert forced_tail(request_plan_schema(SCHEMA, "a light tent", "Only Lumia.", max_searches=2)) is None
    assert forced_tail(plan_json_schema(SCHEMA, max_searches=1)) is None
    # a completion vLLM stopped at the stop string gets the tail back; an EOS-finished one is left alone
    done = [SimpleNamespace(index=0, text='{"searches":[{"filter":null', token_ids=[1, 2], finish_reason="stop",
                            stop_reason=tail.stop),
            SimpleNamespace(index=1, text='{"searches":[]}', token_ids=[1], finish_reason="stop", stop_reason=None)]
    out = completion_responses(SimpleNamespace(prompt_token_ids=[0], outputs=done), tail)
    assert out[0].text == '{"searches":[{"filter":null,"query":"a \\"light\\" tent"}]}'
    assert out[0].usage["output_tokens"] == 2 and out[1].text == '{"searches":[]}'
