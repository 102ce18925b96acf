"""Which planner to serve, and its decoding spec: the newest tuned TAO checkpoint, else the untrained model.

A TAO run directory records its best round in `best.json`, its settings in `config.json` and the JSON
schema its plans were decoded under in `plan_schema.json`; `pipelines.policy_spec.run_spec` reads them
into the run's `DecodingSpec`, so the service decodes under the same schema and prompt settings and serves
the plan the run scored. The planner itself comes from the one registry, `pipelines.backends.make_planner`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.backends import DecodingSpec

DEFAULT_MODEL = "models/smollm2-135m-instruct"
# decoding bounds for the untrained model, as in configs/tao/demo.yaml: unbounded, SmolLM2-135M loops
# through copies of one search until it is cut off
UNTRAINED_BOUNDS = {"max_searches": 2, "max_depth": 2, "max_query_chars": 100, "max_items": 4}
UNTRAINED_MAX_NEW_TOKENS = 160
BACKENDS = ("vllm", "hf", "openai", "anthropic")  # what `python -m serve --backend` offers
API_BACKENDS = ("openai", "anthropic")
# a served backend -> its registry name: serving runs vLLM's async engine, not the offline batch one
REGISTRY_NAMES = {"vllm": "vllm-async"}
SERVE_BATCH = 8  # transformers: sequences per generate call (the micro-batcher's largest batch)


@dataclass
class PolicyChoice:
    """A planner checkpoint to serve, the spec it was trained and evaluated with, and where it came from.

    The spec's backend is the run's; `serving_spec` puts the served backend in. A None `plan_schema` means
    the untrained bounds over the benchmark's schema."""

    spec: DecodingSpec
    source: str = "untrained"  # what `make serve` prints

    def describe(self) -> str:
        spec = self.spec
        return f"{self.source}: {spec.model}" + (f" + adapter {spec.adapter}" if spec.adapter else "")


def untrained(model: str, source: str) -> PolicyChoice:
    """A checkpoint no TAO run describes: the default prompt, the untrained bounds."""
    return PolicyChoice(DecodingSpec("auto", model, max_new_tokens=UNTRAINED_MAX_NEW_TOKENS), source)


def find_tuned_policy(runs_dir: str | Path = "runs") -> PolicyChoice | None:
    """The best checkpoint of the most recently finished TAO run under `runs_dir` whose best round was
    trained (round > 0) and whose files still exist; None if there is none."""
    from pipelines.policy_spec import run_spec  # lazily: the loop's modules, not serving's

    candidates = sorted(Path(runs_dir).glob("*/best.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for best_path in candidates:
        run = best_path.parent
        found = run_spec(run)
        if found is None:
            continue
        spec, best = found
        model_dir = _located(spec.model, run)
        adapter_dir = _located(spec.adapter, run) if spec.adapter is not None else None
        if model_dir is None or (spec.adapter is not None and adapter_dir is None):
            continue
        recall = (best.get("dev") or {}).get("all", {}).get("recall", float("nan"))
        return PolicyChoice(dataclasses.replace(spec, model=model_dir, adapter=adapter_dir),
                            source=f"tuned ({run}, round {best['round']}, dev recall {recall:.3f})")
    return None


def _located(path: str, run: Path) -> str | None:
    """A checkpoint path as the TAO run recorded it: as given (absolute, or relative to where the run
    was started, usually the repo root), else relative to one of the run directory's ancestors, so a run
    served from another directory still finds its own checkpoints; None if none exists."""
    for base in (Path(), *run.resolve().parents):
        if (base / path).is_dir():
            return str(base / path)
    return None


def choose_policy(runs_dir: str | Path = "runs", model: str | None = None) -> PolicyChoice:
    """An explicit `model` wins; else the newest tuned checkpoint; else the untrained default model."""
    if model:
        return untrained(model, "given")
    return find_tuned_policy(runs_dir) or untrained(DEFAULT_MODEL, "untrained")


def decoding_schema(choice: PolicyChoice, bench: Any) -> dict:
    from rewards.plan import plan_json_schema

    return choice.spec.plan_schema or plan_json_schema(bench.schema, **UNTRAINED_BOUNDS)


def serving_spec(backend: str, choice: PolicyChoice, bench: Any, **options: Any) -> DecodingSpec:
    """The spec the service builds its planner from: the choice's on `backend` (a served name or any
    registered one), constrained to the choice's plan schema; an API model declares the benchmark's plan
    schema as its tool. `options` go to the backend's constructor."""
    if backend in API_BACKENDS:
        from rewards.plan import plan_json_schema

        if choice.source != "given":
            raise ValueError(f"backend {backend!r} needs --model, the API model's name (e.g. gpt-5-nano)")
        return dataclasses.replace(choice.spec, backend=backend, plan_schema=plan_json_schema(bench.schema),
                                   max_new_tokens=None, options=options)
    return dataclasses.replace(choice.spec, backend=REGISTRY_NAMES.get(backend, backend), constrained=True,
                               plan_schema=decoding_schema(choice, bench), batch_size=SERVE_BATCH, options=options)


def build_planner(backend: str, choice: PolicyChoice, bench: Any, **options: Any) -> Any:
    """A planner for `backend` ("vllm": the async engine; "hf": transformers; "openai"/"anthropic": the
    model the choice names), through the planner registry."""
    from pipelines.backends import make_planner

    return make_planner(serving_spec(backend, choice, bench, **options))
