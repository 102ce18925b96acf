"""The demo's final table and chart: baselines, the untrained planner and the TAO-tuned planner on test.

TAO already evaluates every round on test (for reporting only; the checkpoint is chosen on dev). This
joins round 0 (raw, concat, oracle, untrained policy) with the last round's policy and the round dev kept
(marked "kept on dev", which can be the untrained one) into one eval report, so the table, the bootstrap
intervals and the bar chart come from the same code as `make eval`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.report import read_metrics, read_per_query, write_report  # noqa: E402
from ir_core.config import help_field, parse_or_exit  # noqa: E402


@dataclass
class DemoReportArgs:
    run_dir: str = help_field("a finished `python -m pipelines.tao` run", default="runs/tao")
    split: Literal["dev", "test"] = help_field("the split of the table", default="test")
    out: str = help_field("report folder", default="runs/demo")


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([DemoReportArgs], argv, "scripts/demo_report.py")
    run = Path(args.run_dir)
    r_best = int(json.loads((run / "best.json").read_text())["round"])
    r_last = max(int(d.name.split("-")[1]) for d in run.glob("round-*") if (d / "eval" / args.split).is_dir())
    methods, per_query, config = {}, {}, None
    for r in sorted({0, r_best, r_last}):
        src_dir = run / f"round-{r:02d}" / "eval" / args.split
        report = read_metrics(src_dir)
        if report is None:
            raise SystemExit(f"error: {src_dir} has no eval report; has the TAO run finished?")
        config = config or report["config"]
        label = "planner (untrained" if r == 0 else f"planner (TAO, round {r}"
        names = {f"policy-r{r}": label + (", kept on dev)" if r == r_best else ")")}
        for name, res in report["methods"].items():
            if name.startswith("policy-") and name not in names:
                continue
            new = names.get(name, name)
            if new in methods:
                continue
            methods[new] = {k: v for k, v in res.items() if k not in ("gain_vs_raw", "vs_raw", "per_query_file")}
            per_query[new] = read_per_query(src_dir, name, report)
    result = {"config": config, "methods": methods, "per_query": per_query}
    out = Path(args.out)
    (out / "metrics.json").unlink(missing_ok=True)  # a fresh report, not a merge with an older demo
    write_report(result, out)
    print((out / "metrics.md").read_text())
    print(f"chart: {out / 'recall_by_kind.png'}; per-round table: {run / 'rounds.md'}")


if __name__ == "__main__":
    main()
