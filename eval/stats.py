"""Paired bootstrap confidence intervals for differences between retrieval methods.

Two methods are run on the same queries, so their per-query scores are paired; resampling queries (not
scores) keeps that pairing and gives an honest interval for "is method A really better than B here?"
without assuming normality. Seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

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
