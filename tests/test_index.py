"""Both engines execute the filter language identically and require a text match."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stark_instruct.filters import FilterError, matches, parse_filter
from stark_instruct.index import BM25Index, TantivyIndex
from stark_instruct.records import derive_meta
from stark_instruct.synthetic import COLOR_NAMES, iter_products
from stark_instruct.text import query_terms, tokenize

N_DOCS = 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = [(p.doc_id, p.text(), derive_meta(p)) for p, _ in iter_products(N_DOCS, seed=3)]
    path = tmp_path_factory.mktemp("idx") / "tantivy"
    TantivyIndex.build(path, docs)
    return docs, TantivyIndex(path), BM25Index(docs)


def _schema():
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


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=0, max_size=4), flt=st.one_of(st.none(), filters))
def test_full_depth_search_is_exactly_the_filtered_text_matches(corpus, words, flt):
    docs, tantivy_idx, bm25_idx = corpus
    try:
        node = parse_filter(flt, _schema()) if flt is not None else None
    except FilterError as e:
        assert e.code == "too_deep"
        return
    query = " ".join(words)
    terms = set(query_terms(query))
    expected = {d for d, text, meta in docs if matches(node, meta) and (not terms or terms & set(tokenize(text)))}
    for idx in (tantivy_idx, bm25_idx):
        hits = idx.search(query, node, k=N_DOCS)
        got = [d for d, _ in hits]
        assert len(got) == len(set(got))
        assert set(got) == expected, type(idx).__name__
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        if terms:
            assert all(s > 0 for s in scores)


def test_text_match_is_required_next_to_a_filter(corpus):
    """The tantivy pitfall: Should text terms beside a Must filter return filter-only docs with score 0."""
    docs, tantivy_idx, _ = corpus
    node = parse_filter({"field": "review_count", "op": "gte", "value": 0}, _schema())
    assert tantivy_idx.search("zzzunknown", node, k=N_DOCS) == []
    assert len(tantivy_idx.search("", node, k=N_DOCS)) == N_DOCS


def test_engines_agree_on_top_results(corpus):
    docs, tantivy_idx, bm25_idx = corpus
    node = parse_filter({"field": "price", "op": "lte", "value": 100}, _schema())
    a = [d for d, _ in tantivy_idx.search("waterproof hiking boots", node, k=10)]
    b = [d for d, _ in bm25_idx.search("waterproof hiking boots", node, k=10)]
    assert len(set(a) & set(b)) >= 5  # both are BM25; idf formulas differ slightly


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tantivy index"):
        TantivyIndex(tmp_path / "nope")
