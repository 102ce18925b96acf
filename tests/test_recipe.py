"""One source of defaults: the demo recipe is the default, and the shipped YAMLs carry only differences."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ir_core.config import ConfigError, load_yaml
from pipelines.recipe import LOOP, MODEL, TRAINING, device_defaults
from pipelines.tao_config import TaoConfig, parse_tao
from pipelines.train import _plain

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "configs" / "tao").rglob("*.yaml"))
DEMO = ROOT / "configs" / "tao" / "demo.yaml"


def _effective(argv: list[str]) -> dict:
    """Every field of a parsed setup, flat: TaoConfig's, the trainer config's and ModelConfig's."""
    return _flat(parse_tao(argv, options=False)[0])


def _effective_of(data: dict) -> dict:
    return _flat(parse_tao(data=data, options=False)[0])


def _flat(setup) -> dict:
    return {**_plain(setup.training), **_plain(setup.model), **dataclasses.asdict(setup.tao),
            "training_class": type(setup.training).__name__}


def test_shipped_configs_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in YAMLS}
    assert {"configs/tao/demo.yaml", "configs/tao/smollm2-cpu.yaml", "configs/tao/qwen3-4b-stark-8gpu.yaml"} <= names


def test_the_demo_config_is_the_defaults_but_its_run_dir():
    demo, bare = _effective(["--config", str(DEMO)]), _effective([])
    assert demo.pop("run_dir") == "runs/tao-demo" and bare.pop("run_dir") == "runs/tao"
    assert demo == bare
    assert load_yaml(DEMO)[0] == {"run_dir": "runs/tao-demo"}


def test_the_defaults_are_the_recipe_block():
    """TaoConfig() itself (not only the parser) has the recipe's values, and the block names real fields."""
    import trl

    cfg = dataclasses.asdict(TaoConfig())
    assert {k: cfg[k] for k in LOOP} == LOOP
    trainer_fields = set().union(*({f.name for f in dataclasses.fields(c)}
                                   for c in (trl.SFTConfig, trl.DPOConfig, trl.KTOConfig)))
    assert set(TRAINING) <= trainer_fields
    assert set(MODEL) <= {f.name for f in dataclasses.fields(trl.ModelConfig)}
    bare = _effective([])
    assert {k: bare[k] for k in ("learning_rate", "num_train_epochs", "lora_dropout", "merge", "n")} == {
        "learning_rate": TRAINING["learning_rate"], "num_train_epochs": TRAINING["num_train_epochs"],
        "lora_dropout": MODEL["lora_dropout"], "merge": LOOP["merge"], "n": LOOP["n"]}
    assert bare["training_class"] == "SFTConfig" and LOOP["strategy"] == "best-of-n"
    assert cfg["torch_threads"] == device_defaults()["torch_threads"] == bare["torch_threads"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.relative_to(ROOT / "configs" / "tao").as_posix())
def test_no_config_restates_a_default(path):
    """Each key of a shipped YAML changes the setup: without it (and everything else the same) the parsed
    value differs, or the rest no longer parses (e.g. link_request: false beside constrained: false)."""
    data = load_yaml(path)[0]
    assert data, f"{path} is empty"
    full = _effective_of(data)
    restated = []
    for key in data:
        try:
            without = _effective_of({k: v for k, v in data.items() if k != key})
        except ConfigError:
            continue  # the other keys need this one
        if without[key] == full[key] and without["training_class"] == full["training_class"]:
            restated.append(key)
    assert not restated, f"{path.name} restates the defaults of {restated} (pipelines/recipe.py): drop them"


# What defines each shipped run other than the demo (the demo is the defaults, above): recorded when the
# configs were cut down to their differences, so a later edit of the recipe cannot change these runs
# unnoticed. Values are the parsed ones.
EXPECTED = {
    "configs/tao/smollm2-cpu.yaml": {  # make tao / make tao-dpo
        "rounds": 2, "max_train_prompts": 1024, "n": 4, "explore_steps": 3, "max_filter_depth": 2,
        "strategy": "best-of-n", "training_class": "SFTConfig", "min_gap": 0.1, "learning_rate": 1e-3,
        "num_train_epochs": 1.0, "report_to": ["wandb"], "completion_only_loss": True,
    },
    "configs/tao/qwen3-4b-stark-8gpu.yaml": {  # launch/slurm/tao.sbatch
        "benchmark": "data/benchmark/stark-amazon", "model_name_or_path": "models/qwen3-4b-instruct-2507",
        "backend": "vllm", "rounds": 4, "constrained": False, "link_values": False, "link_request": False,
        "max_searches": None, "max_filter_depth": None, "mode": "separate", "examples": "default",
        "policy_mode": None, "max_train_prompts": None, "n": 16, "explore_steps": 0, "sample_batch_size": 512, "max_new_tokens": 384,
        "strategy": "best-of-n", "training_class": "SFTConfig", "threshold": 0.2, "margin": -1.0,
        "min_gap": 0.2, "merge": False, "lora_r": 64, "lora_alpha": 128, "learning_rate": 1e-4,
        "num_train_epochs": 2.0, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
        "max_length": 4096, "gradient_checkpointing": True, "warmup_steps": 0.05, "report_to": ["wandb"],
        "eval_batch_size": 512,
        "train_launcher": "accelerate launch --config_file launch/accelerate/ddp.yaml --num_processes 8",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_runs_keep_their_settings(name):
    got = _effective(["--config", str(ROOT / name)])
    assert {k: got[k] for k in EXPECTED[name]} == EXPECTED[name]


def test_device_defaults_follow_the_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_defaults() == {"bf16": False, "fp16": True, "use_cpu": False, "dtype": "auto",
                                 "torch_threads": None}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    cpu = device_defaults()
    assert (cpu["bf16"], cpu["fp16"], cpu["use_cpu"], cpu["dtype"]) == (False, False, True, "auto")
    assert cpu["torch_threads"] >= 1
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert (device_defaults()["bf16"], device_defaults()["dtype"]) == (True, "bfloat16")
