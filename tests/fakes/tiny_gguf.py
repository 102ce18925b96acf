"""A tiny Llama GGUF written with the gguf package, as llama.cpp's converter writes one (conversion tests)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from fakes.tiny_lm import tiny_bpe

H, LAYERS, FFN, HEADS, KV_HEADS = 32, 2, 64, 4, 2


def write_tiny_gguf(path: Path, chat_template: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """A 2-layer Llama GGUF (F32 tensors, GPT-2-style BPE tokenizer) like llama.cpp's converter writes."""
    spec = json.loads(tiny_bpe().to_str())
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    ids = {**spec["model"]["vocab"], **added}
    tokens = [t for t, _ in sorted(ids.items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(H)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(H // HEADS)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in added else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(added["<|im_start|>"])
    w.add_eos_token_id(added["<|im_end|>"])
    w.add_pad_token_id(added["<|im_end|>"])
    if chat_template is not None:
        w.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}

    def add(name: str, *shape: int, ones: bool = False) -> None:
        arr = np.ones(shape, np.float32) if ones else (rng.standard_normal(shape) * 0.1).astype(np.float32)
        tensors[name] = arr
        w.add_tensor(name, arr)

    kv = KV_HEADS * (H // HEADS)
    add("token_embd.weight", vocab, H)
    add("output_norm.weight", H, ones=True)
    add("output.weight", vocab, H)
    for i in range(LAYERS):
        add(f"blk.{i}.attn_norm.weight", H, ones=True)
        add(f"blk.{i}.attn_q.weight", H, H)
        add(f"blk.{i}.attn_k.weight", kv, H)
        add(f"blk.{i}.attn_v.weight", kv, H)
        add(f"blk.{i}.attn_output.weight", H, H)
        add(f"blk.{i}.ffn_norm.weight", H, ones=True)
        add(f"blk.{i}.ffn_gate.weight", FFN, H)
        add(f"blk.{i}.ffn_up.weight", FFN, H)
        add(f"blk.{i}.ffn_down.weight", H, FFN)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors
