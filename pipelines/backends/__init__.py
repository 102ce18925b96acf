"""Model backends that implement `ir_core.types.Planner` plus `sample` for TAO's sampling stage.

`hf.HFPlanner` runs transformers (CPU or one GPU); `vllm.VLLMPlanner` runs vLLM (GPU clusters). Both take
the same `PlanRequest`s, return the same `PlanResponse`s and report usage as
{"input_tokens", "output_tokens"}, so the eval harness and the TAO loop never care which one ran.
`make_planner` builds the one a TAO config asks for; backend modules are imported lazily (by it and by
`eval.methods.resolve_planner`), so importing this package pulls in neither torch nor vllm.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np


def mix_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for (seed, index): nearby user seeds never reuse each other's streams.

    Both backends derive their sub-seeds with it (per batch in transformers, per request in vLLM), so
    TAO round r with seed r and round r+1 with seed r+1 never draw the same random numbers.
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def make_planner(cfg: Any, model_path: str, adapter_path: str | None, json_schema: dict | None) -> Any:
    """A planner backend with ``.plan`` (greedy) and ``.sample`` for a `TaoConfig`'s backend and decoding.

    Imported lazily: vLLM is optional and transformers is heavy; a caller that only parses configs pays
    for neither.
    """
    kwargs = dict(
        adapter_path=adapter_path,
        batch_size=cfg.sample_batch_size,
        max_new_tokens=cfg.max_new_tokens,
        constrained=cfg.constrained,
        json_schema=json_schema,
    )
    if cfg.backend == "vllm":
        from pipelines.backends.vllm import VLLMPlanner

        return VLLMPlanner(model_path, **kwargs)
    from pipelines.backends.hf import HFPlanner

    return HFPlanner(model_path, **kwargs)


PlannerFactory = Callable[[Any, str, "str | None", "dict | None"], Any]


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
