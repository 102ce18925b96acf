"""Why dual-view training can miss: cheap checks of the pairs, the batches, the eval set and the gradients.

Run before tuning (`python -m pipelines.dualview.diagnose`, a few minutes on CPU):

- swaps: every twin must hold the same two documents with the labels swapped, on the qrels' semantics
  (relevant = a base answer that satisfies the constraint);
- batches: how often both views of a pair share a batch, and how many in-batch candidates are in fact
  relevant to another row's anchor (false negatives), for a batch sampler;
- followir: the FollowIR-format set changes instructions the way FollowIR does (every `qrel_diff` document
  is relevant under og and not under changed; og and changed share the candidate list);
- gradients: for each (view, constraint) group of training rows, the cosine between the gradient of the
  pair loss and the gradient of a p-MRR surrogate per test instruction kind. A negative cosine means a
  step on that group moves the encoder the wrong way for that kind.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ir_core.config import check_range, help_field, parse_or_exit
from stark_instruct.filters import matches
from stark_instruct.instructions import constraint_filter


def constraint_key(constraint: dict | str | None) -> str:
    """'kind/attribute/op' of a constraint (JSON or dict), 'plain' for none."""
    if constraint is None:
        return "plain"
    c = json.loads(constraint) if isinstance(constraint, str) else constraint
    return f"{c['kind']}/{c['attribute']}/{c['op']}"


class Relevance:
    """Is document d relevant to a training row's anchor? Base answer of its query and satisfies its constraint."""

    def __init__(self, bench: Any, split: str = "train"):
        self.bench = bench
        self.answers = {r["base_id"]: {int(i) for i in r["relevant_ids"]}
                        for r in bench.queries(split) if r["kind"] == "none"}
        self._filters: dict[str, Any] = {}

    def __call__(self, doc: int, row: dict) -> bool:
        if int(doc) not in self.answers.get(row["base_id"], ()):
            return False
        c = row.get("constraint")
        if c is None:
            return True
        f = self._filters.get(c)
        if f is None:
            f = self._filters[c] = constraint_filter(json.loads(c))
        return matches(f, self.bench.meta(int(doc)))


def composition(rows: Iterable[dict]) -> dict[str, int]:
    """Training rows per 'view:kind/attribute/op'."""
    return dict(Counter(f"{r['view']}:{constraint_key(r.get('constraint'))}" for r in rows).most_common())


def audit_swaps(rows: Sequence[dict], relevant: Relevance) -> dict[str, int]:
    """Twins whose documents or labels do not swap (each should be 0)."""
    singles = {r["pair_id"]: r for r in rows if r["view"] == "single"}
    out = {"twins": 0, "not_same_documents": 0, "labels_not_swapped": 0, "single_negative_relevant": 0}
    for r in rows:
        if r["view"] == "single":
            out["single_negative_relevant"] += relevant(r["neg_id"], r) or not relevant(r["pos_id"], r)
        if r["view"] != "dual":
            continue
        out["twins"] += 1
        s = singles.get(r["pair_id"])
        if s is None or (r["pos_id"], r["neg_id"]) != (s["neg_id"], s["pos_id"]):
            out["not_same_documents"] += 1
            continue
        out["labels_not_swapped"] += not (relevant(r["pos_id"], r) and not relevant(r["neg_id"], r))
    return out


def audit_batches(rows: Sequence[dict], batches: Iterable[Sequence[int]], relevant: Relevance) -> dict[str, Any]:
    """Per batch composition: twins together, same-base-query rows, and in-batch false negatives.

    A false negative is another row's document (positive or hard negative) that is relevant to this
    row's anchor: the loss pushes it away although the qrels call it relevant.
    """
    twins_total = len({r["pair_id"] for r in rows if r["view"] == "dual"})
    together = same_base = fn = candidates = 0
    fn_by_key: Counter = Counter()
    for batch in batches:
        br = [rows[i] for i in batch]
        together += sum(v > 1 for v in Counter(r["pair_id"] for r in br).values())
        for i, r in enumerate(br):
            for j, o in enumerate(br):
                if i == j:
                    continue
                same_base += o["base_id"] == r["base_id"]
                for d in (o["pos_id"], o["neg_id"]):
                    if d == r["pos_id"]:  # the anchor's own positive again (a twin's negative)
                        continue
                    candidates += 1
                    if relevant(d, r):
                        fn += 1
                        fn_by_key[f"{r['view']}:{constraint_key(r.get('constraint'))}"] += 1
    return {"twin_pairs": twins_total, "twin_pairs_in_one_batch": together, "same_base_row_pairs": same_base,
            "in_batch_candidates": candidates, "in_batch_false_negatives": fn,
            "false_negatives_by_group": dict(fn_by_key.most_common())}


