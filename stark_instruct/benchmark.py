"""Read access to a built benchmark directory (see build.py for what it holds)."""

from __future__ import annotations

import datetime as dt
import json
from functools import cached_property
from pathlib import Path

import pyarrow.parquet as pq

from stark_instruct.index import BM25Index, SearchIndex, TantivyIndex
from stark_instruct.meta_columns import MetaColumns
from stark_instruct.records import Product
from stark_instruct.schema import IndexSchema


class Benchmark:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "manifest.json").exists():
            raise FileNotFoundError(f"{self.path}: not a built benchmark (run `make build-benchmark`)")
        self._indexes: dict[str, SearchIndex] = {}

    @classmethod
    def load(cls, path: str | Path) -> Benchmark:
        return cls(path)

    @cached_property
    def schema(self) -> IndexSchema:
        return IndexSchema.from_json(json.loads((self.path / "schema.json").read_text()))

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def queries(self, split: str | None = None) -> list[dict]:
        """Query rows of one split (or all), with `constraint` decoded to a dict."""
        rows = []
        for s in [split] if split else ["train", "dev", "test"]:
            path = self.path / "queries" / f"{s}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such split")
            for line in path.read_text().splitlines():
                r = json.loads(line)
                r["constraint"] = json.loads(r["constraint"]) if r["constraint"] else None
                rows.append(r)
        return rows

    @cached_property
    def _metas(self) -> list[dict]:
        table = pq.read_table(self.path / "meta.parquet")
        rows = table.to_pylist()
        for i, r in enumerate(rows):
            if r.pop("doc_id") != i:
                raise ValueError(f"{self.path / 'meta.parquet'}: row {i} is out of doc_id order")
        return rows

    def meta(self, doc_id: int) -> dict:
        return self._metas[doc_id]

    def metas(self) -> list[dict]:
        return self._metas

    @cached_property
    def _products(self) -> list[Product]:
        return [Product(**r) for r in pq.read_table(self.path / "corpus.parquet").to_pylist()]

    def products(self) -> list[Product]:
        """All products; position == doc_id. Loads the whole corpus (fine up to ~100k products)."""
        return self._products

    def iter_products(self, batch_size: int = 10_000):
        """Stream products in doc_id order without holding the corpus in memory."""
        for batch in pq.ParquetFile(self.path / "corpus.parquet").iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield Product(**row)

    def product(self, doc_id: int) -> Product:
        return self._products[doc_id]

    def __len__(self) -> int:
        return len(self._metas)

    def index(self, engine: str = "tantivy") -> SearchIndex:
        """An index over this benchmark's corpus; rank-bm25's is built in memory on first use."""
        if engine not in self._indexes:
            if engine == "tantivy":
                meta = MetaColumns.from_parquet(self.path / "meta.parquet")  # lets broad filters post-filter
                self._indexes[engine] = TantivyIndex(self.path / "index" / "tantivy", meta=meta)
            elif engine == "bm25":
                self._indexes[engine] = BM25Index(
                    (p.doc_id, p.text(), self.meta(p.doc_id)) for p in self.iter_products())
            else:
                raise ValueError(f"unknown engine {engine!r}; use 'tantivy' or 'bm25'")
        return self._indexes[engine]

    @property
    def reference_date(self) -> dt.date:
        return self.schema.reference_date
