"""Scoring throughput: plans/s of parse + execute + Recall@20, per index size, engine and process count.

Plans are built from the benchmark's own queries (1-3 searches each, every search filtered by the
query's constraint, or by a rating filter for queries without one) and scored with
`rewards.execute.BatchScorer`, the scorer the TAO loop uses. Start-up (opening the index in each worker)
is timed apart from steady-state scoring, since one scorer serves all rounds of a run. Benchmarks are
built once and cached under --data (`data/bench/synthetic-<size>`).

    python scripts/bench_scoring.py --sizes 20000 1000000 --out runs/bench/scoring.json

Targets on 2 cores (tantivy): >= 500 plans/s at 20k products, >= 100 plans/s at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards.execute import BatchScorer, Executor, score_text  # noqa: E402
from rewards.parse import parse_plan  # noqa: E402
from stark_instruct.benchmark import Benchmark  # noqa: E402
from stark_instruct.build import build_benchmark  # noqa: E402
from stark_instruct.filters import to_json  # noqa: E402
from stark_instruct.instructions import constraint_filter  # noqa: E402
from stark_instruct.text import query_terms  # noqa: E402

FALLBACK_FILTER = {"field": "rating", "op": "gte", "value": 3.5}


def make_plans(bench: Benchmark, n: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """n (plan text, relevant ids) pairs with 1-3 filtered searches, cycling through the queries."""
    rows = bench.queries()
    rng = random.Random(seed)
    rng.shuffle(rows)
    items = []
    for i in range(n):
        row = rows[i % len(rows)]
        flt = to_json(constraint_filter(row["constraint"])) if row["constraint"] else FALLBACK_FILTER
        terms = query_terms(row["query"]) or ["gear"]
        searches = [{"query": " ".join(terms), "filter": flt}]
        for _ in range(rng.randint(0, 2)):
            subset = rng.sample(terms, k=min(len(terms), rng.randint(1, 3)))
            searches.append({"query": " ".join(subset), "filter": flt})
        items.append((json.dumps({"searches": searches}), row["relevant_ids"]))
    return items


def measure(path: Path, engine: str, processes: int, items: list[tuple[str, list[int]]]) -> dict:
    t0 = time.perf_counter()
    with BatchScorer(path, engine=engine, processes=processes, k=20) as scorer:
        scorer.score(items[: 4 * processes])  # warm-up: every worker opens the index
        startup = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        results = scorer.score(items)
        elapsed, cpu = time.perf_counter() - t1, time.process_time() - c1
    n_searches = sum(r.n_searches for r in results)
    return {
        "engine": engine, "processes": processes, "plans": len(items), "startup_s": round(startup, 2),
        "score_s": round(elapsed, 2), "plans_per_s": round(len(items) / elapsed, 1),
        "searches_per_s": round(n_searches / elapsed, 1),
        # With one process all work is on this process's CPU clock: plans per CPU-second is what one
        # dedicated core does, independent of how many other jobs share the machine.
        "plans_per_cpu_s": round(len(items) / cpu, 1) if processes == 1 else None,
        "mean_searches": round(n_searches / len(items), 2),
        "valid": sum(r.valid for r in results) / len(results),
        "mean_reward": round(statistics.fmean(r.reward for r in results), 4),
        "rewards": [r.reward for r in results],
        "peak_rss_gb_so_far": round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1e6, 2),
    }


class _TimedIndex:
    """Wraps an index to add up the time spent inside the engine's search."""

    def __init__(self, index):
        self.index, self.seconds = index, 0.0

    def search(self, query, filter=None, k=100):
        t = time.perf_counter()
        try:
            return self.index.search(query, filter, k)
        finally:
            self.seconds += time.perf_counter() - t


def breakdown(path: Path, engine: str, items: list[tuple[str, list[int]]]) -> dict:
    """Share of single-process scoring time spent in the engine, and filtered vs unfiltered search cost."""
    bench = Benchmark.load(path)
    timed = _TimedIndex(bench.index(engine))
    executor = Executor(timed, depth=100)
    t0 = time.perf_counter()
    plans = []
    for text, relevant in items:
        score_text(text, relevant, bench.schema, executor, k=20)
        plans.append(parse_plan(text, bench.schema))
    total = time.perf_counter() - t0
    searches = [s for p in plans for s in p.searches]
    cost = {}
    for name, with_filter in (("unfiltered", False), ("filtered", True)):
        t = time.perf_counter()
        for s in searches:
            timed.index.search(s.query, s.filter if with_filter else None, 100)
        cost[f"{name}_search_ms"] = round((time.perf_counter() - t) / len(searches) * 1000, 2)
    return {"engine": engine, "plans": len(items), "engine_share": round(timed.seconds / total, 3), **cost}


