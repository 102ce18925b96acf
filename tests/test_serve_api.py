"""serve.api.Retriever on the tiny benchmark with a fixed-output planner (the project's parser and executor)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path

import pytest

from ir_core.types import PlanRequest
from rewards.parse import parse_plan

_spec = importlib.util.spec_from_file_location("fixed_planner", Path(__file__).parent / "fakes" / "fixed_planner.py")
fixed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixed)


@pytest.fixture
def brand(tiny_benchmark):
    return tiny_benchmark.meta(0)["brand"]


def make(bench, completions=None, delay_s=0.0, **kw):
    from serve.api import Retriever

    planner = fixed.FixedPlanner(completions, delay_s)
    return Retriever(bench, planner, **kw), planner


def test_search_runs_the_plan_with_its_filter(tiny_benchmark, brand):
    query = "waterproof jacket"
    r, planner = make(tiny_benchmark, {query: fixed.brand_plan(query, brand)})
    res = r.search(query, f"not made by {brand}", k=10)
    assert res.error is None and res.fallback is None
    assert res.plan == {"searches": [{"query": query, "filter": {"field": "brand", "op": "ne", "value": brand}}]}
    assert res.filter_fields == ["brand"]
    assert 0 < len(res.results) <= 10 and [h.rank for h in res.results] == list(range(1, len(res.results) + 1))
    assert all(h.meta["brand"] != brand for h in res.results)
    # the same ranking the project's executor gives for the parsed plan
    expected = r.executor.run(parse_plan(fixed.brand_plan(query, brand), tiny_benchmark.schema))[:10]
    assert [h.doc_id for h in res.results] == expected
    assert res.results[0].title == tiny_benchmark.product(expected[0]).title
    assert set(res.timings) >= {"plan_s", "parse_s", "search_s", "total_s"}
    json.dumps(res.to_dict())  # dates in metadata are ISO strings, the result is JSON as it stands


def test_prompt_comes_from_the_project_prompt_builder(tiny_benchmark):
    from rewards.prompts import build_messages, default_examples

    r, _ = make(tiny_benchmark)
    req = r.request("tent", "only blue ones")
    assert req.messages == build_messages(tiny_benchmark.schema, "tent", "only blue ones",
                                          default_examples(tiny_benchmark.schema))


def test_a_failed_plan_is_its_typed_error_and_no_results(tiny_benchmark):
    r, _ = make(tiny_benchmark, {"tent": '{"searches": [{"query": "tent", "filter": {"field": "size", '
                                         '"op": "eq", "value": "xl"}}]}', "stove": None, "mat": "no json here"})
    bad = r.search("tent")
    assert bad.error.code == "unknown_field" and "size" in bad.error.reason and bad.error.text
    assert bad.plan is None and bad.results == [] and bad.fallback is None
    assert r.search("stove").error.code == "backend_error"
    assert r.search("mat").error.code == "no_json"


def test_raw_fallback_only_when_asked_and_marked(tiny_benchmark):
    r, _ = make(tiny_benchmark, {"kayak paddle": "{not json"})
    res = r.search("kayak paddle", fallback="raw", k=5)
    assert res.error.code == "bad_json" and res.fallback == "raw" and res.plan is None
    assert [h.doc_id for h in res.results] == r.executor.run(r.raw_plan("kayak paddle"))[:5]
    assert res.results


def test_compare_raw_returns_the_raw_results_beside(tiny_benchmark, brand):
    r, _ = make(tiny_benchmark, {"jacket": fixed.brand_plan("jacket", brand, "eq")})
    res = r.search("jacket", compare_raw=True, k=20)
    assert all(h.meta["brand"] == brand for h in res.results)
    assert res.raw_results and {h.doc_id for h in res.raw_results} != {h.doc_id for h in res.results}


@pytest.mark.parametrize("kwargs, word", [
    ({"query": ""}, "query"), ({"query": "x" * 1001}, "query"), ({"query": "a", "k": 0}, "k"),
    ({"query": "a", "k": 101}, "k"), ({"query": "a", "k": True}, "k"), ({"query": "a", "fallback": "best"}, "fallback"),
    ({"query": "a", "instructions": 3}, "instructions"),
])
def test_bad_arguments_name_the_argument(tiny_benchmark, kwargs, word):
    r, planner = make(tiny_benchmark)
    query = kwargs.pop("query")
    with pytest.raises(ValueError, match=word):
        r.search(query, **kwargs)
    assert planner.calls == []


def test_search_batch_is_one_planner_call_in_order(tiny_benchmark):
    r, planner = make(tiny_benchmark)
    out = r.search_batch([{"query": "tent"}, {"query": "kayak paddle", "instructions": "only red"}], k=3)
    assert planner.calls == [2]
    assert [o.plan["searches"][0]["query"] for o in out] == ["tent", "kayak paddle"]


def test_concurrent_asearch_calls_are_batched(tiny_benchmark):
    r, planner = make(tiny_benchmark, delay_s=0.2, batch_wait_s=0.05, max_batch=8)

    async def many():
        return await asyncio.gather(*[r.asearch(f"tent {i}", k=3) for i in range(8)])

    t0 = time.perf_counter()
    out = asyncio.run(many())
    wall = time.perf_counter() - t0
    assert [o.plan["searches"][0]["query"] for o in out] == [f"tent {i}" for i in range(8)]
    assert sum(planner.calls) == 8 and len(planner.calls) <= 2  # not one call per request
    assert wall < 8 * 0.2  # the planner's delay is paid per batch, not per request
    r.close()


def test_micro_batcher_skips_cancelled_and_reports_planner_errors(tiny_benchmark):
    from serve.batching import MicroBatcher

    class Broken:
        name = "broken"

        def plan(self, requests):
            raise RuntimeError("model fell over")

    batcher = MicroBatcher(Broken(), max_batch=4, max_wait_s=0.01)
    fut = batcher.submit(PlanRequest("a", [{"role": "user", "content": "x"}]))
    with pytest.raises(RuntimeError, match="fell over"):
        fut.result(timeout=10)
    slow = fixed.FixedPlanner(delay_s=0.3)
    batcher2 = MicroBatcher(slow, max_batch=1, max_wait_s=0)
    first = batcher2.submit(PlanRequest("a", [{"role": "user", "content": "x"}]))
    second = batcher2.submit(PlanRequest("b", [{"role": "user", "content": "y"}]))
    assert second.cancel()  # still queued behind the first: never decoded
    assert json.loads(first.result(timeout=10).text)["searches"][0]["query"] == "x"
    batcher2.close()
    assert slow.calls == [1]
    batcher.close()


def test_a_policy_trained_on_request_schemas_is_served_with_them(tiny_benchmark, tmp_path):
    import jsonschema

    from rewards.prompts import query_schema
    from serve.planners import find_tuned_policy

    r, _ = make(tiny_benchmark)
    assert r.request("tent", "only blue ones").json_schema is None  # default: the planner's one schema
    bounds = {"max_searches": 1, "max_depth": 1}
    r, _ = make(tiny_benchmark, request_bounds=bounds)
    req = r.request("tent", "only blue ones")
    assert req.json_schema == query_schema(tiny_benchmark.schema, {"query": "tent", "instruction": "only blue ones"},
                                           "separate", **bounds)
    jsonschema.validate({"searches": [{"query": "tent", "filter": None}]}, req.json_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"searches": [{"query": "tents", "filter": None}]}, req.json_schema)
    # a TAO run with link_request hands its bounds to serving
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.json").write_text(json.dumps({"round": 1, "policy": {"model_path": str(tmp_path)}}))
    (tmp_path / "run" / "config.json").write_text(json.dumps({"tao": {"link_request": True, "constrained": True,
                                                                      "max_searches": 1, "max_filter_depth": 1}}))
    assert find_tuned_policy(tmp_path).spec.request_bounds == bounds
    # a distilled policy is served with the prompt it records, not the run's mode
    (tmp_path / "run" / "best.json").write_text(json.dumps({"round": 1, "policy": {
        "model_path": str(tmp_path), "prompt_mode": "request"}}))
    spec = find_tuned_policy(tmp_path).spec
    assert (spec.mode, spec.examples) == ("request", "none")


def test_find_tuned_policy_takes_the_newest_trained_best(tmp_path):
    from serve.planners import DEFAULT_MODEL, choose_policy, find_tuned_policy

    assert find_tuned_policy(tmp_path) is None
    assert choose_policy(tmp_path).spec.model == DEFAULT_MODEL and choose_policy(tmp_path).source == "untrained"
    model = tmp_path / "ckpt"
    model.mkdir()

    def run(name, round_, path, mtime):
        d = tmp_path / name
        d.mkdir()
        (d / "best.json").write_text(json.dumps({"round": round_, "policy": {"model_path": str(path),
                                                 "adapter_path": None}, "dev": {"all": {"recall": 0.5}}}))
        (d / "config.json").write_text(json.dumps({"mode": "separate", "max_new_tokens": 99}))
        (d / "plan_schema.json").write_text(json.dumps({"title": name}))
        import os

        os.utime(d / "best.json", (mtime, mtime))

    run("old", 1, model, 1000)
    run("untrained-best", 0, model, 3000)  # round 0 won: nothing tuned to serve from this run
    run("gone", 2, tmp_path / "deleted", 4000)  # its checkpoint was removed
    choice = find_tuned_policy(tmp_path)
    assert choice.spec.model == str(model) and choice.spec.plan_schema == {"title": "old"}
    assert choice.spec.max_new_tokens == 99 and "round 1" in choice.source
    run("new", 3, model, 2000)
    assert find_tuned_policy(tmp_path).spec.plan_schema == {"title": "new"}
    # a checkpoint path recorded relative to where the run was started (the repo root) still resolves
    run("relative", 1, "relative/ckpt", 5000)
    (tmp_path / "relative" / "ckpt").mkdir()
    assert Path(find_tuned_policy(tmp_path).spec.model).resolve() == (tmp_path / "relative" / "ckpt").resolve()


def test_build_planner_and_cli_refuse_bad_settings(tiny_benchmark):
    from serve.__main__ import parse_args
    from serve.planners import build_planner, untrained

    with pytest.raises(ValueError, match="--model"):
        build_planner("openai", untrained("models/smollm2-135m-instruct", "untrained"), tiny_benchmark)
    with pytest.raises(ValueError, match="unknown planner backend 'llamacpp'"):
        build_planner("llamacpp", untrained("x", "given"), tiny_benchmark)
    assert parse_args(["mcp", "--transport", "http", "--port", "9000"]).port == 9000
    for bad in (["http", "--port", "0"], ["http", "--timeout", "-1"], ["grpc"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
