"""Both engines execute the filter language identically and require a text match."""

from __future__ import annotations

import pytest
from fakes.filter_strategies import WORDS, filters, product_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stark_instruct.filters import FilterError, matches, parse_filter
from stark_instruct.index import BM25Index, TantivyIndex
from stark_instruct.records import derive_meta
from stark_instruct.synthetic import iter_products
from stark_instruct.text import query_terms, tokenize

N_DOCS = 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = [(p.doc_id, p.text(), derive_meta(p)) for p, _ in iter_products(N_DOCS, seed=3)]
    path = tmp_path_factory.mktemp("idx") / "tantivy"
    TantivyIndex.build(path, docs)
    return docs, TantivyIndex(path), BM25Index(docs)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=0, max_size=4), flt=st.one_of(st.none(), filters))
def test_full_depth_search_is_exactly_the_filtered_text_matches(corpus, words, flt):
    docs, tantivy_idx, bm25_idx = corpus
    try:
        node = parse_filter(flt, product_schema()) if flt is not None else None
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
    node = parse_filter({"field": "review_count", "op": "gte", "value": 0}, product_schema())
    assert tantivy_idx.search("zzzunknown", node, k=N_DOCS) == []
    assert len(tantivy_idx.search("", node, k=N_DOCS)) == N_DOCS


def test_engines_agree_on_top_results(corpus):
    docs, tantivy_idx, bm25_idx = corpus
    node = parse_filter({"field": "price", "op": "lte", "value": 100}, product_schema())
    a = [d for d, _ in tantivy_idx.search("waterproof hiking boots", node, k=10)]
    b = [d for d, _ in bm25_idx.search("waterproof hiking boots", node, k=10)]
    assert len(set(a) & set(b)) >= 5  # both are BM25; idf formulas differ slightly


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tantivy index"):
        TantivyIndex(tmp_path / "nope")
