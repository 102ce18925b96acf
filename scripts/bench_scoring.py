"""Scoring throughput: plans/s of parse + execute + Recall@20, the project's scorer against its peers.

On the same plans, per index size and process count (a pool of spawned workers, as TAO uses):
- `scorer`: `rewards.execute.BatchScorer`, the scorer the TAO loop uses (fast filter path, caches);
- `tantivy direct`: the same tantivy index queried directly, every filter inside the engine, no caches
  (its rewards must equal the scorer's: the fast path is exact);
- `bm25s`: bm25s (numpy backend) over the same tokens, a filter as a weight mask, no caches;
- `rank-bm25`: the project's rank-bm25 reference engine, on a subset of the plans, up to --bm25-max-size.

Two plan sets: `sampled` mimics what TAO's sampler writes (16 samples per training prompt drawn with
repeats from a few plan variants: the right filter, a flipped one, none, extra brand/colour/price/rating/
date filters, eq/ne/in/gte, the instruction in the keywords, a second search, layout-only differences,
broken JSON); `synthetic` is 1-3 searches per plan all filtered by the query's constraint, no repeats.
Steady-state scoring is timed apart from start-up; CPU seconds are this process's plus its workers'
(from /proc), so plans per CPU-second do not depend on what else runs on the machine. The load average
is recorded around every measurement. Benchmarks are built once and cached under --data.

    python scripts/bench_scoring.py --sizes 20000 1000000 --out runs/bench/scoring.json
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ir_core.config import ConfigError, check_range, help_field, parse_or_exit  # noqa: E402
from rewards.execute import BatchScorer, Executor, score_text  # noqa: E402
from rewards.parse import parse_plan  # noqa: E402
from stark_instruct.benchmark import Benchmark  # noqa: E402
from stark_instruct.build import build_benchmark  # noqa: E402
from stark_instruct.filters import Node  # noqa: E402
from stark_instruct.index import TantivyIndex  # noqa: E402
from stark_instruct.meta_columns import MetaColumns  # noqa: E402
from stark_instruct.text import query_terms, tokenize  # noqa: E402

FALLBACK_FILTER = {"field": "rating", "op": "gte", "value": 3.5}
FLIP = {"eq": "ne", "ne": "eq", "in": "nin", "nin": "in", "gte": "lte", "lte": "gte", "gt": "lt", "lt": "gt",
        "contains": "ne"}
PEERS = ("tantivy direct", "bm25s", "rank-bm25")


# ---- plans --------------------------------------------------------------------------------------------

def make_plans(bench: Benchmark, n: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """n (plan text, relevant ids) pairs with 1-3 filtered searches, cycling through the queries."""
    rows = bench.queries()
    rng = random.Random(seed)
    rng.shuffle(rows)
    items = []
    for i in range(n):
        row = rows[i % len(rows)]
        flt = _leaf_json(row["constraint"]) if row["constraint"] else FALLBACK_FILTER
        terms = query_terms(row["query"]) or ["gear"]
        searches = [{"query": " ".join(terms), "filter": flt}]
        for _ in range(rng.randint(0, 2)):
            subset = rng.sample(terms, k=min(len(terms), rng.randint(1, 3)))
            searches.append({"query": " ".join(subset), "filter": flt})
        items.append((json.dumps({"searches": searches}), row["relevant_ids"]))
    return items


def _leaf_json(constraint: dict) -> dict:
    return {k: constraint[k] for k in ("field", "op", "value")}


def _variants(row: dict, rng: random.Random, brands: list[str], colors: list[str], ref: str) -> list[str]:
    """The distinct plans a sampler plausibly writes for one prompt, most likely first."""
    q, merged = row["query"], row["merged_query"]
    c = _leaf_json(row["constraint"]) if row["constraint"] else None
    terms = query_terms(q) or ["gear"]
    brand, color = rng.choice(brands), rng.choice(colors)
    year = int(ref[:4]) - rng.choice((1, 2, 3))
    extra = [
        {"field": "brand", "op": rng.choice(("eq", "ne")), "value": brand},
        {"field": "brand", "op": "in", "value": rng.sample(brands, 2)},
        {"field": "color", "op": rng.choice(("eq", "ne", "nin")), "value": color if rng.random() < 0.7 else [color]},
        {"field": "price", "op": rng.choice(("lte", "gte")), "value": rng.choice((25, 50, 100, 200))},
        {"field": "rating", "op": "gte", "value": rng.choice((3.5, 4, 4.5))},
        {"field": "last_review_date", "op": "gte", "value": f"{year}{ref[4:]}"},
    ]
    rng.shuffle(extra)
    flipped = dict(c, op=FLIP[c["op"]]) if c else extra[0]
    if flipped.get("op") in ("in", "nin") and not isinstance(flipped["value"], list):
        flipped["value"] = [flipped["value"]]
    if flipped.get("op") in ("eq", "ne", "contains") and isinstance(flipped["value"], list):
        flipped["value"] = flipped["value"][0]
    main = c or extra[1]
    plans = [
        [{"query": q, "filter": main}],
        [{"query": merged}],
        [{"query": q, "filter": main}, {"query": " ".join(rng.sample(terms, min(2, len(terms)))), "filter": main}],
        [{"query": q}],
        [{"query": q, "filter": flipped}],
        [{"query": q.lower().rstrip("?.!"), "filter": main}],  # same terms, other text
        [{"query": q, "filter": {"all": [main, extra[2]]}}],
        [{"query": merged, "filter": extra[3]}],
        [{"query": " ".join(terms), "filter": main, "weight": 2}, {"query": merged}],
    ]
    texts = [json.dumps({"searches": p}) for p in plans]
    texts.append(texts[0][: len(texts[0]) // 2])  # a truncated completion
    return texts


def make_sampled_plans(bench: Benchmark, n: int, seed: int = 0, per_prompt: int = 16) -> list[tuple[str, list[int]]]:
    """n samples, `per_prompt` per training prompt, drawn with repeats (Zipf-like) from its plan variants."""
    rows = bench.queries("train")
    rng = random.Random(seed)
    rng.shuffle(rows)
    brands = [f.examples for f in bench.schema.fields if f.name == "brand"][0]
    colors = [f.examples for f in bench.schema.fields if f.name == "color"][0]
    ref = bench.schema.reference_date.isoformat()
    items: list[tuple[str, list[int]]] = []
    for i in range((n + per_prompt - 1) // per_prompt):
        row = rows[i % len(rows)]
        texts = _variants(row, rng, list(brands), list(colors), ref)
        weights = [1 / (r + 1) ** 1.3 for r in range(len(texts))]
        items += [(t, row["relevant_ids"]) for t in rng.choices(texts, weights, k=per_prompt)]
    return items[:n]


# ---- peers ----------------------------------------------------------------------------------------------

class Bm25sIndex:
    """bm25s over the project's tokens; a filter is a 0/1 weight mask over all documents."""

    def __init__(self, bench: Benchmark, cache_dir: Path):
        import bm25s

        self.meta = MetaColumns.from_parquet(bench.path / "meta.parquet")
        if not (cache_dir / "params.index.json").exists():
            vocab: dict[str, int] = {}  # int32 arrays per document: lists of ints would need ~5 GB at 1M
            ids = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokenize(p.text())), dtype=np.int32)
                   for p in bench.iter_products()]
            retriever = bm25s.BM25()
            retriever.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
            retriever.save(str(cache_dir))
        self.retriever = bm25s.BM25.load(str(cache_dir), mmap=True)
        self.vocab = self.retriever.vocab_dict

    def __len__(self) -> int:
        return len(self.meta)

    def search(self, query: str, filter: Node | None = None, k: int = 100) -> list[tuple[int, float]]:
        ids = [self.vocab[t] for t in query_terms(query) if t in self.vocab]
        if not ids:
            return []
        scores = self.retriever.get_scores_from_ids(ids)
        if filter is not None:
            scores = scores * self.meta.mask(filter, np.arange(len(self.meta)))
        k = min(k, int(np.count_nonzero(scores > 0)))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=np.int64)
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(d), float(scores[d])) for d in top]


