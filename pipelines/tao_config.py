"""The settings of a TAO run: the loop's own (`TaoConfig`), TRL's trainer config and TRL's `ModelConfig`.

Training settings are TRL's fields under TRL's names (``learning_rate``, ``num_train_epochs``,
``per_device_train_batch_size``, ``seed``, ``report_to``, ...) and the model and LoRA settings are
`trl.ModelConfig`'s (``model_name_or_path``, ``use_peft``, ``lora_r``, ...), all in one flat YAML file or
command line, parsed by `ir_core.config` the way TRL's scripts parse theirs. The strategy picks the trainer
config class from the registry (`pipelines.strategies`; best-of-n: `SFTConfig`, dpo: `DPOConfig`, kto:
`KTOConfig`). Every default is the recipe that works, `make demo`'s, kept in one block in `pipelines.recipe`
(with what depends on the machine in its `device_defaults`); a YAML file only says what differs from it.

``seed`` is TRL's: round r samples and trains with ``seed + r``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ir_core.config import ConfigError, check_range, help_field, parse_config, parse_or_exit, peek
from pipelines.recipe import LOOP, device_defaults
from pipelines.strategies import REGISTRY
from pipelines.train import (
    check_training,
    model_defaults,
    nondefault,
    trainer_config_class,
    training_defaults,
)
from rewards.plan import check_bound, plan_json_schema
from rewards.prompts import query_schema

# TaoConfig's decoding-bound fields -> plan_json_schema keywords
SCHEMA_BOUNDS = {"max_searches": "max_searches", "max_filter_depth": "max_depth",
                 "max_query_chars": "max_query_chars", "max_filter_items": "max_items"}


@dataclass
class TaoConfig:
    """The loop: what to sample, how to score and select, how to evaluate, where to write.

    Defaults marked ``LOOP[...]`` are the recipe (`pipelines.recipe`), ``torch_threads`` the machine's."""

    benchmark: str = help_field("benchmark folder (make benchmark)", default="data/benchmark/synthetic")
    run_dir: str = help_field("run folder; a rerun with the same folder resumes", default="runs/tao")
    backend: Literal["hf", "vllm", "auto"] = help_field(
        "planner backend: transformers, vLLM, or auto (vLLM wherever it imports, else transformers)",
        default=LOOP["backend"])
    engine: Literal["tantivy", "bm25"] = help_field("search engine that executes plans", default="tantivy")
    k: int = help_field("reward and headline metric: Recall@k", default=20)
    rounds: int = help_field("TAO rounds after the round-0 evaluation", default=LOOP["rounds"])
    # sampling
    n: int = help_field("plans sampled per training prompt (>= 2)", default=LOOP["n"])
    temperature: float = help_field("sampling temperature (> 0: greedy gives N identical plans)",
                                    default=LOOP["temperature"])
    top_p: float = help_field("nucleus sampling mass in (0, 1]", default=LOOP["top_p"])
    max_train_prompts: int | None = help_field("training prompts per round (None: all)",
                                               default=LOOP["max_train_prompts"])
    sample_batch_size: int = help_field("sequences per generate call", default=LOOP["sample_batch_size"])
    max_new_tokens: int = help_field("longest plan in tokens", default=LOOP["max_new_tokens"])
    constrained: bool = help_field("JSON-schema constrained decoding", default=LOOP["constrained"])
    max_searches: int | None = help_field("decoding bound: searches per plan (None: the plan language's)",
                                          default=LOOP["max_searches"])
    max_filter_depth: int | None = help_field("decoding bound: filter nesting depth",
                                              default=LOOP["max_filter_depth"])
    max_query_chars: int | None = help_field("decoding bound: characters of a query or keyword value",
                                             default=LOOP["max_query_chars"])
    max_filter_items: int | None = help_field("decoding bound: values of in/nin, children of all/any",
                                              default=LOOP["max_filter_items"])
    link_values: bool = help_field(
        "decoding constrains keyword filter values to the index's values (schema linking)",
        default=LOOP["link_values"])
    link_request: bool = help_field(
        "decoding per request: the query is the request's own text and filter values are only those its "
        "instructions name (brands, colours, numbers) or the date anchors; no instructions, no filter "
        "(needs constrained)", default=LOOP["link_request"])
    mode: Literal["separate", "merged", "chat", "compact"] = help_field(
        "prompt mode of rewards.prompts (sampling, training, eval): chat = examples as answered turns; "
        "compact = chat with a short system spec, for link_request",
        default=LOOP["mode"])
    policy_mode: Literal["separate", "merged", "chat", "compact", "request"] | None = help_field(
        "context distillation: the prompt mode training rows use, so the prompt a trained policy expects; "
        "later rounds sample with it and evaluation and serving build it (None: mode)",
        default=LOOP["policy_mode"])
    examples: Literal["default", "basic", "none"] = help_field(
        "few-shot examples: default (every constraint type), basic (the earlier four) or none",
        default=LOOP["examples"])
    explore_steps: int = help_field(
        "edit search after scoring: hill-climbing moves from each prompt's best sample over its one-edit "
        "neighbours in the request's action space (pipelines.explore; needs link_request); 0: off",
        default=LOOP["explore_steps"])
    # selection
    strategy: str = help_field("a registered strategy (pipelines.strategies): best-of-n (SFT), dpo (pairs) or "
                               "kto (labels)", default=LOOP["strategy"])
    round_strategies: list[str] | None = help_field(
        "strategy of each round (round r: entry r, the last entry for later rounds), e.g. best-of-n dpo: "
        "SFT on the first round's best plans, then DPO against the trained policy's own mistakes; None: "
        "strategy every round", default=LOOP["round_strategies"])
    round_learning_rates: list[float] | None = help_field(
        "learning_rate of each round, as round_strategies (None: learning_rate every round)",
        default=LOOP["round_learning_rates"])
    threshold: float = help_field("lowest reward a kept plan may have", default=LOOP["threshold"])
    min_gap: float = help_field("DPO: smallest reward gap of a pair", default=LOOP["min_gap"])
    max_pairs: int = help_field("DPO: pairs per prompt, the best plan against each of the closest worse ones",
                                default=LOOP["max_pairs"])
    drop_ties: bool = help_field("drop prompts whose plans all have the same reward", default=LOOP["drop_ties"])
    balance: Literal["none", "upsample"] = help_field(
        "upsample: repeat each decision's rows (the field/op of each filter leaf, or none) up to the largest "
        "decision's count, so no op wins by count", default=LOOP["balance"])
    max_repeat: int = help_field("balance: most copies of one row", default=LOOP["max_repeat"])
    margin: float = help_field("a selected plan must beat its prompt's raw-query plan by this much reward "
                               "(-1: no baseline; requests without instructions only need to match it)",
                               default=LOOP["margin"])
    # training (TRL's own fields are in the trainer config and ModelConfig)
    merge: bool = help_field("also save the adapter merged into the base model", default=LOOP["merge"])
    continue_from: Literal["best", "last", "base"] = help_field(
        "next round starts from the best or the last checkpoint, or retrains the base model (ReST-EM)",
        default=LOOP["continue_from"])
    train_launcher: str | None = help_field(
        "run training as a subprocess: 'python' (this interpreter), 'accelerate launch --config_file "
        "launch/accelerate/ddp.yaml', ...; None: inside the loop's process", default=LOOP["train_launcher"])
    # evaluation
    eval_dev_limit: int | None = help_field("dev queries per evaluation (None: all)", default=None)
    eval_test_limit: int | None = help_field("test queries per evaluation (None: all)", default=None)
    eval_test: bool = help_field("also evaluate on test (reported, never used for selection)", default=True)
    eval_batch_size: int = help_field("prompts per planner call in evaluation", default=LOOP["eval_batch_size"])
    baselines: list[str] = help_field("methods evaluated next to round 0",
                                      default_factory=lambda: list(LOOP["baselines"]))
    torch_threads: int | None = help_field(
        "torch CPU threads (None: torch's default); by default the cores this process may use, on a machine "
        "without a GPU (pipelines.recipe.device_defaults)",
        default_factory=lambda: device_defaults()["torch_threads"])
    wandb_project: str = help_field("wandb project (when report_to has wandb)", default="instructed-retriever")

    def __post_init__(self) -> None:
        for name in ("k", "rounds", "sample_batch_size", "max_new_tokens", "eval_batch_size"):
            check_range(self, name, 1 if name != "rounds" else 0)
        check_range(self, "n", 2)
        check_range(self, "temperature", 0, low_open=True)
        check_range(self, "top_p", 0, 1, low_open=True)
        check_range(self, "threshold", 0, 1)
        check_range(self, "min_gap", 0, 1)
        check_range(self, "margin", -1, 1)
        check_range(self, "max_repeat", 1)
        check_range(self, "explore_steps", 0)
        check_range(self, "max_pairs", 1)
        if self.explore_steps and not self.link_request:
            raise ConfigError("explore_steps", "edit search walks a request's own action space: needs link_request")
        for name in [self.strategy, *(self.round_strategies or ())]:
            if name not in REGISTRY:
                raise ConfigError("round_strategies" if name != self.strategy else "strategy",
                                  f"invalid choice: {name!r} (choose from {', '.join(REGISTRY)})")
        if any(lr <= 0 for lr in self.round_learning_rates or ()):
            raise ConfigError("round_learning_rates", "every learning rate must be > 0")
        for name in ("max_train_prompts", "eval_dev_limit", "eval_test_limit", "torch_threads"):
            check_range(self, name, 1, optional=True)
        if self.link_request and not self.constrained:
            raise ConfigError("link_request", "per-request decoding schemas need constrained: true")
        for f, kw in SCHEMA_BOUNDS.items():
            if getattr(self, f) is not None:
                try:
                    check_bound(kw, getattr(self, f), f)
                except ValueError as e:
                    raise ConfigError(f, str(e)) from None

    def schema_bounds(self) -> dict[str, int]:
        """The decoding bounds that are set, as `rewards.plan.plan_json_schema` keywords (checked)."""
        return schema_bounds(vars(self))


