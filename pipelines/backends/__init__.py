"""Model backends that implement `ir_core.types.Planner` plus `sample` for TAO's sampling stage.

`hf.HFPlanner` runs transformers (CPU or one GPU); `vllm.VLLMPlanner` runs vLLM (GPU clusters). Both take
the same `PlanRequest`s, return the same `PlanResponse`s and report usage as
{"input_tokens", "output_tokens"}, so the eval harness and the TAO loop never care which one ran.
Modules are imported lazily by callers (`eval.methods.resolve_planner`), so importing this package
pulls in neither torch nor vllm.
"""

from __future__ import annotations

import numpy as np


def mix_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for (seed, index): nearby user seeds never reuse each other's streams.

    Both backends derive their sub-seeds with it (per batch in transformers, per request in vLLM), so
    TAO round r with seed r and round r+1 with seed r+1 never draw the same random numbers.
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))