def render(results: dict) -> str:
    notes: list[str] = []
    builds = ", ".join(f"{int(k):,}: {v} s" for k, v in results.get("build_s", {}).items())
    lines = [f"Machine: {results['machine']}; load average at start {results['loadavg']}.",
             f"Benchmark build time (from its stats.json): {builds}.", "",
             "| products | engine | processes | plans | start-up s | plans/s (wall) | plans per CPU-s | searches/s "
             "| mean Recall@20 | peak RSS GB (so far) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size, runs in results["sizes"].items():
        for r in runs:
            if "breakdown" in r:
                b = r["breakdown"]
                notes.append(f"- {int(size):,} products, {b['engine']}, {b['plans']} plans in one process: "
                             f"{b['engine_share']:.0%} of scoring time inside the engine's search; a search costs "
                             f"{b['filtered_search_ms']} ms with its filter, {b['unfiltered_search_ms']} ms without.")
                continue
            if "skipped" in r:
                lines.append(f"| {int(size):,} | {r['engine']} | {r['processes']} | - | - | skipped: {r['skipped']} "
                             "| - | - | - | - |")
                continue
            lines.append(f"| {int(size):,} | {r['engine']} | {r['processes']} | {r['plans']} | {r['startup_s']} "
                         f"| {r['plans_per_s']} | {r['plans_per_cpu_s'] or '-'} | {r['searches_per_s']} | {r['mean_reward']} "
                         f"| {r['peak_rss_gb_so_far']} |")
    return "\n".join(lines + [""] + notes)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 1_000_000])
    ap.add_argument("--engines", nargs="+", default=["tantivy", "bm25"], choices=["tantivy", "bm25"])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--plans", type=int, default=3000, help="plans per run")
    ap.add_argument("--large", type=int, default=200_000,
                    help="sizes above this use --large-plans plans; rank-bm25 runs only with one process there")
    ap.add_argument("--large-plans", type=int, default=1000)
    ap.add_argument("--bm25-plans", type=int, default=300,
                    help="plans for rank-bm25 (it filters and scores every candidate in Python)")
    ap.add_argument("--bm25-large-plans", type=int, default=50, help="plans for rank-bm25 above --large")
    ap.add_argument("--bm25-max-size", type=int, default=200_000,
                    help="skip rank-bm25 above this size: its in-memory index peaked at 0.53 GB for 20k products "
                         "on the dev box, so ~25 GB at 1M (more than a 23 GB machine)")
    ap.add_argument("--breakdown-plans", type=int, default=300,
                    help="plans for the engine-share / filter-cost breakdown (tantivy, one process; 0: skip)")
    ap.add_argument("--data", default="data/bench", help="benchmarks are built and cached here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/scoring.json")
    args = ap.parse_args(argv)

    results = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores",
               "loadavg": [round(x, 2) for x in os.getloadavg()], "sizes": {}}
    for size in args.sizes:
        path = build_benchmark(Path(args.data) / f"synthetic-{size}", source="synthetic", size=size, seed=0)
        large = size > args.large
        runs = []
        for engine in args.engines:
            if engine == "bm25" and size > args.bm25_max_size:
                runs += [{"engine": engine, "processes": p, "skipped": "memory (in-memory index; raise --bm25-max-size)"}
                         for p in args.processes]
                continue
            if engine == "bm25":
                n = args.bm25_large_plans if large else args.bm25_plans
            else:
                n = args.large_plans if large else args.plans
            items = make_plans(Benchmark.load(path), n, args.seed)
            for procs in args.processes:
                if engine == "bm25" and large and procs > 1:
                    runs.append({"engine": engine, "processes": procs,
                                 "skipped": "memory: each worker builds its own in-memory rank-bm25 index"})
                    continue
                r = measure(path, engine, procs, items)
                print(json.dumps({k: v for k, v in r.items() if k != "rewards"} | {"size": size}), flush=True)
                runs.append(r)
        # the same plans must score the same whatever the process count
        for engine in args.engines:
            rewards = [r["rewards"] for r in runs if r.get("engine") == engine and "rewards" in r]
            if any(x != rewards[0] for x in rewards[1:]):
                raise SystemExit(f"{engine} at {size}: rewards differ between process counts")
        if "tantivy" in args.engines and args.breakdown_plans:
            items = make_plans(Benchmark.load(path), args.breakdown_plans, args.seed)
            runs.append({"breakdown": breakdown(path, "tantivy", items)})
            print(json.dumps(runs[-1] | {"size": size}), flush=True)
        results["sizes"][size] = runs
        stats = json.loads((Path(path) / "stats.json").read_text())
        results.setdefault("build_s", {})[size] = stats.get("build_seconds")
    for runs in results["sizes"].values():
        for r in runs:
            r.pop("rewards", None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(render(results))
    return results


if __name__ == "__main__":
    main()