def schema_bounds(settings: Mapping[str, Any]) -> dict[str, int]:
    """The decoding bounds a TaoConfig's fields (or a run's config.json) set, as `plan_json_schema`
    keywords (checked)."""
    return {kw: check_bound(kw, settings[f], f) for f, kw in SCHEMA_BOUNDS.items() if settings.get(f) is not None}


@dataclass
class RunOptions:
    """How this invocation runs, not what the run is (never written into config.json)."""

    stop_after: Literal["prompts"] | None = help_field(
        "prepare the round's prompts and stop (sharded sampling)", default=None)
    no_progress: bool = help_field("no progress bars", default=False)


@dataclass
class TaoSetup:
    """Everything a TAO run is made of; ``to_dict`` is its config.json."""

    tao: TaoConfig
    training: Any  # trl.SFTConfig | trl.DPOConfig | trl.KTOConfig
    model: Any  # trl.ModelConfig

    def to_dict(self) -> dict:
        cls = type(self.training)
        return {"tao": dataclasses.asdict(self.tao),
                "training": nondefault(self.training, training_defaults(cls)),
                "model": nondefault(self.model, model_defaults())}

    def for_round(self, r: int) -> TaoSetup:
        """The setup round r trains with: its entry of `round_strategies` and `round_learning_rates`
        (the trainer config rebuilt for the round's strategy, keeping the fields that class has)."""
        strategies, rates = self.tao.round_strategies, self.tao.round_learning_rates
        if not strategies and not rates:
            return self
        d = self.to_dict()
        flat = {**d["tao"], **d["model"], "round_strategies": None, "round_learning_rates": None}
        if strategies:
            flat["strategy"] = strategies[min(r, len(strategies)) - 1]
        cls = trainer_config_class(flat["strategy"], "strategy")
        # another trainer keeps the fields every TRL trainer shares (transformers' TrainingArguments: learning
        # rate, epochs, batch, precision, seed...); the run's objective-specific ones (DPO's loss_type, beta)
        # are not its to take, even where a field of the same name means something else (SFT's loss_type)
        if cls is type(self.training):
            names = {f.name for f in dataclasses.fields(cls)}
        else:
            from transformers import TrainingArguments

            names = {f.name for f in dataclasses.fields(TrainingArguments)}
        flat.update({k: v for k, v in d["training"].items() if k in names})
        if rates:
            flat["learning_rate"] = rates[min(r, len(rates)) - 1]
        return tao_setup(flat)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaoSetup:
        """The setup a run directory's config.json describes."""
        if not {"tao", "training", "model"} >= set(d) or "tao" not in d:
            raise ConfigError(None, "config.json is not a {tao, training, model} setup (written by an older "
                                    "pipelines.tao?); rerun pipelines.tao on this run dir to rewrite it")
        flat = {**d.get("tao", {}), **d.get("training", {}), **d.get("model", {})}
        return tao_setup(flat)


