"""Ranking metrics against a set of relevant documents (STaRK's definitions).

Recall@k divides by the number of relevant documents (not by min(k, |relevant|)), as STaRK and
torchmetrics' RetrievalRecall do, so a query with more answers than k cannot reach 1. An empty relevant
set is a caller error: benchmark qrels are never empty, and silently scoring 0 or 1 would bias means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RECALL_KS = (10, 20, 50, 100)
HIT_KS = (1, 5)


def _relevant_set(relevant: Iterable[int]) -> set[int]:
    rel = set(relevant)
    if not rel:
        raise ValueError("relevant set is empty; metrics are undefined (benchmark qrels are never empty)")
    return rel


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def recall_at_k(ranking: Sequence[int], relevant: Iterable[int], k: int) -> float:
    """Fraction of the relevant documents among the first k of the ranking (duplicates count once)."""
    _check_k(k)
    rel = _relevant_set(relevant)
    return len(rel.intersection(ranking[:k])) / len(rel)


def hit_at_k(ranking: Sequence[int], relevant: Iterable[int], k: int) -> float:
    """1.0 if any relevant document is in the first k, else 0.0."""
    _check_k(k)
    rel = _relevant_set(relevant)
    return 1.0 if rel.intersection(ranking[:k]) else 0.0


def reciprocal_rank(ranking: Sequence[int], relevant: Iterable[int]) -> float:
    """1 / rank of the first relevant document (1-based) over the whole ranking; 0.0 if none is retrieved."""
    rel = _relevant_set(relevant)
    return next((1.0 / rank for rank, d in enumerate(ranking, 1) if d in rel), 0.0)


def all_metrics(ranking: Sequence[int], relevant: Iterable[int]) -> dict[str, float]:
    """recall@10/20/50/100, hit@1/5 and mrr of one ranking."""
    rel = _relevant_set(relevant)
    out = {f"recall@{k}": recall_at_k(ranking, rel, k) for k in RECALL_KS}
    out.update({f"hit@{k}": hit_at_k(ranking, rel, k) for k in HIT_KS})
    out["mrr"] = reciprocal_rank(ranking, rel)
    return out
