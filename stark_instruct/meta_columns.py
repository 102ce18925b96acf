"""The filter language evaluated on columns of metadata, for a few candidate rows at a time.

The tantivy engine uses this to post-filter an unfiltered top-k window (see `TantivyIndex.search`):
a broad filter inside the engine is a Must clause that makes tantivy score every matching document,
while the unfiltered search prunes. `mask` must agree exactly with the reference `filters.matches` on
the same derived metadata (a property test checks it); `selectivity` is only an estimate that picks the
window size, so a wrong estimate costs time, never correctness.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stark_instruct.filters import All, AnyOf, Leaf, Node, Not

_EPOCH = dt.date(1970, 1, 1)
SINGLE_KEYWORD = ("brand",)
MULTI_KEYWORD = ("category", "color")
NUMBER = ("price", "rating", "review_count")
DATE = ("first_review_date", "last_review_date")
FIELDS = SINGLE_KEYWORD + MULTI_KEYWORD + NUMBER + DATE


def _codes(values: pa.Array) -> tuple[np.ndarray, dict[str, int]]:
    """Integer codes of strings (-1 for null) and the code of each distinct string."""
    enc = pc.dictionary_encode(values)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, {v: i for i, v in enumerate(enc.dictionary.to_pylist())}


class MetaColumns:
    """Metadata of every document as numpy columns, indexed by doc_id (dense, 0..n-1).

    Keywords become integer codes (-1: missing), multi-valued keywords a CSR list of codes, numbers
    float64 and dates day numbers as float64 (NaN: missing, which fails every comparison as in `matches`).
    """

    def __init__(self, table: pa.Table):
        names = set(table.column_names)
        missing = [f for f in ("doc_id", *FIELDS) if f not in names]
        if missing:
            raise ValueError(f"metadata table lacks the columns {missing}")
        doc_ids = table.column("doc_id").to_numpy()
        if not np.array_equal(doc_ids, np.arange(len(doc_ids))):
            raise ValueError("metadata rows must be in doc_id order 0..n-1")
        self.n = len(doc_ids)
        self.vocab: dict[str, dict[str, int]] = {}
        self.codes: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        for f in SINGLE_KEYWORD:
            self.codes[f], self.vocab[f] = _codes(table.column(f).combine_chunks())
            self.counts[f] = np.bincount(self.codes[f][self.codes[f] >= 0], minlength=len(self.vocab[f]))
        self.offsets: dict[str, np.ndarray] = {}
        self._has: dict[tuple[str, int], np.ndarray] = {}
        for f in MULTI_KEYWORD:
            col = table.column(f).combine_chunks()
            col = col.fill_null([]) if col.null_count else col
            self.offsets[f] = col.offsets.to_numpy().astype(np.int64)
            self.codes[f], self.vocab[f] = _codes(col.flatten())
            self.counts[f] = np.bincount(self.codes[f], minlength=len(self.vocab[f]))  # values are distinct per row
        self.values: dict[str, np.ndarray] = {}
        for f in NUMBER:
            self.values[f] = pc.cast(table.column(f), pa.float64()).to_numpy(zero_copy_only=False)
        for f in DATE:
            days = pc.cast(pc.cast(table.column(f), pa.int32()), pa.float64())
            self.values[f] = days.to_numpy(zero_copy_only=False)
        self.sorted = {f: np.sort(v[~np.isnan(v)]) for f, v in self.values.items()}

    @classmethod
    def from_parquet(cls, path: str | Path) -> MetaColumns:
        return cls(pq.read_table(path, columns=["doc_id", *FIELDS]))

    def __len__(self) -> int:
        return self.n

    # -- exact evaluation on candidate rows ----------------------------------------------------------
    def _has_value(self, field: str, value: str) -> np.ndarray:
        """Bool column: the multi-valued field contains `value` (built on first use, then kept)."""
        code = self.vocab[field].get(value, -1)
        key = (field, code)
        if key not in self._has:
            has = np.zeros(self.n, dtype=bool)
            if code >= 0:
                entries = np.flatnonzero(self.codes[field] == code)
                has[np.searchsorted(self.offsets[field], entries, side="right") - 1] = True
            self._has[key] = has
        return self._has[key]

    def _leaf(self, leaf: Leaf, rows: np.ndarray) -> np.ndarray:
        f, op, v = leaf.field, leaf.op, leaf.value
        values = v if isinstance(v, tuple) else (v,)
        if f in SINGLE_KEYWORD:
            codes = self.codes[f][rows]
            wanted = [self.vocab[f][x] for x in values if x in self.vocab[f]]
            hit = np.isin(codes, wanted) if wanted else np.zeros(len(rows), dtype=bool)
            return ~hit if op in ("ne", "nin") else hit
        if f in MULTI_KEYWORD:
            hit = np.zeros(len(rows), dtype=bool)
            for x in values:
                hit |= self._has_value(f, x)[rows]
            return ~hit if op in ("ne", "nin") else hit
        col = self.values[f][rows]
        if f in DATE:
            values = tuple(float((x - _EPOCH).days) for x in values)
        x = values[0]
        if op == "eq":
            return col == x
        if op == "ne":
            return ~(col == x)  # NaN (missing) satisfies ne
        if op == "in":
            return np.isin(col, values)
        if op == "nin":
            return ~np.isin(col, values)
        with np.errstate(invalid="ignore"):
            return {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}[op](col, x)

    def mask(self, node: Node, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` (doc ids) satisfy the filter, exactly as `filters.matches` decides."""
        if isinstance(node, Leaf):
            return self._leaf(node, rows)
        if isinstance(node, All):
            out = np.ones(len(rows), dtype=bool)
            for c in node.children:
                out &= self.mask(c, rows)
            return out
        if isinstance(node, AnyOf):
            out = np.zeros(len(rows), dtype=bool)
            for c in node.children:
                out |= self.mask(c, rows)
            return out
        if isinstance(node, Not):
            return ~self.mask(node.child, rows)
        raise TypeError(f"not a filter node: {node!r}")

    # -- cheap estimate of the share of documents a filter keeps ---------------------------------------
    def _leaf_share(self, leaf: Leaf) -> float:
        f, op, v = leaf.field, leaf.op, leaf.value
        values = v if isinstance(v, tuple) else (v,)
        if f in SINGLE_KEYWORD or f in MULTI_KEYWORD:
            counts, vocab = self.counts[f], self.vocab[f]
            share = min(1.0, sum(int(counts[vocab[x]]) for x in set(values) if x in vocab) / self.n)
            return 1.0 - share if op in ("ne", "nin") else share
        s = self.sorted[f]
        if f in DATE:
            values = tuple(float((x - _EPOCH).days) for x in values)
        x = values[0]

        def count(lo: float, hi: float, lo_side: str = "left", hi_side: str = "right") -> int:
            return int(np.searchsorted(s, hi, side=hi_side) - np.searchsorted(s, lo, side=lo_side))

        if op in ("eq", "ne", "in", "nin"):
            share = min(1.0, sum(count(y, y) for y in set(values)) / self.n)
            return 1.0 - share if op in ("ne", "nin") else share
        inf = float("inf")
        n = {"gt": count(x, inf, "right"), "gte": count(x, inf), "lt": count(-inf, x, hi_side="left"),
             "lte": count(-inf, x)}[op]
        return n / self.n

    def selectivity(self, node: Node) -> float:
        """Estimated share of documents that satisfy the filter (exact for one leaf; children independent)."""
        if isinstance(node, Leaf):
            return self._leaf_share(node)
        if isinstance(node, All):
            return float(np.prod([self.selectivity(c) for c in node.children]))
        if isinstance(node, AnyOf):
            return 1.0 - float(np.prod([1.0 - self.selectivity(c) for c in node.children]))
        if isinstance(node, Not):
            return 1.0 - self.selectivity(node.child)
        raise TypeError(f"not a filter node: {node!r}")
