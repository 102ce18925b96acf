"""A planner fake for TAO loop tests: plans from the request's own text, no model."""

from __future__ import annotations

import json

from ir_core.types import PlanResponse


class FakePolicy:
    """Plans from the user's query: sample j alternates between the query itself and junk keywords."""

    def __init__(self, model_path: str, adapter_path: str | None, calls: list):
        self.name = "fake"
        calls.append((model_path, adapter_path))

    @staticmethod
    def _plan(query: str) -> str:
        return json.dumps({"searches": [{"query": query, "filter": None}]})

    def plan(self, requests):
        return [PlanResponse(self._plan(r.messages[-1]["content"])) for r in requests]

    def sample(self, requests, n, temperature, top_p, seed):
        out = []
        for r in requests:
            q = r.messages[-1]["content"]
            out.append(
                [
                    PlanResponse(self._plan(q if j % 2 == 0 else "zzzz qqqq"), usage={"seed": seed})
                    for j in range(n)
                ]
            )
        return out
