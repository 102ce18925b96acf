"""Selection strategies on hand-made candidates: thresholds, gaps, ties, determinism, file output."""

from __future__ import annotations

import pytest
from datasets import load_dataset

from pipelines.select import select, select_to_files


def _prompts(*ids: str) -> list[dict]:
    return [
        {"prompt_id": i, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": i}]}
        for i in ids
    ]


def _cands(pid: str, rewards: list[float], valid: list[bool] | None = None) -> list[dict]:
    valid = valid or [r > 0 for r in rewards]
    return [
        {"prompt_id": pid, "sample_idx": j, "seed": 0, "text": f"{pid}-plan{j}", "reward": r, "valid": v}
        for j, (r, v) in enumerate(zip(rewards, valid, strict=True))
    ]


def test_best_of_n_takes_top_plan_above_threshold_and_drops_ties():
    scored = (
        _cands("a", [0.2, 0.6, 0.6, 0.0])  # best = first of the tied 0.6 -> plan1
        + _cands("b", [0.5, 0.5, 0.5])  # all tie -> dropped
        + _cands("c", [0.05, 0.0, 0.02])  # best under threshold
        + _cands("d", [0.0, 0.0, 0.0])
    )  # all zero: tie
    rows, stats = select(scored, _prompts("a", "b", "c", "d"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == ["a-plan1"]
    assert rows[0]["prompt"][1]["content"] == "a"
    assert rows[0]["completion"][0]["role"] == "assistant"
    assert stats["dropped_tie"] == 2 and stats["dropped_threshold"] == 1 and stats["rows"] == 1
    assert stats["prompts"] == 4 and stats["candidates"] == 13


def test_keeping_ties_when_asked():
    rows, stats = select(_cands("b", [0.5, 0.5]), _prompts("b"), "best-of-n", threshold=0.1, drop_ties=False)
    assert stats["dropped_tie"] == 0 and [r["completion"][0]["content"] for r in rows] == ["b-plan0"]


def test_dpo_pairs_best_and_worst_only_above_gap():
    scored = _cands("a", [0.3, 0.9, 0.1, 0.1]) + _cands("b", [0.4, 0.45]) + _cands("c", [0.2, 0.2])
    rows, stats = select(scored, _prompts("a", "b", "c"), "dpo", min_gap=0.2)
    assert len(rows) == 1
    assert rows[0]["chosen"][0]["content"] == "a-plan1"
    assert rows[0]["rejected"][0]["content"] == "a-plan2"  # lowest sample index among the worst
    assert stats["dropped_gap"] == 1 and stats["dropped_tie"] == 1


def test_kto_labels_by_threshold_and_dedupes_texts():
    scored = _cands("a", [0.3, 0.0, 0.8]) + _cands("b", [0.1, 0.1])
    scored[1]["text"] = scored[0]["text"]  # a duplicate plan text is kept once
    rows, stats = select(scored, _prompts("a", "b"), "kto", threshold=0.25)
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [
        ("a-plan0", True),
        ("a-plan2", True),
    ]
    assert stats["dropped_tie"] == 1
    rows, stats = select(_cands("a", [0.3, 0.0, 0.8]), _prompts("a"), "kto", threshold=0.5)
    assert [r["label"] for r in rows] == [False, False, True]
    assert stats["desirable"] == 1 and stats["undesirable"] == 2


def test_invalid_or_missing_text_is_never_chosen():
    scored = _cands("a", [0.0, 0.4])
    scored[1]["text"] = None  # backend failure scored 0.4 by mistake must not be used
    scored.append({"prompt_id": "a", "sample_idx": 2, "seed": 0, "text": "ok", "reward": 0.3, "valid": True})
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert rows[0]["completion"][0]["content"] == "ok"


def test_unknown_strategy():
    with pytest.raises(ValueError):
        select([], [], "ppo")


def test_files_load_with_datasets(tmp_path):
    scored = _cands("a", [0.3, 0.9, 0.1]) + _cands("b", [0.0, 0.7])
    stats = select_to_files(scored, _prompts("a", "b"), tmp_path / "dpo.jsonl", "dpo", min_gap=0.2)
    ds = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    assert set(ds.column_names) == {"chosen", "prompt", "rejected"}
    assert len(ds) == stats["rows"] == 2
    assert (tmp_path / "dpo.stats.json").exists()


def test_tied_best_goes_to_the_shortest_plan():
    scored = _cands("a", [0.6, 0.6, 0.6, 0.1])
    scored[0]["text"] = '{"searches": [{"query": "tent", "filter": null}, {"query": "tents"}]}'
    scored[1]["text"] = '{"searches": [{"query": "tent"}, {"query": "tents"}]}'
    scored[2]["text"] = '{"searches": [{"query": "tent"}]}'
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == [scored[2]["text"]]


def test_among_plans_that_rank_the_same_the_one_stating_more_of_the_request_wins():
    # "blue tents, nothing red": `color eq blue` already keeps red out, so both plans retrieve the same;
    # the row must still teach the instruction's own leaf, not drop it for brevity
    scored = _cands("a", [0.6, 0.6, 0.6, 0.1])
    scored[0]["text"] = _plan_text(("color", "eq", "blue"))
    scored[1]["text"] = _plan_text(("color", "eq", "blue"), ("color", "ne", "red"))
    scored[2]["text"] = _plan_text(("color", "eq", "blue"), ("color", "eq", "blue"))  # a repeated leaf adds nothing
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == [scored[1]["text"]]
    scored[0]["metrics"] = {"recall@100": 0.9}  # but a plan that ranks the rest higher still comes first
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == [scored[0]["text"]]


def test_a_sample_must_beat_the_raw_query_baseline_by_the_margin():
    scored = _cands("a", [0.5, 0.2]) + _cands("b", [0.3, 0.0]) + _cands("c", [0.45, 0.1])
    baseline = {"a": 0.25, "b": 0.3, "c": 0.4}  # b's best only ties raw; c's beats it by less than 0.1
    rows, stats = select(scored, _prompts("a", "b", "c"), "best-of-n", threshold=0.1, baseline=baseline,
                         margin=0.1)
    assert [r["completion"][0]["content"] for r in rows] == ["a-plan0"]
    assert stats["dropped_baseline"] == 2 and stats["margin"] == 0.1
    pairs, _ = select(scored, _prompts("a", "b", "c"), "dpo", min_gap=0.1, baseline=baseline, margin=0.1)
    assert [p["chosen"][0]["content"] for p in pairs] == ["a-plan0"]
    labels, _ = select(scored, _prompts("a", "b", "c"), "kto", threshold=0.1, baseline=baseline, margin=0.1)
    assert [r["completion"][0]["content"] for r in labels if r["label"]] == ["a-plan0"]


def test_ties_go_to_fewer_searches_and_the_right_filter_share_is_reported():
    scored = _cands("a", [0.5, 0.5]) + _cands("b", [0.4, 0.1])
    scored[0].update(n_searches=2, text="a", right_filter=False)  # shorter text but two searches
    scored[1].update(n_searches=1, text="a-longer-plan", right_filter=True)
    scored[2].update(n_searches=1, right_filter=False)
    rows, stats = select(scored, _prompts("a", "b"), "best-of-n", threshold=0.1, drop_ties=False)
    assert [r["completion"][0]["content"] for r in rows] == ["a-longer-plan", "b-plan0"]
    assert stats["selected_right_filter"] == 0.5
    _, no_flags = select(_cands("a", [0.5, 0.1]), _prompts("a"), "best-of-n")
    assert no_flags["selected_right_filter"] is None


def test_a_request_without_instructions_only_has_to_match_its_raw_query():
    prompts = [{**p, "kind": k} for p, k in zip(_prompts("plain", "inst"), ["none", "inclusion"], strict=True)]
    scored = _cands("plain", [0.3, 0.1]) + _cands("inst", [0.3, 0.1])
    rows, stats = select(scored, prompts, "best-of-n", baseline={"plain": 0.3, "inst": 0.3}, margin=0.1)
    assert [r["prompt"][1]["content"] for r in rows] == ["plain"] and stats["dropped_baseline"] == 1


def test_tied_reward_goes_to_the_deeper_ranking_before_the_shorter_text():
    scored = _cands("a", [0.5, 0.5, 0.5, 0.0])
    scored[0].update(text="short", metrics={"recall@100": 0.5, "mrr": 0.9})
    scored[1].update(text="longer-plan", metrics={"recall@100": 1.0, "mrr": 0.2})  # ranks the rest higher
    scored[2].update(text="longer-plan-2", metrics={"recall@100": 1.0, "mrr": 0.1})
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == ["longer-plan"]
    scored[1]["n_searches"] = 2  # a simpler plan still wins first
    rows, _ = select(scored, _prompts("a"), "best-of-n", threshold=0.1)
    assert [r["completion"][0]["content"] for r in rows] == ["longer-plan-2"]


def _plan_text(*leaves: tuple) -> str:
    import json

    flt = None if not leaves else ({"field": leaves[0][0], "op": leaves[0][1], "value": leaves[0][2]}
                                   if len(leaves) == 1 else
                                   {"all": [{"field": f, "op": o, "value": v} for f, o, v in leaves]})
    return json.dumps({"searches": [{"filter": flt, "query": "q"}]})


def test_balance_repeats_rare_decisions_so_no_op_wins_by_count():
    scored, ids = [], []
    for i in range(6):  # six prompts taught `color ne`, two `color eq`, one with no filter
        op = "ne" if i < 6 else "eq"
        scored += [{"prompt_id": f"n{i}", "sample_idx": 0, "seed": 0, "reward": 0.9, "valid": True,
                    "text": _plan_text(("color", op, "red"))},
                   {"prompt_id": f"n{i}", "sample_idx": 1, "seed": 0, "reward": 0.1, "valid": True, "text": "x"}]
        ids.append(f"n{i}")
    for i in range(2):
        scored += [{"prompt_id": f"e{i}", "sample_idx": 0, "seed": 0, "reward": 0.8, "valid": True,
                    "text": _plan_text(("color", "eq", "red"), ("category", "eq", "tents"))},
                   {"prompt_id": f"e{i}", "sample_idx": 1, "seed": 0, "reward": 0.0, "valid": True, "text": "y"}]
        ids.append(f"e{i}")
    plain, stats = select(scored, _prompts(*ids), "best-of-n", threshold=0.1)
    assert stats["decisions"] == {"category eq & color eq": 2, "color ne": 6} and len(plain) == 8
    rows, stats = select(scored, _prompts(*ids), "best-of-n", threshold=0.1, balance="upsample", max_repeat=3)
    assert stats["balanced"] == {"category eq & color eq": 6, "color ne": 6} and stats["selected_rows"] == 8
    assert len(rows) == 12
    rows, stats = select(scored, _prompts(*ids), "best-of-n", threshold=0.1, balance="upsample", max_repeat=2)
    assert stats["balanced"]["category eq & color eq"] == 4  # capped at max_repeat copies


def test_dpo_rejects_the_closest_worse_plan_in_decision():
    best = _plan_text(("color", "eq", "red"), ("category", "eq", "tents"))
    flipped = _plan_text(("color", "ne", "red"), ("category", "eq", "tents"))  # one op differs
    scored = [{"prompt_id": "a", "sample_idx": j, "seed": 0, "reward": r, "valid": True, "text": t}
              for j, (t, r) in enumerate([(best, 0.9), (_plan_text(), 0.0), (flipped, 0.3), ("junk", 0.0)])]
    rows, _ = select(scored, _prompts("a"), "dpo", min_gap=0.2)
    assert rows[0]["chosen"][0]["content"] == best and rows[0]["rejected"][0]["content"] == flipped
    # max_pairs: the best against each distinct worse plan, closest first (a repeated plan counts once)
    scored.append({**scored[2], "sample_idx": 4})
    rows, stats = select(scored, _prompts("a"), "dpo", min_gap=0.2, max_pairs=5)
    assert [r["rejected"][0]["content"] for r in rows] == [flipped, _plan_text(), "junk"]
    assert {r["chosen"][0]["content"] for r in rows} == {best} and stats["rows"] == 3
    # the policy's own worse sample comes before a closer plan that only the edit search wrote
    scored[2]["source"] = scored[4]["source"] = "edit"
    rows, _ = select(scored, _prompts("a"), "dpo", min_gap=0.2)
    assert rows[0]["rejected"][0]["content"] == _plan_text()


def test_strategies_come_from_one_registry():
    import trl

    from pipelines.strategies import REGISTRY, strategy
    from pipelines.train import trainer_config_class

    assert set(REGISTRY) == {"best-of-n", "dpo", "kto"}
    assert strategy("sft") is REGISTRY["best-of-n"] and strategy("dpo").trainer_class() is trl.DPOTrainer
    assert trainer_config_class("kto") is trl.KTOConfig and trainer_config_class("best-of-n") is trl.SFTConfig
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy("ppo")
