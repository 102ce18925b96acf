"""The planner interface every model backend implements (local transformers, vLLM, OpenAI, Anthropic).

A backend turns chat messages (built by `rewards.prompts`, the one place prompts come from) into the raw
text of a search plan; parsing, validation and execution stay in `rewards`, so every backend is judged
by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class PlanRequest:
    id: str  # the query id, for logs and caches
    messages: list[dict]  # [{"role": "system", "content": ...}, {"role": "user", "content": ...}]


@dataclass
class PlanResponse:
    text: str | None  # the completion (or a tool call's JSON arguments); None when the backend failed
    error: str | None = None  # why there is no usable text (refusal, no tool call, HTTP error, ...)
    usage: dict = field(default_factory=dict)  # e.g. {"input_tokens": .., "output_tokens": .., "cost_usd": ..}


class Planner(Protocol):
    name: str

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """One response per request, in order; never raises for a single bad request."""
        ...
