"""Fine-tune the planner on selected rows with TRL: SFT (best-of-N), DPO or KTO, LoRA by default.

One function, :func:`train`, serves the in-process CPU loop and multi-GPU runs: under ``accelerate launch``
(DDP, DeepSpeed ZeRO-2/3, FSDP2; configs in ``launch/accelerate``) the same code runs on every rank and
the Trainer shards the data. Precision follows the machine (`pipelines.recipe.device_defaults`).
A LoRA run either starts a fresh adapter or continues a previous round's (``adapter_path``); for DPO a
continued adapter is also the reference policy (TRL copies it), a fresh one is referenced by the base.

Every rank writes ``ranks/rank-<i>.json`` (rank, world size, optimizer steps, a hash of its trainable
weights) so a distributed run can be checked: all ranks trained, and ended with the same weights.

    accelerate launch --config_file launch/accelerate/ddp.yaml -m pipelines.train --config train.json
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ir_core.config import ConfigError, check_range, exit_with, parse_config, parse_or_exit, peek
from ir_core.errors import run_main
from ir_core.io import atomic_write_json, read_json
from ir_core.types import Policy
from pipelines.model import resolve_dtype
from pipelines.recipe import MODEL, TRAINING, device_defaults
from pipelines.rundir import redact
from pipelines.strategies import REGISTRY, strategy

OBJECTIVES = tuple(s.objective for s in REGISTRY.values())

@dataclass
class TrainArgs:
    """What to train on and what to keep; the rest is TRL's trainer config and `trl.ModelConfig`."""

    data_path: str = field(metadata={"help": "JSONL of training rows (pipelines.select)"})
    objective: Literal["sft", "dpo", "kto", "best-of-n"] = field(
        default="sft", metadata={"help": "sft | dpo | kto (best-of-n is sft)"})
    adapter_path: str | None = field(
        default=None, metadata={"help": "continue this LoRA adapter instead of starting a new one"})
    merge: bool = field(default=False, metadata={"help": "also save the adapter merged into the base model"})
    save_adapter: bool = field(default=True, metadata={"help": "save the trained adapter"})
    score_all_positions: bool = field(
        default=False, metadata={"help": "TRL's CPU behaviour: the LM head scores every position, prompt included "
                                         "(slower; kept to benchmark against)"})


def score_labelled_positions_only(on: bool = True) -> None:
    """Make TRL's fused LM head project only the positions that have a label, on every device.

    TRL (`trl.trainer.utils.add_fused_lm_head`) does this on CUDA/XPU only; elsewhere it scores all
    positions and masks afterwards, to keep tile shapes fixed for graph compilers. With completion-only
    loss on a CPU that is ~450 prompt positions x 49k vocabulary, fwd and bwd, for ~45 labelled ones: a
    sixth of a demo step (docs/model.md, "Training throughput"). The result is the same loss; TRL exposes
    no switch, so this swaps the module-level predicate its forward reads (the kernels keep their own).
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    trl_utils._use_triton = (lambda device: True) if on else _use_triton


def trainer_config_class(objective: str, field_name: str = "objective") -> type:
    """TRL's config class for an objective or selection strategy name (`pipelines.strategies`)."""
    try:
        return strategy(objective).config_class()
    except ValueError:
        names = ", ".join(dict.fromkeys(n for s in REGISTRY.values() for n in (s.name, s.objective))
                          if field_name == "objective" else REGISTRY)
        raise ConfigError(field_name, f"invalid choice: {objective!r} (choose from {names})") from None


def training_defaults(cls: type) -> dict[str, Any]:
    """The recipe's settings of a TRL config class (those it has: ``completion_only_loss`` is SFT's) on this
    machine (`pipelines.recipe`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in {**TRAINING, **device_defaults()}.items() if k in names}


def model_defaults() -> dict[str, Any]:
    """The recipe's `trl.ModelConfig` settings on this machine (`pipelines.recipe`)."""
    return {**MODEL, "dtype": device_defaults()["dtype"]}


def nondefault(obj: Any, defaults: Mapping[str, Any] = ()) -> dict[str, Any]:
    """A (TRL) config as the fields that differ from its class defaults plus ``defaults``' keys (JSON-ready)."""
    now = _plain(obj)
    then = _plain(type(obj)(**{k: v for k, v in dict(defaults).items() if k in now}))
    return {k: v for k, v in now.items() if then.get(k) != v or k in defaults}


