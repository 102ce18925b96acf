"""vLLM backend: the GPU sampler for TAO rounds and evaluation (tensor/data parallel, LoRA adapters).

Same `plan`/`sample` contract as `pipelines.backends.hf.HFPlanner`. Prompts go through `LLM.chat`, which
renders them with the model's chat template and the generation prompt, as the transformers backend does.
`vllm` is imported when a planner is built, never at module import, so CPU-only installs can import this
module (and the eval harness can list it) without vLLM.

Notes on vLLM's defaults that would silently break plans:
- `SamplingParams.max_tokens` defaults to 16 tokens: always set here (`max_tokens`, default 512).
- Seeds are per request: request i gets a seed derived from (seed, i), so the samples of a request do
  not depend on batching, scheduling or how data-parallel ranks split the work (up to vLLM's own
  kernel-level nondeterminism on GPU).
- Structured outputs: vLLM >= 0.10.2 takes `SamplingParams(structured_outputs=StructuredOutputsParams(json=...))`;
  older releases took `guided_decoding=GuidedDecodingParams(json=...)` (removed in 0.12). Both are
  supported, newest first.

Data parallelism (`data_parallel_size > 1`): one worker process per rank, each owning
`tensor_parallel_size` GPUs through CUDA_VISIBLE_DEVICES and its own `LLM`; requests are split into
contiguous shards and the results are put back in request order. For multi-node runs, launch one
planner per node (e.g. under SLURM) on a shard of the prompts.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ir_core.types import PlanRequest, PlanResponse
from pipelines.backends import check_constrained, check_sampling, mix_seed

log = logging.getLogger(__name__)

TRUNCATED = "truncated"
INSTALL_HINT = "the vLLM backend needs vllm (GPU only): pip install 'instructed-retriever[gpu]'"


def import_vllm() -> Any:
    """Import vllm or fail with the install command (vllm is an optional, GPU-only extra)."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc


def request_seed(seed: int, index: int) -> int:
    """The per-request vLLM seed: a 63-bit mix of (seed, request index), shared with the HF backend's scheme."""
    return mix_seed(seed, index)


def structured_output_kwargs(json_schema: dict) -> dict[str, Any]:
    """The SamplingParams keyword that constrains output to `json_schema` in the installed vLLM."""
    sp = importlib.import_module("vllm.sampling_params")
    if hasattr(sp, "StructuredOutputsParams"):
        return {"structured_outputs": sp.StructuredOutputsParams(json=json_schema)}
    if hasattr(sp, "GuidedDecodingParams"):
        return {"guided_decoding": sp.GuidedDecodingParams(json=json_schema)}
    raise ImportError("this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams; "
                      "upgrade vllm or use constrained=False")


class _Engine:
    """One vLLM `LLM` plus the code that turns request specs into `PlanResponse`s (runs in any process)."""

    def __init__(self, llm_kwargs: dict[str, Any], adapter_path: str | None, json_schema: dict | None) -> None:
        vllm = import_vllm()
        self.vllm = vllm
        self.llm = vllm.LLM(**llm_kwargs)
        self.lora_request = None
        if adapter_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("planner", 1, adapter_path)
        self.structured = structured_output_kwargs(json_schema) if json_schema is not None else {}

    def run(self, messages: list[list[dict]], specs: list[dict]) -> list[list[PlanResponse]]:
        if not messages:
            return []
        params = [self.vllm.SamplingParams(**spec, **self.structured) for spec in specs]
        kwargs: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if self.lora_request is not None:
            kwargs["lora_request"] = self.lora_request
        outputs = self.llm.chat(messages, **kwargs)
        return [_responses(out) for out in outputs]


def _responses(request_output: Any) -> list[PlanResponse]:
    n_in = len(request_output.prompt_token_ids or [])
    responses = []
    for c in request_output.outputs:
        usage = {"input_tokens": n_in, "output_tokens": len(c.token_ids)}
        if c.finish_reason == "length":
            responses.append(PlanResponse(None, TRUNCATED, usage))
        elif c.finish_reason not in ("stop", None):
            responses.append(PlanResponse(None, f"finish_reason: {c.finish_reason}", usage))
        else:
            responses.append(PlanResponse(c.text.strip(), None, usage))
    return responses


