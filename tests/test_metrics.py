import pytest

from rewards.metrics import all_metrics, hit_at_k, recall_at_k, reciprocal_rank


def test_recall_divides_by_number_of_relevant():
    ranking = [5, 1, 9, 2, 7]
    assert recall_at_k(ranking, {1, 2, 3, 4}, 2) == pytest.approx(1 / 4)
    assert recall_at_k(ranking, {1, 2, 3, 4}, 5) == pytest.approx(2 / 4)
    assert recall_at_k(ranking, [9], 3) == 1.0
    assert recall_at_k(ranking, [9], 2) == 0.0


def test_recall_counts_duplicates_once_and_handles_short_rankings():
    assert recall_at_k([1, 1, 1], {1, 2}, 10) == pytest.approx(0.5)
    assert recall_at_k([], {1}, 10) == 0.0


def test_hit_at_k():
    assert hit_at_k([4, 3, 2], {2}, 1) == 0.0
    assert hit_at_k([4, 3, 2], {2}, 3) == 1.0
    assert hit_at_k([4, 3, 2], {4, 2}, 1) == 1.0


def test_reciprocal_rank_uses_first_relevant_over_whole_ranking():
    assert reciprocal_rank([8, 6, 3, 1], {3, 1}) == pytest.approx(1 / 3)
    assert reciprocal_rank(list(range(200)), {150}) == pytest.approx(1 / 151)
    assert reciprocal_rank([8, 6], {3}) == 0.0


def test_all_metrics_hand_computed():
    ranking = list(range(100, 200))  # docs 100..199 at ranks 1..100
    relevant = {100, 104, 115, 130, 160, 199, 500}  # ranks 1, 5, 16, 31, 61, 100 and one never retrieved
    m = all_metrics(ranking, relevant)
    assert m == pytest.approx({
        "recall@10": 2 / 7, "recall@20": 3 / 7, "recall@50": 4 / 7, "recall@100": 6 / 7,
        "hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0,
    })
    m2 = all_metrics(ranking, {105, 300})
    assert m2["hit@1"] == 0.0 and m2["hit@5"] == 0.0 and m2["mrr"] == pytest.approx(1 / 6)
    assert m2["recall@10"] == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [lambda: recall_at_k([1], set(), 10), lambda: hit_at_k([1], [], 1),
                                lambda: reciprocal_rank([1], []), lambda: all_metrics([1], [])])
def test_empty_relevant_set_is_an_error(fn):
    with pytest.raises(ValueError, match="relevant set is empty"):
        fn()


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k([1, 2], {1}, k)