def _open_peer(name: str, path: str) -> tuple:
    bench = Benchmark.load(path)
    if name == "tantivy direct":
        index = TantivyIndex(Path(path) / "index" / "tantivy")  # no metadata columns: filters in the engine
    elif name == "bm25s":
        index = Bm25sIndex(bench, Path(path) / "peers" / "bm25s")
    elif name == "rank-bm25":
        index = bench.index("bm25")
    else:
        raise ValueError(f"unknown peer {name!r}")
    return bench.schema, Executor(index, cache_size=0)  # cache_size=0: no caching at any level


_PEER: dict = {}


def _init_peer(name: str, path: str) -> None:
    _PEER["state"] = _open_peer(name, path)


def _score_peer(item: tuple[str, list[int]]):
    schema, executor = _PEER["state"]
    return score_text(item[0], item[1], schema, executor, 20)


class _PeerScorer:
    """A peer run like BatchScorer: in this process, or a spawned pool that opens the engine per worker."""

    def __init__(self, name: str, path: Path, processes: int):
        self.processes, self._pool, self._local = processes, None, None
        if processes == 1:
            self._local = _open_peer(name, str(path))
        else:
            self._pool = mp.get_context("spawn").Pool(processes, initializer=_init_peer, initargs=(name, str(path)))

    def score(self, items):
        if self._local is not None:
            schema, executor = self._local
            return [score_text(t, r, schema, executor, 20) for t, r in items]
        return self._pool.map(_score_peer, items, chunksize=max(1, len(items) // (self.processes * 8)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.close()
            self._pool.join()


# ---- measuring ------------------------------------------------------------------------------------------

def _cpu_seconds(pool) -> float:
    """CPU time of this process plus the pool's worker processes (user + system, from /proc)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for proc in getattr(pool, "_pool", None) or []:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


def measure(name: str, path: Path, processes: int, items: list[tuple[str, list[int]]]) -> dict:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    scorer = BatchScorer(path, processes=processes, k=20) if name == "scorer" else _PeerScorer(name, path, processes)
    with scorer:
        scorer.score(items[: 4 * processes])  # warm-up: every worker opens the index
        startup = time.perf_counter() - t0
        pool = getattr(scorer, "_pool", None)
        t1, c1 = time.perf_counter(), _cpu_seconds(pool)
        results = scorer.score(items)
        elapsed, cpu = time.perf_counter() - t1, _cpu_seconds(pool) - c1
    n_searches = sum(r.n_searches for r in results)
    return {
        "engine": name, "processes": processes, "plans": len(items), "startup_s": round(startup, 2),
        "score_s": round(elapsed, 2), "plans_per_s": round(len(items) / elapsed, 1),
        "plans_per_cpu_s": round(len(items) / cpu, 1) if cpu > 0 else None,
        "searches_per_s": round(n_searches / elapsed, 1), "mean_searches": round(n_searches / len(items), 2),
        "valid": round(sum(r.valid for r in results) / len(results), 3),
        "mean_reward": round(statistics.fmean(r.reward for r in results), 4),
        "rewards": [r.reward for r in results],
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def search_latency(path: Path, items: list[tuple[str, list[int]]], max_searches: int) -> dict:
    """Per-search latency (ms) of the distinct filtered searches of the plans: fast path vs in-engine filter."""
    bench = Benchmark.load(path)
    searches = []
    for text, _ in items:
        try:
            searches += [(s.query, s.filter) for s in parse_plan(text, bench.schema).searches if s.filter is not None]
        except Exception:  # noqa: BLE001 - broken completions have no searches
            continue
    searches = list(dict.fromkeys(searches))[:max_searches]
    index_dir = Path(path) / "index" / "tantivy"
    # distinct searches and no window cache: the cold cost of one search
    fast = TantivyIndex(index_dir, meta=MetaColumns.from_parquet(Path(path) / "meta.parquet"), window_cache=0)
    plain = TantivyIndex(index_dir)
    out = {"n": len(searches), "loadavg": round(os.getloadavg()[0], 2)}
    for name, idx, flt in (("unfiltered", plain, False), ("filtered_in_engine", plain, True),
                           ("filtered_fast", fast, True)):
        lat, cpu = [], []
        for q, f in searches:
            t, c = time.perf_counter(), time.process_time()
            idx.search(q, f if flt else None, 100)
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        lat.sort()
        out[name] = {"p50_ms": round(statistics.median(lat), 3), "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 3),
                     "cpu_p50_ms": round(statistics.median(cpu), 3)}
    out["post_filtered_share"] = round(fast.post_filtered / max(1, fast.post_filtered + fast.pre_filtered), 3)
    return out


# ---- report ---------------------------------------------------------------------------------------------

def summary_line(size: int, runs: list[dict]) -> str:
    def best(engine: str) -> str:
        vals = [r["plans_per_s"] for r in runs if r.get("engine") == engine and r.get("plan_set") == "sampled"
                and "plans_per_s" in r]
        return f"{max(vals):,.1f}" if vals else "-"

    scorer = [r["plans_per_s"] for r in runs if r.get("engine") == "scorer" and r.get("plan_set") == "sampled"
              and r["processes"] == 2]
    x = f"{scorer[0]:,.1f}" if scorer else "-"
    return f"scoring {size} products: {x} plans/s (tantivy direct {best('tantivy direct')}, bm25s {best('bm25s')})"


def render(results: dict) -> str:
    lines = [f"Machine: {results['machine']}; load average at start {results['loadavg']}.",
             "Benchmark build time (from its stats.json): "
             + ", ".join(f"{int(k):,}: {v} s" for k, v in results.get("build_s", {}).items()) + ".", "",
             "| products | plans | engine | processes | n | plans/s (wall) | plans per CPU-s | searches/s "
             "| mean Recall@20 | load avg before/after |", "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for size, runs in results["sizes"].items():
        for r in runs:
            if "latency" in r:
                lat = r["latency"]
                notes.append(
                    f"- {int(size):,} products, {lat['n']} distinct filtered searches of the sampled plans, top-100, "
                    f"one process (load {lat['loadavg']}): p50/p95 ms (p50 CPU ms) "
                    + ", ".join(f"{label} {lat[key]['p50_ms']}/{lat[key]['p95_ms']} ({lat[key]['cpu_p50_ms']})"
                                for label, key in (("unfiltered", "unfiltered"),
                                                   ("filter in the engine", "filtered_in_engine"),
                                                   ("fast path", "filtered_fast")))
                    + f" ({lat['post_filtered_share']:.0%} post-filtered).")
                continue
            if "skipped" in r:
                lines.append(f"| {int(size):,} | {r['plan_set']} | {r['engine']} | {r['processes']} | - | skipped: "
                             f"{r['skipped']} | - | - | - | - |")
                continue
            lines.append(f"| {int(size):,} | {r['plan_set']} | {r['engine']} | {r['processes']} | {r['plans']} "
                         f"| {r['plans_per_s']:,} | {r['plans_per_cpu_s']:,} | {r['searches_per_s']:,} "
                         f"| {r['mean_reward']} | {r['loadavg'][0]}/{r['loadavg'][1]} |")
    summaries = [summary_line(int(s), runs) for s, runs in results["sizes"].items()]
    return "\n".join(lines + [""] + notes + [""] + summaries)


PLAN_SETS = ("sampled", "synthetic")


@dataclass
class ScoringArgs:
    """Scoring throughput: the reward scorer against direct tantivy, bm25s and rank-bm25."""

    sizes: list[int] = help_field("catalogue sizes (products)", default_factory=lambda: [20_000, 1_000_000])
    engines: list[str] = help_field(f"of {['scorer', *PEERS]}", default_factory=lambda: ["scorer", *PEERS])
    processes: list[int] = help_field("scorer processes per run", default_factory=lambda: [1, 2])
    plan_sets: list[str] = help_field(f"of {list(PLAN_SETS)}", default_factory=lambda: list(PLAN_SETS))
    plans: int = help_field("plans per run", default=4000)
    large: int = help_field("sizes above this use --large-plans plans", default=200_000)
    large_plans: int = help_field("plans per run above --large", default=2000)
    peer_plans: int = help_field("plans for tantivy direct and bm25s (a prefix)", default=1000)
    large_peer_plans: int = help_field("--peer-plans above --large", default=320)
    bm25_plans: int = help_field("plans for rank-bm25 (a prefix; it scores in Python)", default=200)
    bm25_max_size: int = help_field("skip rank-bm25 above this size: its in-memory index needs ~25 GB at 1M "
                                    "products", default=200_000)
    latency_searches: int = help_field("distinct filtered searches timed (0: skip)", default=400)
    data: str = help_field("benchmarks are built and cached here", default="data/bench")
    seed: int = help_field("plan sampling seed", default=0)
    out: str = help_field("JSON report", default="runs/bench/scoring.json")

    def __post_init__(self) -> None:
        for name, allowed in (("engines", ("scorer", *PEERS)), ("plan_sets", PLAN_SETS)):
            unknown = [v for v in getattr(self, name) if v not in allowed]
            if unknown:
                raise ConfigError(name, f"unknown {unknown}; choose from {list(allowed)}")
        for name in ("plans", "large_plans", "peer_plans", "large_peer_plans", "bm25_plans"):
            check_range(self, name, 1)
        check_range(self, "latency_searches", 0)


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_or_exit([ScoringArgs], argv, "scripts/bench_scoring.py")

    results = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores",
               "loadavg": [round(x, 2) for x in os.getloadavg()], "sizes": {}}
    for size in args.sizes:
        path = build_benchmark(Path(args.data) / f"synthetic-{size}", source="synthetic", size=size, seed=0)
        bench = Benchmark.load(path)
        n = args.large_plans if size > args.large else args.plans
        plan_sets = {"sampled": make_sampled_plans(bench, n, args.seed), "synthetic": make_plans(bench, n, args.seed)}
        runs: list[dict] = []
        for set_name in args.plan_sets:
            items = plan_sets[set_name]
            for engine in args.engines:
                if engine == "rank-bm25" and size > args.bm25_max_size:
                    runs.append({"plan_set": set_name, "engine": engine, "processes": 1,
                                 "skipped": "memory (in-memory index; raise --bm25-max-size)"})
                    continue
                peer_n = args.large_peer_plans if size > args.large else args.peer_plans
                sub = {"scorer": items, "rank-bm25": items[: args.bm25_plans]}.get(engine, items[:peer_n])
                for procs in [1] if engine == "rank-bm25" else args.processes:
                    r = measure(engine, path, procs, sub) | {"plan_set": set_name}
                    print(json.dumps({k: v for k, v in r.items() if k != "rewards"} | {"size": size}), flush=True)
                    runs.append(r)
            # the fast path is exact: the scorer and tantivy direct give the same rewards on the same plans
            for r in runs:
                if r.get("plan_set") == set_name and "rewards" in r and r["engine"] in ("scorer", "tantivy direct"):
                    ref = next(x for x in runs if x.get("plan_set") == set_name and x["engine"] == "scorer")
                    if r["rewards"] != ref["rewards"][: len(r["rewards"])]:
                        raise SystemExit(f"{r['engine']} ({r['processes']} processes) at {size}: rewards differ")
        if args.latency_searches and "sampled" in plan_sets:
            runs.append({"latency": search_latency(path, plan_sets["sampled"], args.latency_searches)})
            print(json.dumps(runs[-1] | {"size": size}), flush=True)
        for r in runs:
            r.pop("rewards", None)
        results["sizes"][size] = runs
        results.setdefault("build_s", {})[size] = json.loads((Path(path) / "stats.json").read_text()).get("build_seconds")
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(render(results))
    return results


if __name__ == "__main__":
    main()
