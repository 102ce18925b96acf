"""EncoderReranker: reorders only the top N, caches document embeddings, plugs into the Executor."""

import numpy as np
import pytest

from rewards.rerank import EmbeddingCache, EncoderReranker


class KeywordModel:
    """A stand-in encoder: one dimension per vocabulary word, so similarity is predictable."""

    vocab = ("red", "blue", "green", "tent", "stove", "lumia", "noria")

    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, texts, **kwargs):
        self.encoded += list(texts)
        out = np.zeros((len(texts), len(self.vocab) + 1), dtype=np.float32)
        for i, t in enumerate(texts):
            words = t.lower().split()
            for j, w in enumerate(self.vocab):
                out[i, j] = words.count(w)
            out[i, -1] = 0.1  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


DOCS = {0: "blue tent", 1: "red tent", 2: "green stove", 3: "red stove", 4: "blue stove", 5: "red tent lumia"}


def reranker(top_n: int, model: KeywordModel | None = None) -> EncoderReranker:
    cache = EmbeddingCache(model or KeywordModel(), DOCS.__getitem__, key=int)
    return EncoderReranker(None, bench=None, top_n=top_n, cache=cache, fusion="cosine")


def test_reorders_only_the_top_n_and_keeps_the_tail():
    r = reranker(top_n=3)
    ranking = [0, 2, 1, 4, 3, 5]
    out = r.rerank("red tent", ranking)
    assert out[:3] == [1, 0, 2]  # red tent > blue tent > green stove
    assert out[3:] == [4, 3, 5]  # untouched, though 5 ("red tent lumia") would score high
    assert sorted(out) == sorted(ranking)


def test_ties_keep_the_fused_order_and_short_lists_pass_through():
    r = reranker(top_n=10)
    assert r.rerank("green", [4, 0, 2]) == [2, 4, 0]  # 4 and 0 tie at zero overlap: fused order kept
    assert r.rerank("red", [3]) == [3] and r.rerank("red", []) == []
    with pytest.raises(ValueError):
        reranker(top_n=0)


def test_document_embeddings_are_cached_across_queries():
    model = KeywordModel()
    r = reranker(top_n=4, model=model)
    r.rerank("red tent wanted", [0, 1, 2, 3, 4])
    r.rerank("blue stove wanted", [3, 2, 1, 0])
    assert sorted(t for t in model.encoded if t in DOCS.values()) == sorted(DOCS[i] for i in (0, 1, 2, 3))
    assert len(r.cache) == 4


def test_plugs_into_the_executor(tiny_benchmark):
    from rewards.execute import Executor
    from rewards.plan import Search, SearchPlan

    query = tiny_benchmark.queries("test")[0]["query"]
    r = EncoderReranker(None, tiny_benchmark, top_n=5,
                        cache=EmbeddingCache(KeywordModel(), lambda d: tiny_benchmark.product(d).title, key=int))
    ex = Executor(tiny_benchmark.index(), depth=30, reranker=r)
    plan = SearchPlan([Search(query=query, filter=None)])
    fused = ex.run(plan)
    reranked = ex.run(plan, rerank_text=query)
    assert sorted(reranked) == sorted(fused) and reranked[5:] == fused[5:]


def test_real_encoder_ranks_the_described_product_first(tiny_benchmark):
    """With the packaged MiniLM, naming a product (title and brand) pulls it from last to first."""
    rows = [r for r in tiny_benchmark.queries("test") if r["kind"] == "none"]
    cands = [d for d, _ in tiny_benchmark.index().search(rows[0]["query"], k=6)]
    target = cands[-1]  # BM25's last
    from rewards.rerank import default_base_model

    r = EncoderReranker(default_base_model(), tiny_benchmark, top_n=6, max_seq_length=64, fusion="cosine")
    text = f"{tiny_benchmark.product(target).title} by {tiny_benchmark.product(target).brand}"
    out = r.rerank(text, cands)
    assert out[0] == target and sorted(out) == sorted(cands)


def test_query_encoders_share_the_document_encoders_embeddings(tmp_path):
    import json

    from rewards.rerank import DOCUMENT_ENCODER_FILE, document_encoder

    doc_model, q1, q2 = KeywordModel(), KeywordModel(), KeywordModel()
    docs = EmbeddingCache(doc_model, DOCS.__getitem__, key=int)
    a = EmbeddingCache(q1, DOCS.__getitem__, key=int, docs_from=docs)
    b = EmbeddingCache(q2, DOCS.__getitem__, key=int, docs_from=docs)
    assert np.array_equal(a.docs([0, 1]), b.docs([1, 0])[::-1])
    a.queries(["red tent"])
    assert q1.encoded == ["red tent"] and q2.encoded == []  # documents never went through a query encoder
    assert sorted(doc_model.encoded) == sorted(DOCS[i] for i in (0, 1)) and len(a) == len(docs) == 2
    assert document_encoder(tmp_path) is None and document_encoder(KeywordModel()) is None
    (tmp_path / DOCUMENT_ENCODER_FILE).write_text(json.dumps({"document_encoder": "base/model"}))
    assert document_encoder(tmp_path) == "base/model"
    (tmp_path / DOCUMENT_ENCODER_FILE).write_text("{}")
    with pytest.raises(ValueError, match=DOCUMENT_ENCODER_FILE):
        document_encoder(tmp_path)


def test_rrf_fusion_moves_documents_less_than_the_encoder_alone():
    cache = EmbeddingCache(KeywordModel(), DOCS.__getitem__, key=int)
    cosine = EncoderReranker(None, bench=None, top_n=3, cache=cache, fusion="cosine")
    rrf = EncoderReranker(None, bench=None, top_n=3, cache=cache)
    ranking = [2, 4, 3, 0]  # green stove, blue stove, red stove | blue tent
    assert cosine.rerank("red", ranking) == [3, 2, 4, 0]
    assert rrf.rerank("red", ranking) == [2, 3, 4, 0]  # red stove climbs one place, not to the top
    with pytest.raises(ValueError, match="fusion"):
        EncoderReranker(None, bench=None, cache=cache, fusion="max")
