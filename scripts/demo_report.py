"""The demo's final table and chart: baselines, the untrained planner and the TAO-tuned planner on test.

TAO already evaluates every round on test (for reporting only; the checkpoint is chosen on dev). This
joins round 0 (raw, concat, oracle and the untrained policy, named `untrained`) with the round dev kept
(named `tao`; it is the untrained policy again when no round beat it on dev) into one eval report, with
paired bootstrap CIs against raw and of `tao` minus `untrained`, so the table, the intervals and the bar
chart come from the same code as `make eval`.

Both ceilings are printed: `oracle` and `oracle_full` (the instruction's constraint plus the metadata the
query implies); a baseline round 0 did not evaluate is run here on the same queries. Compliance
(violations@k, the op table) comes with each method; logs written before it existed are annotated here
from the benchmark.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.compliance import annotate, op_table, violations_by_kind  # noqa: E402
from eval.harness import run_method  # noqa: E402
from eval.methods import BASELINES  # noqa: E402
from eval.report import is_planner, read_metrics, read_per_query, write_report  # noqa: E402
from eval.stats import aggregate  # noqa: E402
from ir_core.config import help_field, parse_or_exit  # noqa: E402
from rewards.execute import Executor  # noqa: E402
from stark_instruct.benchmark import Benchmark  # noqa: E402


@dataclass
class DemoReportArgs:
    run_dir: str = help_field("a finished `python -m pipelines.tao` run", default="runs/tao")
    split: Literal["dev", "test"] = help_field("the split of the table", default="test")
    out: str = help_field("report folder", default="runs/demo")


CEILINGS = ("oracle", "oracle_full")


def complete(methods: dict, per_query: dict, config: dict) -> tuple[dict, dict]:
    """Add the ceilings round 0 lacks (after the other baselines) and compliance to logs without it."""
    missing = [b for b in CEILINGS if b not in methods]
    stale = [n for n, records in per_query.items() if any("checks" not in r for r in records)]
    if not missing and not stale:
        return methods, per_query
    bench = Benchmark.load(config["bench"])
    rows = bench.queries(config["split"])[: config.get("limit") or None]
    by_id = {str(r["id"]): r for r in rows}
    for name in stale:
        for record in per_query[name]:
            annotate(record, by_id[str(record["id"])], bench.meta, config["k"])
        methods[name].update(violations=violations_by_kind(per_query[name]), ops=op_table(per_query[name]))
    executor = Executor(bench.index(config["engine"]), depth=config["depth"]) if missing else None
    for name in missing:
        records, info = run_method(BASELINES[name](), rows, executor, config["k"], meta=bench.meta)
        methods[name] = {"by_kind": aggregate(records), **info, "violations": violations_by_kind(records),
                         "ops": op_table(records)}
        per_query[name] = records
    order = [n for n in methods if not is_planner(n)] + [n for n in methods if is_planner(n)]
    return {n: methods[n] for n in order}, per_query


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([DemoReportArgs], argv, "scripts/demo_report.py")
    run = Path(args.run_dir)
    r_best = int(json.loads((run / "best.json").read_text())["round"])
    methods, per_query, config = {}, {}, None
    for r, label in ((0, "untrained"), (r_best, "tao")):
        src_dir = run / f"round-{r:02d}" / "eval" / args.split
        report = read_metrics(src_dir)
        if report is None:
            raise SystemExit(f"error: {src_dir} has no eval report; has the TAO run finished?")
        config = config or report["config"]
        for name, res in report["methods"].items():
            if name.startswith("policy-") and name != f"policy-r{r}":
                continue
            new = label if name.startswith("policy-") else name
            if new in methods:
                continue
            methods[new] = {k: v for k, v in res.items() if k not in ("gain_vs_raw", "vs_raw", "per_query_file")}
            per_query[new] = read_per_query(src_dir, name, report)
    methods, per_query = complete(methods, per_query, config)
    result = {"config": config, "methods": methods, "per_query": per_query,
              "compare_pairs": [("tao", "untrained")]}
    out = Path(args.out)
    (out / "metrics.json").unlink(missing_ok=True)  # a fresh report, not a merge with an older demo
    write_report(result, out)
    print((out / "metrics.md").read_text())
    print(f"tao = round {r_best} (kept on dev); chart: {out / 'recall_by_kind.png'}; per-round table: "
          f"{run / 'rounds.md'}")


if __name__ == "__main__":
    main()
