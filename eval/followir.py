"""FollowIR-style evaluation: a set built from StaRK-Instruct, loaders for mteb's FollowIR data, metrics.

FollowIR pairs every query with two instructions: the original ("og") and a changed one that makes some
previously relevant documents non-relevant (`qrel_diff`). A model reranks a fixed candidate list under
both; p-MRR (eval/pmrr.py) rewards moving the `qrel_diff` documents down, and nDCG@5 / MAP on the og
queries check that plain relevance does not suffer. From the benchmark: og = the base query, changed =
the instructed variant (query + instruction), qrel_diff = the base answers the instruction removes,
candidates = the base query's top-K BM25 documents (the same list for both, as in FollowIR).

The on-disk layout is mteb's hub layout for instruction-retrieval tasks (configs corpus, queries,
instruction, default (qrels), top_ranked, qrel_diff), so `load_followir` reads real FollowIR tasks
through mteb's own loader and our exported sets alike.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.pmrr import p_mrr, p_mrr_per_query
from ir_core.config import help_field, parse_or_exit

FOLLOWIR_TASKS = ("Core17InstructionRetrieval", "Robust04InstructionRetrieval", "News21InstructionRetrieval")
OG, CHANGED = "-og", "-changed"


@dataclass
class FollowIRSet:
    """Queries are keyed '<qid>-og' / '<qid>-changed'; qrel_diff and kinds by the bare qid."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    instructions: dict[str, str]
    qrels: dict[str, dict[str, int]]
    top_ranked: dict[str, list[str]]
    qrel_diff: dict[str, list[str]]
    kinds: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # qid -> base query id (og metrics count each once)

    @property
    def qids(self) -> list[str]:
        return [q for q in self.qrel_diff if q + OG in self.queries and q + CHANGED in self.queries]

    def query_text(self, qid: str, combine: Callable[[str, str], str] | None = None) -> str:
        """Query and instruction as the encoder reads them (default: FollowIR's 'query instruction')."""
        q, ins = self.queries[qid], self.instructions.get(qid, "")
        if combine is not None:
            return combine(q, ins)
        return f"{q} {ins}".strip() if ins else q


# --- building from the benchmark ------------------------------------------------------------------------


def build_followir_set(bench: Any, split: str = "test", *, k: int = 100, engine: str = "tantivy",
                       index: Any = None, max_chars: int | None = None) -> FollowIRSet:
    """One og/changed pair per instructed variant whose removed answers appear in the candidates."""
    from rewards.doc_text import DOC_CHARS, DocTexts

    index = index if index is not None else bench.index(engine=engine)
    texts = DocTexts(bench, max_chars or DOC_CHARS)
    rows = list(bench.queries(split))
    base = {r["base_id"]: r for r in rows if r["kind"] == "none"}
    fs = FollowIRSet(name=f"stark-instruct-{split}", corpus={}, queries={}, instructions={}, qrels={},
                     top_ranked={}, qrel_diff={})
    ranked: dict[str, list[str]] = {}
    for r in rows:
        b = base.get(r["base_id"])
        if r["kind"] == "none" or b is None:
            continue
        if b["base_id"] not in ranked:
            ranked[b["base_id"]] = [str(d) for d, _ in index.search(b["query"], k=k)]
        cands = ranked[b["base_id"]]
        answers = {str(i) for i in b["relevant_ids"]}
        kept = {str(i) for i in r["relevant_ids"]}
        diff = [d for d in cands if d in answers and d not in kept]
        if not diff:
            continue
        qid = str(r["id"])
        fs.queries[qid + OG], fs.instructions[qid + OG] = b["query"], ""
        fs.queries[qid + CHANGED], fs.instructions[qid + CHANGED] = r["query"], r["instruction"] or ""
        fs.qrels[qid + OG] = dict.fromkeys(sorted(answers), 1)
        fs.qrels[qid + CHANGED] = dict.fromkeys(sorted(kept), 1)
        fs.top_ranked[qid + OG] = fs.top_ranked[qid + CHANGED] = list(cands)
        fs.qrel_diff[qid] = diff
        fs.kinds[qid] = r["kind"]
        fs.groups[qid] = str(b["base_id"])
    for cands in fs.top_ranked.values():
        for d in cands:
            if d not in fs.corpus:
                fs.corpus[d] = texts[int(d)]
    return fs


# --- mteb's data layout: writing and loading -----------------------------------------------------------

_CONFIGS = (  # (config name, split, relative path)
    ("corpus", "test", "corpus/test.jsonl"),
    ("queries", "test", "queries/test.jsonl"),
    ("instruction", "test", "instruction/test.jsonl"),
    ("default", "test", "qrels/test.jsonl"),
    ("top_ranked", "test", "top_ranked/test.jsonl"),
    ("qrel_diff", "qrel_diff", "qrel_diff/qrel_diff.jsonl"),
)


