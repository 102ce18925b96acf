"""Run retrieval methods over a benchmark split and aggregate their metrics per instruction kind.

All methods are executed by one `rewards.execute.Executor` (the one that computes training rewards), so a
difference between methods is a difference between their plans, nothing else. Per query the harness
keeps the plan, its validity and every metric of `rewards.metrics.all_metrics`; it then averages per
kind; gains over `raw` and paired bootstrap CIs come from eval/stats.py, computed once: here for a run
without an output folder, by eval/report.py over the merged folder otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.compliance import annotate, op_table, violations_by_kind
from eval.methods import Method, PlanOutput, resolve_methods
from eval.report import write_report
from eval.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    RERANK_SUFFIX,
    add_baseline_stats,
    aggregate,
    vs_baseline,
)
from rewards.execute import Executor, run_plan
from rewards.metrics import all_metrics, recall_at_k
from rewards.parse import PlanError
from rewards.plan import plan_to_json
from rewards.prompts import MODES


def queries_fingerprint(rows: list[dict]) -> str:
    """Hash of the evaluated queries and their qrels: reports from different query sets never merge."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([str(row["id"]), sorted(int(i) for i in row["relevant_ids"])]).encode())
    return h.hexdigest()[:16]


def headline_key(k: int) -> str:
    return f"recall@{k}"


def query_metrics(ranking: list[int], relevant: Sequence[int], k: int, depth: int | None = None) -> dict[str, float]:
    """All metrics of one ranking, with Recall@k added when k is not one of the standard cutoffs.

    Cutoffs deeper than the search ``depth`` are left out: a ranking of at most ``depth`` documents says
    nothing about Recall@1000.
    """
    metrics = {name: float(v) for name, v in all_metrics(ranking, set(relevant)).items()
               if depth is None or _cutoff(name) <= depth}
    metrics.setdefault(headline_key(k), float(recall_at_k(ranking, set(relevant), k)))
    return metrics


def _cutoff(name: str) -> int:
    m = re.fullmatch(r"\w+@(\d+)", name)
    return int(m.group(1)) if m else 0


def zero_metrics(names: Sequence[str]) -> dict[str, float]:
    return dict.fromkeys(names, 0.0)


