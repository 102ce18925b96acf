"""Execute search plans against an index and turn them into rewards.

One executor serves training rewards, evaluation and baselines, so a plan scores the same everywhere:
each search runs with its filter pushed into the engine, the rankings are fused by weighted reciprocal-
rank fusion with a total, deterministic order, and the reward is Recall@k of the fused list.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing as mp
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rewards.metrics import all_metrics, recall_at_k
from rewards.parse import PlanError, parse_plan
from rewards.plan import Search, SearchPlan
from stark_instruct.filters import Node
from stark_instruct.schema import IndexSchema
from stark_instruct.text import query_terms

log = logging.getLogger(__name__)


class SearchIndex(Protocol):
    def search(self, query: str, filter: Node | None = None, k: int = 100) -> list[tuple[int, float]]: ...


class Reranker(Protocol):
    def rerank(self, text: str, doc_ids: list[int]) -> list[int]: ...


@dataclass
class RewardResult:
    """The reward of one completion plus what a log needs to explain it."""

    reward: float
    valid: bool
    error_code: str | None = None
    error: str | None = None
    n_searches: int = 0
    retrieved: int = 0  # length of the fused ranking
    ranking: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Executor:
    """Runs plans on one index; caches repeated (query, filter, k) searches, as N samples of a prompt repeat."""

    def __init__(self, index: SearchIndex, depth: int = 100, rrf_k: int = 60,
                 reranker: Reranker | None = None, cache_size: int = 8192):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        if not isinstance(rrf_k, int | float) or not math.isfinite(rrf_k) or rrf_k < 0:
            raise ValueError(f"rrf_k must be a finite number >= 0, got {rrf_k!r}")
        if reranker is not None and not callable(getattr(reranker, "rerank", None)):
            raise TypeError("reranker must have a method rerank(text, doc_ids) -> list[int]")
        self.index, self.depth, self.rrf_k, self.reranker = index, depth, rrf_k, reranker
        # Keyed on (query, filter node, depth): nodes are frozen dataclasses, hashed by value, so equal
        # filters share an entry (20 == 20.0 too). N samples of one prompt repeat many searches.
        self._cached_search = functools.lru_cache(maxsize=cache_size)(self._search)
        # Whole plans repeat too (identical samples, or texts that differ only in layout): one fusion each.
        self._cached_fuse = functools.lru_cache(maxsize=cache_size)(self._fuse)

    def _search(self, query: str, filter: Node | None, k: int) -> tuple[tuple[int, float], ...]:
        return tuple(self.index.search(query, filter, k))

    def search(self, query: str, filter: Node | None) -> tuple[tuple[int, float], ...]:
        """One engine search at this executor's depth, through the LRU cache."""
        return self._cached_search(query, filter, self.depth)

    @property
    def hits(self) -> int:
        return self._cached_search.cache_info().hits

    @property
    def misses(self) -> int:
        return self._cached_search.cache_info().misses

    def fuse(self, plan: SearchPlan) -> list[int]:
        """Weighted RRF: sum of weight / (rrf_k + rank); ties by best rank, then doc_id; top `depth`."""
        return list(self._cached_fuse(plan.searches))

    def _fuse(self, searches: tuple[Search, ...]) -> tuple[int, ...]:
        if len(searches) == 1:
            # One ranking: weight / (rrf_k + rank) falls with rank, so fusion keeps its order (when unique).
            docs = tuple(d for d, _ in self.search(searches[0].query, searches[0].filter))[: self.depth]
            if len(set(docs)) == len(docs):
                return docs
        score: dict[int, float] = {}
        best: dict[int, int] = {}
        for s in searches:
            w, k0 = s.weight, self.rrf_k
            for rank, (doc, _) in enumerate(self.search(s.query, s.filter), 1):
                if doc in score:
                    score[doc] += w / (k0 + rank)
                    # a later search can only improve the best rank if it ranks the doc higher
                    if rank < best[doc]:
                        best[doc] = rank
                else:
                    score[doc] = w / (k0 + rank)
                    best[doc] = rank
        # tuple keys compare in C; doc ids are unique, so the order is total
        keyed = sorted([(-sc, best[d], d) for d, sc in score.items()])
        return tuple(d for _, _, d in keyed[: self.depth])

    def run(self, plan: SearchPlan, rerank_text: str | None = None) -> list[int]:
        """The plan's fused ranking, reranked by the reranker when `rerank_text` is given."""
        fused = self.fuse(plan)
        if rerank_text is None:
            return fused
        if self.reranker is None:
            raise ValueError("rerank_text given but the executor has no reranker")
        reranked = [int(d) for d in self.reranker.rerank(rerank_text, list(fused))]
        if len(set(reranked)) != len(reranked) or not set(reranked) <= set(fused):
            raise ValueError("reranker must return a permutation of (a subset of) the doc ids it was given")
        return reranked


