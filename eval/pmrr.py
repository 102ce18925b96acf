"""p-MRR, FollowIR's pairwise instruction-following metric, computed the way mteb computes it.

For every document whose relevance an instruction changes (`qrel_diff`), compare its rank under the
original query ("og") with its rank under the changed instruction ("changed"). A document the
instruction made non-relevant should drop: its term is `1 - og_rank/new_rank` when it drops (in (0, 1))
and `new_rank/og_rank - 1` when it rises or stays put (in (-1, 0]).
Scores are averaged per query first, then over queries, so queries with many changed documents do not
dominate. Ranks follow mteb's `get_rank_from_dict`: sort by (score, doc_id) descending (ties go to the
larger id, compared as given — pass string ids to match mteb exactly), and a document absent from a run
gets rank `len(run) + 1`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

Run = Mapping[Hashable, float]  # doc_id -> score for one query


@dataclass(frozen=True)
class RankChange:
    qid: str
    doc_id: Hashable
    og_rank: int
    new_rank: int
    score: float


def rank_of(run: Run, doc_id: Hashable) -> int:
    """1-based rank of `doc_id` in a scored run; (score, doc_id) descending; missing -> len(run) + 1."""
    ordered = sorted(run.items(), key=lambda item: (item[1], item[0]), reverse=True)
    for i, (cur, _) in enumerate(ordered):
        if cur == doc_id:
            return i + 1
    return len(ordered) + 1


def pair_score(og_rank: int, new_rank: int) -> float:
    """Per-document p-MRR term: positive when a de-relevanced document moves down, negative when it moves up."""
    if og_rank < 1 or new_rank < 1:
        raise ValueError(f"ranks are 1-based, got og={og_rank} new={new_rank}")
    if og_rank >= new_rank:
        return (1 / og_rank) / (1 / new_rank) - 1
    return 1 - (1 / new_rank) / (1 / og_rank)


def rank_changes(og_runs: Mapping[str, Run], changed_runs: Mapping[str, Run],
                 qrel_diff: Mapping[str, Sequence[Hashable]]) -> list[RankChange]:
    """Every (query, changed document) term; queries missing from either run are skipped, as mteb does."""
    out = []
    for qid, docs in qrel_diff.items():
        if qid not in og_runs or qid not in changed_runs:
            continue
        for doc in docs:
            og, new = rank_of(og_runs[qid], doc), rank_of(changed_runs[qid], doc)
            out.append(RankChange(qid, doc, og, new, pair_score(og, new)))
    return out


def p_mrr(og_runs: Mapping[str, Run], changed_runs: Mapping[str, Run],
          qrel_diff: Mapping[str, Sequence[Hashable]]) -> float:
    """Mean over queries of the mean per-document term; NaN when no query has a changed document."""
    per_query = p_mrr_per_query(og_runs, changed_runs, qrel_diff)
    return sum(per_query.values()) / len(per_query) if per_query else math.nan


def p_mrr_per_query(og_runs: Mapping[str, Run], changed_runs: Mapping[str, Run],
                    qrel_diff: Mapping[str, Sequence[Hashable]]) -> dict[str, float]:
    """Per-query p-MRR, for breakdowns by instruction kind and for paired comparisons."""
    sums: dict[str, list[float]] = {}
    for change in rank_changes(og_runs, changed_runs, qrel_diff):
        sums.setdefault(change.qid, []).append(change.score)
    return {qid: sum(v) / len(v) for qid, v in sums.items()}


def p_mrr_from_results(results: Mapping[str, Run], qrel_diff: Mapping[str, Sequence[Hashable]]) -> float:
    """mteb's layout: one results dict whose query ids end in '-og' or '-changed'; qrel_diff keys have no suffix."""
    og = {qid[: -len("-og")]: run for qid, run in results.items() if qid.endswith("-og")}
    changed = {qid[: -len("-changed")]: run for qid, run in results.items() if qid.endswith("-changed")}
    return p_mrr(og, changed, qrel_diff)
