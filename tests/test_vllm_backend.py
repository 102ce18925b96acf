"""VLLMPlanner without an engine: engine arguments per device, backend choice, and the GPU-only paths
(tensor/data parallelism) against a recording fake `vllm` (tests/fakes/vllm). The real engine's
behaviour (sampling, seeds, structured outputs, LoRA) is tested in tests/test_vllm_real.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from ir_core.types import PlanRequest

FAKES = Path(__file__).parent / "fakes"


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


def test_missing_vllm_says_how_to_install(monkeypatch):
    from pipelines.backends.vllm import VLLMPlanner

    _drop_vllm_modules(monkeypatch)
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"instructed-retriever\[cpu\]"):
        VLLMPlanner("models/smollm2-135m-instruct")


def test_cpu_engine_arguments_avoid_the_seeded_chunked_prefill_crash():
    from pipelines.backends.vllm import GIB, SPARSE_TOP_P, engine_kwargs

    kw = engine_kwargs("m", cpu=True, constrained=True)
    assert kw["enable_chunked_prefill"] is False  # seeded requests crash on a split prompt on CPU
    assert kw["max_num_batched_tokens"] >= kw["max_model_len"]  # so a whole prompt always fits a step
    assert kw["kv_cache_memory_bytes"] == GIB and "gpu_memory_utilization" not in kw
    assert kw["enforce_eager"] and kw["enable_prefix_caching"] and kw["dtype"] in ("bfloat16", "float32")
    assert kw["structured_outputs_config"] == {"backend": "guidance", "disable_any_whitespace": True}
    kw = engine_kwargs("m", cpu=True, kv_cache_gib=0.5, max_model_len=8192, dtype="float32",
                       whitespace_flexible=True, constrained=True, lora=True, max_lora_rank=8)
    assert kw["kv_cache_memory_bytes"] == GIB // 2 and kw["max_num_batched_tokens"] == 8192
    assert kw["dtype"] == "float32" and kw["enable_lora"] and kw["max_lora_rank"] == 8
    assert kw["structured_outputs_config"]["disable_any_whitespace"] is False
    assert "structured_outputs_config" not in engine_kwargs("m", cpu=True)
    assert engine_kwargs("m", cpu=True, enforce_eager=False)["enforce_eager"] is False  # caller wins
    # top-p without a vocabulary sort on CPU (pipelines/backends/vllm_topp.py); vLLM's own on GPUs
    assert engine_kwargs("m", cpu=True)["logits_processors"] == [SPARSE_TOP_P]
    assert "logits_processors" not in engine_kwargs("m", cpu=False)
    assert "logits_processors" not in engine_kwargs("m", cpu=True, sparse_top_p=False)


def test_cpu_engine_binds_the_worker_to_every_core_unless_the_user_chose(monkeypatch):
    import os

    from pipelines.backends.vllm import engine_kwargs

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    engine_kwargs("m", cpu=True)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, sorted(os.sched_getaffinity(0))))
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    engine_kwargs("m", cpu=True)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_gpu_engine_arguments_are_vllm_defaults():
    from pipelines.backends.vllm import engine_kwargs

    kw = engine_kwargs("Qwen/Qwen3-4B-Instruct-2507", cpu=False, tensor_parallel_size=2)
    assert kw["gpu_memory_utilization"] == 0.9 and kw["tensor_parallel_size"] == 2 and kw["dtype"] == "auto"
    for cpu_only in ("enforce_eager", "enable_chunked_prefill", "kv_cache_memory_bytes", "max_model_len"):
        assert cpu_only not in kw


def test_auto_backend_is_vllm_where_it_imports(monkeypatch, fake_vllm):
    from pipelines.backends import resolve_backend

    assert resolve_backend("auto") == "vllm" and resolve_backend("hf") == "hf"
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert resolve_backend("auto") == "hf"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tgi")


def test_auto_backend_falls_back_when_vllm_is_broken(monkeypatch, tmp_path):
    from pipelines.backends import resolve_backend

    _drop_vllm_modules(monkeypatch)
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_backend("auto") == "hf"


def test_data_parallel_shards_pins_gpus_and_switches_adapters(fake_vllm, monkeypatch):
    """Two spawned ranks, two GPUs each: request order kept, each rank sees only its GPUs."""
    from pipelines.backends.vllm import VLLMPlanner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with VLLMPlanner("m", data_parallel_size=2, tensor_parallel_size=2, enable_lora=True) as p:
        out = p.sample(_requests(5), n=2, temperature=0.7, top_p=0.9, seed=3)
        p.set_adapter("runs/r1/adapter")
        tuned = p.plan(_requests(3))
    echoes = [[json.loads(r.text) for r in samples] for samples in out]
    assert [e[0]["prompt"] for e in echoes] == [f"tents number {i}" for i in range(5)]
    assert [e[0]["devices"] for e in echoes] == ["0,1", "0,1", "2,3", "2,3", "2,3"]
    seeds = [e[0]["seed"] for e in echoes]
    assert len(set(seeds)) == 5 and all(e[0]["adapter"] is None for e in echoes)
    assert [json.loads(r.text)["adapter"] for r in tuned] == ["runs/r1/adapter"] * 3
    with pytest.raises(RuntimeError, match="closed"):
        p.plan(_requests(1))
    with pytest.raises(ValueError, match="needs 8 GPUs"):
        VLLMPlanner("m", data_parallel_size=4, tensor_parallel_size=2)
