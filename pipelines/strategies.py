"""Selection strategies, in one registry: name -> row builder, TRL trainer class, TRL config class.

A strategy turns one prompt's scored candidates into training rows (TRL's conversational formats, so the
model trains on exactly the chat it is sampled and evaluated with) and names the TRL trainer and config
that train on those rows. `pipelines.select` runs the part every strategy shares (ties, the raw-query
bar, balance); `pipelines.tao_config` and `pipelines.train` look the trainer and config up here. A new
strategy is one `register(Strategy(...))`.

- ``best-of-n``  {"prompt", "completion"}: the top plan when reward >= threshold (rejection-sampling FT);
- ``dpo``        {"prompt", "chosen", "rejected"}: the top plan against up to `max_pairs` worse ones (gap >=
                 min_gap): the policy's own samples first, then edit-search plans (`pipelines.explore`), each
                 the closest in decision first (one leaf or one op apart), so a pair isolates the decision
                 that cost the reward;
- ``kto``        {"prompt", "completion", "label"}: every distinct plan, desirable when it reaches the bar.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ir_core.types import ScoredCandidate


@dataclass(frozen=True)
class Group:
    """One prompt's candidates as a row builder sees them."""

    prompt: list[dict]  # the chat messages
    usable: list[ScoredCandidate]  # candidates with text, in sample order
    best: ScoredCandidate
    worst: ScoredCandidate
    bar: float  # what a worthwhile plan must reach: the raw-query baseline (+ margin), or -inf
    threshold: float
    min_gap: float
    max_pairs: int = 1  # DPO: pairs per prompt (the best plan against each of the closest worse ones)


@dataclass(frozen=True)
class Built:
    """What a row builder made of a group: rows, the candidates they teach, or why none (a stats key)."""

    rows: list[dict]
    taught: list[ScoredCandidate]
    dropped: str | None = None


@dataclass(frozen=True)
class Strategy:
    name: str
    objective: str  # pipelines.train's name for it: sft | dpo | kto
    build: Callable[[Group], Built]
    trainer: str  # the trl class that trains on the rows
    config: str  # ... and its config class

    def trainer_class(self) -> type:
        import trl

        return getattr(trl, self.trainer)

    def config_class(self) -> type:
        import trl

        return getattr(trl, self.config)


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def leaves(text: str | None) -> frozenset[tuple]:
    """The (field, op, value) leaves of a plan's filters, read from its JSON text (empty when it has none
    or is not JSON): the decision a plan makes, for pairing and balance."""
    try:
        plan = json.loads(text or "")
    except (ValueError, RecursionError):
        return frozenset()
    out: set[tuple] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if {"field", "op"} <= node.keys():
                value = node.get("value")
                out.add((str(node["field"]), str(node["op"]), json.dumps(value, sort_keys=True)))
            for key in ("all", "any"):
                for child in node.get(key) or ():
                    walk(child)
            if "not" in node:
                walk(node["not"])

    for search in (plan.get("searches") or ()) if isinstance(plan, dict) else ():
        if isinstance(search, dict):
            walk(search.get("filter"))
    return frozenset(out)


def decision(text: str | None) -> tuple[str, ...]:
    """A plan's decision: the sorted "field op" of its filter leaves, ("no filter",) without one."""
    return tuple(sorted({f"{field} {op}" for field, op, _ in leaves(text)})) or ("no filter",)


def _ops(text: str | None) -> dict[tuple[str, str], str]:
    return {(field, value): op for field, op, value in leaves(text)}


def _distance(a: dict, b: dict) -> int:
    return sum(a.get(k) != b.get(k) for k in a.keys() | b.keys())


def _best_of_n(g: Group) -> Built:
    if float(g.best.reward) < g.threshold or not g.best.valid:
        return Built([], [], "dropped_threshold")
    if float(g.best.reward) < g.bar:
        return Built([], [], "dropped_baseline")
    return Built([{"prompt": g.prompt, "completion": _assistant(g.best.text)}], [g.best])


def _dpo(g: Group) -> Built:
    best = float(g.best.reward)
    losers = [c for c in g.usable if best - float(c.reward) >= g.min_gap and c.text != g.best.text]
    if not losers:
        return Built([], [], "dropped_gap")
    if best < g.bar:
        return Built([], [], "dropped_baseline")
    mine = _ops(g.best.text)
    # the policy's own worse samples before edit-search plans (DPO moves what the policy writes; an edit
    # it would never sample teaches little), each the closest in decision first (fewest (field, value)
    # slots whose op differs or that one plan lacks: an op flip is 1), then the worst reward, then the
    # first sample; each distinct plan once
    losers.sort(key=lambda c: (c.source != "sample", _distance(mine, _ops(c.text)) or 99, float(c.reward),
                               c.sample_idx))
    rejected: list[ScoredCandidate] = []
    for c in losers:
        if len(rejected) < g.max_pairs and all(c.text != r.text for r in rejected):
            rejected.append(c)
    return Built([{"prompt": g.prompt, "chosen": _assistant(g.best.text), "rejected": _assistant(c.text)}
                  for c in rejected], [g.best])


def _kto(g: Group) -> Built:
    rows, taught, seen = [], [], set()
    for c in g.usable:
        if c.text in seen:
            continue
        seen.add(c.text)
        good = float(c.reward) >= max(g.threshold, g.bar)
        rows.append({"prompt": g.prompt, "completion": _assistant(c.text), "label": good})
        if good:
            taught.append(c)
    return Built(rows, taught)


REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    REGISTRY[strategy.name] = strategy
    return strategy


register(Strategy("best-of-n", "sft", _best_of_n, "SFTTrainer", "SFTConfig"))
register(Strategy("dpo", "dpo", _dpo, "DPOTrainer", "DPOConfig"))
register(Strategy("kto", "kto", _kto, "KTOTrainer", "KTOConfig"))


def strategy(name: str) -> Strategy:
    """The strategy registered as `name`, or the one whose objective it is ("sft" -> best-of-n)."""
    if name in REGISTRY:
        return REGISTRY[name]
    for s in REGISTRY.values():
        if s.objective == name:
            return s
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(REGISTRY)}")


def names() -> Sequence[str]:
    return tuple(REGISTRY)
