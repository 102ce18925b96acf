"""Turn scored candidates into a training set: best-of-N SFT rows, DPO pairs or KTO labels.

Rows are TRL's conversational formats, so the prompt the model trains on is exactly the chat the sampler
and the evaluator saw (``rewards.prompts``):

- ``best-of-n``  {"prompt": messages, "completion": [assistant]} for the top plan when reward >= threshold
  (rejection-sampling fine-tuning);
- ``dpo``        {"prompt", "chosen", "rejected"} = best vs worst plan, only when their reward gap >= min_gap;
- ``kto``        {"prompt", "completion", "label"} for every distinct plan, label = reward >= threshold.

A prompt whose candidates all have the same reward carries no preference signal and is dropped (counted
in the stats). With qrels of a few products, a garbage query can hit one of them by luck, so each
prompt's raw-query plan is scored as a baseline (``baseline``: prompt_id -> reward) and a sample is worth
training on only when it beats that baseline by ``margin``: then what gets taught is the filter or the
search that made the difference, not a lucky draw. A request without instructions only has to match
its baseline (the raw query is the intended plan there). Ties for the best place go to the simpler plan (fewer
searches, then the shorter text): the reward does not charge for a filter or search that changes
nothing, so among equally good plans the simplest carries the least junk into training. Remaining ties,
and ties for the worst place, go to the lowest sample index, so selection is deterministic. When scored
rows carry ``right_filter`` (the plan filters with the instruction's own constraint), the stats report
how many selected plans do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ir_core.io import atomic_write_json, write_jsonl

STRATEGIES = ("best-of-n", "dpo", "kto")


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _preference(c: dict) -> tuple:
    """How the best candidate is chosen: reward, then the simpler plan (fewer searches), then the deeper
    ranking (Recall@100, MRR: among plans tied at Recall@20 on a handful of relevant products, the one
    that also ranks the rest higher is the better plan, not the luckier one), then the shorter text."""
    m = c.get("metrics") or {}
    return (float(c["reward"]), -c.get("n_searches", 1), float(m.get("recall@100", 0.0)), float(m.get("mrr", 0.0)),
            -len(c["text"]), -c["sample_idx"])


def select(
    scored: Sequence[dict],
    prompts: Sequence[dict],
    strategy: str,
    threshold: float = 0.1,
    min_gap: float = 0.1,
    drop_ties: bool = True,
    baseline: Mapping[str, float] | None = None,
    margin: float = -1.0,
) -> tuple[list[dict], dict]:
    """Training rows and stats (counts of prompts kept, tied, under threshold, below gap, not beating
    the raw-query baseline, and the share of selected plans that carry the instruction's filter)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    messages = {p["prompt_id"]: p["messages"] for p in prompts}
    kinds = {p["prompt_id"]: p.get("kind") for p in prompts}
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in scored:
        by_prompt[r["prompt_id"]].append(r)

    stats = {
        "strategy": strategy,
        "threshold": threshold,
        "min_gap": min_gap,
        "prompts": len(by_prompt),
        "candidates": len(scored),
        "dropped_tie": 0,
        "dropped_threshold": 0,
        "dropped_gap": 0,
        "dropped_baseline": 0,
        "margin": margin,
        "rows": 0,
        "mean_best_reward": 0.0,
        "mean_reward": sum(float(r["reward"]) for r in scored) / len(scored) if scored else 0.0,
    }
    rows: list[dict] = []
    best_rewards = []
    chosen: list[dict] = []  # the candidates behind the rows (for the right-filter share)
    for pid in [p["prompt_id"] for p in prompts if p["prompt_id"] in by_prompt]:
        cands = sorted(by_prompt[pid], key=lambda r: r["sample_idx"])
        usable = [c for c in cands if c.get("text")]
        if not usable:
            stats["dropped_threshold"] += 1
            continue
        rewards = [float(c["reward"]) for c in cands]
        best = max(usable, key=_preference)
        worst = min(usable, key=lambda c: (float(c["reward"]), c["sample_idx"]))
        best_rewards.append(float(best["reward"]))
        if drop_ties and max(rewards) == min(rewards):
            stats["dropped_tie"] += 1
            continue
        # what a worthwhile sample must reach: the raw query's reward (given, or carried by the rows) + margin
        base = baseline.get(pid) if baseline is not None else next(
            (c["baseline_reward"] for c in cands if c.get("baseline_reward") is not None), None)
        # without an instruction the raw query is the intended plan, so matching it is enough
        bar = float("-inf") if base is None or margin < 0 else base + (margin if kinds.get(pid) != "none" else 0)
        prompt = messages[pid]
        if strategy == "best-of-n":
            if float(best["reward"]) < threshold or not best.get("valid", True):
                stats["dropped_threshold"] += 1
                continue
            if float(best["reward"]) < bar:
                stats["dropped_baseline"] += 1
                continue
            rows.append({"prompt": prompt, "completion": _assistant(best["text"])})
            chosen.append(best)
        elif strategy == "dpo":
            if float(best["reward"]) - float(worst["reward"]) < min_gap or best["text"] == worst["text"]:
                stats["dropped_gap"] += 1
                continue
            if float(best["reward"]) < bar:
                stats["dropped_baseline"] += 1
                continue
            rows.append(
                {"prompt": prompt, "chosen": _assistant(best["text"]), "rejected": _assistant(worst["text"])}
            )
            chosen.append(best)
        else:  # kto: desirable = reaches the threshold and the baseline bar
            seen: set[str] = set()
            for c in usable:
                if c["text"] in seen:
                    continue
                seen.add(c["text"])
                good = float(c["reward"]) >= max(threshold, bar)
                rows.append({"prompt": prompt, "completion": _assistant(c["text"]), "label": good})
                if good:
                    chosen.append(c)
    stats["rows"] = len(rows)
    stats["mean_best_reward"] = sum(best_rewards) / len(best_rewards) if best_rewards else 0.0
    flagged = [c for c in chosen if c.get("right_filter") is not None]
    stats["selected_right_filter"] = (sum(bool(c["right_filter"]) for c in flagged) / len(flagged)
                                      if flagged else None)
    if strategy == "kto":
        stats["desirable"] = sum(r["label"] for r in rows)
        stats["undesirable"] = len(rows) - stats["desirable"]
    return rows, stats


def select_to_files(
    scored: Sequence[dict],
    prompts: Sequence[dict],
    out_path: str | Path,
    strategy: str,
    threshold: float = 0.1,
    min_gap: float = 0.1,
    drop_ties: bool = True,
    baseline: Mapping[str, float] | None = None,
    margin: float = -1.0,
) -> dict:
    """Write the rows as JSONL (``datasets.load_dataset("json", data_files=...)`` reads it) and stats beside."""
    rows, stats = select(scored, prompts, strategy, threshold, min_gap, drop_ties, baseline, margin)
    out_path = Path(out_path)
    write_jsonl(out_path, rows)
    atomic_write_json(out_path.with_name(out_path.stem + ".stats.json"), stats)
    return stats
