"""Turn scored candidates into a training set with a registered strategy (`pipelines.strategies`:
best-of-N SFT rows, DPO pairs or KTO labels), balanced per decision.

Rows are TRL's conversational formats, so the prompt the model trains on is exactly the chat the sampler
and the evaluator saw (``rewards.prompts``). What every strategy shares lives here:

A prompt whose candidates all have the same reward carries no preference signal and is dropped (counted
in the stats). With qrels of a few products, a garbage query can hit one of them by luck, so each
prompt's raw-query plan is scored as a baseline (``baseline``: prompt_id -> reward) and a sample is worth
training on only when it beats that baseline by ``margin``: then what gets taught is the filter or the
search that made the difference, not a lucky draw. A request without instructions only has to match
its baseline (the raw query is the intended plan there). Ties for the best place go to the simpler plan
(fewer searches, then the deeper ranking, then the plan stating more of the request, then the
shorter text); remaining ties, and ties for the worst
place, go to the lowest sample index, so selection is deterministic.

Balance (``balance="upsample"``): the rows are grouped by the decision their plan makes (the "field op"
of each filter leaf, or no filter) and every group is repeated up to the largest group's size (at most
``max_repeat`` times), so the op a field's instructions most often ask for in one round's sample does
not win by count: a dozen `color ne` rows beside four `color eq` ones otherwise teach "colour -> ne"
instead of reading the instruction's wording. The stats record the decisions before and after.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ir_core.io import atomic_write_json, write_jsonl
from ir_core.types import PromptRow, ScoredCandidate
from pipelines.strategies import Group, decision, leaves, names, strategy

STRATEGIES = names()
BALANCES = ("none", "upsample")


def _preference(c: ScoredCandidate) -> tuple:
    """How the best candidate is chosen: reward, then the simpler plan (fewer searches), then the deeper
    ranking (Recall@100, MRR: among plans tied at Recall@20 on a handful of relevant products, the one
    that also ranks the rest higher is the better plan, not the luckier one), then the plan that states
    more of the request (distinct filter values), then the shorter text.

    Stating more comes before brevity because plans that rank the same can still teach different things:
    for "blue tents, nothing red", `color eq blue` already keeps red out, so it ties with `color eq blue &
    color ne red`; preferring the shorter one taught the planner to drop the instruction (and, beside the
    query-colour `eq` rows, to write `eq` on the colour it was told to avoid). The fuller plan obeys the
    instruction on its own, also where the query's own filter does not happen to cover it."""
    m = c.metrics or {}
    stated = len({(field, value) for field, _, value in leaves(c.text)})
    return (float(c.reward), -(c.n_searches or 1), float(m.get("recall@100", 0.0)), float(m.get("mrr", 0.0)),
            stated, -len(c.text or ""), -c.sample_idx)


def _row_text(row: dict) -> str:
    """The plan a training row teaches (the completion, or the chosen plan of a pair)."""
    return (row.get("completion") or row.get("chosen"))[0]["content"]


