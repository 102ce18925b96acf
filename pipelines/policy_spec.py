"""A TAO policy's prompt form and `DecodingSpec`: how the loop samples and evaluates it, and how a finished
run is served.

`policy_spec` is the one place that turns a run's settings into decoding and prompt settings; the loop
calls it for every planner it builds, and `run_spec` calls it on a run directory's own files (config.json,
best.json, plan_schema.json), so the service decodes the best policy exactly as the run scored it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ir_core.config import ConfigError
from ir_core.types import Policy
from pipelines.backends import DecodingSpec
from pipelines.tao_config import TaoConfig
from rewards.prompts import default_examples


def policy_mode(cfg: TaoConfig, policy: Policy) -> str:
    """The prompt mode a policy expects: the one it was trained on, else the run's."""
    return policy.prompt_mode or cfg.mode


def train_mode(cfg: TaoConfig) -> str:
    """The prompt mode of a round's training rows (context distillation when it differs from `mode`)."""
    return cfg.policy_mode or cfg.mode


def example_set(cfg: TaoConfig, mode: str | None = None) -> str:
    """The few-shot set (a name in `rewards.prompts.EXAMPLE_SETS`) every prompt of the run in ``mode``
    (default: the run's) carries: the run's, and none in a distilled mode other than the run's own."""
    return "none" if mode is not None and mode != cfg.mode else cfg.examples


def prompt_examples(cfg: TaoConfig, bench: Any, mode: str | None = None) -> list[dict]:
    """The few-shot examples of `example_set`."""
    return default_examples(bench.schema, example_set(cfg, mode))


def policy_spec(cfg: TaoConfig, policy: Policy, plan_schema: dict | None) -> DecodingSpec:
    """The spec of `policy` under the run's settings: its backend and decoding bounds, the prompt form it
    was trained on (`Policy.prompt_mode`) and, with `link_request`, the bounds of each request's own schema."""
    mode = policy_mode(cfg, policy)
    return DecodingSpec(
        backend=cfg.backend, model=policy.model_path, adapter=policy.adapter_path, plan_schema=plan_schema,
        constrained=cfg.constrained, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.sample_batch_size,
        mode=mode, examples=example_set(cfg, mode),
        request_bounds=cfg.schema_bounds() if cfg.link_request else None)


def run_spec(run: str | Path) -> tuple[DecodingSpec, dict] | None:
    """The spec of a TAO run's best policy, with the run's best.json; None when the best round is not a
    trained one (round 0 won, or the run is unfinished) or the run's files do not parse. Checkpoint paths
    are as the run recorded them."""
    run = Path(run)
    best, config = _read_json(run / "best.json"), _read_json(run / "config.json")
    if best is None or config is None:
        return None
    policy, best_round = best.get("policy"), best.get("round")
    if not isinstance(best_round, int) or best_round < 1 or not isinstance(policy, dict) \
            or not isinstance(policy.get("model_path"), str):
        return None
    settings = config.get("tao", config)  # config.json is {tao, training, model}; older runs wrote it flat
    fields = {f.name for f in dataclasses.fields(TaoConfig)}
    try:
        cfg = TaoConfig(**{k: v for k, v in settings.items() if k in fields})
        pol = Policy.from_dict(policy)
    except (ConfigError, ValueError, TypeError):
        return None
    return policy_spec(cfg, pol, _read_json(run / "plan_schema.json")), best


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
