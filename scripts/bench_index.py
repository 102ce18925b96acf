"""Index benchmark: catalogue + index build time and peak memory, query latency and throughput,
tantivy vs rank-bm25, at several synthetic catalogue sizes. `make bench-index` runs it.

Each build runs in a child process so its peak RSS is measured alone; rank-bm25 is measured on a
sample of queries at large sizes (it scores in Python and would take hours on all of them).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ir_core.config import check_range, help_field, parse_or_exit  # noqa: E402


def _child(code: str) -> dict:
    """Run Python code in a child process; it prints one JSON line; report its peak RSS too."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = round(max(peak_kb, before) / 1e6, 2) if peak_kb > before else None
    return result


def build(size: int, out: Path) -> dict:
    code = f"""
import json, time
from stark_instruct.build import build_benchmark
t = time.time()
build_benchmark({str(out)!r}, size={size}, seed=0, force=True)
print(json.dumps({{"build_s": round(time.time() - t, 1)}}))
"""
    return _child(code)


def _latencies(index, queries: list[tuple[str, object]], k: int) -> dict:
    lat = []
    t0 = time.perf_counter()
    for q, f in queries:
        t = time.perf_counter()
        index.search(q, f, k)
        lat.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - t0
    lat.sort()
    return {"n": len(lat), "p50_ms": round(statistics.median(lat), 3),
            "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 3), "qps": round(len(lat) / total, 1)}


def measure_queries(bench_path: Path, engine: str, sample: int | None, k: int = 100) -> dict:
    """Latency per query; for tantivy also with the filter always inside the engine (no fast path)."""
    code = f"""
import json, time
from stark_instruct.benchmark import Benchmark
from stark_instruct.index import TantivyIndex
from stark_instruct.instructions import constraint_filter
import scripts.bench_index as b
bench = Benchmark.load({str(bench_path)!r})
rows = [r for r in bench.queries("test") + bench.queries("dev") if r["constraint"]]
if {sample!r}:
    rows = rows[: {sample!r}]
t = time.time(); index = bench.index({engine!r}); open_s = time.time() - t
plain = [(r["query"], None) for r in rows]
filtered = [(r["query"], constraint_filter(r["constraint"])) for r in rows]
b._latencies(index, plain[:5], {k})  # warm-up
out = {{"engine": {engine!r}, "open_s": round(open_s, 1), "unfiltered": b._latencies(index, plain, {k}),
        "filtered": b._latencies(index, filtered, {k})}}
if {engine!r} == "tantivy":
    out["filtered_in_engine"] = b._latencies(TantivyIndex(index.path), filtered, {k})
    out["post_filtered"] = index.post_filtered
print(json.dumps(out))
"""
    return _child(code)


@dataclass
class BenchIndexArgs:
    """Index benchmark: build time, peak memory, query latency and throughput, tantivy vs rank-bm25."""

    sizes: list[int] = help_field("catalogue sizes (products)", default_factory=lambda: [100_000, 1_000_000])
    bm25_sample: int = help_field("queries for rank-bm25 above 200k products (0: skip rank-bm25)", default=20)
    reuse: bool = help_field("measure an existing build under --data (build time from its stats.json) instead of "
                             "rebuilding", default=False)
    data: str = help_field("where the benchmarks are (re)built", default="data/bench-index")
    out: str = help_field("JSON report", default="runs/bench/index.json")

    def __post_init__(self) -> None:
        check_range(self, "bm25_sample", 0)


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([BenchIndexArgs], argv, "scripts/bench_index.py")
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "loadavg_at_start": os.getloadavg(), "sizes": {}}
    for size in args.sizes:
        path = Path(args.data) / f"synthetic-{size}"
        if args.reuse and (path / "stats.json").exists():
            stats = json.loads((path / "stats.json").read_text())
            r = {"build": {"build_s": stats["build_seconds"], "peak_rss_gb": None, "reused": True}}
        else:
            r = {"build": build(size, path)}
        r["loadavg_before_queries"] = os.getloadavg()
        r["tantivy"] = measure_queries(path, "tantivy", None)
        if args.bm25_sample:
            r["bm25"] = measure_queries(path, "bm25", args.bm25_sample if size > 200_000 else None)
            r["speedup_qps_filtered"] = round(r["tantivy"]["filtered"]["qps"] / r["bm25"]["filtered"]["qps"], 1)
            r["speedup_qps_unfiltered"] = round(r["tantivy"]["unfiltered"]["qps"] / r["bm25"]["unfiltered"]["qps"], 1)
        r["loadavg_after"] = os.getloadavg()
        results["sizes"][size] = r
        print(json.dumps({size: r}, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(render(results))


def render(results: dict) -> str:
    lines = ["| products | build s | build peak GB | engine | unfiltered p50/p95 ms | filtered p50/p95 ms | "
             "queries/s (filtered) | tantivy speed-up |", "|---|---|---|---|---|---|---|---|"]
    for size, r in results["sizes"].items():
        for eng in [e for e in ("tantivy", "bm25") if e in r]:
            e = r[eng]
            lines.append(
                f"| {int(size):,} | {r['build']['build_s']} | {r['build']['peak_rss_gb']} | {eng} "
                f"(n={e['filtered']['n']}) | {e['unfiltered']['p50_ms']}/{e['unfiltered']['p95_ms']} | "
                f"{e['filtered']['p50_ms']}/{e['filtered']['p95_ms']} | {e['filtered']['qps']} | "
                f"{r['speedup_qps_filtered'] if eng == 'bm25' else ''} |")
            if "filtered_in_engine" in e:
                f = e["filtered_in_engine"]
                lines.append(f"| {int(size):,} | | | tantivy, filter in the engine (n={f['n']}) | | "
                             f"{f['p50_ms']}/{f['p95_ms']} | {f['qps']} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