def sum_usage(outputs: Sequence[PlanOutput]) -> dict:
    """Total and per-query token use / cost over the responses that reported any."""
    totals: Counter = Counter()
    n = 0
    for o in outputs:
        numeric = {k: v for k, v in (o.usage or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        if numeric:
            n += 1
            totals.update(numeric)
    if not n:
        return {}
    return {"n_reported": n, "total": dict(totals), "per_query": {k: v / n for k, v in totals.items()}}


def run_method(method: Method, rows: list[dict], executor: Any, k: int, rerank: bool = False,
               log_depth: int | None = None, meta: Callable[[int], dict] | None = None) -> tuple[list[dict], dict]:
    """Plan, execute and score every row with one method; returns per-query records and run info.

    With `rerank`, the executor's reranker reorders each fused ranking by the merged query (query plus
    instruction), the text an instruction-aware encoder is trained to read. With `meta` (doc id -> index
    metadata), each record also gets its compliance (`eval.compliance`: violations@k and op checks).
    """
    t0 = time.perf_counter()
    outputs = method.plans(rows)
    if len(outputs) != len(rows):
        raise RuntimeError(f"method {method.name!r} returned {len(outputs)} plans for {len(rows)} queries")
    t_plan = time.perf_counter() - t0
    metric_names: list[str] = []
    records = []
    for row, out in zip(tqdm(rows, desc=f"execute {method.name}", leave=False), outputs, strict=True):
        relevant = [int(i) for i in row["relevant_ids"]]
        ranking: list[int] = []
        error = out.error
        if out.plan is not None and error is None:
            rerank_text = (row.get("merged_query") or row["query"]) if rerank else None
            try:
                ranking = list(run_plan(executor, out.plan, rerank_text=rerank_text))
            except PlanError as e:  # the engine refused a plan the parser accepted: an invalid plan
                error = f"{e.code}: {e.reason}"
        if out.plan is not None and error is None:
            metrics = query_metrics(ranking, relevant, k, getattr(executor, "depth", None))
            metric_names = metric_names or list(metrics)
        else:
            error = error or "invalid: no plan"
            metrics = {}
        records.append({
            "id": str(row["id"]), "base_id": row.get("base_id"), "kind": row.get("kind", "none"),
            "query": row["query"], "instruction": row.get("instruction"),
            "merged_query": row.get("merged_query"), "plan_text": out.text,
            "plan": _plan_json(out.plan) if error is None else None, "error": error,
            "valid": error is None, "metrics": metrics,
            "retrieved": ranking[: log_depth or max(k, 20)], "relevant": relevant, "usage": out.usage,
        })
        if meta is not None:
            annotate(records[-1], row, meta, k, ranking)
    names = metric_names or list(query_metrics([], [0], k))
    for r in records:  # invalid plans score 0 on every metric
        if not r["valid"]:
            r["metrics"] = zero_metrics(names)
    errors = Counter(r["error"].split(":", 1)[0] for r in records if r["error"])
    info = {"seconds_plan": t_plan, "seconds_total": time.perf_counter() - t0,
            "usage": sum_usage(outputs), "errors": dict(errors)}
    return records, info


def _plan_json(plan: Any) -> dict | None:
    return None if plan is None else plan_to_json(plan)


def evaluate(bench: Any, split: str, methods: Sequence[str | Method], engine: str = "tantivy", k: int = 20,
             rerank: Any = None, out_dir: str | Path | None = None, *, limit: int | None = None,
             compare_pairs: Sequence[tuple[str, str]] = (), n_resamples: int = DEFAULT_RESAMPLES,
             seed: int = DEFAULT_SEED, examples: Sequence | None = None, mode: str = "separate",
             executor: Any = None, depth: int = 100) -> dict:
    """Evaluate methods on one split; writes a (merged) report into out_dir when given (also the methods
    that finished when a later one fails).

    Returns {"config", "methods": {name: {by_kind, gain_vs_raw, vs_raw, usage, errors, ...}},
    "comparisons", "per_query": {name: [records]}}.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rows = list(bench.queries(split))
    if not rows:
        raise ValueError(f"split {split!r} of {getattr(bench, 'path', 'the benchmark')} has no queries")
    if limit is not None:
        rows = rows[:limit]
    resolved = resolve_methods(methods, bench, examples=examples, mode=mode)
    if executor is None:
        executor = Executor(bench.index(engine=engine), depth=max(depth, k), reranker=rerank)
    elif rerank is not None and getattr(executor, "reranker", None) is not rerank:
        raise ValueError("pass the reranker to the executor you give, or let evaluate build the executor")
    key = headline_key(k)
    suffix = RERANK_SUFFIX if rerank is not None else ""
    per_query: dict[str, list[dict]] = {}
    results: dict[str, dict] = {}
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run_info = {"created": created, "rerank": type(rerank).__name__ if rerank is not None else None}
    config = {
        "bench": str(getattr(bench, "path", "")), "split": split, "engine": engine, "k": k,
        "headline": key, "limit": limit, "n_queries": len(rows),
        "queries_sha": queries_fingerprint(rows), "depth": max(depth, k),
        "n_resamples": n_resamples, "seed": seed, "created": created,
    }
    for method in resolved:
        name = method.name + suffix
        try:
            records, info = run_method(method, rows, executor, k, rerank=rerank is not None,
                                       meta=getattr(bench, "meta", None))
        except Exception:
            if out_dir is not None and results:  # keep what finished: the methods before this one
                write_report({"config": config, "methods": results, "comparisons": [], "compare_pairs": [],
                              "per_query": per_query}, out_dir)
            raise
        per_query[name] = records
        if hasattr(method, "planner"):  # prompt settings matter only to planners
            run_info_m = {**run_info, "mode": method.mode, "n_examples": len(method.examples)}
        else:
            run_info_m = dict(run_info)
        results[name] = {"by_kind": aggregate(records), **info, "run": run_info_m}
        if any("checks" in r for r in records):
            results[name].update(violations=violations_by_kind(records), ops=op_table(records))
    result = {"config": config, "methods": results, "comparisons": [],
              "compare_pairs": [list(p) for p in compare_pairs], "per_query": per_query}
    if out_dir is not None:  # the report derives gains and CIs over the merged folder (earlier runs too)
        return {**write_report(result, out_dir), "per_query": per_query}
    add_baseline_stats(results, per_query.__getitem__, key, n_resamples, seed)
    for a, b in compare_pairs:
        missing = [m for m in (a, b) if m not in per_query]
        if missing:
            raise ValueError(f"cannot compare {a!r} with {b!r}: not evaluated: {', '.join(missing)}")
        result["comparisons"].append({"a": a, "b": b, "by_kind": vs_baseline(per_query[a], per_query[b], key,
                                                                             n_resamples, seed)})
    return result
