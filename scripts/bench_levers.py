"""`make bench-levers`: what each prompt and decoding lever does to the untrained planner, greedy, on dev.

Each lever setting is a set of `TaoConfig` fields (prompt mode, example set, schema-linked decoding) and
the schema's date anchors; the planner runs through the same factory, prompts, parser and executor as a
TAO round's evaluation, so a row here is what round 0 of a run with those settings would measure. Besides
Recall@k per kind it reports how often a plan carries the instruction's own filter, which is what TAO's
sampling has to find before selection can teach it.

    python scripts/bench_levers.py --limit 160 --out runs/bench/levers.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.harness import evaluate  # noqa: E402
from eval.methods import PlannerMethod  # noqa: E402
from ir_core.config import ConfigError, help_field, parse_or_exit  # noqa: E402
from ir_core.io import atomic_write_json  # noqa: E402
from ir_core.types import Policy  # noqa: E402
from pipelines.backends import make_planner, release  # noqa: E402
from pipelines.policy_spec import policy_spec, prompt_examples  # noqa: E402
from pipelines.score import obeys_constraint  # noqa: E402
from pipelines.tao_config import TaoConfig, decoding_schema  # noqa: E402
from stark_instruct.benchmark import Benchmark  # noqa: E402

# name -> (TaoConfig fields, date anchors in the rendered schema); each row adds one lever to the previous
LEVERS: dict[str, tuple[dict[str, Any], bool]] = {
    "separate, basic examples": ({"mode": "separate", "examples": "basic", "link_values": False}, False),
    "+ examples for every constraint type": ({"mode": "separate", "examples": "default", "link_values": False},
                                             False),
    "+ date anchors": ({"mode": "separate", "examples": "default", "link_values": False}, True),
    "+ schema-linked values": ({"mode": "separate", "examples": "default", "link_values": True}, True),
    "+ chat mode": ({"mode": "chat", "examples": "default", "link_values": True}, True),
}
# the third pass's decoding: one global schema for every request (before per-request schemas, the recipe's)
DECODING = {"constrained": True, "link_request": False, "max_searches": 2, "max_filter_depth": 2,
            "max_query_chars": 100, "max_filter_items": 4}


class _WithSchema:
    """The benchmark seen through another schema rendering (date anchors on or off)."""

    def __init__(self, bench: Benchmark, schema: Any):
        self._bench, self.schema = bench, schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bench, name)


def right_filter_share(records: list[dict], rows: dict[str, dict], schema: Any) -> float | None:
    flags = [obeys_constraint(json.dumps(r["plan"]), rows[r["id"]]["constraint"], schema) if r["valid"] else False
             for r in records if rows[r["id"]].get("constraint")]
    return sum(map(bool, flags)) / len(flags) if flags else None


@dataclasses.dataclass
class LeversArgs:
    """What each prompt and decoding lever does to the untrained planner, greedy, on dev."""

    bench: str = help_field("benchmark folder", default="data/benchmark/synthetic")
    model: str = help_field("the planner", default="models/smollm2-135m-instruct")
    split: str = help_field("query split", default="dev")
    limit: int | None = help_field("first N queries of the split (default: all)", default=None)
    backend: Literal["auto", "vllm", "hf"] = help_field("planner backend", default="auto")
    levers: list[str] = help_field(f"subset of: {list(LEVERS)}", default_factory=lambda: list(LEVERS))
    out: str = help_field("JSON report", default="runs/bench/levers.json")

    def __post_init__(self) -> None:
        unknown = [name for name in self.levers if name not in LEVERS]
        if unknown:
            raise ConfigError("levers", f"unknown {unknown}; choose from {list(LEVERS)}")


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([LeversArgs], argv, "scripts/bench_levers.py")
    bench = Benchmark.load(args.bench)
    rows = {str(r["id"]): r for r in bench.queries(args.split)}
    results = []
    for name in args.levers:
        fields, anchors = LEVERS[name]
        cfg = TaoConfig(benchmark=args.bench, backend=args.backend, eval_batch_size=128, **DECODING, **fields)
        view = _WithSchema(bench, dataclasses.replace(bench.schema, date_anchors=anchors))
        planner = make_planner(policy_spec(cfg, Policy(args.model), decoding_schema(cfg, view)))
        t0 = time.time()
        try:
            method = PlannerMethod(planner, view.schema, prompt_examples(cfg, view), cfg.mode, name="planner",
                                   batch_size=cfg.eval_batch_size)
            res = evaluate(view, args.split, ["raw", method], engine=cfg.engine, k=cfg.k, limit=args.limit,
                           mode=cfg.mode)
        finally:
            release(planner)
        by = res["methods"]["planner"]["by_kind"]
        row = {"lever": name, "seconds": round(time.time() - t0, 1), "load_avg": Path("/proc/loadavg").read_text().split()[0],
               "recall": {g: v[f"recall@{cfg.k}"] for g, v in by.items()}, "validity": by["all"]["validity"],
               "raw_recall": {g: v[f"recall@{cfg.k}"] for g, v in res["methods"]["raw"]["by_kind"].items()},
               "right_filter": right_filter_share(res["per_query"]["planner"], rows, bench.schema)}
        results.append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(Path(args.out), {"split": args.split, "limit": args.limit, "bench": args.bench,
                                           "model": args.model, "levers": results})
    print(markdown(results))


def markdown(results: list[dict]) -> str:
    groups = ("none", "inclusion", "exclusion", "recency", "instructed")
    lines = ["| lever | " + " | ".join(f"R@20 {g}" for g in groups) + " | validity | right filter |",
             "|" + "---|" * (len(groups) + 3)]
    for r in results:
        lines.append(f"| {r['lever']} | " + " | ".join(f"{r['recall'].get(g, 0):.3f}" for g in groups)
                     + f" | {r['validity']:.3f} | {r['right_filter'] or 0:.3f} |")
    raw = results[0]["raw_recall"] if results else {}
    lines.append("| raw query (reference) | " + " | ".join(f"{raw.get(g, 0):.3f}" for g in groups) + " | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
