"""How good are a policy's samples compared with its greedy plan, per sampling temperature?

Best-of-n fine-tuning only helps when the best of n samples beats what the policy already does
greedily; a small model sampled too hot writes plans worse than its greedy one, and training on them
makes it worse. This measures, on training prompts, the greedy reward and, per temperature, the mean
sample reward, the mean best-of-n reward and the share of prompts whose best sample beats greedy.

    .venv/bin/python scripts/bench_sampling_reward.py --config configs/tao/demo.yaml \
        --temperatures 0.3 0.6 0.9 --prompts 16 --out runs/bench/sampling_reward.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ir_core.config import check_range, help_field, parse_or_exit  # noqa: E402


@dataclass
class SamplingRewardArgs:
    """A policy's samples against its greedy plan, per sampling temperature."""

    config: str = help_field("TAO config (model, bounds, n, seed)", default="configs/tao/demo.yaml")
    adapter: str | None = help_field("LoRA adapter of a trained round (default: the base model)", default=None)
    temperatures: list[float] = help_field("sampling temperatures", default_factory=lambda: [0.3, 0.6, 0.9])
    prompts: int = help_field("training prompts (the tao stage's seeded subset)", default=16)
    out: str = help_field("JSON report", default="runs/bench/sampling_reward.json")

    def __post_init__(self) -> None:
        check_range(self, "prompts", 1)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([SamplingRewardArgs], argv, "scripts/bench_sampling_reward.py", config_file=False)

    import torch

    from ir_core.types import PlanRequest, Policy
    from pipelines.backends import make_planner
    from pipelines.policy_spec import policy_spec
    from pipelines.round_prompts import build_prompts
    from pipelines.score import make_scorer
    from pipelines.tao_config import decoding_schema, parse_tao
    from stark_instruct.benchmark import Benchmark

    setup, _ = parse_tao(["--config", args.config])
    cfg, seed, model = setup.tao, setup.training.seed, setup.model.model_name_or_path
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    bench = Benchmark.load(cfg.benchmark)
    prompts = build_prompts(bench, "train", args.prompts, seed=seed, mode=cfg.mode)
    requests = [PlanRequest(p["prompt_id"], p["messages"]) for p in prompts]
    score = make_scorer(bench, cfg.engine, cfg.k)
    planner = make_planner(policy_spec(cfg, Policy(model, args.adapter), decoding_schema(cfg, bench)))

    def rewards(responses: list) -> list[float]:
        return [score(r.text, p)["reward"] for r, p in zip(responses, prompts, strict=True)]

    start = time.time()
    greedy = rewards(planner.plan(requests))
    result = {"config": args.config, "model": model, "adapter": args.adapter, "prompts": len(prompts),
              "n": cfg.n, "torch_threads": torch.get_num_threads(), "loadavg_1m": os.getloadavg()[0],
              "greedy_mean_reward": statistics.fmean(greedy), "greedy_s": round(time.time() - start, 1),
              "temperatures": []}
    for t in args.temperatures:
        start = time.time()
        samples = planner.sample(requests, n=cfg.n, temperature=t, top_p=cfg.top_p, seed=seed)
        per_prompt = [rewards(list(col)) for col in zip(*samples, strict=True)]  # n lists over prompts
        by_prompt = list(zip(*per_prompt, strict=True))
        best = [max(r) for r in by_prompt]
        row = {"temperature": t, "mean_reward": statistics.fmean(x for r in by_prompt for x in r),
               "best_of_n_reward": statistics.fmean(best),
               "best_beats_greedy": statistics.fmean(b > g for b, g in zip(best, greedy, strict=True)),
               "all_tied": statistics.fmean(len(set(r)) == 1 for r in by_prompt),
               "seconds": round(time.time() - start, 1)}
        result["temperatures"].append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "temperatures"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
