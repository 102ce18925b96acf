"""Compare encoders across dual-view run directories, paired over the og/changed pairs they share.

`python -m pipelines.dualview.compare runs/a:dual runs/b:dual runs/b:single` prints p-MRR (overall and
per instruction kind) for each `<run dir>:<model>` on the pairs common to all of them, and the paired
bootstrap 95% CI (eval.stats.compare) of each one against the first. Runs evaluated with `--limit`
share a prefix of the pairs, so ablations on a subset line up with a full run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.stats import compare
from ir_core.config import help_field, parse_or_exit


def load_eval(spec: str) -> tuple[str, dict]:
    """`<run dir>:<model>` -> (label, that model's FollowIR-format result with per-query p-MRR)."""
    run, sep, model = spec.rpartition(":")
    if not sep or not run:
        raise ValueError(f"{spec!r}: expected <run dir>:<model>, e.g. runs/dualview:dual")
    path = Path(run) / "eval" / "followir.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no evaluation in {run} (run `make dual-view` there first)")
    evals = json.loads(path.read_text())
    if model not in evals or "per_query" not in evals[model]:
        raise KeyError(f"{path}: no per-query results for model {model!r}; it has {', '.join(evals)}")
    return spec, evals[model]


def kind_of(qid: str) -> str:
    """The instruction kind from a benchmark variant id ('<base>-<kind>')."""
    return qid.rsplit("-", 1)[-1]


def table(specs: Sequence[str]) -> str:
    """Markdown: p-MRR per model on the shared pairs, and each model minus the first with a paired CI."""
    loaded = [load_eval(s) for s in specs]
    common = sorted(set.intersection(*(set(e["per_query"]) for _, e in loaded)))
    if not common:
        raise ValueError("the runs share no og/changed pair")
    kinds = sorted({kind_of(q) for q in common})
    lines = [f"{len(common)} shared og/changed pairs", "",
             "| model | p-MRR | " + " | ".join(kinds) + f" | Δ vs {specs[0]} [95% CI] |",
             "|---|---|" + "---|" * len(kinds) + "---|"]
    first = {q: loaded[0][1]["per_query"][q] for q in common}
    for label, e in loaded:
        pq = {q: e["per_query"][q] for q in common}
        by_kind = [sum(v for q, v in pq.items() if kind_of(q) == k) / sum(kind_of(q) == k for q in pq) for k in kinds]
        c = compare(pq, first)
        ci = "–" if label == specs[0] else f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
        lines.append(f"| {label} | {sum(pq.values()) / len(pq):+.3f} | "
                     + " | ".join(f"{v:+.3f}" for v in by_kind) + f" | {ci} |")
    return "\n".join(lines)


@dataclass
class CompareArgs:
    """p-MRR of encoders from several dual-view runs, paired: `compare <run dir>:<model> ...`."""

    models: list[str] = help_field("<run dir>:<model> specs (the words before any flag); the first is the reference")


def main(argv: Sequence[str] | None = None) -> None:
    (args,) = parse_or_exit([CompareArgs], argv, "python -m pipelines.dualview.compare", positional="models")
    print(table(args.models))


if __name__ == "__main__":
    main()
