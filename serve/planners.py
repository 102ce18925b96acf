"""Which planner to serve, and building it: the newest tuned TAO checkpoint, else the untrained model.

A TAO run directory records its best round in `best.json` ({"round", "policy": {"model_path",
"adapter_path"}, "dev"}) and the JSON schema its plans were decoded under in `plan_schema.json`; the
service decodes under the same schema and prompt settings, so it serves the plan the run scored.
`find_tuned_policy` is the one place that knows this layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "models/smollm2-135m-instruct"
# decoding bounds for the untrained model, as in configs/tao/demo.yaml: unbounded, SmolLM2-135M loops
# through copies of one search until it is cut off
UNTRAINED_BOUNDS = {"max_searches": 2, "max_depth": 2, "max_query_chars": 100, "max_items": 4}
BACKENDS = ("vllm", "hf", "openai", "anthropic")


@dataclass
class PolicyChoice:
    """A planner checkpoint to serve and the settings it was trained and evaluated with."""

    model_path: str
    adapter_path: str | None = None
    plan_schema: dict | None = None  # None: the untrained bounds over the benchmark's schema
    mode: str = "separate"
    examples: str = "default"  # "default" | "basic" | "none", as in TAO configs
    max_new_tokens: int = 160
    request_bounds: dict | None = None  # the run decoded each request under its own schema, with these bounds
    source: str = "untrained"  # what `make serve` prints

    def describe(self) -> str:
        return f"{self.source}: {self.model_path}" + (f" + adapter {self.adapter_path}" if self.adapter_path else "")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_tuned_policy(runs_dir: str | Path = "runs") -> PolicyChoice | None:
    """The best checkpoint of the most recently finished TAO run under `runs_dir` whose best round was
    trained (round > 0) and whose files still exist; None if there is none."""
    from pipelines.tao_config import schema_bounds  # lazily: the loop's config module, not serving's

    candidates = sorted(Path(runs_dir).glob("*/best.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for best_path in candidates:
        best = _read_json(best_path) or {}
        policy = best.get("policy") or {}
        model, adapter = policy.get("model_path"), policy.get("adapter_path")
        if not isinstance(best.get("round"), int) or best["round"] < 1 or not isinstance(model, str):
            continue
        run = best_path.parent
        model_dir, adapter_dir = _located(model, run), _located(adapter, run) if adapter is not None else None
        if model_dir is None or (adapter is not None and adapter_dir is None):
            continue
        config = _read_json(run / "config.json") or {}
        config = config.get("tao", config)  # the loop's own settings (config.json is {tao, training, model})
        return PolicyChoice(
            model_path=model_dir, adapter_path=adapter_dir, plan_schema=_read_json(run / "plan_schema.json"),
            # a distilled policy (issue 21) records the prompt it was trained on; it carries no examples
            mode=policy.get("prompt_mode") or config.get("mode", "separate"),
            examples="none" if policy.get("prompt_mode") else config.get("examples", "default"),
            max_new_tokens=int(config.get("max_new_tokens", 160)),
            request_bounds=schema_bounds(config) if config.get("link_request") else None,
            source=f"tuned ({run}, round {best['round']}, dev recall "
                   f"{(best.get('dev') or {}).get('all', {}).get('recall', float('nan')):.3f})",
        )
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
        return PolicyChoice(model_path=model, source="given")
    return find_tuned_policy(runs_dir) or PolicyChoice(model_path=DEFAULT_MODEL)


def decoding_schema(choice: PolicyChoice, bench: Any) -> dict:
    from rewards.plan import plan_json_schema

    return choice.plan_schema or plan_json_schema(bench.schema, **UNTRAINED_BOUNDS)


def build_planner(backend: str, choice: PolicyChoice, bench: Any, **kwargs: Any) -> Any:
    """A planner for `backend` ("vllm": the async engine; "hf": transformers; "openai"/"anthropic": the
    model named by `choice.model_path`), decoding under the choice's plan schema."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    schema = decoding_schema(choice, bench)
    if backend == "vllm":
        from serve.vllm_async import AsyncVLLMPlanner

        return AsyncVLLMPlanner(choice.model_path, choice.adapter_path, json_schema=schema,
                                max_tokens=choice.max_new_tokens, **kwargs)
    if backend == "hf":
        from pipelines.backends.hf import HFPlanner

        kwargs.setdefault("batch_size", 8)
        return HFPlanner(choice.model_path, adapter_path=choice.adapter_path, constrained=True, json_schema=schema,
                         max_new_tokens=choice.max_new_tokens, **kwargs)
    if choice.source != "given":
        raise ValueError(f"backend {backend!r} needs --model, the API model's name (e.g. gpt-5-nano)")
    from eval.methods import resolve_planner

    return resolve_planner(f"{backend}:{choice.model_path}", bench, **kwargs)
