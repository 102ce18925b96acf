"""The Python API with the real SmolLM2-135M through the transformers backend (constrained decoding).

Needs the converted model (`make model`); one request, ~10-30 s on the shared 2-core box.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-instruct"


@pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="needs the converted model: run `make model`")
def test_smollm2_plan_through_the_api(tiny_benchmark, one_torch_thread):
    from pipelines.backends.hf import HFPlanner
    from serve.api import Retriever
    from serve.planners import decoding_schema, untrained

    choice = untrained(str(MODEL), "given")
    schema = decoding_schema(choice, tiny_benchmark)
    planner = HFPlanner(str(MODEL), constrained=True, json_schema=schema, max_new_tokens=choice.spec.max_new_tokens)
    retriever = Retriever(tiny_benchmark, planner, plan_schema=schema)
    res = retriever.search("waterproof hiking boots", "Only products under $100.", k=5, compare_raw=True)
    # constrained decoding under the plan schema: the untrained model's output always parses
    assert res.error is None, res.error
    assert 1 <= len(res.plan["searches"]) <= 2 and res.planner.startswith("hf:")
    assert 0 < len(res.results) <= 5 and len(res.raw_results) == 5
    assert res.usage["output_tokens"] > 0 and res.timings["plan_s"] > res.timings["search_s"]
