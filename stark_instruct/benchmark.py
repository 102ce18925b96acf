"""Read access to a built benchmark directory (see build.py for what it holds).

Loading checks the corpus, metadata and schema files against the sha256 the build recorded in the
manifest (a corrupted or swapped corpus.parquet would otherwise go unnoticed by the tantivy path, which
never reads it), and every query row is validated as it is read: errors name ``file:line: field``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from functools import cached_property
from pathlib import Path

import pyarrow.parquet as pq

from ir_core.errors import DataError
from ir_core.provenance import file_sha256
from ir_core.types import KINDS
from stark_instruct.filters import All, Node, parse_filter
from stark_instruct.index import BM25Index, SearchIndex, TantivyIndex
from stark_instruct.instructions import constraint_filter
from stark_instruct.meta_columns import MetaColumns
from stark_instruct.records import Product
from stark_instruct.schema import IndexSchema, product_schema

log = logging.getLogger(__name__)

HASHED_FILES = ("corpus.parquet", "meta.parquet", "schema.json")  # hashed by the build, checked on load
MAX_DOC_ID = 2**63 - 1
FILTER_FIELDS = product_schema(dt.date(2000, 1, 1))  # types and ops of the filter fields (the date is unused)


class Benchmark:
    def __init__(self, path: str | Path, verify: bool = True):
        self.path = Path(path)
        if not (self.path / "manifest.json").exists():
            raise FileNotFoundError(f"{self.path}: not a built benchmark (run `make build-benchmark`)")
        self._indexes: dict[str, SearchIndex] = {}
        if verify:
            self.verify_files()

    def verify_files(self) -> None:
        """Raise `DataError` when a hashed file differs from what the build recorded."""
        try:
            manifest = self.manifest
        except ValueError as e:
            raise DataError(str(self.path / "manifest.json"), None, None, f"not valid JSON ({e})") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict):
            log.warning("%s: the manifest records no file hashes (built before they were added); "
                        "rebuild the benchmark to have its files checked on load", self.path)
            return
        for rel, want in files.items():
            path = self.path / rel
            if not path.is_file():
                raise DataError(str(path), None, None, "missing (listed in the manifest); rebuild the benchmark")
            if file_sha256(path) != want:
                raise DataError(str(path), None, None, "content differs from the sha256 in manifest.json "
                                "(corrupted or replaced); rebuild the benchmark")

    @classmethod
    def load(cls, path: str | Path) -> Benchmark:
        return cls(path)

    @cached_property
    def schema(self) -> IndexSchema:
        """The index schema, with the corpus aliases of its keyword values (stark_instruct.linking):
        those schema.json records, else computed here once per process (about a second per 20k products)."""
        schema = IndexSchema.from_json(json.loads((self.path / "schema.json").read_text()))
        if not schema.aliases and any(f.values for f in schema.fields):
            from stark_instruct.linking import benchmark_aliases

            schema = schema.with_aliases(benchmark_aliases(str(self.path)))
        return schema

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def queries(self, split: str | None = None) -> list[dict]:
        """Query rows of one split (or all), with `constraint` decoded to a dict; every row validated."""
        rows: list[dict] = []
        seen: dict[str, str] = {}
        n_docs = self.n_docs
        for s in [split] if split else ["train", "dev", "test"]:
            path = self.path / "queries" / f"{s}.jsonl"
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such split")
            with open(path, "rb") as fh:
                for line_no, raw in enumerate(fh, 1):
                    if not raw.strip():
                        continue
                    row = _query_row(raw, str(path), line_no, n_docs)
                    where = f"{path}:{line_no}"
                    if row["id"] in seen:
                        raise DataError(str(path), line_no, "id", f"{row['id']!r} repeats {seen[row['id']]}")
                    seen[row["id"]] = where
                    rows.append(row)
        return rows

    @cached_property
    def n_docs(self) -> int:
        """Products in the corpus (from the metadata file's footer; nothing else is read)."""
        return pq.ParquetFile(self.path / "meta.parquet").metadata.num_rows

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
                try:
                    self._indexes[engine] = TantivyIndex(self.path / "index" / "tantivy", meta=meta)
                except ValueError as e:  # tantivy's error for a damaged index
                    raise DataError(str(self.path / "index" / "tantivy"), None, None,
                                    f"cannot open the index ({str(e)[:160]}); rebuild the benchmark") from None
            elif engine == "bm25":
                self._indexes[engine] = BM25Index(
                    (p.doc_id, p.text(), self.meta(p.doc_id)) for p in self.iter_products())
            else:
                raise ValueError(f"unknown engine {engine!r}; use 'tantivy' or 'bm25'")
        return self._indexes[engine]

    @property
    def reference_date(self) -> dt.date:
        return self.schema.reference_date


def _query_row(raw: bytes, path: str, line: int, n_docs: int) -> dict:
    """One validated query row; `DataError` names the file, line and field of the first problem."""
    def bad(fld: str | None, reason: str) -> DataError:
        return DataError(path, line, fld, reason)

    try:
        row = json.loads(raw)
    except UnicodeDecodeError as e:
        raise bad(None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise bad(None, f"invalid JSON: {e.msg} (column {e.colno}; file cut or corrupted?)") from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise bad(None, f"invalid JSON: {str(e)[:120]}") from None
    if not isinstance(row, dict):
        raise bad(None, f"expected a JSON object, got {type(row).__name__}")
    for key in ("id", "query", "kind", "relevant_ids"):
        if key not in row:
            raise bad(key, "missing")
    if not isinstance(row["id"], str) or not row["id"]:
        raise bad("id", f"expected a non-empty string, got {str(row['id'])[:40]!r}")
    if not isinstance(row["query"], str):
        raise bad("query", f"expected a string, got {type(row['query']).__name__}")
    if row["kind"] not in KINDS:
        raise bad("kind", f"expected one of {', '.join(KINDS)}, got {str(row['kind'])[:40]!r}")
    ids = row["relevant_ids"]
    if not isinstance(ids, list) or not ids:
        raise bad("relevant_ids", "expected a non-empty list of product ids")
    for x in ids:
        if isinstance(x, bool) or not isinstance(x, int):
            raise bad("relevant_ids", f"{repr(x)[:40]} is not an integer product id")
        if not 0 <= x < n_docs:
            raise bad("relevant_ids", f"product id {str(x)[:40]} is not in the corpus (ids are 0..{n_docs - 1})")
    for key in ("constraint", "query_constraint"):  # query_constraint: absent in older builds (unknown)
        value = row.get(key)
        if value:
            try:
                value = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                raise bad(key, "not a JSON object (string)") from None
            if not isinstance(value, dict):
                raise bad(key, f"expected an object, got {type(value).__name__}")
        row[key] = value or None
    return row


def oracle_filter(row: dict, full: bool = False) -> Node | None:
    """The filter of an oracle plan for a query row: its instruction's constraint leaf, and with `full` also
    the metadata its base query implies (`query_constraint`), all in one `all` node; None when neither.

    Reads the recorded constraints, so it serves oracles and reports only, never a planner.
    """
    if row.get("kind", "none") != "none" and not row.get("constraint"):
        raise ValueError(f"query {row.get('id')!r} of kind {row.get('kind')!r} has no constraint")
    leaves = [constraint_filter(row["constraint"])] if row.get("constraint") else []
    implied = row.get("query_constraint") if full else None
    if implied:
        node = parse_filter(implied, FILTER_FIELDS)
        leaves += list(node.children) if isinstance(node, All) else [node]
    if not leaves:
        return None
    return leaves[0] if len(leaves) == 1 else All(tuple(leaves))
