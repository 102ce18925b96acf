"""A TAO round's own sampling stage, timed under engine variants: plans/min on a finished run's prompts.

Why: `scripts/bench_generation.py` times the sampler on the config's first-round prompts with the base
model; what a demo round actually samples is a trained, distilled policy on request-only prompts with
fuller plans, through `pipelines.sample.sample_stage` (calls of `sample_batch_size` prompts, written as
they finish). This replays exactly that call for one round of a run (its prompts, its starting policy,
its decoding spec) with the variants below, one engine each, and prints plans/min beside the load average.

    python scripts/bench_round_sampling.py --run_dir runs/tao-demo --round 2 --prompts 256 \
        --variants calls-128 calls-256 seqs-512 xgrammar ngram-4
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import ConfigError, check_range, comma_list, help_field, parse_or_exit  # noqa: E402

# name -> (prompts per sample_stage call, VLLMPlanner keywords); None: the run's sample_batch_size
VARIANTS: dict[str, tuple[int | None, dict[str, Any]]] = {
    "run": (None, {}),
    "calls-128": (128, {}),
    "calls-256": (256, {}),
    "seqs-512": (256, {"max_num_seqs": 512}),  # vLLM-CPU's default batch is 256 sequences
    "xgrammar": (256, {"structured_backend": "xgrammar"}),  # instead of llguidance
    # vLLM's prompt-lookup speculation; it refuses custom logits processors, so vLLM's own top-p
    "ngram-4": (256, {"sparse_top_p": False, "speculative_config": {
        "method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}}),
}


@dataclasses.dataclass
class RoundSamplingArgs:
    """A TAO round's own sampling stage, timed under engine variants."""

    run_dir: str = help_field("a TAO run directory (config.json, plan_schema.json, round-NN/)")
    round: int = help_field("the round whose prompts and starting policy to sample", default=2)
    prompts: int = help_field("the round's first N prompts", default=256)
    variants: list[str] = help_field(f"variants, of {sorted(VARIANTS)}", default_factory=lambda: ["run"])
    out: str = help_field("JSON report", default="runs/bench/round-sampling.json")

    def __post_init__(self) -> None:
        self.variants = comma_list(self.variants)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if not self.variants or unknown:
            raise ConfigError("variants", f"unknown {unknown}; choose from {sorted(VARIANTS)}")
        check_range(self, "round", 1)
        check_range(self, "prompts", 1)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([RoundSamplingArgs], argv, "scripts/bench_round_sampling.py", config_file=False)
    from ir_core.io import read_json, read_jsonl
    from ir_core.types import Policy
    from pipelines.backends import make_planner, release
    from pipelines.policy_spec import policy_spec
    from pipelines.round_prompts import PROMPTS
    from pipelines.sample import sample_stage
    from pipelines.tao_config import TaoSetup

    run = Path(args.run_dir)
    setup = TaoSetup.from_dict(read_json(run / "config.json"))
    cfg, rd = setup.tao, run / f"round-{args.round:02d}"
    prompts = read_jsonl(rd / PROMPTS)[:args.prompts]
    spec = policy_spec(cfg, Policy.from_dict(read_json(rd / "policy.json")), read_json(run / "plan_schema.json"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            calls, options = VARIANTS[name]
            per_call = calls or cfg.sample_batch_size
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            planner = make_planner(dataclasses.replace(spec, options={**spec.options, **options}))
            t1 = time.perf_counter()
            out = Path(tmp) / f"{name}.jsonl"
            try:
                sample_stage(planner, prompts, out, cfg.n, cfg.temperature, cfg.top_p, setup.training.seed + args.round,
                             batch_size=per_call, progress=False)
            finally:
                t2 = time.perf_counter()
                release(planner)
            plans = read_jsonl(out)
            tokens = sum((p.get("usage") or {}).get("output_tokens", 0) for p in plans)
            row = {"variant": name, "prompts_per_call": per_call, "plans": len(plans),
                   "engine_start_s": round(t1 - t0, 1), "sample_s": round(t2 - t1, 1),
                   "plans_per_min": round(len(plans) / (t2 - t1) * 60), "output_tokens_per_plan":
                   round(tokens / max(1, len(plans)), 1), "output_tok_per_s": round(tokens / (t2 - t1), 1),
                   "load_1m_before": round(load, 2), "load_1m_after": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"run_dir": str(run), "round": args.round, "n": cfg.n,
                                          "cpu_count": os.cpu_count(), "results": rows}, indent=2) + "\n")
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"{run} round {args.round}: {len(prompts)} prompts x {cfg.n}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
