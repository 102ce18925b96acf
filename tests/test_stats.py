import numpy as np
import pytest

from eval.stats import compare, paired_bootstrap_ci, paired_scores


def test_identical_methods_ci_contains_zero():
    rng = np.random.default_rng(1)
    a = rng.random(200)
    ci = paired_bootstrap_ci(a, a.copy())
    assert ci["diff"] == 0.0
    assert ci["low"] <= 0.0 <= ci["high"]


def test_noisy_equal_methods_ci_contains_zero():
    rng = np.random.default_rng(2)
    base = rng.random(300)
    a = base + rng.normal(0, 0.05, 300)
    b = base + rng.normal(0, 0.05, 300)
    ci = paired_bootstrap_ci(a, b)
    assert ci["low"] < 0.0 < ci["high"]


def test_dominating_method_ci_excludes_zero():
    rng = np.random.default_rng(3)
    b = rng.random(100) * 0.5
    a = b + 0.1 + rng.random(100) * 0.05  # better on every query
    ci = paired_bootstrap_ci(a, b)
    assert ci["low"] > 0.0
    assert ci["low"] <= ci["diff"] <= ci["high"]
    assert ci["diff"] == pytest.approx(float(np.mean(a - b)))
    assert ci["p_le_0"] == 0.0
    reverse = paired_bootstrap_ci(b, a)
    assert reverse["high"] < 0.0


def test_seeded_and_width_shrinks_with_confidence():
    rng = np.random.default_rng(4)
    a, b = rng.random(50), rng.random(50)
    assert paired_bootstrap_ci(a, b, seed=7) == paired_bootstrap_ci(a, b, seed=7)
    wide = paired_bootstrap_ci(a, b, confidence=0.99)
    narrow = paired_bootstrap_ci(a, b, confidence=0.5)
    assert wide["high"] - wide["low"] > narrow["high"] - narrow["low"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap_ci([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap_ci([float("nan")], [0.0])
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap_ci([1.0], [0.0], n_resamples=0)


def test_compare_aligns_on_common_ids():
    ids, xs, ys = paired_scores({"q2": 1.0, "q1": 0.5, "q3": 0.2}, {"q1": 0.0, "q2": 0.0, "q9": 1.0})
    assert ids == ["q1", "q2"] and xs == [0.5, 1.0] and ys == [0.0, 0.0]
    ci = compare({"q1": 1.0, "q2": 1.0}, {"q1": 0.0, "q2": 0.0, "q3": 0.3})
    assert ci["n"] == 2 and ci["diff"] == 1.0 and ci["low"] == 1.0
    with pytest.raises(ValueError, match="no common"):
        compare({"a": 1.0}, {"b": 1.0})
