"""Paired comparison of two evaluations of the same split: mean R@k difference and its bootstrap CI per group.

Why: a speed-up must not cost plan quality (issue 21): the faster path's dev R@20 has to lie within the
slower path's CI. This reads the per-query logs two eval.harness runs wrote (e.g. two TAO rounds'
`eval/dev`) and runs `eval.stats.vs_baseline` on them (B is the baseline).

    .venv/bin/python scripts/paired_recall.py runs/a/round-01/eval/dev policy-r1 runs/b/round-01/eval/dev policy-r1
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.report import read_per_query  # noqa: E402
from eval.stats import aggregate, vs_baseline  # noqa: E402
from ir_core.config import check_range, help_field, parse_or_exit  # noqa: E402

POSITIONAL = ("a_dir", "a_method", "b_dir", "b_method")


@dataclass
class PairedArgs:
    """Paired comparison of two evaluations of the same split: `A_DIR A_METHOD B_DIR B_METHOD [--k K]`."""

    a_dir: str = help_field("eval.harness output folder of A (first word)")
    a_method: str = help_field("A's method name")
    b_dir: str = help_field("eval.harness output folder of B, the baseline")
    b_method: str = help_field("B's method name")
    k: int = help_field("Recall@k", default=20)

    def __post_init__(self) -> None:
        check_range(self, "k", 1)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([PairedArgs], argv, "scripts/paired_recall.py", positional=POSITIONAL)
    a = read_per_query(args.a_dir, args.a_method)
    b = read_per_query(args.b_dir, args.b_method)
    key = f"recall@{args.k}"
    mean = {name: {g: round(v[key], 4) for g, v in aggregate(rows).items()} for name, rows in (("a", a), ("b", b))}
    out = {"a": f"{args.a_dir}:{args.a_method}", "b": f"{args.b_dir}:{args.b_method}", "queries": [len(a), len(b)],
           "mean": mean, "a_minus_b": vs_baseline(a, b, key)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
