"""Serving benchmark: latency and throughput of POST /search at concurrency 1 and 8 (`make bench-serve`).

For each backend (vLLM's async engine, transformers with the micro-batcher) it starts the real service
(uvicorn, in this process) over the benchmark with the planner `make serve` would choose, sends the
test split's instructed queries through HTTP and records client-side latency (p50/p95), requests/s,
and the server's own planner and search times per request. The machine is shared: the load average
is recorded before and after every run, and `make bench-serve` runs it under `nice`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import ConfigError, check_range, help_field, parse_or_exit  # noqa: E402


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


def bench_backend(args: ServeBenchArgs, backend: str, items: list[dict]) -> dict:
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


@dataclass
class ServeBenchArgs:
    """Load test of the HTTP service per planner backend: latency and throughput at concurrency 1 and 8."""

    bench: str = help_field("benchmark folder", default="data/benchmark/synthetic")
    backends: list[str] = help_field("of vllm, hf", default_factory=lambda: ["vllm", "hf"])
    model: str | None = help_field("checkpoint (default: what `make serve` picks)", default=None)
    runs_dir: str = help_field("where `make serve` looks for TAO runs", default="runs")
    requests: int = help_field("requests at concurrency 8 (fewer end before the engine is warm)", default=128)
    requests_c1: int = help_field("requests at concurrency 1", default=32)
    k: int = help_field("results per request", default=20)
    torch_threads: int = help_field("transformers threads (1 was fastest here)", default=1)
    out: str = help_field("JSON report", default="runs/bench/serve.json")

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in ("vllm", "hf")]
        if unknown:
            raise ConfigError("backends", f"unknown {unknown}; choose from vllm, hf")
        check_range(self, "requests", 8)
        for name in ("requests_c1", "k", "torch_threads"):
            check_range(self, name, 1)


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([ServeBenchArgs], argv, "scripts/bench_serve.py")

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
