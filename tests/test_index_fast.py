"""The tantivy fast path (post-filtering a cached unfiltered window) returns exactly what the plain
in-engine filter returns: the same documents in the same order, score ties included."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from fakes.filter_strategies import WORDS, filters, product_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stark_instruct.build import META_SCHEMA
from stark_instruct.filters import FilterError, Leaf, matches, parse_filter
from stark_instruct.index import TantivyIndex
from stark_instruct.meta_columns import MetaColumns
from stark_instruct.records import derive_meta
from stark_instruct.synthetic import iter_products

N_DOCS = 1500


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    docs = [(p.doc_id, p.text(), derive_meta(p)) for p, _ in iter_products(N_DOCS, seed=5)]
    metas = [m for _, _, m in docs]
    shuffled = list(docs)
    random.Random(0).shuffle(shuffled)  # doc addresses in tantivy then differ from doc_id order
    path = tmp_path_factory.mktemp("fast") / "tantivy"
    TantivyIndex.build(path, shuffled)
    table = pa.Table.from_pylist([{"doc_id": i, **m} for i, m in enumerate(metas)], schema=META_SCHEMA)
    meta = MetaColumns(table)
    fast = TantivyIndex(path, meta=meta)
    fast.WINDOW_HIT_COST = 0  # post-filter whenever a window can hold the answer, however small the corpus
    return metas, TantivyIndex(path), fast, meta


def _node(flt):
    try:
        return parse_filter(flt, product_schema())
    except FilterError as e:
        assert e.code == "too_deep"
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), flt=filters, k=st.integers(1, 120))
def test_fast_path_equals_plain_path(engines, words, flt, k):
    _, plain, fast, _ = engines
    node = _node(flt)
    if node is None:
        return
    query = " ".join(words)
    assert fast.search(query, node, k) == plain.search(query, node, k)
    assert fast.search(query, node, k) == plain.search(query, node, k)  # again, from the window cache


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=filters)
def test_columns_mask_is_the_reference_semantics(engines, flt):
    metas, _, _, meta = engines
    node = _node(flt)
    if node is None:
        return
    rows = np.arange(len(metas))
    assert meta.mask(node, rows).tolist() == [matches(node, m) for m in metas]
    sub = rows[::7][::-1]  # any subset, in any order
    assert meta.mask(node, sub).tolist() == [matches(node, metas[i]) for i in sub]
    share = meta.selectivity(node)
    assert 0.0 <= share <= 1.0
    if isinstance(node, Leaf) and not (node.field in ("category", "color") and node.op in ("in", "nin")):
        assert share == pytest.approx(sum(matches(node, m) for m in metas) / len(metas))


def test_broad_filters_post_filter_and_selective_ones_run_in_the_engine(engines):
    _, plain, fast, _ = engines
    broad = parse_filter({"field": "review_count", "op": "gte", "value": 0}, product_schema())
    narrow = parse_filter({"field": "brand", "op": "eq", "value": "nowhere"}, product_schema())
    before = (fast.post_filtered, fast.pre_filtered)
    assert fast.search("waterproof boots", broad, 20) == plain.search("waterproof boots", broad, 20)
    assert fast.post_filtered == before[0] + 1
    assert fast.search("waterproof boots", narrow, 20) == plain.search("waterproof boots", narrow, 20) == []
    assert fast.pre_filtered == before[1] + 1


def test_metadata_must_cover_the_index(engines, tmp_path):
    metas, plain, _, _ = engines
    table = pa.Table.from_pylist([{"doc_id": i, **m} for i, m in enumerate(metas[:10])], schema=META_SCHEMA)
    with pytest.raises(ValueError, match="metadata has 10 rows"):
        TantivyIndex(plain.path, meta=MetaColumns(table))
    shuffled = pa.Table.from_pylist([{"doc_id": 1, **metas[1]}, {"doc_id": 0, **metas[0]}], schema=META_SCHEMA)
    with pytest.raises(ValueError, match="doc_id order"):
        MetaColumns(shuffled)
