"""The numbers an evaluation derives from per-query records: means per kind group, gains over a baseline and
paired bootstrap confidence intervals. Computed here once, by the harness (one run) or the report (a
merged folder), never both.

Two methods are run on the same queries, so their per-query scores are paired; resampling queries (not
scores) keeps that pairing and gives an honest interval for "is method A really better than B here?"
without assuming normality. Seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ir_core.types import GROUPS

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> dict:
    """Percentile CI of mean(a - b) over queries resampled with replacement.

    Returns {"diff", "low", "high", "n", "n_resamples", "confidence", "p_le_0"} where `diff` is the observed
    mean difference and `p_le_0` the share of resamples whose difference is <= 0 (a one-sided bootstrap
    p-value for "a beats b").
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired scores need two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("paired bootstrap needs at least one query")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("paired bootstrap scores must be finite numbers")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diff = x - y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    means = diff[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {
        "diff": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "n": int(diff.size),
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "p_le_0": float(np.mean(means <= 0.0)),
    }


def paired_scores(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[list[str], list[float], list[float]]:
    """Align two {query_id: score} maps on their common ids (sorted), refusing when they share none."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two methods were evaluated on no common query")
    return common, [a[q] for q in common], [b[q] for q in common]


def compare(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> dict:
    """Paired bootstrap CI of mean(a - b) for two per-query score maps keyed by query id."""
    _, xs, ys = paired_scores(a, b)
    return paired_bootstrap_ci(xs, ys, n_resamples=n_resamples, seed=seed, confidence=confidence)


BASELINE = "raw"
RERANK_SUFFIX = "+rerank"


def in_group(kind: str, group: str) -> bool:
    """'instructed' is every variant with an instruction; 'all' is every query."""
    return group == "all" or (group == "instructed" and kind != "none") or kind == group


def aggregate(records: list[dict]) -> dict[str, dict]:
    """Mean of every metric and the plan validity rate per kind group; empty groups are left out."""
    out: dict[str, dict] = {}
    for group in GROUPS:
        rows = [r for r in records if in_group(r["kind"], group)]
        if not rows:
            continue
        names = sorted({m for r in rows for m in r["metrics"]})
        stats: dict[str, float] = {"n": len(rows), "validity": sum(bool(r["valid"]) for r in rows) / len(rows)}
        for name in names:
            stats[name] = sum(r["metrics"].get(name, 0.0) for r in rows) / len(rows)
        out[group] = stats
    return out


def gains(by_kind: dict[str, dict], baseline_by_kind: dict[str, dict] | None, key: str) -> dict[str, float | None]:
    """Ratio of a method's headline recall to the baseline's per group (None where undefined)."""
    if not baseline_by_kind:
        return {}
    out: dict[str, float | None] = {}
    for group, stats in by_kind.items():
        base = baseline_by_kind.get(group, {}).get(key)
        value = stats.get(key)
        out[group] = value / base if value is not None and base else None
    return out


def scores_by_id(records: list[dict], key: str, group: str = "all") -> dict[str, float]:
    return {r["id"]: float(r["metrics"].get(key, 0.0)) for r in records if in_group(r["kind"], group)}


def vs_baseline(records: list[dict], baseline: list[dict], key: str,
                n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, dict]:
    """Paired bootstrap CI of (method - baseline) headline recall per kind group."""
    out = {}
    for group in GROUPS:
        a, b = scores_by_id(records, key, group), scores_by_id(baseline, key, group)
        if set(a) & set(b):
            out[group] = compare(a, b, n_resamples=n_resamples, seed=seed)
    return out


def baseline_for(method: str, methods: Mapping[str, object]) -> str | None:
    """Reranked methods compare with reranked raw when it exists."""
    if method.endswith(RERANK_SUFFIX) and BASELINE + RERANK_SUFFIX in methods:
        return BASELINE + RERANK_SUFFIX
    return BASELINE if BASELINE in methods else None


def add_baseline_stats(methods: dict[str, dict], records: Callable[[str], list[dict]], key: str,
                       n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
    """Set every method's ``gain_vs_raw`` and ``vs_raw`` (paired CIs) against its baseline, in place."""
    for name, res in methods.items():
        base = baseline_for(name, methods)
        res["gain_vs_raw"] = gains(res["by_kind"], methods[base]["by_kind"], key) if base else {}
        res["vs_raw"] = (vs_baseline(records(name), records(base), key, n_resamples, seed)
                         if base and base != name else {})
