"""Keyword search with metadata filters behind one interface, two engines.

- `TantivyIndex` (default): BM25 over the product text, metadata as indexed fast fields, filters executed
  inside the engine, index persisted on disk and memory-mapped so worker processes share its pages.
  Given the metadata as columns, a broad filter is instead applied to the unfiltered top-k window of the
  same terms (pruned by block-max WAND, cached per terms): the same documents in the same order.
- `BM25Index`: rank-bm25's BM25Okapi with the filter applied in Python through `filters.matches`; the
  reference engine for small corpora and tests.

Both return only documents that satisfy the filter AND contain at least one query term (a query with no
terms returns the filter's documents with score 0 in doc_id order), so results are comparable.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from stark_instruct.filters import All, AnyOf, Leaf, Node, Not, matches
from stark_instruct.meta_columns import MetaColumns
from stark_instruct.text import query_terms, tokenize

_EPOCH = dt.date(1970, 1, 1)
NUMBER_FIELDS = ("price", "rating", "review_count")
DATE_FIELDS = ("first_review_date", "last_review_date")
KEYWORD_FIELDS = ("brand", "category", "color")


class SearchIndex(Protocol):
    def search(self, query: str, filter: Node | None = None, k: int = 100) -> list[tuple[int, float]]: ...

    def __len__(self) -> int: ...


def _days(value: dt.date) -> int:
    return (value - _EPOCH).days


def _rank(hits: Iterable[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """Deterministic order for both engines: score descending, then doc_id ascending."""
    return sorted(hits, key=lambda h: (-h[1], h[0]))[:k]


class TantivyIndex:
    """A tantivy index on disk; open it in every process that searches (the files are mmapped)."""

    def __init__(self, path: str | Path, meta: MetaColumns | None = None, window_cache: int = 2048):
        import tantivy

        self._t = tantivy
        self.path = Path(path)
        if not self.path.is_dir() or not tantivy.Index.exists(str(self.path)):
            raise FileNotFoundError(f"{self.path}: no tantivy index here (build the benchmark first)")
        self.index = tantivy.Index.open(str(self.path))
        self.schema = self.index.schema
        self.searcher = self.index.searcher()
        self._all = tantivy.Query.all_query()
        if meta is not None and len(meta) != len(self):
            raise ValueError(f"{self.path}: metadata has {len(meta)} rows, the index {len(self)} documents")
        # With metadata columns, a broad filter runs as "unfiltered top-k window, then filter" (`_post_filtered`);
        # the windows are cached per query terms, so samples that differ only in their filter share one search.
        self.meta = meta
        self._windows: OrderedDict[tuple[str, ...], tuple[np.ndarray, np.ndarray, bool]] = OrderedDict()
        self._window_cache = window_cache
        self._dfs: dict[str, int] = {}
        self.post_filtered = self.pre_filtered = 0  # how searches with a filter were answered

    def __len__(self) -> int:
        return self.searcher.num_docs

    @staticmethod
    def build(path: str | Path, docs: Iterable[tuple[int, str, dict]], heap_mb: int = 512, threads: int = 2) -> None:
        """Write (doc_id, text, meta) triples into a fresh index at `path`."""
        import tantivy

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("doc_id", stored=True, indexed=True, fast=True)
        sb.add_text_field("text", stored=False, tokenizer_name="default", index_option="freq")
        for name in KEYWORD_FIELDS:
            sb.add_text_field(name, stored=False, tokenizer_name="raw", index_option="basic")
        for name in NUMBER_FIELDS:
            sb.add_float_field(name, stored=False, indexed=True, fast=True)
        for name in DATE_FIELDS:
            sb.add_integer_field(name, stored=False, indexed=True, fast=True)
        index = tantivy.Index(sb.build(), path=str(path), reuse=False)
        writer = index.writer(heap_size=heap_mb * 1_000_000, num_threads=threads)
        for doc_id, text, meta in docs:
            d = tantivy.Document()
            d.add_integer("doc_id", int(doc_id))
            d.add_text("text", text)
            if meta.get("brand"):
                d.add_text("brand", meta["brand"])
            for name in ("category", "color"):
                for v in meta.get(name) or ():
                    d.add_text(name, v)
            for name in NUMBER_FIELDS:
                if meta.get(name) is not None:
                    d.add_float(name, float(meta[name]))
            for name in DATE_FIELDS:
                if meta.get(name) is not None:
                    d.add_integer(name, _days(meta[name]))
            writer.add_document(d)
        writer.commit()
        writer.wait_merging_threads()

    # -- filters -> tantivy queries -------------------------------------------------------------
    def _negate(self, q):
        Occur = self._t.Occur
        return self._t.Query.boolean_query([(Occur.Must, self._all), (Occur.MustNot, q)])

    def _any(self, queries: list):
        return self._t.Query.boolean_query([(self._t.Occur.Should, q) for q in queries])

    def _leaf(self, leaf: Leaf):
        Q, FT = self._t.Query, self._t.FieldType
        f, op, v = leaf.field, leaf.op, leaf.value
        if f in KEYWORD_FIELDS:
            if op in ("in", "nin"):
                q = self._any([Q.term_query(self.schema, f, x) for x in v])
            else:
                q = Q.term_query(self.schema, f, v)
            return self._negate(q) if op in ("ne", "nin") else q
        if f in DATE_FIELDS:
            ftype, v = FT.Integer, (tuple(_days(x) for x in v) if isinstance(v, tuple) else _days(v))
        else:
            ftype = FT.Float
        if op in ("in", "nin"):
            q = self._any([Q.range_query(self.schema, f, ftype, x, x, use_inverted_index=True) for x in v])
            return self._negate(q) if op == "nin" else q
        bounds = {
            "eq": (v, v, True, True), "ne": (v, v, True, True),
            "gt": (v, None, False, True), "gte": (v, None, True, True),
            "lt": (None, v, True, False), "lte": (None, v, True, True),
        }[op]
        # The indexed (inverted) range beats a fast-field column scan when intersected with text.
        q = Q.range_query(self.schema, f, ftype, *bounds, use_inverted_index=True)
        return self._negate(q) if op == "ne" else q

    def filter_query(self, node: Node):
        Occur, Q = self._t.Occur, self._t.Query
        if isinstance(node, Leaf):
            return self._leaf(node)
        if isinstance(node, All):
            return Q.boolean_query([(Occur.Must, self.filter_query(c)) for c in node.children])
        if isinstance(node, AnyOf):
            return self._any([self.filter_query(c) for c in node.children])
        if isinstance(node, Not):
            return self._negate(self.filter_query(node.child))
        raise TypeError(f"not a filter node: {node!r}")

    # -- searching ------------------------------------------------------------------------------------
    MAX_WINDOW = 2000  # largest unfiltered window ever fetched for post-filtering
    WINDOW_SLACK = 1.5  # window = slack * k / estimated share of documents the filter keeps
    # Measured cost of one window hit (converting it to Python) in documents the engine scores when the
    # filter runs inside it (it scores every document matching a term and the filter, without pruning).
    WINDOW_HIT_COST = 10

    def _top(self, q, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Tantivy's top-k of a scored query as (doc_ids, scores, complete), best first.

        Tantivy picks the top k by score, ties by doc address (segment, doc) ascending, so the set is
        deterministic; it is listed by score, then doc_id. `complete`: no other document matches.
        """
        limit = min(k, len(self))
        hits = self.searcher.search(q, limit=limit, count=False).hits  # no count: it would defeat pruning
        ids = np.asarray(self.searcher.fast_field_values("doc_id", [a for _, a in hits]), dtype=np.int64)
        scores = np.fromiter((s for s, _ in hits), dtype=np.float64, count=len(hits))
        return ids, scores, len(hits) < limit or limit == len(self)

    @staticmethod
    def _by_score_then_id(ids: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
        order = np.lexsort((ids, -scores))
        return list(zip(ids[order].tolist(), scores[order].tolist(), strict=True))

    def _doc_freq(self, term: str) -> int:
        if term not in self._dfs:
            self._dfs[term] = self.searcher.doc_freq("text", term)
        return self._dfs[term]

    def _text_query(self, terms: list[str]):
        # One Should clause per term: on its own, tantivy ranks this disjunction with block-max WAND.
        return self._any([self._t.Query.term_query(self.schema, "text", t) for t in terms])

    def _cached_window(self, terms: list[str], size: int) -> tuple[np.ndarray, np.ndarray, bool] | None:
        hit = self._windows.get(tuple(terms))
        return hit if hit is not None and (hit[2] or len(hit[0]) >= size) else None

    def _window(self, terms: list[str], size: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The unfiltered top-`size` of the terms, from the cache when a large enough window is there."""
        key = tuple(terms)
        hit = self._cached_window(terms, size)
        if hit is not None:
            self._windows.move_to_end(key)
            return hit
        hit = self._top(self._text_query(terms), size)
        self._windows[key] = hit
        if len(self._windows) > self._window_cache:
            self._windows.popitem(last=False)
        return hit

    def _post_filtered(self, terms: list[str], filter: Node, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The filtered top-k cut from an unfiltered window, or None when the window may not hold it.

        Tantivy's order (score, then doc address) is total, and the window is its first `size` documents,
        so the first k filtered documents of the window are the filtered top-k whenever there are k of
        them, or the window holds every matching document.
        """
        share = self.meta.selectivity(filter)
        if share <= 0 or self.WINDOW_SLACK * k / share > self.MAX_WINDOW:
            return None
        size = math.ceil(self.WINDOW_SLACK * k / share)
        if self._cached_window(terms, size) is None:
            # No window to reuse: fetch one only where the engine would score many more documents.
            engine_work = min(sum(map(self._doc_freq, terms)), share * len(self))
            if size * self.WINDOW_HIT_COST > engine_work:
                return None
        ids, scores, complete = self._window(terms, size)
        keep = np.flatnonzero(self.meta.mask(filter, ids))
        if len(keep) < k and not complete:
            return None
        return ids[keep[:k]], scores[keep[:k]]

    def search(self, query: str, filter: Node | None = None, k: int = 100) -> list[tuple[int, float]]:
        """Top-k (doc_id, BM25 score) by score, ties by doc_id, of documents matching a term and the filter."""
        Occur, Q = self._t.Occur, self._t.Query
        terms = query_terms(query)
        k = max(1, min(k, len(self)))
        if not terms:
            q = self.filter_query(filter) if filter is not None else self._all
            res = self.searcher.search(q, limit=k, count=False, order_by_field="doc_id", order=self._t.Order.Asc)
            ids = self.searcher.fast_field_values("doc_id", [a for _, a in res.hits])
            return [(int(i), 0.0) for i in ids]
        found = None
        if filter is None:
            found = self._top(self._text_query(terms), k)[:2]
        elif self.meta is not None:
            found = self._post_filtered(terms, filter, k)
            self.post_filtered += found is not None
        if found is None:
            # Text terms go in a Must clause of their own (a disjunction), so at least one must match: left as
            # Should next to a Must filter, tantivy would also return filter-only documents with score 0.
            self.pre_filtered += 1
            q = Q.boolean_query([(Occur.Must, self._text_query(terms)),
                                 (Occur.Must, Q.const_score_query(self.filter_query(filter), 0.0))])
            found = self._top(q, k)[:2]
        return self._by_score_then_id(*found)


class BM25Index:
    """rank-bm25 in memory; filters evaluated with the reference `filters.matches` on candidates."""

    def __init__(self, docs: Iterable[tuple[int, str, dict]]):
        from rank_bm25 import BM25Okapi

        self.doc_ids: list[int] = []
        self.metas: list[dict] = []
        corpus: list[list[str]] = []
        vocab: dict[str, str] = {}  # one shared str per distinct token: at 1M docs, copies cost many GB
        for doc_id, text, meta in docs:
            self.doc_ids.append(int(doc_id))
            self.metas.append(meta)
            corpus.append([vocab.setdefault(t, t) for t in tokenize(text)])
        self.bm25 = BM25Okapi(corpus)
        # Postings (term -> positions) decide "contains a query term" exactly; BM25Okapi's scores alone
        # cannot, because its idf floor can make a matching term contribute nothing.
        postings: dict[str, list[int]] = {}
        for pos, toks in enumerate(corpus):
            for t in set(toks):
                postings.setdefault(t, []).append(pos)
        self.postings = {t: np.asarray(p, dtype=np.int64) for t, p in postings.items()}

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search(self, query: str, filter: Node | None = None, k: int = 100) -> list[tuple[int, float]]:
        terms = query_terms(query)
        if not terms:
            keep = [i for i in range(len(self.doc_ids)) if matches(filter, self.metas[i])]
            return sorted((self.doc_ids[i], 0.0) for i in keep)[:k]
        hit = [self.postings[t] for t in terms if t in self.postings]
        if not hit:
            return []
        cand = np.unique(np.concatenate(hit))
        if filter is not None:
            cand = np.asarray([i for i in cand if matches(filter, self.metas[i])], dtype=np.int64)
        if len(cand) == 0:
            return []
        scores = self.bm25.get_batch_scores(terms, cand.tolist())
        return _rank(((self.doc_ids[i], float(s)) for i, s in zip(cand, scores, strict=True)), k)


ENGINES = ("tantivy", "bm25")
