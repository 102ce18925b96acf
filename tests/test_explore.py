"""Edit search: the action space read from a request's schema, one-edit neighbours, hill climbing on the
reward, and the plans it writes being plans the decoder could have written."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema

from ir_core.io import read_jsonl, write_jsonl
from ir_core.types import ScoredCandidate
from pipelines.explore import explore_prompt, explore_stage, neighbours, plan_leaves, render, schema_leaves
from rewards.parse import parse_plan
from rewards.plan import request_plan_schema
from stark_instruct.schema import product_schema

REF = dt.date(2024, 2, 29)
VALUES = {"brand": ["acme", "northpeak"], "color": ["red", "black"], "category": ["tents", "stoves"]}
SCHEMA = product_schema(REF, ["acme"], ["red"], ["tents"], VALUES)
QUERY = "red tents for two"
JSON_SCHEMA = request_plan_schema(SCHEMA, QUERY, "Nothing from Acme.", max_searches=1, max_depth=2)


def _prompt() -> dict:
    return {"prompt_id": "p", "query": QUERY, "json_schema": JSON_SCHEMA, "relevant_ids": [1]}


def _cand(i: int, leaves: tuple, reward: float) -> dict:
    return {"prompt_id": "p", "sample_idx": i, "text": render(leaves, QUERY), "reward": reward, "valid": True}


def test_schema_leaves_are_the_requests_linked_values_with_their_ops():
    leaves, max_leaves = schema_leaves(JSON_SCHEMA)
    assert max_leaves == 3
    assert {("brand", "eq", "acme"), ("brand", "ne", "acme"), ("color", "eq", "red"), ("category", "ne", "tents")} \
        <= set(leaves)
    assert not any(v in ("northpeak", "black", "stoves") for _, _, v in leaves)  # never named by the request
    assert schema_leaves(None) == ([], 0) and schema_leaves({"type": "object"}) == ([], 0)


def test_rendered_plans_validate_against_the_schema_and_parse_back():
    for leaves in [(), (("brand", "ne", "acme"),), (("brand", "ne", "acme"), ("color", "eq", "red"))]:
        text = render(leaves, QUERY)
        jsonschema.validate(json.loads(text), JSON_SCHEMA)
        assert plan_leaves(text) == leaves
        parse_plan(text, SCHEMA)
    assert plan_leaves("not json") is None and plan_leaves('{"searches": []}') is None


def test_neighbours_drop_flip_or_add_one_leaf_never_two_on_one_value():
    allowed, _ = schema_leaves(JSON_SCHEMA)
    start = (("brand", "eq", "acme"),)
    nbs = neighbours(start, allowed, 3)
    assert () in nbs and (("brand", "ne", "acme"),) in nbs
    assert (("brand", "eq", "acme"), ("color", "eq", "red")) in nbs
    assert all(len({(f, v) for f, _, v in nb}) == len(nb) for nb in nbs)
    colours = [("color", op, v) for v in ("red", "black") for op in ("eq", "ne")]
    assert neighbours((("color", "eq", "red"),), colours, 1) == [
        (), (("color", "ne", "red"),), (("color", "eq", "black"),)]  # drop, flip the op, swap the value
    full = (("brand", "ne", "acme"), ("color", "eq", "red"), ("category", "eq", "tents"))
    assert all(len(nb) <= 3 for nb in neighbours(full, allowed, 3))  # a full conjunction only drops or flips


def test_hill_climb_fixes_the_op_then_adds_the_leaf_that_helps():
    target = {("brand", "ne", "acme"), ("category", "eq", "tents")}
    calls = []

    def score(text, prompt):  # the reward: share of the target leaves, minus a little per wrong leaf
        calls.append(text)
        got = set(plan_leaves(text))
        return {"reward": len(got & target) / 2 - 0.1 * len(got - target), "valid": True}

    cands = [ScoredCandidate.from_dict(_cand(0, (("brand", "eq", "acme"),), 0.0)),
             ScoredCandidate.from_dict(_cand(1, (), 0.05))]
    new = explore_prompt(_prompt(), cands, score, steps=3)
    best = max(new, key=lambda c: c.reward)
    assert set(plan_leaves(best.text)) == target and best.reward == 1.0
    assert all(c.source == "edit" for c in new)
    assert sorted(c.sample_idx for c in new) == list(range(2, 2 + len(new)))  # after the samples
    assert len(calls) == len(set(calls)) == len(new)  # each plan scored once; samples not rescored
    assert explore_prompt(_prompt(), cands, score, steps=0) == []


def test_stage_appends_and_resumes(tmp_path):
    def score(text, prompt):
        return {"reward": 0.5 if ("color", "eq", "red") in plan_leaves(text) else 0.1, "valid": True}

    write_jsonl(tmp_path / "scored.jsonl", [_cand(0, (), 0.1), _cand(1, (("brand", "eq", "acme"),), 0.1)])
    stats = explore_stage(read_jsonl(tmp_path / "scored.jsonl"), [_prompt()], tmp_path / "explored.jsonl", score, 2,
                          progress=False)
    rows = read_jsonl(tmp_path / "explored.jsonl")
    assert stats["added"] == len(rows) > 0 and stats["prompts_improved"] == 1
    assert max(r["reward"] for r in rows) == 0.5
    again = explore_stage(read_jsonl(tmp_path / "scored.jsonl"), [_prompt()], tmp_path / "explored.jsonl", score, 2,
                          progress=False)
    assert again["added"] == 0 and again["rows"] == len(rows)


def test_the_search_never_reads_the_queries_recorded_constraint():
    """Only the schema and the reward steer it: a recorded constraint (for oracles and qrels) changes nothing."""
    def score(text, prompt):
        return {"reward": 0.5 if ("color", "eq", "red") in plan_leaves(text) else 0.1, "valid": True}

    cands = [ScoredCandidate.from_dict(_cand(0, (), 0.1))]
    plain = explore_prompt(_prompt(), cands, score, steps=3)
    told = explore_prompt({**_prompt(), "constraint": {"field": "brand", "op": "ne", "value": "acme"},
                           "attributes": {"color": "black"}}, cands, score, steps=3)
    assert [c.text for c in told] == [c.text for c in plain]
