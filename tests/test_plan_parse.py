import datetime as dt
import json

import jsonschema
import pytest

from rewards.parse import ERROR_CODES, MAX_TEXT_CHARS, PlanError, parse_plan
from rewards.plan import Search, SearchPlan, plan_json_schema, plan_to_json
from stark_instruct.filters import All, Leaf, Not
from stark_instruct.schema import product_schema

SCHEMA = product_schema(dt.date(2018, 10, 1), brands=["northpeak", "acme"], colors=["red", "black"],
                        categories=["tents", "jackets"])
PLAN = {"searches": [{"query": "rain jacket", "filter": {"field": "brand", "op": "eq", "value": "NorthPeak"}}]}
PLAN_TEXT = json.dumps(PLAN)
EXPECTED = SearchPlan((Search("rain jacket", Leaf("brand", "eq", "northpeak")),))


def parse(text):
    return parse_plan(text, SCHEMA)


@pytest.mark.parametrize("text", [
    PLAN_TEXT,
    f"```json\n{PLAN_TEXT}\n```",
    f"```\n{PLAN_TEXT}\n```",
    f"Here is the plan:\n{PLAN_TEXT}\nThis restricts results to the brand.",
    f"<tool_call>\n{PLAN_TEXT}\n</tool_call>",
    json.dumps({"name": "search", "arguments": PLAN}),
    json.dumps({"name": "search", "arguments": PLAN_TEXT}),
    "<tool_call>" + json.dumps({"name": "search", "arguments": PLAN_TEXT}) + "</tool_call>",
    json.dumps({"id": "call_1", "type": "function", "function": {"name": "search", "arguments": PLAN_TEXT}}),
    json.dumps({"type": "tool_use", "id": "t1", "name": "search", "input": PLAN}),
    json.dumps({"name": "search", "parameters": PLAN}),
    json.dumps([{"name": "search", "arguments": PLAN}]),
    json.dumps(PLAN["searches"]),
    json.dumps(PLAN["searches"][0]),
    "I think {brand} matters. " + PLAN_TEXT,
    '<think>maybe {"searches": [{"query": "wrong"}]}</think>\n' + PLAN_TEXT,
    '{"thoughts": "filter by brand"}\n' + PLAN_TEXT,
])
def test_llm_writing_styles(text):
    assert parse(text) == EXPECTED


def test_first_plan_wins_and_values_are_coerced():
    text = ('{"searches": [{"query": "  tent ", "filter": {"all": [{"field": "price", "op": "lte", "value": "$120"},'
            ' {"not": {"field": "color", "op": "in", "value": ["Red", " BLACK "]}}]}, "weight": 2}]}'
            ' {"searches": [{"query": "second"}]}')
    plan = parse(text)
    assert plan == SearchPlan((Search("tent", All((Leaf("price", "lte", 120.0),
                                                   Not(Leaf("color", "in", ("red", "black"))))), 2.0),))
    assert plan_to_json(plan) == {"searches": [{"query": "tent", "filter": {"all": [
        {"field": "price", "op": "lte", "value": 120.0},
        {"not": {"field": "color", "op": "in", "value": ["red", "black"]}}]}, "weight": 2.0}]}


def test_filter_only_search_and_null_filter():
    plan = parse('{"searches": [{"query": "", "filter": {"field": "rating", "op": "gte", "value": 4}},'
                 ' {"query": "stove", "filter": null}]}')
    assert plan.searches[0] == Search("", Leaf("rating", "gte", 4.0))
    assert plan.searches[1] == Search("stove", None)
    assert parse('{"searches": [{"query": "x", "filter": {"field": "last_review_date", "op": "gte", '
                 '"value": "2016-10-01"}}]}').searches[0].filter.value == dt.date(2016, 10, 1)


