"""Serving benchmark: latency and throughput of POST /search at concurrency 1 and 8 (`make bench-serve`).

For each backend (vLLM's async engine, transformers with the micro-batcher) it starts the real service
(uvicorn, in this process) over the benchmark with the planner `make serve` would choose, sends the
test split's instructed queries through HTTP and records client-side latency (p50/p95), requests/s,
and the server's own planner and search times per request. The machine is shared: the load average
is recorded before and after every run, and `make bench-serve` runs it under `nice`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_server(app) -> tuple[object, str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


async def load_test(url: str, items: list[dict], concurrency: int, k: int) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    rows: list[dict] = []

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(item: dict) -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await client.post("/search", json={**item, "k": k})
                latency = time.perf_counter() - t0
            r.raise_for_status()
            body = r.json()
            rows.append({"latency_s": latency, "plan_s": body["timings"]["plan_s"],
                         "search_s": body["timings"]["search_s"], "error": (body["error"] or {}).get("code"),
                         "filtered": bool(body["filter_fields"]),
                         "output_tokens": body["usage"].get("output_tokens")})

        t0 = time.perf_counter()
        await asyncio.gather(*[one(it) for it in items])
        wall = time.perf_counter() - t0
    lat = [r["latency_s"] for r in rows]
    return {
        "concurrency": concurrency, "requests": len(rows), "wall_s": round(wall, 3),
        "requests_per_s": round(len(rows) / wall, 3),
        "latency_p50_s": round(percentile(lat, 0.5), 3), "latency_p95_s": round(percentile(lat, 0.95), 3),
        "plan_p50_s": round(percentile([r["plan_s"] for r in rows], 0.5), 3),
        "search_p50_ms": round(1000 * percentile([r["search_s"] for r in rows], 0.5), 3),
        "search_mean_ms": round(1000 * statistics.mean(r["search_s"] for r in rows), 3),
        "valid_plans": sum(r["error"] is None for r in rows),
        "plans_with_filter": sum(r["filtered"] for r in rows),
        "errors": sorted({r["error"] for r in rows if r["error"]}),
        "mean_output_tokens": round(statistics.mean(r["output_tokens"] or 0 for r in rows), 1),
    }


def bench_backend(args: argparse.Namespace, backend: str, items: list[dict]) -> dict:
    from serve.api import Retriever
    from serve.app import create_app

    t0 = time.perf_counter()
    kwargs = {"batch_size": 8} if backend == "hf" else {}
    retriever = Retriever.load(args.bench, backend, args.model, args.runs_dir, **kwargs)
    load_s = time.perf_counter() - t0
    server, url = start_server(create_app(retriever, timeout_s=600))
    out = {"backend": backend, "planner": retriever.name, "policy": retriever.policy.describe(),
           "load_s": round(load_s, 1), "runs": []}
    try:
        # warm-up on two queries the runs do not use: first-call allocations, the shared prompt prefix
        asyncio.run(load_test(url, items[:2], 1, args.k))
        for concurrency, n in ((1, args.requests_c1), (8, args.requests)):
            before = loadavg()
            run = asyncio.run(load_test(url, items[2:2 + n], concurrency, args.k))
            run.update(loadavg_before=before, loadavg_after=loadavg())
            out["runs"].append(run)
            print(json.dumps({"backend": backend, **run}), flush=True)
    finally:
        server.should_exit = True
        retriever.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bench", default="data/benchmark/synthetic")
    p.add_argument("--backends", nargs="+", default=["vllm", "hf"], choices=["vllm", "hf"])
    p.add_argument("--model", default=None, help="checkpoint (default: what `make serve` picks)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--requests", type=int, default=128, help="requests at concurrency 8 (fewer end before the engine is warm)")
    p.add_argument("--requests-c1", type=int, default=32, help="requests at concurrency 1")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--torch-threads", type=int, default=1, help="transformers threads (1 was fastest here)")
    p.add_argument("--out", default="runs/bench/serve.json")
    args = p.parse_args()
    if args.requests < 8 or args.requests_c1 < 1:
        p.error("--requests must be >= 8 and --requests-c1 >= 1")

    import torch

    from stark_instruct.benchmark import Benchmark

    torch.set_num_threads(args.torch_threads)
    bench = Benchmark.load(args.bench)
    rows = [r for r in bench.queries("test") if r["kind"] != "none"]
    need = max(args.requests, args.requests_c1) + 2
    if len(rows) < need:
        raise SystemExit(f"{args.bench}: {len(rows)} instructed test queries, need {need}")
    items = [{"query": r["query"], "instructions": r["instruction"]} for r in rows[:need]]
    report = {
        "benchmark": str(args.bench), "products": len(bench), "cpus": os.cpu_count(),
        "torch_threads": args.torch_threads, "nice": os.nice(0), "k": args.k,
        "backends": [bench_backend(args, b, items) for b in args.backends],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