def _plain(obj: Any) -> dict[str, Any]:
    d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)  # TRL configs mask tokens
    return {k: v for k, v in d.items() if not k.startswith("_") and not k.endswith("_token")}


def configure_wandb(report_to: str) -> None:
    """wandb stays offline unless the user configured it (WANDB_MODE or an API key in the environment)."""
    if report_to == "wandb" and not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
        os.environ["WANDB_MODE"] = "offline"


def weights_digest(model: Any, trainable_only: bool = True) -> str:
    """A hash of the (trainable) weights, to compare ranks and detect that training changed something."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if trainable_only and not p.requires_grad:
            continue
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(args: TrainArgs, training: Any, model_args: Any, callbacks: list | None = None) -> dict:
    """Train on ``args.data_path`` (JSONL from pipelines.select) and save to ``training.output_dir``.

    ``training`` is TRL's `SFTConfig`/`DPOConfig`/`KTOConfig` for the objective, ``model_args`` TRL's
    `ModelConfig` (model, dtype, attention, LoRA). Returns (on every rank) the metrics: train_loss, steps,
    tokens, tokens_per_s, runtime_s and the paths written. The adapter goes to ``<output_dir>/adapter``,
    a merged model to ``<output_dir>/merged``. ``callbacks`` are transformers ``TrainerCallback``s.
    """
    import torch
    from datasets import load_dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config

    objective = strategy(args.objective).objective  # ValueError for an unknown one
    if not isinstance(training, trainer_config_class(objective)):
        raise ValueError(f"objective {objective} trains with {trainer_config_class(objective).__name__}, "
                         f"got {type(training).__name__}")
    lora = bool(model_args.use_peft)
    if args.adapter_path and not lora:
        raise ValueError("adapter_path continues a LoRA adapter; it needs use_peft=True")
    configure_wandb("wandb" if "wandb" in (training.report_to or []) else "none")
    out = Path(training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = resolve_dtype(model_args.dtype)
    torch.manual_seed(training.seed)
    score_labelled_positions_only(not args.score_all_positions)

    dataset = load_dataset("json", data_files=str(args.data_path), split="train")
    if len(dataset) == 0:
        raise ValueError(f"no training rows in {args.data_path}")
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    attn = model_args.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, dtype=dtype, **({"attn_implementation": attn} if attn else {}))
    peft_config = None
    if lora and args.adapter_path:
        model = PeftModel.from_pretrained(model, args.adapter_path, is_trainable=True)
    elif lora:
        peft_config = get_peft_config(model_args)

    trainer = strategy(objective).trainer_class()(
        model=model,
        args=training,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose completion was truncated away
        raise ValueError(f"every row of {args.data_path} is longer than max_length={training.max_length}; raise it")
    t0 = time.perf_counter()
    result = trainer.train()
    runtime = time.perf_counter() - t0

    acc = trainer.accelerator
    state = trainer.state
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    unwrapped = acc.unwrap_model(trainer.model)
    metrics = {
        "objective": objective,
        "rows": len(dataset),
        "steps": int(state.global_step),
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "tokens": tokens,
        "runtime_s": round(runtime, 3),
        "tokens_per_s": round(tokens / runtime, 2) if runtime > 0 else None,
        "world_size": acc.num_processes,
        "dtype": str(dtype).removeprefix("torch."),
    }
    rank_info = {
        "rank": acc.process_index,
        "world_size": acc.num_processes,
        "steps": int(state.global_step),
        "weights_sha256": weights_digest(unwrapped),
    }
    atomic_write_json(out / "ranks" / f"rank-{acc.process_index}.json", rank_info)

    if args.save_adapter or not lora:
        target = out / ("adapter" if lora else "model")
        if isinstance(unwrapped, PeftModel) and "ref" in unwrapped.peft_config:
            unwrapped.delete_adapter("ref")  # the frozen DPO reference copy is not part of the policy
            unwrapped.set_adapter("default")
        trainer.save_model(str(target))
        if acc.is_main_process:
            tokenizer.save_pretrained(str(target))
        metrics["adapter_path" if lora else "model_path"] = str(target)
    if args.merge and lora and acc.is_main_process:
        merged = unwrapped.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
        metrics["merged_path"] = str(out / "merged")
    acc.wait_for_everyone()
    if acc.is_main_process:
        with (out / "train_log.jsonl").open("w") as fh:
            for h in state.log_history:
                fh.write(json.dumps(h) + "\n")
        config = {**dataclasses.asdict(args), **nondefault(training, training_defaults(type(training))),
                  **nondefault(model_args, model_defaults())}
        atomic_write_json(out / "train_metrics.json", {**metrics, "config": redact(config)})
    return metrics


def for_round(training: Any, model_args: Any, policy: Policy, out_dir: Path, seed: int, run_name: str,
              report: bool) -> tuple[Any, Any]:
    """Copies of the run's TRL configs for one round: its folder, seed and name, starting from ``policy``.

    In-process training (``report`` False) logs through the loop's own wandb run, not a run of its own.
    """
    training, model_args = copy.copy(training), copy.copy(model_args)
    training.output_dir, training.seed, training.run_name = str(out_dir), seed, run_name
    if not report:
        training.report_to = []
    model_args.model_name_or_path = policy.model_path
    return training, model_args


def launch_training(args: TrainArgs, training: Any, model_args: Any, launcher: str | None) -> dict:
    """:func:`train` in this process, or under ``launcher`` (e.g. ``accelerate launch ...``) on a config file.
    A launcher whose first word is ``python`` runs this interpreter (the venv the loop runs in), whatever
    ``python`` on PATH is."""
    if not launcher:
        return train(args, training, model_args)
    command = shlex.split(launcher)
    if command[0] == "python":
        command[0] = sys.executable
    flat = {**dataclasses.asdict(args), **nondefault(training, training_defaults(type(training))),
            **nondefault(model_args, model_defaults())}
    cfg_path = atomic_write_json(Path(training.output_dir).with_name("train_config.json"), flat)
    subprocess.run([*command, "-m", "pipelines.train", "--config", str(cfg_path)], check=True)
    return read_json(Path(training.output_dir) / "train_metrics.json")


def next_policy(args: TrainArgs, model_args: Any, metrics: dict) -> Policy:
    """What training produced: the base plus the new adapter, the merged model, or the fully tuned model."""
    if model_args.use_peft and not args.merge:
        return Policy(model_args.model_name_or_path, metrics["adapter_path"])
    if model_args.use_peft:
        return Policy(metrics["merged_path"])
    return Policy(metrics["model_path"])


def check_training(*configs: Any) -> None:
    """Ranges TRL does not check itself: positive learning rate, epochs, batch sizes, lengths, LoRA rank."""
    for cfg in configs:
        for name, low, open_ in (("learning_rate", 0, True), ("num_train_epochs", 0, True),
                                 ("per_device_train_batch_size", 1, False), ("gradient_accumulation_steps", 1, False),
                                 ("max_length", 1, False), ("lora_r", 1, False), ("lora_alpha", 0, True),
                                 ("lora_dropout", 0, False), ("beta", 0, True), ("warmup_steps", 0, False),
                                 ("weight_decay", 0, False)):
            if hasattr(cfg, name) and getattr(cfg, name) is not None:
                check_range(cfg, name, low, low_open=open_)


def train_setup(data: Mapping[str, Any]) -> tuple[TrainArgs, Any, Any]:
    """TrainArgs, the objective's TRL config and ModelConfig from a flat mapping of their fields."""
    import trl

    cls = trainer_config_class(str(data.get("objective", "sft")))
    defaults = {**training_defaults(cls), **model_defaults()}
    return parse_config([TrainArgs, cls, trl.ModelConfig], [], defaults, data=data, checks=[check_training])


def parse_train(argv: Sequence[str] | None = None) -> tuple[TrainArgs, Any, Any]:
    """TrainArgs, the objective's TRL config and ModelConfig from ``--config FILE`` plus flags (exit 2 on error)."""
    import trl

    try:
        cls = trainer_config_class(peek(argv, "objective", "sft"))
    except ConfigError as e:
        exit_with(e)
    defaults = {**training_defaults(cls), **model_defaults()}
    return parse_or_exit([TrainArgs, cls, trl.ModelConfig], argv, "python -m pipelines.train", defaults,
                         checks=[check_training])


def main(argv: list[str] | None = None) -> int:
    metrics = train(*parse_train(argv))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
