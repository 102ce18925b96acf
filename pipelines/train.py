"""Fine-tune the planner on selected rows with TRL: SFT (best-of-N), DPO or KTO, LoRA by default.

One function, :func:`train`, serves the in-process CPU loop and multi-GPU runs: under ``accelerate launch``
(DDP, DeepSpeed ZeRO-2/3, FSDP2; configs in ``launch/accelerate``) the same code runs on every rank and
the Trainer shards the data. Precision is explicit: float32 on CPU, bf16 on GPUs that support it.
A LoRA run either starts a fresh adapter or continues a previous round's (``adapter_path``); for DPO a
continued adapter is also the reference policy (TRL copies it), a fresh one is referenced by the base.

Every rank writes ``ranks/rank-<i>.json`` (rank, world size, optimizer steps, a hash of its trainable
weights) so a distributed run can be checked: all ranks trained, and ended with the same weights.

    accelerate launch --config_file launch/accelerate/ddp.yaml -m pipelines.train --config train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ir_core.io import atomic_write_json
from pipelines.rundir import redact

OBJECTIVES = ("sft", "dpo", "kto")
STRATEGY_TO_OBJECTIVE = {"best-of-n": "sft", "sft": "sft", "dpo": "dpo", "kto": "kto"}


def config_from_dict(cls: type, d: dict, what: str) -> Any:
    """A config dataclass from a dict, refusing unknown keys (a typo must not silently fall back to a default)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)


@dataclass
class TrainConfig:
    model_path: str
    data_path: str
    output_dir: str
    objective: str = "sft"  # sft | dpo | kto (a selection strategy name is accepted too)
    adapter_path: str | None = None  # continue this LoRA adapter instead of starting a new one
    lora: bool = True  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048  # prompt (schema + examples) + plan; longer rows are truncated by TRL
    beta: float = 0.1  # DPO / KTO temperature
    warmup: float = 0.0  # steps (int) or a fraction of all steps (float < 1)
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "auto"  # auto: bf16 on a GPU that supports it, else float32
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute
    attn_implementation: str | None = "sdpa"  # never the eager O(L^2)-memory attention for ~1k-token prompts
    logging_steps: int = 1
    report_to: str = "wandb"  # wandb (offline unless configured) | none | tensorboard
    run_name: str | None = None
    merge: bool = False  # also save adapter merged into the base model (for serving without LoRA)
    save_adapter: bool = True
    extra_args: dict[str, Any] = field(default_factory=dict)  # passed through to the TRL config

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "train")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_dtype(name: str = "auto") -> Any:
    """float32 on CPU (bf16 matmuls there are slow and lossy), bf16 on a GPU that has it, fp16 otherwise."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


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


def _trl_config(cfg: TrainConfig, objective: str, dtype: Any, out: Path) -> Any:
    import torch
    import trl

    common = dict(
        output_dir=str(out / "trainer"),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        run_name=cfg.run_name,
        seed=cfg.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        # without this, ranks launched on CPU (gloo) each train alone instead of as one DDP job
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        **cfg.extra_args,
    )
    if objective == "sft":
        return trl.SFTConfig(completion_only_loss=True, **common)
    if objective == "dpo":
        return trl.DPOConfig(beta=cfg.beta, **common)
    return trl.KTOConfig(beta=cfg.beta, **common)


def _trainer_cls(objective: str) -> Any:
    import trl

    return {"sft": trl.SFTTrainer, "dpo": trl.DPOTrainer, "kto": trl.KTOTrainer}[objective]


def train(cfg: TrainConfig, callbacks: list | None = None) -> dict:
    """Train on ``cfg.data_path`` (JSONL from pipelines.select) and save to ``cfg.output_dir``.

    Returns (on every rank) the metrics: train_loss, steps, tokens, tokens_per_s, runtime_s and the paths
    written. The adapter goes to ``<output_dir>/adapter``, a merged model to ``<output_dir>/merged``.
    ``callbacks`` are transformers ``TrainerCallback``s (e.g. progress reporting in benchmarks).
    """
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    objective = STRATEGY_TO_OBJECTIVE.get(cfg.objective, cfg.objective)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}")
    if cfg.adapter_path and not cfg.lora:
        raise ValueError("adapter_path continues a LoRA adapter; it needs lora=True")
    configure_wandb(cfg.report_to)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = resolve_dtype(cfg.dtype)
    torch.manual_seed(cfg.seed)

    dataset = load_dataset("json", data_files=str(cfg.data_path), split="train")
    if len(dataset) == 0:
        raise ValueError(f"no training rows in {cfg.data_path}")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model_path,
        dtype=dtype,
        **({"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}),
    )
    peft_config = None
    if cfg.lora and cfg.adapter_path:
        model = PeftModel.from_pretrained(model, cfg.adapter_path, is_trainable=True)
    elif cfg.lora:
        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )

    args = _trl_config(cfg, objective, dtype, out)
    trainer = _trainer_cls(objective)(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose completion was truncated away
        raise ValueError(f"every row of {cfg.data_path} is longer than max_length={cfg.max_length}; raise it")
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

    if cfg.save_adapter or not cfg.lora:
        target = out / ("adapter" if cfg.lora else "model")
        if isinstance(unwrapped, PeftModel) and "ref" in unwrapped.peft_config:
            unwrapped.delete_adapter("ref")  # the frozen DPO reference copy is not part of the policy
            unwrapped.set_adapter("default")
        trainer.save_model(str(target))
        if acc.is_main_process:
            tokenizer.save_pretrained(str(target))
        metrics["adapter_path" if cfg.lora else "model_path"] = str(target)
    if cfg.merge and cfg.lora and acc.is_main_process:
        merged = unwrapped.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
        metrics["merged_path"] = str(out / "merged")
    acc.wait_for_everyone()
    if acc.is_main_process:
        with (out / "train_log.jsonl").open("w") as fh:
            for h in state.log_history:
                fh.write(json.dumps(h) + "\n")
        atomic_write_json(out / "train_metrics.json", {**metrics, "config": redact(cfg.to_dict())})
    return metrics


def load_config_file(path: str | Path) -> dict:
    """JSON or YAML, by extension."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="JSON/YAML with TrainConfig fields")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (JSON value)"
    )
    args = ap.parse_args(argv)
    d = load_config_file(args.config)
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            d[k] = json.loads(v)
        except json.JSONDecodeError:
            d[k] = v
    metrics = train(TrainConfig.from_dict(d))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
