"""VLLMPlanner against a recording fake `vllm` (tests/fakes/vllm): vLLM itself needs a GPU.

These tests pin what the adapter asks vLLM for (engine arguments, SamplingParams, LoRA request,
structured outputs, chat messages) and how it maps vLLM's outputs back to PlanResponses.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from ir_core.types import PlanRequest

FAKES = Path(__file__).parent / "fakes"
SCHEMA = {"type": "object", "properties": {"searches": {"type": "array"}}, "required": ["searches"]}


def _drop_vllm_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch):
    _drop_vllm_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(FAKES))
    vllm = importlib.import_module("vllm")
    assert vllm.__version__.endswith("fake")
    vllm.reset()
    yield vllm
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]  # monkeypatch then restores whatever was there before


def _requests(k: int = 3) -> list[PlanRequest]:
    return [PlanRequest(f"q{i}", [{"role": "system", "content": "plan"},
                                  {"role": "user", "content": f"tents number {i}"}]) for i in range(k)]


def _calls(vllm, kind: str) -> list[dict]:
    return [kw for name, kw in vllm.CALLS if name == kind]


def test_missing_vllm_says_how_to_install(monkeypatch):
    from pipelines.backends.vllm import VLLMPlanner

    _drop_vllm_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"instructed-retriever\[gpu\]"):
        VLLMPlanner("Qwen/Qwen3-4B-Instruct-2507")


def test_sample_sampling_params_lora_and_messages(fake_vllm):
    from pipelines.backends.vllm import VLLMPlanner

    p = VLLMPlanner("Qwen/Qwen3-4B-Instruct-2507", adapter_path="runs/r1/adapter", tensor_parallel_size=2,
                    max_tokens=300, gpu_memory_utilization=0.8, max_lora_rank=32, max_model_len=4096)
    (init,) = _calls(fake_vllm, "LLM")
    assert init["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert init["enable_lora"] is True and init["max_lora_rank"] == 32
    assert init["tensor_parallel_size"] == 2 and init["gpu_memory_utilization"] == 0.8
    assert init["max_model_len"] == 4096  # extra engine kwargs pass through

    reqs = _requests(3)
    out = p.sample(reqs, n=4, temperature=0.9, top_p=0.95, seed=7)
    (chat,) = _calls(fake_vllm, "chat")
    assert chat["messages"] == [r.messages for r in reqs]
    params = chat["sampling_params"]
    assert len(params) == 3
    for sp in params:
        assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens) == (4, 0.9, 0.95, 300)
        assert sp.max_tokens != 16 and sp.structured_outputs is None
    seeds = [sp.seed for sp in params]
    assert len(set(seeds)) == 3 and all(isinstance(s, int) and s >= 0 for s in seeds)
    lora = chat["lora_request"]
    assert (lora.lora_name, lora.lora_int_id, lora.lora_path) == ("planner", 1, "runs/r1/adapter")

    assert [len(r) for r in out] == [4, 4, 4]
    for i, samples in enumerate(out):
        for k, resp in enumerate(samples):
            assert resp.error is None
            echo = json.loads(resp.text)
            assert echo["prompt"] == f"tents number {i}" and echo["sample"] == k and echo["seed"] == seeds[i]
            assert resp.usage["input_tokens"] == len(echo["prompt"].split()) + 5
            assert resp.usage["output_tokens"] == len(resp.text.split())

    # same seed -> same per-request seeds; another seed -> different ones
    p.sample(reqs, n=4, temperature=0.9, top_p=0.95, seed=7)
    p.sample(reqs, n=4, temperature=0.9, top_p=0.95, seed=8)
    again, other = _calls(fake_vllm, "chat")[1:]
    assert [sp.seed for sp in again["sampling_params"]] == seeds
    assert not set(sp.seed for sp in other["sampling_params"]) & set(seeds)


def test_plan_is_greedy_without_lora(fake_vllm):
    from pipelines.backends.vllm import VLLMPlanner

    p = VLLMPlanner("models/smollm2-135m-instruct")
    assert _calls(fake_vllm, "LLM")[0]["enable_lora"] is False
    out = p.plan(_requests(2))
    (chat,) = _calls(fake_vllm, "chat")
    assert chat["lora_request"] is None
    assert all(sp.n == 1 and sp.temperature == 0.0 and sp.max_tokens == 512 for sp in chat["sampling_params"])
    assert [json.loads(r.text)["prompt"] for r in out] == ["tents number 0", "tents number 1"]


def test_structured_outputs_current_and_legacy_api(fake_vllm, monkeypatch):
    from pipelines.backends.vllm import VLLMPlanner

    with pytest.raises(ValueError, match="json_schema"):
        VLLMPlanner("m", constrained=True)
    VLLMPlanner("m", constrained=True, json_schema=SCHEMA).sample(_requests(1), n=2, temperature=1.0,
                                                                  top_p=1.0, seed=0)
    sp = _calls(fake_vllm, "chat")[-1]["sampling_params"][0]
    assert sp.structured_outputs is not None and sp.structured_outputs.json == SCHEMA
    assert sp.guided_decoding is None

    # vLLM < 0.12 has only GuidedDecodingParams / guided_decoding=
    monkeypatch.delattr(sys.modules["vllm.sampling_params"], "StructuredOutputsParams")
    VLLMPlanner("m", constrained=True, json_schema=SCHEMA).plan(_requests(1))
    sp = _calls(fake_vllm, "chat")[-1]["sampling_params"][0]
    assert sp.guided_decoding is not None and sp.guided_decoding.json == SCHEMA
    assert sp.structured_outputs is None


def test_accepts_hf_planner_keywords(fake_vllm):
    """The TAO loop builds either backend with HFPlanner's keywords (batch_size, max_new_tokens)."""
    from pipelines.backends.vllm import VLLMPlanner

    p = VLLMPlanner("m", adapter_path=None, batch_size=8, max_new_tokens=200, constrained=False, json_schema=None)
    (init,) = _calls(fake_vllm, "LLM")
    assert "batch_size" not in init and "max_new_tokens" not in init
    p.sample(_requests(1), n=2, temperature=0.8, top_p=0.9, seed=1)
    assert _calls(fake_vllm, "chat")[0]["sampling_params"][0].max_tokens == 200


def test_length_finish_is_reported_truncated(fake_vllm):
    from pipelines.backends.vllm import TRUNCATED, VLLMPlanner

    out = VLLMPlanner("m", max_tokens=3).plan(_requests(2))
    assert all(r.text is None and r.error == TRUNCATED for r in out)
    assert all(r.usage["output_tokens"] == 3 for r in out)


def test_data_parallel_shards_and_pins_gpus(fake_vllm, monkeypatch):
    """Two spawned ranks, two GPUs each: request order kept, each rank sees only its GPUs."""
    from pipelines.backends.vllm import VLLMPlanner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    p = VLLMPlanner("m", data_parallel_size=2, tensor_parallel_size=2)
    try:
        out = p.sample(_requests(5), n=2, temperature=0.7, top_p=0.9, seed=3)
    finally:
        p.close()
    echoes = [[json.loads(r.text) for r in samples] for samples in out]
    assert [e[0]["prompt"] for e in echoes] == [f"tents number {i}" for i in range(5)]
    assert [e[0]["devices"] for e in echoes] == ["0,1", "0,1", "2,3", "2,3", "2,3"]
    with pytest.raises(ValueError, match="needs 8 GPUs"):
        VLLMPlanner("m", data_parallel_size=4, tensor_parallel_size=2)
