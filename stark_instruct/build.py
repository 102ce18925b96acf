"""`make build-benchmark`: knowledge base -> corpus, index, schema, instructed queries, qrels, card.

The build writes into a staging sibling (`.<out>.partial/`) and swaps it in only when complete, so a
killed build never leaves a half benchmark that later stages would trust; a finished build with the same
config is not redone (pass --force to rebuild). It replaces only a folder it wrote itself (marked by
`.stark-instruct-build`): pointing `--out` at anything else is refused, never deleted. The manifest
records the sha256 of the corpus, metadata and schema files, which `Benchmark.load` checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ir_core.config import ConfigError, check_range, exit_with, parse_or_exit
from ir_core.errors import InputError
from ir_core.outdir import check_output_dir, replace_dir
from ir_core.provenance import code_version, file_sha256, package_versions
from ir_core.secrets import scrub
from ir_core.types import KINDS
from stark_instruct import synthetic
from stark_instruct.benchmark import HASHED_FILES, oracle_filter
from stark_instruct.index import TantivyIndex
from stark_instruct.linking import benchmark_aliases
from stark_instruct.meta_columns import MetaColumns
from stark_instruct.records import Product, derive_meta
from stark_instruct.schema import product_schema
from stark_instruct.variants import make_variants

SPLITS = ("train", "dev", "test")
OWNER = "stark_instruct.build"
BUILD_MARKER = ".stark-instruct-build"  # marks a folder this build wrote and may replace

_REVIEW = pa.struct([("reviewerID", pa.string()), ("summary", pa.string()), ("reviewText", pa.string()),
                     ("overall", pa.float64()), ("vote", pa.int64()), ("reviewTime", pa.string())])
_QA = pa.struct([("question", pa.string()), ("answer", pa.string()), ("answerTime", pa.string())])
CORPUS_SCHEMA = pa.schema([
    ("doc_id", pa.int64()), ("asin", pa.string()), ("title", pa.string()), ("brand", pa.string()),
    ("category", pa.list_(pa.string())), ("color", pa.list_(pa.string())), ("price", pa.string()),
    ("feature", pa.list_(pa.string())), ("description", pa.list_(pa.string())),
    ("review", pa.list_(_REVIEW)), ("qa", pa.list_(_QA)),
])
META_SCHEMA = pa.schema([
    ("doc_id", pa.int64()), ("brand", pa.string()), ("category", pa.list_(pa.string())),
    ("color", pa.list_(pa.string())), ("price", pa.float64()), ("rating", pa.float64()),
    ("review_count", pa.float64()), ("first_review_date", pa.date32()), ("last_review_date", pa.date32()),
])
_PRODUCT_FIELDS = [f.name for f in CORPUS_SCHEMA]


def product_row(p: Product) -> dict:
    return {name: getattr(p, name) for name in _PRODUCT_FIELDS}


class _CorpusWriter:
    """Streams products to corpus.parquet / meta.parquet in row groups, keeping only metas in memory."""

    def __init__(self, out: Path, chunk: int = 20_000):
        self.corpus = pq.ParquetWriter(out / "corpus.parquet", CORPUS_SCHEMA)
        self.meta = pq.ParquetWriter(out / "meta.parquet", META_SCHEMA)
        self.chunk, self.rows, self.meta_rows = chunk, [], []
        self.metas: list[dict] = []
        self.brand_forms: dict[str, Counter] = {}

    def add(self, p: Product) -> dict:
        if p.doc_id != len(self.metas):
            raise ValueError(f"doc ids must be dense and ordered: got {p.doc_id}, expected {len(self.metas)}")
        meta = derive_meta(p)
        self.metas.append(meta)
        if meta["brand"]:
            self.brand_forms.setdefault(meta["brand"], Counter())[p.brand] += 1
        self.rows.append(product_row(p))
        self.meta_rows.append({"doc_id": p.doc_id, **meta})
        if len(self.rows) >= self.chunk:
            self.flush()
        return meta

    def flush(self) -> None:
        if self.rows:
            self.corpus.write_table(pa.Table.from_pylist(self.rows, schema=CORPUS_SCHEMA))
            self.meta.write_table(pa.Table.from_pylist(self.meta_rows, schema=META_SCHEMA))
            self.rows, self.meta_rows = [], []

    def close(self) -> None:
        self.flush()
        self.corpus.close()
        self.meta.close()


def _index_stream(products: Iterable[Product], writer: _CorpusWriter, total: int | None) -> Iterator[tuple]:
    for p in tqdm(products, total=total, desc="products", unit="doc", mininterval=2, disable=None):
        meta = writer.add(p)
        yield p.doc_id, p.text(), meta


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for r in rows:
            row = dict(r)
            for key in ("constraint", "query_constraint"):  # JSON strings: one column type for datasets/Arrow
                row[key] = json.dumps(row[key]) if row.get(key) is not None else None
            f.write(json.dumps(row) + "\n")


def _synthetic_source(args: BuildConfig) -> tuple[Iterator[Product], int, dt.date, dict]:
    ref = synthetic.REFERENCE_DATE
    attrs_cols: dict[str, list[int]] = {k: [] for k in ("ptype", "material", "uses", "features", "colors")}

    def products() -> Iterator[Product]:
        for p, a in synthetic.iter_products(args.size, args.seed, reference_date=ref,
                                            processes=synthetic.generation_processes(args.size)):
            for k in attrs_cols:
                attrs_cols[k].append(getattr(a, k))
            yield p

    def base_queries() -> list[dict]:
        attrs = {k: np.asarray(v, dtype=np.int64) for k, v in attrs_cols.items()}
        n = args.queries or max(300, min(1000, args.size // 25))
        bases = synthetic.base_queries(attrs, n, args.seed)
        rng = random.Random(f"{args.seed}:splits")
        rng.shuffle(bases)
        cut1, cut2 = int(0.6 * len(bases)), int(0.8 * len(bases))
        for i, b in enumerate(bases):
            b["id"] = f"q{i:05d}"
            b["split"] = "train" if i < cut1 else "dev" if i < cut2 else "test"
            b["query_constraint"] = synthetic.query_constraint(b["attributes"])  # oracles/reports only
        return bases

    return products(), args.size, ref, {"base_queries": base_queries, "inputs": {}}


def _stark_source(args: BuildConfig) -> tuple[Iterator[Product], int | None, dt.date | None, dict]:
    from stark_instruct import stark_amazon

    root = Path(args.stark_root)
    if args.download:
        stark_amazon.download_skb(root)
    stats: Counter = Counter()
    qdir = Path(args.stark_queries)
    inputs = {}

    def base_queries(known: set[int]) -> list[dict]:
        bases = []
        human = qdir / "stark_qa" / "stark_qa_human_generated_eval.csv"
        synth = qdir / "stark_qa" / "stark_qa.csv"
        for p in (human, synth):
            if p.exists():
                inputs[str(p)] = file_sha256(p)
        if args.query_set in ("human", "both"):
            for r in stark_amazon.read_query_csv(human, known):
                bases.append({"id": f"h{r['id']}", "query": r["query"], "answer_ids": r["answer_ids"], "split": "test",
                              "query_constraint": None})  # STaRK queries record no attributes
        if args.query_set in ("synthesized", "both"):
            rows = {r["id"]: r for r in stark_amazon.read_query_csv(synth, known)}
            split_names = {"train": "train", "val": "dev", "test": "test" if args.query_set == "synthesized" else None}
            for fname, split in split_names.items():
                if split is None:
                    continue
                ids = stark_amazon.read_split_ids(qdir / "split" / f"{fname}.index")
                if args.max_base_queries:
                    ids = ids[: args.max_base_queries]
                for qid in ids:
                    if qid in rows:
                        r = rows[qid]
                        bases.append({"id": f"s{qid}", "query": r["query"], "answer_ids": r["answer_ids"], "split": split,
                                      "query_constraint": None})
        return bases

    return stark_amazon.load_products(root, stats), None, None, {"base_queries": base_queries, "stats": stats,
                                                                  "inputs": inputs}


def _legacy_build(out: Path) -> bool:
    """A benchmark built before the marker existed: its manifest has the build's own keys."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(manifest, dict) and {"config", "code_version", "input_hashes"} <= set(manifest)
            and (out / "corpus.parquet").is_file())


