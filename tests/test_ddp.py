"""DDP training through `accelerate launch` with 2 CPU processes (gloo), using the repo's launch config.

Each rank sees a different half of the data, so identical final weights on both ranks mean gradients
were all-reduced (two independent single-process runs would diverge).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.tiny_model import chat_prompt, make_tiny_model, plan_message

from ir_core.io import atomic_write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "single_gpu": "NO",
    "ddp": "MULTI_GPU",
    "zero2": "DEEPSPEED",
    "zero3": "DEEPSPEED",
    "fsdp2": "FSDP",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_launch_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "launch" / "accelerate" / f"{name}.yaml"))
    assert str(cfg.distributed_type).rsplit(".", 1)[-1] == CONFIGS[name]
    assert cfg.mixed_precision == "bf16"


def test_two_rank_ddp_on_cpu(tmp_path):
    model = make_tiny_model(tmp_path / "model")
    rows = [{"prompt": chat_prompt(i), "completion": plan_message("acme" if i % 2 else f"b{i}")} for i in range(8)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "out"
    cfg = atomic_write_json(
        tmp_path / "train.json",
        {
            "model_name_or_path": str(model),
            "data_path": str(data),
            "output_dir": str(out),
            "objective": "sft",
            "lora_r": 4,
            "lora_alpha": 8,
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "max_length": 256,
            "learning_rate": 0.05,
            "report_to": "none",
        },
    )
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ROOT / "launch/accelerate/ddp.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "pipelines.train",
        "--config",
        str(cfg),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["steps"] == 2 for r in ranks)
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert (out / "adapter" / "adapter_model.safetensors").exists()
