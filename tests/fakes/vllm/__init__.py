"""A recording stand-in for the `vllm` package, for what a CPU machine cannot run: tensor and data
parallelism over several GPUs (tests/test_vllm_backend.py). Everything else is tested against the
real engine (tests/test_vllm_real.py).

It mirrors the slice of vLLM's API that pipelines/backends/vllm.py uses (LLM, get_tokenizer,
LLM.generate on token prompts, SamplingParams, StructuredOutputsParams, LoRARequest) and records every
call in `CALLS`. Token ids are the prompt's characters; completions are JSON echoing what the engine
saw (the prompt's last line, sample index, seed, adapter, CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

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
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class Tokenizer:
    """Characters as token ids; the chat template joins the messages' contents line by line."""

    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "\n".join(m["content"] for m in messages)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class LLM:
    def __init__(self, model: str, **kwargs) -> None:
        self.model = model
        self.kwargs = kwargs
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len")))
        CALLS.append(("LLM", {"model": model, **kwargs}))

    def get_tokenizer(self) -> Tokenizer:
        return Tokenizer()

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None, **kwargs):
        CALLS.append(("generate", {"prompts": prompts, "sampling_params": sampling_params,
                                   "lora_request": lora_request, **kwargs}))
        if len(sampling_params) != len(prompts):
            raise ValueError("the lengths of prompts and sampling_params must be the same")
        outs = []
        for prompt, sp in zip(prompts, sampling_params, strict=True):
            ids = prompt["prompt_token_ids"]
            last = "".join(map(chr, ids)).split("\n")[-1]
            completions = []
            for k in range(sp.n):
                text = json.dumps({"prompt": last, "sample": k, "seed": sp.seed,
                                   "adapter": lora_request.lora_path if lora_request else None,
                                   "devices": os.environ.get("CUDA_VISIBLE_DEVICES")})
                completions.append(CompletionOutput(k, text, list(range(len(text.split()))), "stop"))
            outs.append(RequestOutput(ids, completions))
        return outs


__all__ = ["LLM", "SamplingParams", "CALLS", "reset"]
