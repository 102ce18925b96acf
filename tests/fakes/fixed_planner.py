"""A deterministic planner for serving tests: it implements the Planner protocol with fixed completions.

`completions` maps a request's user query to the text the "model" writes (a plan, or junk to exercise
the error path); other queries get a one-search plan of the query itself. `delay_s` is slept once per
`plan` call (a batch), so tests can see batching and time limits; `calls` records each batch's size.
`errors` maps a query to the backend error its request gets instead (e.g. "prompt_too_long: ...").
"""

from __future__ import annotations

import json
import threading
import time

from ir_core.types import PlanRequest, PlanResponse


class FixedPlanner:
    name = "fixed"

    def __init__(self, completions: dict[str, str | None] | None = None, delay_s: float = 0.0,
                 errors: dict[str, str] | None = None):
        self.completions = dict(completions or {})
        self.errors = dict(errors or {})
        self.delay_s = delay_s
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        with self._lock:
            self.calls.append(len(requests))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for req in requests:
            query = req.messages[-1]["content"]
            if query in self.errors:
                out.append(PlanResponse(None, self.errors[query], {"input_tokens": 5000, "output_tokens": 0}))
            elif query in self.completions:
                text = self.completions[query]
                out.append(PlanResponse(text, None if text is not None else "truncated"))
            else:
                out.append(PlanResponse(json.dumps({"searches": [{"query": query}]})))
        return out


def brand_plan(query: str, brand: str, op: str = "ne") -> str:
    """A plan text with one search and a brand filter, as a tuned planner writes for 'not <brand>'."""
    return json.dumps({"searches": [{"query": query, "filter": {"field": "brand", "op": op, "value": brand}}]})
