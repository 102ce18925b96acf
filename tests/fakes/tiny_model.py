"""A tiny trainable chat model and chat rows for the training tests (test_train, test_ddp, test_tao).

Built in-process: a byte-level BPE tokenizer, a ChatML template and a randomly initialised small Llama.
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    'You plan searches. {"searches": [{"query": "insulated jacket", "filter": {"field": "brand", "op": "eq", '
    '"value": "acme"}}]} user assistant system only not from the last two years price rating colour',
] * 50


def make_tiny_model(path: Path, hidden: int = 32, layers: int = 2, corpus: list[str] | None = None) -> Path:
    """A randomly initialised 2-layer Llama with a byte-level BPE tokenizer and a ChatML template.

    ``corpus`` (e.g. real planner prompts) trains the tokenizer so long prompts stay a few hundred tokens.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1200 if corpus else 400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS + list(corpus or []), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def chat_prompt(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You plan searches."},
        {"role": "user", "content": f"insulated jacket {i} not from acme"},
    ]


def plan_message(value: str) -> list[dict]:
    text = json.dumps(
        {
            "searches": [
                {"query": "insulated jacket", "filter": {"field": "brand", "op": "ne", "value": value}}
            ]
        }
    )
    return [{"role": "assistant", "content": text}]