@pytest.mark.parametrize("text,code,reason", [
    ("I cannot help with that.", "no_json", "no JSON object"),
    ("", "no_json", "no JSON"),
    ('{"searches": [{"query": "a",}]}', "bad_json", "invalid JSON"),
    ("{'searches': [{'query': 'a'}]}", "bad_json", "invalid JSON"),
    ('{"searches": [{"query": "tent"}, {"query": "two person', "bad_json", "Unterminated string"),  # cut off
    ('Plan: [{"query": "tent"}, {"query": "x"', "bad_json", "invalid JSON"),
    ("[" * 3000 + "]" * 3000, "too_deep", "nested"),
    ('{"searches": [{"query": "a", "filter": ' + '{"not": ' * 40 + '{}' + '}' * 40 + '}]}', "too_deep", "32"),
    ('{"searches": [{"query": "a", "filter": ' + '{"not": ' * 4 + '{"field": "brand", "op": "eq", "value": "x"}'
     + '}' * 4 + '}]}', "too_deep", "deeper than 4"),
    ("x" * (MAX_TEXT_CHARS + 1), "too_long", "characters"),
    ('{"answer": "tents"}', "bad_shape", "keys ['answer']"),
    ('[1, 2, 3]', "bad_shape", "list"),
    ('{"searches": {"query": "a"}}', "bad_shape", "must be a list"),
    ('{"searches": ["tent"]}', "bad_shape", "search 1 must be an object"),
    ('{"searches": [{"filter": {"field": "brand", "op": "eq", "value": "x"}}]}', "bad_shape", "missing 'query'"),
    ('{"searches": [{"query": "a"}], "explanation": "x"}', "unknown_key", "explanation"),
    ('{"searches": [{"query": "a", "k": 10}]}', "unknown_key", "'k'"),
    ('{"searches": []}', "no_searches", "at least one"),
    (json.dumps({"searches": [{"query": str(i)} for i in range(6)]}), "too_many_searches", "at most 5"),
    ('{"searches": [{"query": 42}]}', "bad_query", "string"),
    ('{"searches": [{"query": "' + "a" * 1001 + '"}]}', "bad_query", "1000"),
    ('{"searches": [{"query": "a", "weight": 0}]}', "bad_weight", "greater than 0"),
    ('{"searches": [{"query": "a", "weight": "high"}]}', "bad_weight", "number"),
    ('{"searches": [{"query": "a", "weight": NaN}]}', "bad_weight", "finite"),
    ('{"searches": [{"query": "a", "weight": 1e400}]}', "bad_weight", "finite"),
    ('{"searches": [{"query": "   "}]}', "empty_search", "empty query and no filter"),
    ('{"searches": [{"query": "a"}, {"query": "", "filter": null}]}', "empty_search", "search 2"),
    ('{"searches": [{"query": "a", "filter": {"field": "size", "op": "eq", "value": "xl"}}]}',
     "unknown_field", "unknown field 'size'"),
    ('{"searches": [{"query": "a", "filter": {"field": "brand", "op": "gt", "value": "x"}}]}', "bad_op", "keyword"),
    ('{"searches": [{"query": "a", "filter": {"field": "price", "op": "contains", "value": 3}}]}', "bad_op", "number"),
    ('{"searches": [{"query": "a", "filter": {"field": "price", "op": "lt", "value": "cheap"}}]}',
     "bad_value", "needs a number"),
    ('{"searches": [{"query": "a", "filter": {"field": "price", "op": "lt", "value": NaN}}]}', "bad_value", "finite"),
    ('{"searches": [{"query": "a", "filter": {"field": "brand", "op": "in", "value": "acme"}}]}',
     "bad_value", "non-empty list"),
    ('{"searches": [{"query": "a", "filter": {"field": "last_review_date", "op": "gte", "value": "last year"}}]}',
     "bad_date", "ISO date"),
    ('{"searches": [{"query": "a", "filter": {"field": "last_review_date", "op": "gte", "value": "2018-02-30"}}]}',
     "bad_date", "not a real date"),
    ('{"searches": [{"query": "a", "filter": {}}]}', "bad_node", "a filter node is"),
    ('{"searches": [{"query": "a", "filter": {"all": []}}]}', "bad_node", "non-empty list"),
    ('{"name": "search", "arguments": "not json"}', "no_json", "no JSON"),
    ('{"name": "search", "arguments": {"q": "tent"}}', "bad_shape", "tool-call arguments"),
    ('{"searches": [{"query": "a", "filter": {"field": "brand", "op": "in", "value": '
     + json.dumps([f"b{i}" for i in range(40)]) + '}}]}', "too_many", "32"),
    ('{"searches": [{"query": "a", "filter": {"field": "price", "op": "lt", "value": 1' + "0" * 5000 + '}}]}',
     "bad_json", "invalid JSON"),
])
def test_error_codes_and_reasons(text, code, reason):
    with pytest.raises(PlanError) as info:
        parse(text)
    assert info.value.code == code
    assert code in ERROR_CODES
    assert reason in info.value.reason
    assert len(info.value.reason) <= 303


def test_non_string_input():
    with pytest.raises(PlanError) as info:
        parse_plan(None, SCHEMA)  # type: ignore[arg-type]
    assert info.value.code == "bad_input"
    assert isinstance(info.value, ValueError)


def test_plan_to_json_round_trips():
    plan = parse('{"searches": [{"query": "tent", "weight": 0.5, "filter": {"any": [{"field": "brand", "op": "nin",'
                 ' "value": ["acme"]}, {"field": "first_review_date", "op": "lt", "value": "2015-01-01"}]}}]}')
    assert parse(json.dumps(plan_to_json(plan))) == plan


def test_typed_models_validate():
    with pytest.raises(ValueError, match="1-5 searches"):
        SearchPlan(())
    with pytest.raises(ValueError, match="1-5 searches"):
        SearchPlan(tuple(Search(str(i)) for i in range(6)))
    with pytest.raises(ValueError, match="query or a filter"):
        Search(" ")
    with pytest.raises(ValueError, match="weight"):
        Search("a", weight=-1)
    assert SearchPlan([Search("a")]).searches == (Search("a"),)


