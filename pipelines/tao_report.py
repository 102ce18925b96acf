"""The per-round table of a TAO run (rounds.md): dev/test Recall@k per kind, validity, sample rewards
against the raw-query baseline, how often the instruction's filter was sampled and selected, rows, loss."""

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
        + " | validity | mean reward | best-of-N reward | raw-query reward | best beats raw | right filter (any"
        " sample) | right filter (selected) | train rows | loss | prompt (sampled → trained) | best |"
    )
    lines = [head, "|" + "---|" * (len(GROUPS) + 13)]
    for r in rows:
        for split in ("dev", "test"):
            ev = r.get(split)
            if not ev:
                continue
            pol = ev.get("policy", {})
            valid = pol.get("all", {}).get("validity")
            s, sel, tr = r.get("score", {}), r.get("select", {}), r.get("train", {})
            pm = r.get("prompt_mode") or {}
            prompt = f"{pm['sampled']} → {pm['trained']}" if pm else "-"
            lines.append(
                f"| {r['round']} | {split} | {_recalls(pol)} | {valid:.3f} | "
                f"{fmt(s.get('mean_reward'), missing='-')} | {fmt(sel.get('mean_best_reward'), missing='-')} | "
                f"{fmt(s.get('baseline_reward'), missing='-')} | {fmt(s.get('best_beats_baseline'), missing='-')} | "
                f"{fmt(s.get('right_filter_any'), missing='-')} | {fmt(sel.get('selected_right_filter'), missing='-')} | "
                f"{sel.get('rows', '-')} | {fmt(tr.get('train_loss'), missing='-')} | {prompt} | "
                f"{'*' if r.get('is_best') and split == 'dev' else ''} |"
            )
            for b, bv in (ev.get("baselines") or {}).items():
                lines.append(f"| {b} | {split} | {_recalls(bv)} | {bv['all']['validity']:.3f} |" + " |" * 11)
    return "\n".join(lines) + "\n"