def _invalid(code: str, reason: str, relevant: Iterable[int]) -> RewardResult:
    return RewardResult(0.0, False, code, reason, metrics=all_metrics([], relevant))


class EngineError(PlanError):
    """The engine failed on a parsed plan: the plan is invalid (reward 0), the run goes on."""

    def __init__(self, exc: Exception):
        super().__init__("engine_error", f"{type(exc).__name__}: {exc}")


def run_plan(executor: Executor, plan: SearchPlan, rerank_text: str | None = None) -> list[int]:
    """`executor.run`, with any engine failure raised as `EngineError` (a `PlanError`), so one poison
    plan is recorded as an invalid plan with its reason instead of killing a scoring run or a report."""
    try:
        return executor.run(plan, rerank_text)
    except Exception as e:  # noqa: BLE001 - every engine failure becomes a typed invalid plan
        err = EngineError(e)
        log.warning("plan refused by the engine, scored 0: %s", err.reason)
        raise err from e


def score_plan(plan: SearchPlan, relevant: Iterable[int], executor: Executor, k: int = 20,
               rerank_text: str | None = None) -> RewardResult:
    """Reward = Recall@k of the executed plan against the relevant ids (0, invalid, if the engine fails)."""
    rel = set(relevant)
    try:
        ranking = run_plan(executor, plan, rerank_text)
    except EngineError as e:
        return _invalid(e.code, e.reason, rel)
    return RewardResult(
        reward=recall_at_k(ranking, rel, k), valid=True, n_searches=len(plan.searches),
        retrieved=len(ranking), ranking=ranking, metrics=all_metrics(ranking, rel),
    )


def score_text(text: str | None, relevant: Iterable[int], schema: IndexSchema, executor: Executor,
               k: int = 20, rerank_text: str | None = None) -> RewardResult:
    """Parse, validate, execute and score one completion; an invalid plan scores 0 with its reason."""
    rel = set(relevant)
    if text is None:
        return _invalid("no_output", "the planner returned no text", rel)
    try:
        plan = parse_plan(text, schema)
    except PlanError as e:
        return _invalid(e.code, e.reason, rel)
    return score_plan(plan, rel, executor, k, rerank_text)


# ---- batch scoring over processes -------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _open_bench(bench_path: str, engine: str, depth: int, rrf_k: int) -> tuple[IndexSchema, Executor]:
    from stark_instruct.benchmark import Benchmark  # the benchmark pulls in the engines; load lazily

    bench = Benchmark.load(bench_path)
    return bench.schema, Executor(bench.index(engine), depth=depth, rrf_k=rrf_k)


def _init_worker(bench_path: str, engine: str, depth: int, rrf_k: int) -> None:
    # An exception escaping a Pool initializer makes the pool respawn workers forever; keep it and
    # re-raise from the first task instead, so the caller sees the real error.
    try:
        _WORKER["state"] = _open_bench(bench_path, engine, depth, rrf_k)
    except Exception as e:  # noqa: BLE001 - re-raised in _score_in_worker
        _WORKER["error"] = e


def _score_in_worker(item: tuple[str | None, list[int], int]) -> RewardResult:
    if "error" in _WORKER:
        raise _WORKER["error"]
    schema, executor = _WORKER["state"]
    text, relevant, k = item
    return score_text(text, relevant, schema, executor, k)


def _score_group_in_worker(items: list[tuple[str | None, list[int], int]]) -> list[RewardResult]:
    return [_score_in_worker(item) for item in items]


