"""A recording stand-in for the `vllm` package, used only by tests/test_vllm_backend.py.

vLLM needs a GPU and cannot be installed on the CPU machines the tests run on. This fake mirrors the
slice of vLLM's public API that pipelines/backends/vllm.py uses (LLM, LLM.chat, SamplingParams with
its real defaults, structured-output params, LoRARequest) and records every call in `CALLS`, so the
tests can assert what the backend asked vLLM for. Completions are deterministic JSON that echoes what
the engine saw (prompt, sample index, seed, CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from vllm.sampling_params import SamplingParams

__version__ = "0.0.0-fake"
CALLS: list[tuple[str, dict]] = []


def reset() -> None:
    CALLS.clear()


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    def __init__(self, model: str, **kwargs) -> None:
        self.model = model
        self.kwargs = kwargs
        CALLS.append(("LLM", {"model": model, **kwargs}))

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, **kwargs):
        CALLS.append(("chat", {"messages": messages, "sampling_params": sampling_params,
                               "lora_request": lora_request, "use_tqdm": use_tqdm, **kwargs}))
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(conversations)
        if len(params) != len(conversations):
            raise ValueError("the lengths of prompts and sampling_params must be the same")
        outs = []
        for conv, sp in zip(conversations, params, strict=True):
            sp = sp or SamplingParams()
            prompt = conv[-1]["content"]
            completions = []
            for k in range(sp.n):
                text = json.dumps({"prompt": prompt, "sample": k, "seed": sp.seed,
                                   "devices": os.environ.get("CUDA_VISIBLE_DEVICES")})
                tokens = list(range(len(text.split())))
                finish = "stop"
                if len(tokens) > sp.max_tokens:  # what vLLM does at max_tokens: cut and say "length"
                    tokens, finish = tokens[: sp.max_tokens], "length"
                    text = " ".join(text.split()[: sp.max_tokens])
                completions.append(CompletionOutput(k, text, tokens, finish))
            outs.append(RequestOutput(prompt, list(range(len(prompt.split()) + 5)), completions))
        return outs


__all__ = ["LLM", "SamplingParams", "CALLS", "reset"]
