"""Fake `vllm.sampling_params`: SamplingParams with vLLM's defaults (max_tokens=16!) and StructuredOutputsParams."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StructuredOutputsParams:
    json: dict | str | None = None


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int | None = 16
    structured_outputs: StructuredOutputsParams | None = None
    extra_args: dict | None = None
