"""The filter language rejects bad filters with a typed reason and coerces values to field types."""

from __future__ import annotations

import datetime as dt

import pytest

from stark_instruct.filters import FilterError, Leaf, matches, parse_filter, to_json
from stark_instruct.schema import product_schema

SCHEMA = product_schema(dt.date(2025, 6, 30))


@pytest.mark.parametrize("flt, code", [
    ({"field": "colour", "op": "eq", "value": "red"}, "unknown_field"),
    ({"field": "price", "op": "contains", "value": 3}, "bad_op"),
    ({"field": "brand", "op": "gt", "value": "a"}, "bad_op"),
    ({"field": "price", "op": "lt", "value": "cheap"}, "bad_value"),
    ({"field": "price", "op": "lt", "value": 10 ** 400}, "bad_value"),
    ({"field": "price", "op": "lt", "value": True}, "bad_value"),
    ({"field": "last_review_date", "op": "gte", "value": "2024-02-30"}, "bad_date"),
    ({"field": "last_review_date", "op": "gte", "value": "last year"}, "bad_date"),
    ({"field": "brand", "op": "in", "value": "acme"}, "bad_value"),
    ({"field": "brand", "op": "eq", "value": ""}, "bad_value"),
    ({"all": []}, "bad_node"),
    ({"field": "brand", "op": "eq"}, "bad_node"),
    ([1, 2], "bad_node"),
    ({"not": {"not": {"not": {"not": {"field": "brand", "op": "eq", "value": "a"}}}}}, "too_deep"),
])
def test_bad_filters_raise_typed_errors(flt, code):
    with pytest.raises(FilterError) as e:
        parse_filter(flt, SCHEMA)
    assert e.value.code == code and e.value.reason


def test_values_are_coerced_and_round_trip():
    node = parse_filter({"all": [{"field": "brand", "op": "eq", "value": "  FooBrand "},
                                 {"field": "price", "op": "lte", "value": "$1,200"},
                                 {"field": "last_review_date", "op": "gte", "value": "2023-06-30"}]}, SCHEMA)
    assert node.children[0] == Leaf("brand", "eq", "foobrand")
    assert node.children[1].value == 1200.0 and node.children[2].value == dt.date(2023, 6, 30)
    assert parse_filter(to_json(node), SCHEMA) == node


def test_missing_values_satisfy_only_negative_ops():
    meta = {"brand": None, "price": None, "color": []}
    assert not matches(parse_filter({"field": "price", "op": "lte", "value": 5}, SCHEMA), meta)
    assert matches(parse_filter({"field": "price", "op": "ne", "value": 5}, SCHEMA), meta)
    assert matches(parse_filter({"field": "brand", "op": "nin", "value": ["a"]}, SCHEMA), meta)
    assert matches(parse_filter({"field": "color", "op": "ne", "value": "red"}, SCHEMA), meta)
    assert not matches(parse_filter({"field": "color", "op": "in", "value": ["red"]}, SCHEMA), meta)
