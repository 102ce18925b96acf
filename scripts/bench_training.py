"""Training throughput of the TAO SFT step, side by side: tokens/s and row-epochs/min per training variant.

Every variant trains the same rows for the same number of optimizer steps through `pipelines.train.train`
(TRL SFTTrainer, completion-only loss) and differs from the baseline in one setting, so each row of the
table is the effect of that one change. The baseline is what `make demo` trained with before issue 21
(fp32 weights under bf16 autocast, LoRA r=16 on every linear layer with dropout 0.05, batch 4, 2 threads,
TRL's CPU LM head over every position); `fast` is the combination that became the default, and the
`request-*` rows train the distilled request-only prompt (`rewards.prompts` mode "request") instead of
the demo's compact spec.

Rows are the demo's own prompts (configs/tao/demo.yaml: mode compact, no examples; or mode request) with
the oracle plan of each query as the completion, so sequence lengths match a demo round. A row-epoch is one
row trained once: row-epochs/min = rows x steps x batch / minutes. Prints the machine and load average
and writes a JSON report.

    .venv/bin/python scripts/bench_training.py --variants today,fast,request-fast --steps 4
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import ConfigError, check_range, comma_list, help_field, parse_or_exit  # noqa: E402
from ir_core.io import atomic_write_json, write_jsonl  # noqa: E402
from pipelines.round_prompts import build_prompts  # noqa: E402
from pipelines.train import train, train_setup  # noqa: E402

# What the demo trained with before issue 21 (the baseline every variant changes one thing of).
TODAY: dict[str, Any] = {
    "use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "dtype": "float32", "bf16": True,
    "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "score_all_positions": True,
}
# The winners (pipelines.train defaults since issue 21): bf16 weights, no LoRA dropout, the LM head only
# where there is a label.
FAST: dict[str, Any] = {**TODAY, "lora_dropout": 0.0, "dtype": "bfloat16", "score_all_positions": False}
# name -> (settings, torch threads, prompt mode)
VARIANTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "today": (TODAY, 2, "compact"),
    "threads-1": (TODAY, 1, "compact"),
    "full-ft": ({**TODAY, "use_peft": False}, 2, "compact"),
    "fp32": ({**TODAY, "bf16": False}, 2, "compact"),
    "bf16-weights": ({**TODAY, "dtype": "bfloat16"}, 2, "compact"),
    "no-dropout": ({**TODAY, "lora_dropout": 0.0}, 2, "compact"),
    "label-head": ({**TODAY, "score_all_positions": False}, 2, "compact"),
    "padding-free": ({**TODAY, "padding_free": True}, 2, "compact"),
    "batch-8": ({**TODAY, "per_device_train_batch_size": 8}, 2, "compact"),
    "batch-2x2": ({**TODAY, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}, 2, "compact"),
    "compile": ({**TODAY, "torch_compile": True}, 2, "compact"),
    "fast": (FAST, 2, "compact"),
    "fast-full-ft": ({**FAST, "use_peft": False}, 2, "compact"),
    "fast-batch-8": ({**FAST, "per_device_train_batch_size": 8}, 2, "compact"),
    "request-today": (TODAY, 2, "request"),
    "request-fast": (FAST, 2, "request"),
    "request-fast-batch-8": ({**FAST, "per_device_train_batch_size": 8}, 2, "request"),
}


def oracle_plan(row: dict) -> str:
    """The plan the benchmark's own constraint implies, in the demo's shape (filter first, one search)."""
    c = row.get("constraint")
    flt = {"field": c["field"], "op": c["op"], "value": c["value"]} if c else None
    return json.dumps({"searches": [{"filter": flt, "query": row["query"]}]})


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "cuda": torch.cuda.is_available(), "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}


def demo_rows(benchmark: str, n: int, mode: str) -> list[dict]:
    """TRL conversational rows of the demo's prompts (compact spec or request-only), oracle plans."""
    from stark_instruct.benchmark import Benchmark

    bench = Benchmark.load(benchmark)
    queries = {q["id"]: q for q in bench.queries("train")}
    return [{"prompt": p["messages"],
             "completion": [{"role": "assistant", "content": oracle_plan(queries[p["prompt_id"]])}]}
            for p in build_prompts(bench, "train", n, seed=0, mode=mode, examples=[])]


