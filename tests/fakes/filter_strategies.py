"""Hypothesis strategies for random filter trees over the product schema (index tests)."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from stark_instruct.synthetic import COLOR_NAMES


def product_schema():
    from stark_instruct.schema import product_schema

    return product_schema(dt.date(2025, 6, 30))


BRANDS = ["yarora", "iskhaven", "nowhere", "ravstone", "corpeak"]
WORDS = ["waterproof", "boots", "jacket", "tent", "camo", "hiking", "zzzunknown", "for", "the", "lightweight",
         "bottle", "summit", "2", "red"]
DATES = st.dates(dt.date(2009, 1, 1), dt.date(2026, 1, 1)).map(dt.date.isoformat)


def leaves():
    brand = st.builds(lambda op, v: {"field": "brand", "op": op, "value": v}, st.sampled_from(["eq", "ne"]),
                      st.sampled_from(BRANDS))
    brand_list = st.builds(lambda op, v: {"field": "brand", "op": op, "value": v}, st.sampled_from(["in", "nin"]),
                           st.lists(st.sampled_from(BRANDS), min_size=1, max_size=3))
    color = st.builds(lambda op, v: {"field": "color", "op": op, "value": v},
                      st.sampled_from(["eq", "ne", "contains"]), st.sampled_from(COLOR_NAMES))
    color_list = st.builds(lambda op, v: {"field": "color", "op": op, "value": v}, st.sampled_from(["in", "nin"]),
                           st.lists(st.sampled_from(COLOR_NAMES), min_size=1, max_size=3))
    num = st.builds(lambda f, op, v: {"field": f, "op": op, "value": v},
                    st.sampled_from(["price", "rating", "review_count"]),
                    st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
                    st.one_of(st.integers(0, 300), st.floats(0, 300, allow_nan=False).map(lambda x: round(x, 2))))
    date = st.builds(lambda f, op, v: {"field": f, "op": op, "value": v},
                     st.sampled_from(["first_review_date", "last_review_date"]),
                     st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), DATES)
    return st.one_of(brand, brand_list, color, color_list, num, date)


filters = st.recursive(
    leaves(),
    lambda kids: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, kids),
    ),
    max_leaves=6,
)