def build(args: BuildConfig) -> Path:
    """Build the benchmark into ``args.out``, replacing only an earlier build (never someone's folder)."""
    out = Path(args.out)
    config = {k: v for k, v in dataclasses.asdict(args).items() if k not in ("force", "out")}
    check_output_dir(out, BUILD_MARKER, OWNER, _legacy_build)  # refuse before hours of work, not after
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not args.force:
        old = json.loads(manifest_path.read_text())
        if old.get("config") == config:
            print(f"{out}: already built with this config (use --force to rebuild)", file=sys.stderr)
            return out
    with replace_dir(out, BUILD_MARKER, OWNER, _legacy_build) as tmp:
        _build_into(tmp, args, config)
    return out


def _build_into(tmp: Path, args: BuildConfig, config: dict) -> None:
    (tmp / "queries").mkdir()
    (tmp / "qrels").mkdir()
    t0 = time.time()
    products, total, ref, extra = (_synthetic_source if args.source == "synthetic" else _stark_source)(args)
    writer = _CorpusWriter(tmp)
    TantivyIndex.build(tmp / "index" / "tantivy", _index_stream(products, writer, total), threads=args.threads)
    writer.close()
    metas = writer.metas
    t_index = time.time() - t0

    if args.source == "synthetic":
        bases = extra["base_queries"]()
    else:
        bases = extra["base_queries"](set(range(len(metas))))
        dates = [m["last_review_date"] for m in metas if m["last_review_date"]]
        ref = dt.date.fromisoformat(args.reference_date) if args.reference_date else max(dates)
    display = {b: forms.most_common(1)[0][0] for b, forms in writer.brand_forms.items()}

    rng = random.Random(f"{args.seed}:variants")
    rows = [r for b in tqdm(bases, desc="variants", disable=None) for r in make_variants(b, metas, ref, rng, display)]
    for split in SPLITS:
        split_rows = [r for r in rows if r["split"] == split]
        _write_jsonl(tmp / "queries" / f"{split}.jsonl", split_rows)
        with open(tmp / "qrels" / f"{split}.trec", "w") as f:
            for r in split_rows:
                f.writelines(f"{r['id']} 0 {d} 1\n" for d in r["relevant_ids"])
    with open(tmp / "base_queries.jsonl", "w") as f:
        f.writelines(json.dumps(b) + "\n" for b in bases)

    values = {
        "brand": [b for b, _ in Counter(m["brand"] for m in metas if m["brand"]).most_common()],
        "color": [c for c, _ in Counter(c for m in metas for c in m["color"]).most_common()],
        "category": [c for c, _ in Counter(c for m in metas for c in m["category"]).most_common()],
    }
    schema = product_schema(ref, values["brand"][:4], values["color"][:4], values["category"][2:6], values)
    # the corpus aliases of the keyword values, recorded once here so that every process loading the
    # benchmark (sampling, scoring, evaluation, serving) reads them instead of recounting the corpus
    schema = schema.with_aliases(benchmark_aliases(str(tmp)))
    (tmp / "schema.json").write_text(json.dumps(schema.to_json(), indent=2))
    (tmp / "schema.txt").write_text(schema.render() + "\n")

    stats = card_stats(rows, bases, len(metas))
    index = TantivyIndex(tmp / "index" / "tantivy", meta=MetaColumns.from_parquet(tmp / "meta.parquet"))
    stats["ceilings"] = oracle_ceilings(index, [r for r in rows if r["split"] == "test"])
    stats["build_seconds"] = round(time.time() - t0, 1)
    stats["index_seconds"] = round(t_index, 1)
    stats["normalised"] = dict(extra.get("stats") or {})
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
    (tmp / "card.md").write_text(render_card(stats, args.source, ref))
    manifest = {
        "config": config, "code_version": code_version()["commit"] or "unknown", "created": dt.datetime.now(dt.UTC).isoformat(),
        "reference_date": ref.isoformat(), "input_hashes": extra.get("inputs", {}),
        "packages": package_versions(("tantivy", "rank-bm25", "numpy", "pyarrow", "datasets")),
    }
    manifest["files"] = {rel: file_sha256(tmp / rel) for rel in HASHED_FILES}
    (tmp / "manifest.json").write_text(json.dumps(scrub(manifest), indent=2))
    (tmp / BUILD_MARKER).write_text(json.dumps({"owner": OWNER, "created": manifest["created"]}) + "\n")