# ---- the JSON schema ---------------------------------------------------------------------------

VALIDATOR = jsonschema.Draft202012Validator(plan_json_schema(SCHEMA))

ACCEPTED = [
    PLAN_TEXT,
    '{"searches": [{"query": "a", "weight": 3, "filter": {"all": [{"field": "category", "op": "contains", '
    '"value": "tents"}, {"any": [{"field": "rating", "op": "gte", "value": 4.5}, {"not": {"field": "price", '
    '"op": "ne", "value": 20.5}}]}]}}, {"query": "b"}]}',
    '{"searches": [{"query": "", "filter": {"not": {"not": {"not": {"field": "color", "op": "nin", "value": '
    '["red"]}}}}}]}',
    '{"searches": [{"query": "x", "filter": {"field": "last_review_date", "op": "gt", "value": "2017-01-31"}}]}',
]


def test_schema_is_valid_2020_12_and_acyclic():
    schema = plan_json_schema(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    # every $ref points to a deeper level or the leaf, so there is no recursion
    for name, body in defs.items():
        for ref in _refs(body):
            target = ref.rsplit("/", 1)[1]
            assert target != name and target in defs
            if name.startswith("filter_") and target.startswith("filter_"):
                assert int(target.split("_")[1]) == int(name.split("_")[1]) + 1
    fields = {alt["properties"]["field"]["enum"][0] for alt in defs["leaf"]["anyOf"]}
    assert fields == set(SCHEMA.field_names)


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


@pytest.mark.parametrize("text", ACCEPTED)
def test_schema_accepts_what_the_parser_accepts(text):
    plan = parse(text)
    VALIDATOR.validate(json.loads(text))
    VALIDATOR.validate(plan_to_json(plan))


@pytest.mark.parametrize("plan", [
    {"searches": [{"query": "a", "filter": {"field": "size", "op": "eq", "value": "xl"}}]},
    {"searches": [{"query": "a", "filter": {"field": "brand", "op": "gt", "value": "x"}}]},
    {"searches": [{"query": "a", "filter": {"field": "brand", "op": "eq", "value": ["x"]}}]},
    {"searches": [{"query": "a", "filter": {"field": "price", "op": "lt", "value": "cheap"}}]},
    {"searches": [{"query": "a", "filter": {"field": "last_review_date", "op": "gt", "value": "May 2017"}}]},
    {"searches": [{"query": "a", "filter": {"not": {"not": {"not": {"not": {"field": "brand", "op": "eq",
                                                                          "value": "x"}}}}}}]},
    {"searches": [{"query": "a", "k": 3}]},
    {"searches": [{"query": "a"}], "why": "x"},
    {"searches": [{"query": str(i)} for i in range(6)]},
    {"searches": []},
    {"searches": [{"query": "a", "weight": 0}]},
])
def test_schema_rejects_what_the_parser_rejects(plan):
    with pytest.raises(PlanError):
        parse(json.dumps(plan))
    assert not VALIDATOR.is_valid(plan)


def test_decoding_bounds_only_tighten_the_schema():
    bounded = jsonschema.Draft202012Validator(plan_json_schema(SCHEMA, max_searches=2, max_depth=2,
                                                               max_query_chars=10, max_items=2))
    leaf = {"field": "color", "op": "nin", "value": ["red", "black"]}
    ok = {"searches": [{"query": "rain coat", "filter": {"not": leaf}}, {"query": "b"}]}
    assert bounded.is_valid(ok) and VALIDATOR.is_valid(ok)
    too_much = [
        {"searches": [{"query": "a"}, {"query": "b"}, {"query": "c"}]},
        {"searches": [{"query": "a", "filter": {"not": {"not": leaf}}}]},
        {"searches": [{"query": "waterproof rain jacket"}]},
        {"searches": [{"query": "a", "filter": {**leaf, "value": ["red", "black", "blue"]}}]},
        {"searches": [{"query": "a", "filter": {"any": [leaf, leaf, leaf]}}]},
        {"searches": [{"query": "a", "filter": {"field": "brand", "op": "eq", "value": "northpeak-x"}}]},
    ]
    for plan in too_much:
        assert not bounded.is_valid(plan) and VALIDATOR.is_valid(plan), plan
        parse(json.dumps(plan))  # still a valid plan of the language


@pytest.mark.parametrize("bound", [{"max_searches": 6}, {"max_depth": 0}, {"max_query_chars": 2.5},
                                   {"max_items": 10_000}])
def test_decoding_bounds_cannot_loosen_the_language(bound):
    with pytest.raises(ValueError, match=next(iter(bound))):
        plan_json_schema(SCHEMA, **bound)
