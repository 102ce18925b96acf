"""One planner registry: TAO, the eval harness and serving build every planner through
`pipelines.backends.make_planner`, so a backend registered under a new name is what each of them runs,
with the decoding spec each of them means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.policies import FakePolicy

from pipelines.backends import PLANNERS, DecodingSpec, ReusedPlanners, make_planner


@pytest.fixture
def fake_backend(monkeypatch) -> list[DecodingSpec]:
    """Registers the backend "fake"; returns the specs it was asked to build."""
    built: list[DecodingSpec] = []

    def construct(spec: DecodingSpec) -> FakePolicy:
        built.append(spec)
        return FakePolicy(spec.model, spec.adapter, [])

    monkeypatch.setitem(PLANNERS, "fake", construct)
    return built


def test_unknown_backend_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown planner backend 'nope'.*hf, vllm, auto"):
        make_planner(DecodingSpec("nope", "m"))


def test_eval_builds_a_registered_backend(fake_backend, tiny_benchmark):
    from eval.harness import evaluate

    res = evaluate(tiny_benchmark, "test", ["raw", "fake:some-model"], limit=4)
    assert [(s.backend, s.model, s.adapter) for s in fake_backend] == [("fake", "some-model", None)]
    assert fake_backend[0].plan_schema["title"] == "SearchPlan"  # the benchmark's plan schema
    assert res["methods"]["fake:some-model"]["by_kind"]["all"]["validity"] == 1.0


def test_serve_builds_a_registered_backend(fake_backend, tiny_benchmark, tmp_path):
    from rewards.plan import plan_json_schema
    from serve.api import Retriever
    from serve.planners import SERVE_BATCH, UNTRAINED_BOUNDS

    r = Retriever.load(tiny_benchmark.path, backend="fake", model="given-model", runs_dir=tmp_path)
    try:
        res = r.search("two person tent", None, k=3)
    finally:
        r.close()
    (spec,) = fake_backend
    assert (spec.backend, spec.model, spec.constrained, spec.batch_size) == ("fake", "given-model", True, SERVE_BATCH)
    assert spec.plan_schema == plan_json_schema(tiny_benchmark.schema, **UNTRAINED_BOUNDS) == r.plan_schema
    assert res.error is None and res.plan["searches"][0]["query"] == "two person tent"


def test_tao_builds_a_registered_backend(fake_backend, tiny_benchmark, tmp_path):
    from pipelines.tao import run_tao
    from pipelines.tao_config import tao_setup

    setup = tao_setup(dict(benchmark=str(tiny_benchmark.path), model_name_or_path="base-model", rounds=0,
                           run_dir=str(tmp_path / "run"), eval_dev_limit=4, eval_test_limit=4, report_to="none",
                           max_new_tokens=77, mode="compact", examples="basic"))
    setup.tao.backend = "fake"  # TaoConfig's own choices name the shipped backends only
    run_tao(setup, progress=False)
    # round 0 evaluates the base model on dev and test with one planner (ReusedPlanners)
    (spec,) = fake_backend
    schema = json.loads(Path(tmp_path / "run" / "plan_schema.json").read_text())
    assert (spec.backend, spec.model, spec.adapter, spec.max_new_tokens) == ("fake", "base-model", None, 77)
    assert (spec.mode, spec.examples, spec.plan_schema) == ("compact", "basic", schema)


def test_reused_planners_build_once_per_policy(fake_backend):
    factory = ReusedPlanners(make_planner)
    spec = DecodingSpec("fake", "m", plan_schema={"title": "s"})
    factory(spec)
    factory(DecodingSpec("fake", "m", plan_schema={"title": "s"}, mode="request"))  # another prompt, same planner
    assert len(fake_backend) == 1
    factory(DecodingSpec("fake", "m", adapter="a", plan_schema={"title": "s"}))
    assert [s.adapter for s in fake_backend] == [None, "a"]
    factory.close()
