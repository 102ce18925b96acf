"""The demo's final table and chart: baselines, the untrained planner and the TAO-tuned planner on test.

TAO already evaluates every round on test (for reporting only; the checkpoint is chosen on dev). This
joins round 0 (raw, concat, oracle, untrained policy) with the best round's policy into one eval report,
so the table, the bootstrap intervals and the bar chart come from the same code as `make eval`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.report import read_metrics, read_per_query, write_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", default="runs/tao", help="a finished `python -m pipelines.tao` run")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default="runs/demo")
    args = ap.parse_args()
    run = Path(args.run_dir)
    best = json.loads((run / "best.json").read_text())
    r_best = int(best["round"])
    first_dir = run / "round-00" / "eval" / args.split
    best_dir = run / f"round-{r_best:02d}" / "eval" / args.split
    first, last = read_metrics(first_dir), read_metrics(best_dir)
    if first is None or last is None:
        raise SystemExit(f"error: {first_dir} or {best_dir} has no eval report; has the TAO run finished?")
    names = {"policy-r0": "planner (untrained)", f"policy-r{r_best}": f"planner (TAO, round {r_best})"}
    methods, per_query = {}, {}
    for src_dir, report in ((first_dir, first), (best_dir, last)):
        for name, res in report["methods"].items():
            if name.startswith("policy-") and name not in names:
                continue
            new = names.get(name, name)
            if new in methods:
                continue
            methods[new] = {k: v for k, v in res.items() if k not in ("gain_vs_raw", "vs_raw", "per_query_file")}
            per_query[new] = read_per_query(src_dir, name, report)
    result = {"config": first["config"], "methods": methods, "per_query": per_query}
    out = Path(args.out)
    (out / "metrics.json").unlink(missing_ok=True)  # a fresh report, not a merge with an older demo
    write_report(result, out)
    print((out / "metrics.md").read_text())
    print(f"chart: {out / 'recall_by_kind.png'}; per-round table: {run / 'rounds.md'}")


if __name__ == "__main__":
    main()
