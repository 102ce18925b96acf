"""Generation throughput of the transformers backend: samples/s and output tokens/s, constrained vs not.

TAO's sampling stage is N samples per training prompt; on CPU it dominates a round's wall time, so
this measures exactly that call (`HFPlanner.sample`) on the benchmark's real prompts (system spec with
index schema + query), and also reports how many samples are valid JSON / valid plans, which is what
grammar-constrained decoding buys.

    python scripts/bench_generation.py --model models/smollm2-135m-instruct --out runs/bench/generation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ir_core.types import PlanRequest  # noqa: E402
from pipelines.backends.hf import TRUNCATED, HFPlanner  # noqa: E402
from pipelines.model import load_model  # noqa: E402


def benchmark_requests(bench_path: str | None, k: int) -> tuple[list[PlanRequest], object]:
    """k instructed training queries as chat requests, from `bench_path` or a 2k-product synthetic one."""
    from rewards.prompts import build_messages
    from stark_instruct.benchmark import Benchmark
    from stark_instruct.build import build_benchmark

    if bench_path and Path(bench_path, "manifest.json").is_file():
        bench = Benchmark.load(bench_path)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-gen-"))
        bench = Benchmark.load(build_benchmark(tmp / "bench", source="synthetic", size=2000, seed=0))
    rows = [q for q in bench.queries("train") if q["kind"] != "none"][:k]
    reqs = [PlanRequest(q["id"], build_messages(bench.schema, q["query"], q["instruction"])) for q in rows]
    return reqs, bench.schema


def measure(planner: HFPlanner, reqs: list[PlanRequest], n: int, schema: object, seed: int) -> dict:
    from rewards.parse import PlanError, parse_plan

    t0 = time.perf_counter()
    out = planner.sample(reqs, n=n, temperature=0.8, top_p=0.95, seed=seed)
    wall = time.perf_counter() - t0
    flat = [r for rs in out for r in rs]
    out_tokens = sum(r.usage.get("output_tokens", 0) for r in flat)
    in_tokens = sum(rs[0].usage.get("input_tokens", 0) for rs in out)
    json_ok = plan_ok = 0
    for r in flat:
        if r.text is None:
            continue
        try:
            json.loads(r.text)
            json_ok += 1
        except ValueError:
            pass
        try:
            parse_plan(r.text, schema)
            plan_ok += 1
        except PlanError:
            pass
    return {
        "constrained": planner.constrained, "prompts": len(reqs), "n": n, "samples": len(flat),
        "mean_prompt_tokens": round(in_tokens / max(1, len(reqs)), 1), "output_tokens": out_tokens,
        "wall_s": round(wall, 2), "samples_per_s": round(len(flat) / wall, 3),
        "output_tokens_per_s": round(out_tokens / wall, 2),
        "truncated": sum(r.error == TRUNCATED for r in flat),
        "valid_json": json_ok, "valid_plan": plan_ok,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--bench", default="data/benchmark/synthetic", help="benchmark dir (built small if missing)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per generate call")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="unconstrained,constrained")
    ap.add_argument("--out", default="runs/bench/generation.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from rewards.plan import plan_json_schema

    reqs, schema = benchmark_requests(args.bench, args.prompts)
    model, tok = load_model(args.model, device="cpu")
    load_before = os.getloadavg()
    rows = []
    for mode in args.modes.split(","):
        constrained = mode.strip() == "constrained"
        planner = HFPlanner(args.model, model=model, tokenizer=tok, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, constrained=constrained,
                            json_schema=plan_json_schema(schema) if constrained else None)
        planner.sample(reqs[:1], n=1, temperature=0.8, top_p=0.95, seed=args.seed)  # warm-up
        row = measure(planner, reqs, args.n, schema, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)

    result = {
        "model": args.model, "device": "cpu", "dtype": str(model.dtype).removeprefix("torch."),
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "temperature": 0.8, "top_p": 0.95,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "torch": version("torch"), "transformers": version("transformers"), "llguidance": version("llguidance"),
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)

    cols = ["constrained", "samples", "wall_s", "samples_per_s", "output_tokens_per_s", "truncated",
            "valid_json", "valid_plan"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\n{result['model']} on {result['cpu_count']} CPUs, {result['torch_threads']} torch threads, "
          f"load average {result['loadavg_1m_before']} -> {result['loadavg_1m_after']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