def save_followir_set(fs: FollowIRSet, out_dir: str | Path) -> Path:
    """Write a set in mteb's hub layout (a README with dataset configs + JSONL files)."""
    from ir_core.io import atomic_write_text, write_jsonl

    out = Path(out_dir)
    tables = {
        "corpus": [{"id": d, "title": "", "text": t} for d, t in fs.corpus.items()],
        "queries": [{"id": q, "text": t} for q, t in fs.queries.items()],
        "instruction": [{"query-id": q, "instruction": fs.instructions.get(q, "")} for q in fs.queries],
        "default": [{"query-id": q, "corpus-id": d, "score": s} for q, rel in fs.qrels.items() for d, s in rel.items()],
        "top_ranked": [{"query-id": q, "corpus-ids": ids} for q, ids in fs.top_ranked.items()],
        "qrel_diff": [{"query-id": q, "corpus-ids": ids} for q, ids in fs.qrel_diff.items()],
    }
    lines = ["---", "configs:"]
    for name, split, rel in _CONFIGS:
        write_jsonl(out / rel, tables[name])
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {rel}"]
    lines += ["---", "", f"# {fs.name}", "", "FollowIR-format instruction-following set (mteb layout).", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return out


@contextmanager
def _private_datasets_cache(path: str) -> Iterator[None]:
    """For a local folder, load through a throwaway `datasets` cache.

    `datasets` keys the cache of a local folder by its name and file layout, so a rewritten set (or
    another folder with the same name) came back stale in testing; hub datasets keep the shared cache.
    """
    if not Path(path).exists():
        yield
        return
    import datasets.config as dc

    old = dc.HF_DATASETS_CACHE
    with tempfile.TemporaryDirectory(prefix="followir-") as tmp:
        dc.HF_DATASETS_CACHE = Path(tmp)
        try:
            yield
        finally:
            dc.HF_DATASETS_CACHE = old


def load_followir(path_or_repo: str | Path, revision: str | None = None, split: str = "test",
                  name: str | None = None) -> FollowIRSet:
    """Load a FollowIR-format dataset (hub repo id or local folder) with mteb's retrieval loader."""
    repo = str(path_or_repo)
    with _private_datasets_cache(repo):
        return _load_followir(repo, revision, split, name)


def _load_followir(repo: str, revision: str | None, split: str, name: str | None) -> FollowIRSet:
    from datasets import load_dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalDatasetLoader

    data = RetrievalDatasetLoader(hf_repo=repo, revision=revision, split=split).load()
    diff_ds = load_dataset(repo, "qrel_diff", split="qrel_diff", revision=revision)
    queries = {str(r["id"]): r["text"] for r in data["queries"]}
    instructions = {str(r["id"]): r.get("instruction") or "" for r in data["queries"]}
    corpus = {}
    for r in data["corpus"]:
        title = (r.get("title") or "").strip()
        corpus[str(r["id"])] = f"{title} {r['text']}".strip() if title else r["text"]
    qrels = {q: {str(d): int(s) for d, s in rel.items()} for q, rel in data["relevant_docs"].items()}
    top = {q: [str(d) for d in ids] for q, ids in (data["top_ranked"] or {}).items()}
    diff = {str(r["query-id"]): [str(d) for d in r["corpus-ids"]] for r in diff_ds}
    return FollowIRSet(name=name or Path(repo).name, corpus=corpus, queries=queries, instructions=instructions,
                       qrels=qrels, top_ranked=top, qrel_diff=diff)


def load_mteb_task(task_name: str, dataset_path: str | Path | None = None) -> FollowIRSet:
    """A real FollowIR task (e.g. Core17InstructionRetrieval) via mteb's registry; needs the hub unless
    `dataset_path` points at a local copy in the same layout."""
    import mteb

    task = mteb.get_task(task_name)
    ds = task.metadata.dataset
    path, revision = (str(dataset_path), None) if dataset_path is not None else (ds["path"], ds.get("revision"))
    return load_followir(path, revision=revision, split=task.metadata.eval_splits[0], name=task_name)


# --- metrics -------------------------------------------------------------------------------------------


def _ordered(run: Mapping[Hashable, float]) -> list[Hashable]:
    return [d for d, _ in sorted(run.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def ndcg_at_k(run: Mapping[Hashable, float], qrels: Mapping[Hashable, int], k: int) -> float:
    """trec_eval's ndcg_cut: linear gains, log2 discount, ideal from all judged-relevant documents."""
    gains = sorted((g for g in qrels.values() if g > 0), reverse=True)
    if not gains:
        return 0.0
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(_ordered(run)[:k]) if qrels.get(d, 0) > 0)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))
    return dcg / idcg


def average_precision(run: Mapping[Hashable, float], qrels: Mapping[Hashable, int], k: int = 1000) -> float:
    """AP over the top k (mteb's MAP@1000); relevant documents the run misses count as zero precision."""
    n_rel = sum(1 for g in qrels.values() if g > 0)
    if not n_rel:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(_ordered(run)[:k]):
        if qrels.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_rel


