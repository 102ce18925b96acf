"""The per-round table of a TAO run (rounds.md): dev/test Recall@k per kind, validity, rewards, loss."""

from __future__ import annotations

from typing import Any

from eval.report import fmt
from ir_core.types import GROUPS


def _recalls(groups: dict[str, Any]) -> str:
    return " | ".join(
        f"{groups[g]['recall']:.3f}" if g in groups and groups[g]["recall"] is not None else "-" for g in GROUPS
    )


def markdown_table(rows: list[dict], k: int) -> str:
    """One line per round and split (plus one per baseline), the best dev round starred."""
    head = (
        "| round | split | "
        + " | ".join(f"R@{k} {g}" for g in GROUPS)
        + " | validity | mean reward | best-of-N reward | train rows | loss | best |"
    )
    lines = [head, "|" + "---|" * (len(GROUPS) + 8)]
    for r in rows:
        for split in ("dev", "test"):
            ev = r.get(split)
            if not ev:
                continue
            pol = ev.get("policy", {})
            valid = pol.get("all", {}).get("validity")
            s, sel, tr = r.get("score", {}), r.get("select", {}), r.get("train", {})
            lines.append(
                f"| {r['round']} | {split} | {_recalls(pol)} | {valid:.3f} | "
                f"{fmt(s.get('mean_reward'), missing='-')} | {fmt(sel.get('mean_best_reward'), missing='-')} | "
                f"{sel.get('rows', '-')} | {fmt(tr.get('train_loss'), missing='-')} | "
                f"{'*' if r.get('is_best') and split == 'dev' else ''} |"
            )
            for b, bv in (ev.get("baselines") or {}).items():
                lines.append(f"| {b} | {split} | {_recalls(bv)} | {bv['all']['validity']:.3f} | | | | | |")
    return "\n".join(lines) + "\n"