def _worker(devices: str, llm_kwargs: dict, adapter_path: str | None, json_schema: dict | None,
            inbox: Any, outbox: Any) -> None:
    """A data-parallel rank: pins its GPUs, builds its engine, then serves shards until told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        engine = _Engine(llm_kwargs, adapter_path, json_schema)
        outbox.put(("ready", None))
    except BaseException:
        outbox.put(("error", traceback.format_exc()))
        return
    while True:
        job = inbox.get()
        if job is None:
            return
        try:
            outbox.put(("ok", engine.run(*job)))
        except BaseException:
            outbox.put(("error", traceback.format_exc()))


class VLLMPlanner:
    """A search planner served by vLLM. `**llm_kwargs` go to `vllm.LLM` unchanged (e.g. max_model_len).

    Also takes HFPlanner's `max_new_tokens` (= max_tokens) and `batch_size` (ignored), so the TAO loop
    builds either backend from the same keywords.
    """

    def __init__(self, model: str | Path, adapter_path: str | Path | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, max_tokens: int = 512, constrained: bool = False,
                 json_schema: dict | None = None, gpu_memory_utilization: float = 0.9, max_lora_rank: int = 64,
                 dtype: str = "auto", seed: int = 0, max_new_tokens: int | None = None,
                 batch_size: int | None = None, **llm_kwargs: Any) -> None:
        # Parity with HFPlanner's keywords, so callers can build either backend from one config:
        # max_new_tokens is max_tokens under its transformers name; batch_size is accepted and unused
        # (vLLM schedules and batches requests itself).
        if max_new_tokens is not None:
            max_tokens = max_new_tokens
        del batch_size
        if max_tokens < 1 or tensor_parallel_size < 1 or data_parallel_size < 1:
            raise ValueError("max_tokens, tensor_parallel_size and data_parallel_size must be >= 1")
        check_constrained(constrained, json_schema)
        self.model = str(model)
        self.adapter_path = str(adapter_path) if adapter_path is not None else None
        self.name = f"vllm:{self.model}" + (f"+{self.adapter_path}" if self.adapter_path else "")
        self.max_tokens = max_tokens
        self.constrained = constrained
        self.data_parallel_size = data_parallel_size
        self.llm_kwargs = {
            "model": self.model, "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype, "seed": seed,
            "enable_lora": self.adapter_path is not None, **llm_kwargs,
        }
        if self.adapter_path is not None:
            self.llm_kwargs["max_lora_rank"] = max_lora_rank
        schema = json_schema if constrained else None
        self._engine: _Engine | None = None
        self._workers: list[tuple[Any, Any, Any]] = []
        if data_parallel_size == 1:
            self._engine = _Engine(self.llm_kwargs, self.adapter_path, schema)
        else:
            self._start_workers(tensor_parallel_size, schema)

    # -- public API -------------------------------------------------------------------------------

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """Greedy decoding (temperature 0), one response per request, in order."""
        specs = [{"n": 1, "temperature": 0.0, "max_tokens": self.max_tokens} for _ in requests]
        return [r[0] for r in self._run(requests, specs)]

    def sample(self, requests: list[PlanRequest], n: int, temperature: float, top_p: float,
               seed: int) -> list[list[PlanResponse]]:
        """n samples per request; request i is seeded with a mix of (seed, i) (see the module doc)."""
        check_sampling(n, temperature, top_p)
        specs = [{"n": n, "temperature": float(temperature), "top_p": float(top_p),
                  "seed": request_seed(seed, i), "max_tokens": self.max_tokens} for i in range(len(requests))]
        return self._run(requests, specs)

    def close(self) -> None:
        """Stop data-parallel workers (a single-process engine is freed with the planner)."""
        for proc, inbox, _ in self._workers:
            inbox.put(None)
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        self._workers = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals --------------------------------------------------------------------------------

    def _run(self, requests: Sequence[PlanRequest], specs: list[dict]) -> list[list[PlanResponse]]:
        messages = [list(r.messages) for r in requests]
        if self._engine is not None:
            return self._engine.run(messages, specs)
        k = len(self._workers)
        bounds = [len(messages) * r // k for r in range(k + 1)]
        for r, (_, inbox, _) in enumerate(self._workers):
            inbox.put((messages[bounds[r]:bounds[r + 1]], specs[bounds[r]:bounds[r + 1]]))
        results: list[list[PlanResponse]] = []
        for _, _, outbox in self._workers:
            status, payload = outbox.get()
            if status != "ok":
                raise RuntimeError(f"vLLM data-parallel worker failed:\n{payload}")
            results.extend(payload)
        return results

    def _start_workers(self, tp: int, schema: dict | None) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(self.data_parallel_size * tp)]
        if len(gpus) < self.data_parallel_size * tp:
            raise ValueError(f"data_parallel_size={self.data_parallel_size} x tensor_parallel_size={tp} needs "
                             f"{self.data_parallel_size * tp} GPUs; CUDA_VISIBLE_DEVICES has {len(gpus)}")
        ctx = mp.get_context("spawn")  # CUDA cannot be re-initialised in a forked child
        for r in range(self.data_parallel_size):
            inbox, outbox = ctx.Queue(), ctx.Queue()
            devices = ",".join(gpus[r * tp:(r + 1) * tp])
            proc = ctx.Process(target=_worker, args=(devices, self.llm_kwargs, self.adapter_path, schema,
                                                     inbox, outbox), daemon=True)
            proc.start()
            self._workers.append((proc, inbox, outbox))
        for _, _, outbox in self._workers:
            status, payload = outbox.get()
            if status != "ready":
                self.close()
                raise RuntimeError(f"vLLM data-parallel worker failed to start:\n{payload}")


__all__ = ["VLLMPlanner", "TRUNCATED", "INSTALL_HINT", "import_vllm", "structured_output_kwargs"]
