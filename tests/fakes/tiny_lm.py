"""A tiny, randomly initialised chat LM built in-process (no network, no files), for backend tests.

A byte-level BPE tokenizer trained on a few sentences (every byte is a token, so any text, JSON
included, can be written), ChatML special tokens and template, and a 2-layer Llama with hidden size 32.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pipelines.model import CHATML_TEMPLATE

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    '{"searches": [{"query": "waterproof tent", "filter": {"field": "brand", "op": "ne", "value": "acme"}}]}',
    "system user assistant plan search query filter brand colour price rating review date",
    "Find insulated jackets for cold weather, only FooBrand, reviewed in the last two years.",
] * 4


def tiny_bpe(vocab_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_bpe(), bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, eos_bias: float | None = None) -> LlamaForCausalLM:
    """Random weights (seeded). `eos_bias` adds that much to the end-of-turn logit through the model's
    generation config, so that a random model sometimes stops on its own (else every output truncates)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if eos_bias is not None:
        model.generation_config.sequence_bias = {(tokenizer.eos_token_id,): float(eos_bias)}
    return model
