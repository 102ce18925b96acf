"""Mean and spread of TAO runs that differ only in their seed (`make tao-seeds`).

Each run's kept policy is its best dev round (best.json); its test Recall@k per kind group is compared
with the raw query's, measured in the same run's round 0. Writes <out>/summary.json and summary.md.

    python scripts/tao_seeds.py runs/tao-demo-seed0 runs/tao-demo-seed1 runs/tao-demo-seed2 --out runs/tao-seeds
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import help_field, parse_or_exit  # noqa: E402

GROUPS = ("none", "inclusion", "exclusion", "recency", "instructed", "all")


def run_summary(run: Path) -> dict:
    """The kept round of one run: its test recall per group, raw's, untrained's, and validity."""
    rows = {r["round"]: r for r in map(json.loads, (run / "rounds.jsonl").read_text().splitlines())}
    best = json.loads((run / "best.json").read_text())["round"]
    config = json.loads((run / "config.json").read_text())
    test = rows[best]["test"]["policy"]
    raw = rows[0]["test"]["baselines"]["raw"]
    untrained = rows[0]["test"]["policy"]
    return {"run": str(run), "seed": config.get("training", {}).get("seed", 0), "best_round": best,
            "recall": {g: test[g]["recall"] for g in GROUPS if g in test},
            "raw": {g: raw[g]["recall"] for g in GROUPS if g in raw},
            "untrained": {g: untrained[g]["recall"] for g in GROUPS if g in untrained},
            "validity": test.get("all", {}).get("validity")}


def summarize(runs: list[dict]) -> dict:
    """Per group: each seed's recall and ratio to raw, their mean, standard deviation and worst."""
    out = {}
    for g in GROUPS:
        vals = [r["recall"][g] for r in runs if r["recall"].get(g) is not None]
        ratios = [r["recall"][g] / r["raw"][g] for r in runs if r["recall"].get(g) is not None and r["raw"].get(g)]
        if not vals:
            continue
        out[g] = {"values": vals, "mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                  "worst": min(vals), "ratio_mean": statistics.fmean(ratios) if ratios else None,
                  "ratio_worst": min(ratios) if ratios else None}
    return out


def markdown(runs: list[dict], summary: dict) -> str:
    head = "| seed | kept round | " + " | ".join(f"test R@20 {g}" for g in GROUPS) + " | validity |"
    lines = [head, "|" + "---|" * (len(GROUPS) + 3)]
    for r in runs:
        lines.append(f"| {r['seed']} | {r['best_round']} | "
                     + " | ".join(f"{r['recall'][g]:.3f} ({r['recall'][g] / r['raw'][g]:.2f}x)"
                                  if r["recall"].get(g) is not None and r["raw"].get(g) else "-" for g in GROUPS)
                     + f" | {r['validity']:.3f} |")
    lines.append("| mean ± sd | | " + " | ".join(
        f"{summary[g]['mean']:.3f} ± {summary[g]['sd']:.3f} ({summary[g]['ratio_mean']:.2f}x)" if g in summary else "-"
        for g in GROUPS) + " | |")
    lines.append("| worst | | " + " | ".join(
        f"{summary[g]['worst']:.3f} ({summary[g]['ratio_worst']:.2f}x)" if g in summary else "-" for g in GROUPS)
        + " | |")
    raw = runs[0]["raw"]
    lines.append("| raw | | " + " | ".join(f"{raw[g]:.3f}" if raw.get(g) is not None else "-" for g in GROUPS) + " | |")
    return "\n".join(lines) + "\n"


@dataclass
class SeedsArgs:
    """Mean and spread of TAO runs that differ only in their seed: `RUN [RUN ...] [--out DIR]`."""

    runs: list[str] = help_field("TAO run directories, one per seed (the words before any flag)")
    out: str = help_field("where summary.json and summary.md go", default="runs/tao-seeds")


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([SeedsArgs], argv, "scripts/tao_seeds.py", positional="runs")
    runs = [run_summary(Path(r)) for r in args.runs]
    summary = summarize(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    text = markdown(runs, summary)
    (out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