def run_variant(name: str, args: TrainingBenchArgs, rows: list[dict]) -> dict:
    """One timed SFT run of a variant: its settings on the shared rows, `args.steps` optimizer steps."""
    import torch

    settings, threads, mode = VARIANTS[name]
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(Path(tmp) / "sft.jsonl", rows)
        setup = train_setup({
            "model_name_or_path": args.model, "data_path": str(data), "output_dir": str(Path(tmp) / "out"),
            "objective": "sft", "max_steps": args.steps, "report_to": "none", "save_adapter": False,
            "logging_steps": 1, "learning_rate": 1e-3, "disable_tqdm": True, **settings,
        })
        t0 = time.perf_counter()
        m = train(*setup)
        wall = time.perf_counter() - t0
    rows_trained = m["steps"] * settings["per_device_train_batch_size"] * settings["gradient_accumulation_steps"]
    return {
        "variant": name, "prompt_mode": mode, "torch_threads": threads, "settings": settings,
        "steps": m["steps"], "rows": rows_trained, "tokens": m["tokens"], "tokens_per_row": round(m["tokens"] / rows_trained),
        "runtime_s": m["runtime_s"], "tokens_per_s": m["tokens_per_s"],
        "row_epochs_per_min": round(rows_trained / m["runtime_s"] * 60, 1),
        "wall_s_with_load": round(wall, 1), "first_loss": m["first_loss"], "last_loss": m["last_loss"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
    }


@dataclass
class TrainingBenchArgs:
    """Training throughput of the TAO SFT step, side by side per training variant."""

    model: str = help_field("base model", default="models/smollm2-135m-instruct")
    benchmark: str = help_field("benchmark folder (the rows' prompts)", default="data/benchmark/synthetic")
    steps: int = help_field("optimizer steps per variant (after TRL's set-up)", default=4)
    variants: list[str] = help_field(f"from: {', '.join(VARIANTS)}",
                                     default_factory=lambda: ["today", "fast", "request-today", "request-fast"])
    out: str = help_field("JSON report", default="runs/bench/training.json")

    def __post_init__(self) -> None:
        self.variants = comma_list(self.variants)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError("variants", f"unknown {unknown}; choose from {', '.join(VARIANTS)}")
        check_range(self, "steps", 1)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([TrainingBenchArgs], argv, "scripts/bench_training.py")
    names = args.variants
    most = max(VARIANTS[v][0]["per_device_train_batch_size"] * VARIANTS[v][0]["gradient_accumulation_steps"]
               for v in names) * args.steps
    rows = {mode: demo_rows(args.benchmark, most, mode) for mode in {VARIANTS[v][2] for v in names}}
    report: dict[str, Any] = {"machine": machine(), "model": args.model, "benchmark": args.benchmark,
                              "steps": args.steps, "results": []}
    for name in names:
        report["results"].append(run_variant(name, args, rows[VARIANTS[name][2]]))
        atomic_write_json(args.out, {**report, "partial": True})
        print(json.dumps({k: report["results"][-1][k] for k in ("variant", "tokens_per_s", "row_epochs_per_min")}),
              flush=True)
    atomic_write_json(args.out, report)
    cols = ["variant", "prompt_mode", "torch_threads", "steps", "rows", "tokens_per_row", "runtime_s", "tokens_per_s",
            "row_epochs_per_min", "first_loss", "last_loss", "peak_rss_mb", "load_avg_1m_before", "load_avg_1m_after"]
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} CPUs, torch "
          f"{report['machine']['torch']}; model {args.model}; load average at start {report['machine']['load_avg_1m']}")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in report["results"]:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
