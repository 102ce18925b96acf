"""Greedy evaluation throughput: the TAO round's dev + test evaluation of one checkpoint, timed per part.

Runs what `pipelines.policy_eval.evaluate_split` runs for a round (one engine for both splits, the config's
backend, decoding schema, batch size and prompts) on a checkpoint, in the prompt mode it was trained on
(`--prompt-mode request` for a distilled policy), and prints the engine start, each split's wall time,
plans/s and dev/test R@k, with the machine and load average. Writes a JSON report.

    .venv/bin/python scripts/bench_eval.py --config configs/tao/demo.yaml --out runs/bench/eval.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import check_range, comma_list, help_field, parse_or_exit  # noqa: E402
from ir_core.io import atomic_write_json  # noqa: E402
from ir_core.types import Policy  # noqa: E402
from pipelines.backends import ReusedPlanners, make_planner  # noqa: E402
from pipelines.policy_eval import evaluate_policy  # noqa: E402
from pipelines.policy_spec import policy_mode, policy_spec  # noqa: E402
from pipelines.tao_config import decoding_schema, parse_tao  # noqa: E402
from scripts.bench_training import machine  # noqa: E402


@dataclass
class BenchEvalArgs:
    """Time a TAO round's greedy dev + test evaluation of one checkpoint."""

    config: str = help_field("TAO config (backend, decoding, prompts)", default="configs/tao/demo.yaml")
    model: str | None = help_field("checkpoint (default: the config's model)", default=None)
    prompt_mode: str | None = help_field("the prompt mode the checkpoint was trained on", default=None)
    splits: list[str] = help_field("splits to evaluate", default_factory=lambda: ["dev", "test"])
    limit: int | None = help_field("queries per split (default: all)", default=None)
    out: str = help_field("JSON report", default="runs/bench/eval.json")

    def __post_init__(self) -> None:
        self.splits = comma_list(self.splits)
        check_range(self, "limit", 1, optional=True)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([BenchEvalArgs], argv, "scripts/bench_eval.py", config_file=False)
    from stark_instruct.benchmark import Benchmark

    setup, _ = parse_tao(["--config", args.config], options=False)
    cfg = setup.tao
    bench = Benchmark.load(cfg.benchmark)
    schema = decoding_schema(cfg, bench)
    policy = Policy(args.model or setup.model.model_name_or_path, prompt_mode=args.prompt_mode)
    report: dict = {"machine": machine(), "config": args.config, "model": policy.model_path,
                    "prompt_mode": policy_mode(cfg, policy), "backend": cfg.backend, "splits": {}}
    factory = ReusedPlanners(make_planner)
    t0 = time.perf_counter()
    factory(policy_spec(cfg, policy, schema))
    report["engine_start_s"] = round(time.perf_counter() - t0, 1)
    out_dir = Path(args.out).with_suffix("")
    try:
        for split in args.splits:
            load = os.getloadavg()[0]
            t = time.perf_counter()
            planner = factory(policy_spec(cfg, policy, schema))
            res = evaluate_policy(cfg, bench, planner, "policy", split, out_dir / split, args.limit,
                                  mode=policy_mode(cfg, policy))["policy"]
            wall = time.perf_counter() - t
            n = res["all"]["n"]
            report["splits"][split] = {"queries": n, "wall_s": round(wall, 1), "plans_per_s": round(n / wall, 1),
                                       f"recall@{cfg.k}": res["all"]["recall"], "validity": res["all"]["validity"],
                                       "load_avg_1m_before": load, "load_avg_1m_after": os.getloadavg()[0]}
            print(json.dumps({split: report["splits"][split]}), flush=True)
    finally:
        factory.close()
    report["total_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(args.out, report)
    m = report["machine"]
    print(f"{m['cpu']}, {m['cpu_count']} CPUs, load average at start {m['load_avg_1m']}; {policy.model_path} "
          f"({report['prompt_mode']} prompts): engine start {report['engine_start_s']} s, "
          + ", ".join(f"{s} {v['queries']} plans in {v['wall_s']} s" for s, v in report["splits"].items())
          + f"; total {report['total_s']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