def oracle_ceilings(index: TantivyIndex, rows: list[dict], k: int = 20, depth: int = 100) -> dict:
    """Recall@k of one search per query with the raw query, + the instruction's constraint (`oracle`) and
    + also the query's own metadata (`oracle_full`), for base and instructed rows: what a plan can reach.

    A one-search plan's ranking is the engine's (eval's executor keeps it), so this matches `eval.run`'s
    oracle rows without importing the layers above this one.
    """
    out: dict[str, dict] = {}
    for name, node_of in (("raw", lambda r: None), ("oracle", oracle_filter),
                          ("oracle_full", lambda r: oracle_filter(r, full=True))):
        by: dict[str, list[float]] = {"none": [], "instructed": []}
        for r in rows:
            top = [d for d, _ in index.search(r["query"], node_of(r), depth)][:k]
            rel = set(r["relevant_ids"])
            by["none" if r["kind"] == "none" else "instructed"].append(len(rel.intersection(top)) / len(rel))
        out[name] = {g: {"n": len(v), f"recall@{k}": round(float(np.mean(v)), 3)} for g, v in by.items() if v}
    return out


def card_stats(rows: list[dict], bases: list[dict], n_products: int) -> dict:
    by = {}
    for split in (*SPLITS, "all"):
        sel = [r for r in rows if split == "all" or r["split"] == split]
        by[split] = {k: sum(r["kind"] == k for r in sel) for k in KINDS}
    instructed = [r for r in rows if r["kind"] != "none"]
    base_sizes = [len(b["answer_ids"]) for b in bases]
    return {
        "products": n_products,
        "base_queries": len(bases),
        "base_queries_per_split": {s: sum(b["split"] == s for b in bases) for s in SPLITS},
        "rows_per_split_and_kind": by,
        "instructed_variants": len(instructed),
        "mean_relevant_base": round(float(np.mean(base_sizes)), 2) if base_sizes else 0.0,
        "median_relevant_base": float(np.median(base_sizes)) if base_sizes else 0.0,
        "max_relevant_base": max(base_sizes, default=0),
        "mean_relevant_instructed": round(float(np.mean([len(r["relevant_ids"]) for r in instructed])), 2)
        if instructed else 0.0,
        "mean_relevant_by_kind": {
            k: round(float(np.mean([len(r["relevant_ids"]) for r in rows if r["kind"] == k])), 2)
            for k in KINDS if any(r["kind"] == k for r in rows)
        },
        "constraints_by_attribute": dict(Counter(
            f"{r['kind']}:{r['constraint']['attribute']}" for r in instructed)),
        "query_constraint_fields": dict(Counter(
            leaf["field"] for b in bases if b.get("query_constraint") for leaf in b["query_constraint"]["all"])),
    }