def parse_tao(argv: Sequence[str] | None = None, data: Mapping[str, Any] | None = None,
              options: bool = True) -> tuple[TaoSetup, RunOptions | None]:
    """A setup (and the run options) from ``--config FILE`` plus flags, or from a flat mapping."""
    import trl

    argv = list(sys.argv[1:] if argv is None and data is None else argv or [])
    training_cls = trainer_config_class(peek(argv, "strategy", LOOP["strategy"], data), "strategy")
    types: list[type] = [TaoConfig, training_cls, trl.ModelConfig] + ([RunOptions] if options else [])
    defaults = {**training_defaults(training_cls), **model_defaults()}
    if "-h" in argv or "--help" in argv:  # prints the help (with --config and the recipe's defaults) and exits
        parse_or_exit(types, argv, "python -m pipelines.tao", defaults)
    parsed = parse_config(types, argv, defaults, data=data,
                          checks=[lambda tao, training, model, *_: check_training(training, model)])
    setup = TaoSetup(*parsed[:3])
    return setup, (parsed[3] if options else None)


def tao_setup(data: Mapping[str, Any]) -> TaoSetup:
    """A setup from a flat mapping of TaoConfig, TRL trainer config and ModelConfig fields."""
    return parse_tao(data=data, options=False)[0]


def decoding_schema(cfg: TaoConfig, bench: Any) -> dict:
    """The plan's JSON schema under the config's decoding bounds (what constrained sampling obeys)."""
    if cfg.link_values and not any(f.values for f in bench.schema.fields):
        raise ConfigError("link_values", f"the benchmark {cfg.benchmark} records no keyword values in its "
                          "schema.json (built before schema linking): rebuild it with make build-benchmark")
    return plan_json_schema(bench.schema, **cfg.schema_bounds(), link_values=cfg.link_values)


def request_schemas(cfg: TaoConfig, bench: Any) -> Callable[[dict], dict] | None:
    """Benchmark query row -> its own decoding schema under the config's bounds (`link_request`), or
    None when every request decodes under the run's one schema."""
    if not cfg.link_request:
        return None
    bounds = cfg.schema_bounds()
    return lambda row: query_schema(bench.schema, row, cfg.mode, **bounds)