def _distinct(payload: list[tuple[str | None, list[int], int]]) -> tuple[list, list[int]]:
    """Identical (completion, relevant, k) items, as the samples of one prompt often are, are scored once."""
    first: dict[tuple, int] = {}
    unique, slots = [], []
    for item in payload:
        key = (item[0], tuple(item[1]), item[2])
        if key not in first:
            first[key] = len(unique)
            unique.append(item)
        slots.append(first[key])
    return unique, slots


_FIRST_QUERY = re.compile(r'"query"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _routing_key(text: str | None) -> tuple[str, ...]:
    """The sorted terms of a completion's first "query" string: a cheap guess that only orders work
    between workers (never what is scored), so it need not parse the plan."""
    m = _FIRST_QUERY.search(text or "")
    return tuple(sorted(query_terms(m.group(1)))) if m else ()


def _spread(scored: list[RewardResult], slots: list[int]) -> list[RewardResult]:
    """One result per input item; a repeated item gets its own copy, so callers may mutate results."""
    out, used = [], [False] * len(scored)
    for i in slots:
        r = scored[i]
        out.append(replace(r, ranking=list(r.ranking), metrics=dict(r.metrics)) if used[i] else r)
        used[i] = True
    return out


class BatchScorer:
    """Scores many completions against one on-disk benchmark, in this process or a pool of workers.

    Each worker opens the index once; results come back in input order. Reuse one scorer across
    batches (e.g. TAO rounds) to pay the worker start-up once. Use as a context manager.
    """

    def __init__(self, bench_path: str | Path, engine: str = "tantivy", processes: int = 2, k: int = 20,
                 depth: int = 100, rrf_k: int = 60):
        if not Path(bench_path).exists():
            raise FileNotFoundError(f"benchmark not found: {bench_path}")
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.k, self.processes = k, processes
        args = (str(bench_path), engine, depth, rrf_k)
        self._pool = None
        self._local: tuple[IndexSchema, Executor] | None = None
        if processes == 1:
            self._local = _open_bench(*args)
        else:
            # spawn, not fork: callers may hold threads (torch, tantivy) that fork would copy mid-state
            self._pool = mp.get_context("spawn").Pool(processes, initializer=_init_worker, initargs=args)

    def score(self, items: Sequence[tuple[str | None, Iterable[int]]]) -> list[RewardResult]:
        payload = [(text, list(relevant), self.k) for text, relevant in items]
        for _, relevant, _ in payload:
            if not relevant:
                raise ValueError("every item needs a non-empty relevant set")
        unique, slots = _distinct(payload)
        if self._local is not None:
            schema, executor = self._local
            scored = [score_text(t, r, schema, executor, k) for t, r, k in unique]
        elif self._pool is None:
            raise RuntimeError("scorer is closed")
        else:
            # One task per prompt (items sharing relevant ids): its samples meet in one worker's caches.
            groups: dict[tuple, list[int]] = {}
            for i, (_, relevant, k) in enumerate(unique):
                groups.setdefault((tuple(relevant), k), []).append(i)
            # Prompts whose first search has the same terms (the instructed variants of one base query) go
            # next to each other, so pool.map's contiguous chunks hand them to one worker: the index's
            # unfiltered windows are cached per terms, and that cache lives in the worker.
            members_list = sorted(groups.values(), key=lambda m: _routing_key(unique[m[0]][0]))
            tasks = [[unique[i] for i in members] for members in members_list]
            chunksize = max(1, len(tasks) // (self.processes * 8))
            scored = [None] * len(unique)
            for members, results in zip(members_list, self._pool.map(_score_group_in_worker, tasks, chunksize),
                                        strict=True):
                for i, r in zip(members, results, strict=True):
                    scored[i] = r
        return _spread(scored, slots)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> BatchScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_batch(items: Sequence[tuple[str | None, Iterable[int]]], bench_path: str | Path,
                engine: str = "tantivy", processes: int = 2, k: int = 20) -> list[RewardResult]:
    """Score (completion, relevant ids) pairs with `processes` workers, preserving order."""
    with BatchScorer(bench_path, engine=engine, processes=processes, k=k) as scorer:
        return scorer.score(items)