def render_card(s: dict, source: str, ref: dt.date) -> str:
    lines = [
        f"# StaRK-Instruct benchmark card ({source})", "",
        f"- products: {s['products']:,}; reference date (today): {ref.isoformat()}",
        f"- base queries: {s['base_queries']} ({', '.join(f'{k} {v}' for k, v in s['base_queries_per_split'].items())})",
        f"- instructed variants: {s['instructed_variants']}",
        f"- mean relevant per query: {s['mean_relevant_base']} before instructions (median "
        f"{s['median_relevant_base']:g}, max {s['max_relevant_base']}), {s['mean_relevant_instructed']} after",
        "", "| split | " + " | ".join(KINDS) + " | total |", "|---" * (len(KINDS) + 2) + "|",
    ]
    for split, counts in s["rows_per_split_and_kind"].items():
        lines.append(f"| {split} | " + " | ".join(str(counts[k]) for k in KINDS) + f" | {sum(counts.values())} |")
    lines += ["", "| kind | mean relevant |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s["mean_relevant_by_kind"].items()]
    lines += ["", "Constraints: " + ", ".join(f"{k} {v}" for k, v in sorted(s["constraints_by_attribute"].items()))]
    implied = s.get("query_constraint_fields") or {}
    lines.append("Query metadata (`query_constraint`, for oracles and reports only): " + (
        ", ".join(f"{f} on {n} of {s['base_queries']} base queries" for f, n in sorted(implied.items())) if implied
        else "none recorded (this source's queries carry no machine-readable attributes)"))
    if s.get("ceilings"):
        lines += ["", "Test split, Recall@20 of one search (`oracle` adds the instruction's constraint, "
                  "`oracle_full` also the query metadata):", "", "| plan | base queries | instructed |",
                  "|---|---|---|"]
        for name, by in s["ceilings"].items():
            lines.append(f"| {name} | " + " | ".join(
                f"{by[g]['recall@20']:.3f} (n={by[g]['n']})" if g in by else "–" for g in ("none", "instructed"))
                + " |")
    if s.get("normalised"):
        lines.append("Normalised input: " + ", ".join(f"{k} {v}" for k, v in sorted(s["normalised"].items())))
    lines.append(f"Built in {s['build_seconds']} s (catalogue + index {s['index_seconds']} s).")
    return "\n".join(lines) + "\n"


@dataclass
class BuildConfig:
    """What to build: the catalogue source, its size and seed, where to write."""

    source: Literal["synthetic", "stark"] = field(
        default="synthetic",
        metadata={"help": "synthetic: the embedded catalogue; stark: STaRK-Amazon (needs its node_info.pkl)"})
    out: str = field(default="data/benchmark/synthetic", metadata={"help": "output directory"})
    size: int = field(default=20_000, metadata={"help": "synthetic catalogue size (up to 1M)"})
    queries: int = field(default=0, metadata={"help": "synthetic base queries (0: scale with --size)"})
    seed: int = field(default=0, metadata={"help": "random seed of the catalogue, queries and variants"})
    threads: int = field(default=2, metadata={"help": "tantivy indexing threads"})
    stark_root: str = field(default="data/stark-amazon", metadata={"help": "STaRK-Amazon root holding processed/"})
    stark_queries: str = field(default="../shared/data/stark-amazon-qa",
                               metadata={"help": "folder with stark_qa/*.csv and split/*.index"})
    query_set: Literal["human", "synthesized", "both"] = field(
        default="both", metadata={"help": "human: the 81 human queries (test); synthesized: the 9,100 with their "
                                          "splits; both: human as test, synthesized train/val as train/dev"})
    max_base_queries: int = field(default=0, metadata={"help": "cap synthesized queries per split (0: all)"})
    reference_date: str | None = field(default=None,
                                       metadata={"help": "'today' for recency, YYYY-MM-DD (default: newest review)"})
    download: bool = field(default=False, metadata={"help": "fetch STaRK-Amazon through stark-qa first (network)"})
    force: bool = field(default=False, metadata={"help": "rebuild even if an identical build exists"})

    def __post_init__(self) -> None:
        check_range(self, "size", 1, 1_000_000)
        check_range(self, "threads", 1)
        for name in ("queries", "max_base_queries"):
            check_range(self, name, 0)
        if self.reference_date is not None:
            try:
                dt.date.fromisoformat(self.reference_date)
            except ValueError:
                raise ConfigError("reference_date", f"want YYYY-MM-DD, got {self.reference_date!r}") from None


def build_benchmark(out_dir: str | Path, source: str = "synthetic", size: int = 20_000, seed: int = 0,
                    force: bool = False, **kwargs) -> Path:
    """Programmatic entry point (tests, benchmarks); same defaults as the CLI."""
    return build(BuildConfig(out=str(out_dir), source=source, size=size, seed=seed, force=force, **kwargs))


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([BuildConfig], argv, "python -m stark_instruct.build")
    try:
        out = build(args)
    except (InputError, FileNotFoundError) as e:  # bad data or an --out that is not ours: one line, exit 2
        exit_with(e)
    print((out / "card.md").read_text())


if __name__ == "__main__":
    main()
