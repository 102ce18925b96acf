"""Training throughput of the TAO SFT step: tokens/s for SmolLM2-135M + LoRA on real planner prompts.

Runs each `--setups` entry (dtype:torch threads; default float32 with 1 thread, what the demo trains
with, against bf16 autocast with 2 threads) in one process, one after the other, and prints them side
by side.

Rows are real prompts from `rewards.prompts` (schema + examples + instruction) with a plan completion
(the oracle plan of each query), so sequence lengths match a TAO round. Writes a JSON report.

    .venv/bin/python scripts/bench_training.py --model models/smollm2-135m-instruct --out runs/bench/training.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import TrainerCallback  # noqa: E402

from ir_core.io import atomic_write_json, write_jsonl  # noqa: E402
from pipelines.stages import build_prompts  # noqa: E402
from pipelines.train import train, train_setup  # noqa: E402


def oracle_plan(row: dict) -> str:
    """The plan the benchmark's own constraint implies: the query, filtered by the exact constraint."""
    c = row.get("constraint")
    flt = {"field": c["field"], "op": c["op"], "value": c["value"]} if c else None
    return json.dumps({"searches": [{"query": row["query"], "filter": flt}]})


def _machine() -> dict:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "load_avg_1m": os.getloadavg()[0],
        "torch": torch.__version__,
    }


class _PartialReport(TrainerCallback):
    """Write what is measured so far after every logged step, so a killed benchmark still leaves data."""

    def __init__(self, out: str, base: dict):
        self.out, self.base, self.steps = out, base, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.steps.append({k: logs.get(k) for k in ("loss", "num_input_tokens_seen", "train_runtime")})
            atomic_write_json(
                self.out,
                {
                    **self.base,
                    "partial": True,
                    "steps_logged": self.steps,
                    "load_avg_1m_now": os.getloadavg()[0],
                },
            )


def parse_setups(text: str) -> list[tuple[str, int]]:
    """`float32:1,bfloat16:2` -> [(dtype, torch threads), ...]."""
    setups = []
    for item in text.split(","):
        dtype, _, threads = item.strip().partition(":")
        if dtype not in ("float32", "bfloat16") or not threads.isdigit() or int(threads) < 1:
            raise SystemExit(f"--setups: {item!r} is not DTYPE:THREADS (DTYPE float32 or bfloat16, THREADS >= 1)")
        setups.append((dtype, int(threads)))
    return setups


def run_setup(dtype: str, threads: int, args: argparse.Namespace, rows: list[dict], out: str) -> dict:
    """One timed SFT run. bfloat16 loads the frozen base in bf16 and trains under bf16 autocast; PEFT keeps
    the LoRA weights (the only trained ones) in float32 (`autocast_adapter_dtype`), so updates are fp32."""
    import torch

    torch.set_num_threads(threads)
    base = {
        "what": "SFT (completion-only loss) with LoRA on all linear layers, real TAO prompts",
        "model": args.model, "dtype": dtype, "torch_threads": threads, "rows": len(rows),
        "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "gradient_checkpointing": args.gradient_checkpointing, "lora_r": args.lora_r, "machine": _machine(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(Path(tmp) / "sft.jsonl", rows)
        setup = train_setup({
            "model_name_or_path": args.model, "data_path": str(data), "output_dir": str(Path(tmp) / "out"),
            "objective": "sft", "lora_r": args.lora_r, "lora_alpha": 2 * args.lora_r, "max_steps": args.steps,
            "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": args.grad_accum,
            "gradient_checkpointing": args.gradient_checkpointing, "dtype": dtype, "bf16": dtype == "bfloat16",
            "report_to": "none", "save_adapter": False, "logging_steps": 1,
        })
        m = train(*setup, callbacks=[_PartialReport(f"{out}.{dtype}-{threads}.partial", base)])
    return {
        **base,
        "steps": m["steps"], "tokens": m["tokens"], "runtime_s": m["runtime_s"], "tokens_per_s": m["tokens_per_s"],
        "tokens_per_row": round(m["tokens"] / (m["steps"] * args.batch_size * args.grad_accum), 1),
        "first_loss": m["first_loss"], "last_loss": m["last_loss"], "train_loss": m["train_loss"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m_end": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--benchmark", default="data/benchmark/synthetic")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--setups", default="float32:1,bfloat16:2",
                    help="DTYPE:THREADS runs, side by side (float32 = what train.py does on CPU by default)")
    ap.add_argument("--out", default="runs/bench/training.json")
    args = ap.parse_args(argv)
    setups = parse_setups(args.setups)

    from stark_instruct.benchmark import Benchmark

    bench = Benchmark.load(args.benchmark)
    queries = {q["id"]: q for q in bench.queries("train")}
    prompts = build_prompts(bench, "train", args.rows, seed=0)
    rows = [
        {
            "prompt": p["messages"],
            "completion": [{"role": "assistant", "content": oracle_plan(queries[p["prompt_id"]])}],
        }
        for p in prompts
    ]
    results = []
    for dtype, threads in setups:
        results.append(run_setup(dtype, threads, args, rows, args.out))
        atomic_write_json(args.out, {"partial": True, "results": results})
    atomic_write_json(args.out, {"results": results})
    cols = ["dtype", "torch_threads", "steps", "tokens", "runtime_s", "tokens_per_s", "first_loss", "last_loss",
            "peak_rss_mb", "load_avg_1m_end"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"load average at start {results[0]['machine']['load_avg_1m']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
