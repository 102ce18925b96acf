"""SFT, DPO and KTO through pipelines.train on a tiny random Llama: a few steps must change the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.tiny_model import chat_prompt, make_tiny_model, plan_message

from ir_core.io import write_jsonl
from pipelines.train import train, train_setup, weights_digest


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _adapter_digest(path: Path) -> str:
    import hashlib

    from safetensors.torch import load_file

    tensors = load_file(str(path / "adapter_model.safetensors"))
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(tensors[k].float().numpy().tobytes())
    return h.hexdigest()


def _base_cfg(tiny_model: Path, tmp_path: Path, data: Path, objective: str, **kw) -> tuple:
    """(TrainArgs, TRL config, ModelConfig) as pipelines.train parses them from a config file."""
    return train_setup(dict(
        model_name_or_path=str(tiny_model),
        data_path=str(data),
        output_dir=str(tmp_path / objective),
        objective=objective,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        learning_rate=5e-2,
        max_steps=3,
        per_device_train_batch_size=2,
        max_length=256,
        report_to="none",
        **kw,
    ))


def _lora_b_nonzero(adapter: Path) -> bool:
    from safetensors.torch import load_file

    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    # LoRA B starts at zero: any non-zero B means an optimizer step happened
    return any(float(t.abs().sum()) > 0 for k, t in tensors.items() if "lora_B" in k)


def test_sft_completion_only_trains_lora(tiny_model, tmp_path):
    data = write_jsonl(
        tmp_path / "sft.jsonl", [{"prompt": chat_prompt(i), "completion": plan_message("acme")} for i in range(6)]
    )
    m = train(*_base_cfg(tiny_model, tmp_path, data, "best-of-n"))
    assert m["objective"] == "sft" and m["steps"] == 3
    adapter = Path(m["adapter_path"])
    assert _lora_b_nonzero(adapter)
    out = adapter.parent
    assert json.loads((out / "ranks" / "rank-0.json").read_text())["steps"] == 3
    assert m["tokens"] > 0 and m["train_loss"] > 0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert sum("loss" in h for h in log) == 3


def test_labelled_positions_only_gives_the_same_loss_and_gradients(tiny_model, tmp_path):
    """The LM head over labelled positions only (the CPU speed-up) computes what scoring every position does."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from pipelines.train import score_labelled_positions_only

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :18] = -100  # a prompt of 18 tokens, a completion of 6
    results = []
    try:
        for on in (False, True):
            score_labelled_positions_only(on)
            model.zero_grad()
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
            out.loss.backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results.append((out.loss.detach(), out.entropy.detach(), grads))
    finally:
        score_labelled_positions_only(True)
    (loss_all, ent_all, g_all), (loss_lab, ent_lab, g_lab) = results
    assert float(loss_all) > 0
    torch.testing.assert_close(loss_lab, loss_all)
    torch.testing.assert_close(ent_lab, ent_all)
    torch.testing.assert_close(g_lab, g_all)


def test_sft_loss_is_on_completion_only(tiny_model, tmp_path):
    """With the project's SFT settings (not set here), the collator masks the prompt: only plan tokens
    carry labels."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": chat_prompt(1), "completion": plan_message("acme")}])
    _, training, _ = _base_cfg(tiny_model, tmp_path, data, "best-of-n")
    assert training.completion_only_loss is True
    tok = AutoTokenizer.from_pretrained(tiny_model)
    ds = Dataset.from_list([{"prompt": chat_prompt(1), "completion": plan_message("acme")}])
    tr = SFTTrainer(model=str(tiny_model), args=training, train_dataset=ds, processing_class=tok)
    batch = tr.data_collator([tr.train_dataset[0]])
    labels = batch["labels"][0]
    n_completion = len(
        tok.apply_chat_template(chat_prompt(1) + plan_message("acme"), tokenize=True, return_dict=False)
    ) - len(tok.apply_chat_template(chat_prompt(1), tokenize=True, add_generation_prompt=True, return_dict=False))
    assert int((labels != -100).sum()) == n_completion
    assert labels[0] == -100


def test_dpo_changes_weights_and_continues_adapter(tiny_model, tmp_path):
    rows = [{"prompt": chat_prompt(i), "chosen": plan_message("acme"), "rejected": plan_message("zzz")} for i in range(6)]
    data = write_jsonl(tmp_path / "dpo.jsonl", rows)
    m = train(*_base_cfg(tiny_model, tmp_path, data, "dpo"))
    assert m["steps"] == 3
    adapter = Path(m["adapter_path"])
    assert _lora_b_nonzero(adapter)
    assert not (adapter / "ref").exists()  # the frozen reference copy is not saved as part of the policy
    before = _adapter_digest(adapter)
    cfg2 = _base_cfg(tiny_model, tmp_path / "2", data, "dpo", adapter_path=str(adapter))
    m2 = train(*cfg2)
    assert _adapter_digest(Path(m2["adapter_path"])) != before


def test_kto_full_finetune_changes_weights(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = [
        {"prompt": chat_prompt(i), "completion": plan_message("acme" if i % 2 else "zzz"), "label": bool(i % 2)}
        for i in range(8)
    ]
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    m = train(*_base_cfg(tiny_model, tmp_path, data, "kto", use_peft=False, merge=False))
    assert m["steps"] == 3
    before = weights_digest(AutoModelForCausalLM.from_pretrained(tiny_model), trainable_only=False)
    after = weights_digest(AutoModelForCausalLM.from_pretrained(m["model_path"]), trainable_only=False)
    assert before != after