def balance_rows(rows: list[dict], max_repeat: int = 3) -> tuple[list[dict], dict]:
    """Repeat each decision's rows (KTO: its desirable rows) up to the largest decision's count, at most
    `max_repeat` times each, in a fixed order; returns the rows and the decision counts before/after."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    rest = []
    for row in rows:
        if row.get("label") is False:  # an undesirable KTO row teaches no decision to copy
            rest.append(row)
        else:
            groups[decision(_row_text(row))].append(row)
    before = {" & ".join(k): len(v) for k, v in sorted(groups.items())}
    target = max((len(v) for v in groups.values()), default=0)
    out = []
    for _, group in sorted(groups.items()):
        copies = min(max_repeat, max(1, round(target / len(group))))
        out += group * copies
    after = Counter()
    for row in out:
        after[" & ".join(decision(_row_text(row)))] += 1
    return out + rest, {"decisions": before, "balanced": dict(sorted(after.items()))}


def select(
    scored: Sequence[dict],
    prompts: Sequence[dict],
    strategy_name: str,
    threshold: float = 0.1,
    min_gap: float = 0.1,
    drop_ties: bool = True,
    baseline: Mapping[str, float] | None = None,
    margin: float = -1.0,
    balance: str = "none",
    max_repeat: int = 3,
    max_pairs: int = 1,
) -> tuple[list[dict], dict]:
    """Training rows and stats (counts of prompts kept, tied, under threshold, below gap, not beating
    the raw-query baseline, the share of selected plans that carry the instruction's filter, and the
    decisions taught before and after balance)."""
    if strategy_name not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy_name!r}; choose from {STRATEGIES}")
    if balance not in BALANCES:
        raise ValueError(f"unknown balance {balance!r}; choose from {BALANCES}")
    build = strategy(strategy_name).build
    rows_in = [PromptRow.from_dict({"kind": None, "relevant_ids": [], **p}) for p in prompts]
    by_prompt: dict[str, list[ScoredCandidate]] = defaultdict(list)
    for r in scored:
        by_prompt[r["prompt_id"]].append(ScoredCandidate.from_dict(r))

    stats = {
        "strategy": strategy_name,
        "threshold": threshold,
        "min_gap": min_gap,
        "prompts": len(by_prompt),
        "candidates": len(scored),
        "dropped_tie": 0,
        "dropped_threshold": 0,
        "dropped_gap": 0,
        "dropped_baseline": 0,
        "margin": margin,
        "balance": balance,
        "max_pairs": max_pairs,
        "rows": 0,
        "mean_best_reward": 0.0,
        "mean_reward": sum(float(r["reward"]) for r in scored) / len(scored) if scored else 0.0,
    }
    rows: list[dict] = []
    best_rewards = []
    chosen: list[ScoredCandidate] = []  # the candidates behind the rows (for the right-filter share)
    for p in (p for p in rows_in if p.prompt_id in by_prompt):
        cands = sorted(by_prompt[p.prompt_id], key=lambda c: c.sample_idx)
        usable = [c for c in cands if c.text]
        if not usable:
            stats["dropped_threshold"] += 1
            continue
        rewards = [float(c.reward) for c in cands]
        best = max(usable, key=_preference)
        worst = min(usable, key=lambda c: (float(c.reward), c.sample_idx))
        best_rewards.append(float(best.reward))
        if drop_ties and max(rewards) == min(rewards):
            stats["dropped_tie"] += 1
            continue
        # what a worthwhile sample must reach: the raw query's reward (given, or carried by the rows) + margin
        base = baseline.get(p.prompt_id) if baseline is not None else next(
            (c.baseline_reward for c in cands if c.baseline_reward is not None), None)
        # without an instruction the raw query is the intended plan, so matching it is enough
        bar = float("-inf") if base is None or margin < 0 else base + (margin if p.kind != "none" else 0)
        built = build(Group(p.messages, usable, best, worst, bar, threshold, min_gap, max_pairs))
        if built.dropped:
            stats[built.dropped] += 1
            continue
        rows += built.rows
        chosen += built.taught
    stats["mean_best_reward"] = sum(best_rewards) / len(best_rewards) if best_rewards else 0.0
    flagged = [c for c in chosen if c.right_filter is not None]
    stats["selected_right_filter"] = (sum(bool(c.right_filter) for c in flagged) / len(flagged)
                                      if flagged else None)
    if strategy_name == "kto":
        stats["desirable"] = sum(r["label"] for r in rows)
        stats["undesirable"] = len(rows) - stats["desirable"]
    stats["selected_rows"] = len(rows)
    if balance == "upsample":
        rows, counts = balance_rows(rows, max_repeat)
    else:
        counts = {"decisions": dict(sorted(Counter(" & ".join(decision(_row_text(r))) for r in rows
                                                   if r.get("label") is not False).items()))}
    stats.update(counts)
    stats["rows"] = len(rows)
    return rows, stats


def select_to_files(
    scored: Sequence[dict],
    prompts: Sequence[dict],
    out_path: str | Path,
    strategy_name: str,
    threshold: float = 0.1,
    min_gap: float = 0.1,
    drop_ties: bool = True,
    baseline: Mapping[str, float] | None = None,
    margin: float = -1.0,
    balance: str = "none",
    max_repeat: int = 3,
    max_pairs: int = 1,
) -> dict:
    """Write the rows as JSONL (``datasets.load_dataset("json", data_files=...)`` reads it) and stats beside."""
    rows, stats = select(scored, prompts, strategy_name, threshold, min_gap, drop_ties, baseline, margin,
                         balance, max_repeat, max_pairs)
    out_path = Path(out_path)
    write_jsonl(out_path, rows)
    atomic_write_json(out_path.with_name(out_path.stem + ".stats.json"), stats)
    return stats