def score_results(fs: FollowIRSet, results: Mapping[str, Mapping[Hashable, float]], ndcg_k: int = 5) -> dict:
    """p-MRR (overall, per instruction kind and per query, for paired comparisons) plus nDCG@k / MAP on
    og queries (each base query once) and on changed queries."""
    qids = fs.qids
    og = {q: results[q + OG] for q in qids if q + OG in results}
    ch = {q: results[q + CHANGED] for q in qids if q + CHANGED in results}
    diff = {q: fs.qrel_diff[q] for q in qids}
    per_q = p_mrr_per_query(og, ch, diff)
    out: dict[str, Any] = {"p-MRR": p_mrr(og, ch, diff), "n_pairs": len(per_q), "per_query": per_q}
    for kind in sorted(set(fs.kinds.values())):
        vals = [v for q, v in per_q.items() if fs.kinds.get(q) == kind]
        out[f"p-MRR/{kind}"] = sum(vals) / len(vals) if vals else math.nan
    seen: set[str] = set()
    og_keys = []
    for q in qids:
        g = fs.groups.get(q, q)
        if g not in seen and q + OG in results:
            seen.add(g)
            og_keys.append(q + OG)
    for label, keys in (("og", og_keys), ("changed", [q + CHANGED for q in qids if q + CHANGED in results])):
        ndcg = {k: ndcg_at_k(results[k], fs.qrels.get(k, {}), ndcg_k) for k in keys}
        out[f"{label}/nDCG@{ndcg_k}"] = float(np.mean(list(ndcg.values()))) if keys else math.nan
        out[f"{label}/per_query_nDCG@{ndcg_k}"] = ndcg  # for paired comparisons between models
        out[f"{label}/MAP"] = float(np.mean([average_precision(results[k], fs.qrels.get(k, {}))
                                             for k in keys])) if keys else math.nan
        out[f"{label}/n"] = len(keys)
    return out


def candidate_order_results(fs: FollowIRSet) -> dict[str, dict[str, float]]:
    """The candidate lists' own order as scores (the BM25 baseline: blind to the instruction, p-MRR 0)."""
    return {q: {d: float(len(ids) - i) for i, d in enumerate(ids)} for q, ids in fs.top_ranked.items()}


def encoder_results(fs: FollowIRSet, cache: Any, combine: Callable[[str, str], str] | None = None
                    ) -> dict[str, dict[str, float]]:
    """Cosine scores of every candidate for every query; `cache` is a rewards.rerank.EmbeddingCache."""
    cache.warm(sorted({d for ids in fs.top_ranked.values() for d in ids}))
    qkeys = [q for q in fs.queries if q in fs.top_ranked]
    qvecs = cache.queries([fs.query_text(q, combine) for q in qkeys])
    out = {}
    for q, v in zip(qkeys, qvecs, strict=True):
        ids = fs.top_ranked[q]
        out[q] = dict(zip(ids, (cache.docs(ids) @ v).tolist(), strict=True))
    return out


def evaluate_encoder(model: Any, fs: FollowIRSet, *, batch_size: int = 64, ndcg_k: int = 5,
                     combine: Callable[[str, str], str] | None = None, cache: Any = None,
                     document_model: Any = None) -> dict:
    """Rerank the set's candidates with a SentenceTransformer and score p-MRR, nDCG@k and MAP.

    `document_model`: the encoder for documents when `model` was trained on the query side only.
    """
    if cache is None:
        from rewards.rerank import EmbeddingCache

        docs = None if document_model is None else EmbeddingCache(document_model, fs.corpus.__getitem__,
                                                                  batch_size=batch_size)
        cache = EmbeddingCache(model, fs.corpus.__getitem__, batch_size=batch_size, docs_from=docs)
    return score_results(fs, encoder_results(fs, cache, combine), ndcg_k)


def evaluate_mteb_tasks(model: Any, tasks: Sequence[str] = FOLLOWIR_TASKS, **kwargs: Any) -> dict[str, dict]:
    """FollowIR itself (needs the Hugging Face hub): our metrics for each task, loaded through mteb."""
    return {t: evaluate_encoder(model, load_mteb_task(t), **kwargs) for t in tasks}


@dataclass
class FollowIRArgs:
    """Score an encoder on FollowIR (Core17/Robust04/News21) via mteb."""

    model: str = help_field("SentenceTransformer folder or hub id")
    tasks: list[str] = help_field("mteb task names", default_factory=lambda: list(FOLLOWIR_TASKS))
    dataset_path: str | None = help_field("a local copy in mteb's layout (one task)", default=None)
    out: str | None = help_field("write the scores as JSON here", default=None)


def main(argv: Sequence[str] | None = None) -> None:
    import json

    (a,) = parse_or_exit([FollowIRArgs], argv, "python -m eval.followir")
    from rewards.rerank import document_encoder, load_encoder

    model = load_encoder(a.model)
    doc_path = document_encoder(a.model)
    kwargs = {"document_model": load_encoder(doc_path)} if doc_path else {}
    if a.dataset_path:
        res = {a.tasks[0]: evaluate_encoder(model, load_mteb_task(a.tasks[0], a.dataset_path), **kwargs)}
    else:
        res = evaluate_mteb_tasks(model, a.tasks, **kwargs)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        from ir_core.io import atomic_write_text

        atomic_write_text(a.out, text + "\n")


if __name__ == "__main__":
    main()