def audit_followir(fs: Any, bench: Any, split: str = "test") -> dict[str, int]:
    """FollowIR's contract on our set: diff documents relevant under og only, shared candidates, og text ⊂ changed."""
    rows = {str(r["id"]): r for r in bench.queries(split)}
    out = {"pairs": 0, "diff_not_relevant_og": 0, "diff_relevant_changed": 0, "diff_not_candidate": 0,
           "candidates_differ": 0, "changed_not_og_plus_instruction": 0, "og_has_instruction": 0}
    for q in fs.qids:
        og, ch = q + "-og", q + "-changed"
        out["pairs"] += 1
        out["candidates_differ"] += fs.top_ranked[og] != fs.top_ranked[ch]
        out["og_has_instruction"] += bool(fs.instructions.get(og))
        r = rows[q]
        out["changed_not_og_plus_instruction"] += not (fs.queries[ch] == fs.queries[og] == r["query"]
                                                        and fs.instructions[ch] == r["instruction"])
        for d in fs.qrel_diff[q]:
            out["diff_not_relevant_og"] += fs.qrels[og].get(d, 0) <= 0
            out["diff_relevant_changed"] += fs.qrels[ch].get(d, 0) > 0
            out["diff_not_candidate"] += d not in fs.top_ranked[og]
    return out


# --- gradient alignment -----------------------------------------------------------------------------------


@dataclass
class Probe:
    """Rows grouped for the gradient probe: training groups and test groups, each a list of rows."""

    train: dict[str, list[dict]] = field(default_factory=dict)
    test: dict[str, list[str]] = field(default_factory=dict)  # test kind -> FollowIR qids


def _flat_grad(model: Any) -> Any:
    import torch

    grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
    out = torch.cat(grads).clone()
    model.zero_grad(set_to_none=True)
    return out


def _embed(model: Any, texts: Sequence[str]) -> Any:
    import torch

    feats = model.preprocess(list(texts))
    feats = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in feats.items()}
    return torch.nn.functional.normalize(model(feats)["sentence_embedding"], dim=-1)


def pair_loss(model: Any, rows: Sequence[dict], scale: float = 20.0) -> Any:
    """The instruction signal of a row alone: softplus(-scale * (cos(a, p) - cos(a, n)))."""
    import torch

    a = _embed(model, [r["anchor"] for r in rows])
    p = _embed(model, [r["positive"] for r in rows])
    n = _embed(model, [r["negative"] for r in rows])
    return torch.nn.functional.softplus(-scale * ((a * p).sum(-1) - (a * n).sum(-1))).mean()


def pmrr_surrogate(model: Any, fs: Any, qids: Sequence[str], combine: Callable[[str, str], str],
                   others: int = 5, seed: int = 0) -> Any:
    """Smooth stand-in for -p-MRR: how much the changed instruction raises the removed documents' scores,
    relative to other candidates, compared with og. Lower is better; its gradient says which way helps."""
    import torch

    rng = random.Random(seed)
    terms = []
    for q in qids:
        og, ch = q + "-og", q + "-changed"
        diff = list(fs.qrel_diff[q])
        rest = [d for d in fs.top_ranked[og] if d not in set(diff)]
        rest = rng.sample(rest, min(others, len(rest)))
        docs = _embed(model, [fs.corpus[d] for d in diff + rest])
        qv = _embed(model, [fs.query_text(og, combine), fs.query_text(ch, combine)])
        s = qv @ docs.T  # (2, n)
        gap = s[:, : len(diff)].mean(-1) - (s[:, len(diff):].mean(-1) if rest else 0.0)
        terms.append(gap[1] - gap[0])
    return torch.stack(terms).mean()


