"""Deterministic sampler and scorer fakes for the stage resume and concurrency tests."""

from __future__ import annotations

import random
import time
from pathlib import Path

from ir_core.types import PlanResponse
from pipelines.sample import sample_stage

PROMPTS = [
    {
        "prompt_id": f"q{i:03d}",
        "messages": [{"role": "user", "content": f"query {i}"}],
        "relevant_ids": [i, i + 1],
    }
    for i in range(23)
]


class SeededSampler:
    """Deterministic given (seed, batch): like a real backend with a fixed seed."""

    def __init__(self, fail_after_batches: int | None = None, delay: float = 0.0):
        self.fail_after = fail_after_batches
        self.delay = delay
        self.batches = 0

    def sample(self, requests, n, temperature, top_p, seed):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("injected failure")
        self.batches += 1
        time.sleep(self.delay)
        rng = random.Random(seed)
        return [
            [PlanResponse(f"{r.id}:{rng.random():.6f}", usage={"output_tokens": j}) for j in range(n)]
            for r in requests
        ]


class CountingScorer:
    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.calls = 0

    def __call__(self, text, relevant):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # like Ctrl-C or a pre-emption signal
        self.calls += 1
        return {"reward": float(text.rsplit(":", 1)[1]), "valid": True, "error": None, "n_searches": 1}


def sample_into(path: Path, sampler) -> dict:
    return sample_stage(
        sampler, PROMPTS, path, n=3, temperature=0.8, top_p=0.9, seed=7, batch_size=4, progress=False
    )