def gradient_alignment(model: Any, probe: Probe, fs: Any, combine: Callable[[str, str], str],
                       batch: int = 16) -> dict[str, dict[str, float]]:
    """cos(grad of training group loss, grad of the p-MRR surrogate of each test kind), dropout off.

    Positive: a descent step on the group also lowers the surrogate (helps p-MRR on that kind).
    """
    import torch

    model.eval()
    test_grads = {}
    for kind, qids in probe.test.items():
        pmrr_surrogate(model, fs, qids, combine).backward()
        test_grads[kind] = _flat_grad(model)
    out: dict[str, dict[str, float]] = {}
    for name, rows in probe.train.items():
        for i in range(0, len(rows), batch):
            (pair_loss(model, rows[i: i + batch]) * len(rows[i: i + batch]) / len(rows)).backward()
        g = _flat_grad(model)
        out[name] = {k: float(torch.nn.functional.cosine_similarity(g, t, dim=0)) for k, t in test_grads.items()}
    return out


def build_probe(rows: Sequence[dict], fs: Any, per_group: int = 32, per_kind: int = 24, seed: int = 0) -> Probe:
    """Up to `per_group` rows per (view, constraint) and `per_kind` FollowIR pairs per test kind."""
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[f"{r['view']}:{constraint_key(r.get('constraint'))}"].append(r)
    kinds: dict[str, list[str]] = defaultdict(list)
    for q in fs.qids:
        kinds[fs.kinds.get(q, "?")].append(q)
    return Probe(train={k: rng.sample(v, min(per_group, len(v))) for k, v in sorted(groups.items())},
                 test={k: rng.sample(v, min(per_kind, len(v))) for k, v in sorted(kinds.items())})


@dataclass
class DiagnoseArgs:
    """Diagnose dual-view pairs, batches, eval set and gradients."""

    bench: str = help_field("a built benchmark directory", default="data/benchmark/synthetic")
    budget: int = help_field("training rows per arm", default=512)
    batch_size: int = help_field("rows per training batch", default=32)
    model: str | None = help_field("encoder for the gradient probe (default: the base MiniLM)", default=None)
    per_group: int = help_field("probe rows per training group", default=32)
    per_kind: int = help_field("probe queries per test kind", default=24)
    no_gradients: bool = help_field("skip the gradient probe", default=False)
    out: str | None = help_field("write the report as JSON here", default=None)

    def __post_init__(self) -> None:
        for name in ("budget", "batch_size", "per_group", "per_kind"):
            check_range(self, name, 1)


def main(argv: Sequence[str] | None = None) -> None:
    from pipelines.dualview.batching import unit_batches
    from pipelines.dualview.pairs import anchor_text, arm_rows, synthesize_pairs
    from pipelines.dualview.train import configure_threads
    from rewards.rerank import load_encoder
    from stark_instruct.benchmark import Benchmark

    (a,) = parse_or_exit([DiagnoseArgs], argv, "python -m pipelines.dualview.diagnose")
    configure_threads()
    bench = Benchmark.load(a.bench)
    index = bench.index()
    rows, counts = synthesize_pairs(bench, "train", index=index)
    relevant = Relevance(bench, "train")
    report: dict[str, Any] = {"counts": counts, "swaps": audit_swaps(rows, relevant), "arms": {}, "batches": {}}
    from datasets import Dataset
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    for arm in ("single", "dual"):
        ar = arm_rows(rows, arm, a.budget, 0)
        report["arms"][arm] = composition(ar)
        ds = Dataset.from_dict({c: [r[c] for r in ar] for c in ("anchor", "positive", "negative")})
        nodup = NoDuplicatesBatchSampler(ds, batch_size=a.batch_size, drop_last=False, seed=0)
        report["batches"][f"{arm}/no_duplicates"] = audit_batches(ar, list(nodup), relevant)
        report["batches"][f"{arm}/pair_units"] = audit_batches(ar, unit_batches(ar, a.batch_size, seed=0), relevant)
    from eval.followir import build_followir_set

    fs = build_followir_set(bench, "test", k=20, index=index)
    report["followir"] = audit_followir(fs, bench)
    print(json.dumps(report, indent=2), flush=True)
    if not a.no_gradients:
        model = load_encoder(a.model, 64)
        report["gradient_alignment"] = gradient_alignment(
            model, build_probe(rows, fs, a.per_group, a.per_kind), fs, anchor_text)
    text = json.dumps(report, indent=2)
    print(json.dumps(report.get("gradient_alignment"), indent=2))
    if a.out:
        from pipelines.rundir import atomic_write_text

        atomic_write_text(a.out, text + "\n")


if __name__ == "__main__":
    main()
