"""transformers backend: greedy plans for evaluation, seeded samples for TAO, on CPU or one GPU.

Prompts are rendered with the model's own chat template (through `rewards.prompts.render_prompt`, the
one place prompts are formatted, when it exists), batched with left padding, and decoded up to the first
end-of-sequence token. A completion that hits `max_new_tokens` first is reported as `text=None,
error="truncated"`: a cut-off plan is not a plan, and a truncated JSON that happens to parse would be
scored as if the model had meant it.

Determinism of `sample`: the same (requests in the same order, n, temperature, top_p, seed, batch_size,
max_new_tokens, model weights, dtype, device, torch/transformers versions, torch thread count) gives
identical samples. Each generate call is seeded from (seed, batch index) inside a forked RNG, so the
global torch RNG is left untouched and batch k does not depend on how many tokens earlier batches drew.
Samples of one prompt do depend on the other prompts batched with it (they share the RNG stream and
the padding), so changing batch_size or the request order changes the samples. On GPU, kernels are
not bitwise deterministic in general; treat GPU reproducibility as best effort.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList

from ir_core.types import PlanRequest, PlanResponse
from pipelines.backends import ClosingPlanner, check_constrained, check_sampling, mix_seed
from pipelines.model import default_device, load_model, prepare_tokenizer

log = logging.getLogger(__name__)

TRUNCATED = "truncated"


def render_chat(tokenizer: Any, messages: list[dict]) -> str:
    """The prompt text for `messages`, ending with the assistant turn's opening (generation prompt)."""
    try:
        from rewards.prompts import render_prompt
    except ImportError:
        render_prompt = None
    if render_prompt is not None:
        return render_prompt(tokenizer, messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class HFPlanner(ClosingPlanner):
    """A search planner running a local transformers model (optionally with a LoRA adapter).

    `batch_size` is the number of sequences per generate call: `plan` batches that many prompts,
    `sample` batches `max(1, batch_size // n)` prompts with n samples each. `model`/`tokenizer` may be
    passed in already loaded (tests, or a training loop that holds the policy in memory); otherwise
    they are loaded from `model_path` (a local checkpoint directory or, only when the user names one,
    a hub id).
    """

    def __init__(self, model_path: str | Path, adapter_path: str | Path | None = None, batch_size: int = 8,
                 max_new_tokens: int = 256, constrained: bool = False, json_schema: dict | None = None,
                 dtype: Any = None, device: str | None = None, *, model: Any = None, tokenizer: Any = None,
                 merge_adapter: bool = True, whitespace_flexible: bool = False) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        check_constrained(constrained, json_schema)
        self.model_path = str(model_path)
        self.adapter_path = str(adapter_path) if adapter_path is not None else None
        self.name = f"hf:{self.model_path}" + (f"+{self.adapter_path}" if self.adapter_path else "")
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.share_prefill = True  # see _generate; False = plain num_return_sequences (reference path)
        if model is None or tokenizer is None:
            model, tokenizer = load_model(model_path, dtype=dtype, device=device, adapter_path=adapter_path)
            if adapter_path is not None and merge_adapter:
                # Folding LoRA into the base weights makes every decoding step a plain matmul again.
                model = model.merge_and_unload()
        else:
            if device is not None:
                model.to(device)
            model.eval()
            prepare_tokenizer(tokenizer, model)
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        gen_eos = model.generation_config.eos_token_id
        eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        if not eos:
            raise ValueError("the model has no end-of-sequence token; generation could never stop")
        self.eos_token_ids = eos
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.constraint = None
        if constrained:
            from pipelines.backends.constrained import JSONSchemaConstraint

            vocab = model.get_output_embeddings().weight.shape[0]
            self.constraint = JSONSchemaConstraint(tokenizer, json_schema, vocab_size=vocab, eos_token_ids=eos,
                                                   whitespace_flexible=whitespace_flexible)

    # -- public API -------------------------------------------------------------------------------

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """Greedy decoding, one response per request, in order."""
        out = self._run(requests, n=1, sampling=None, seed=0)
        return [r[0] for r in out]

    def sample(self, requests: list[PlanRequest], n: int, temperature: float, top_p: float,
               seed: int) -> list[list[PlanResponse]]:
        """n samples per request (temperature/top-p sampling), reproducible given the seed (module doc).

        temperature == 0 means greedy: the n responses are then n copies of the greedy plan.
        """
        check_sampling(n, temperature, top_p)
        if temperature == 0:
            greedy = self._run(requests, n=1, sampling=None, seed=seed)
            return [[r[0]] * n for r in greedy]
        return self._run(requests, n=n, sampling=(float(temperature), float(top_p)), seed=seed)

    def close(self) -> None:
        """Drop the model and tokenizer (their memory returns once no one else holds them)."""
        self.model = self.tokenizer = self.constraint = None

    # -- internals --------------------------------------------------------------------------------

    def _encode(self, request: PlanRequest) -> list[int]:
        text = render_chat(self.tokenizer, request.messages)
        # The chat template already writes any BOS/special tokens the model expects.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _run(self, requests: Sequence[PlanRequest], n: int, sampling: tuple[float, float] | None,
             seed: int) -> list[list[PlanResponse]]:
        results: list[list[PlanResponse] | None] = [None] * len(requests)
        encoded: list[tuple[int, list[int]]] = []
        for i, req in enumerate(requests):
            try:
                ids = self._encode(req)
            except Exception as exc:  # a malformed message list must not sink the batch
                results[i] = [PlanResponse(None, f"prompt_error: {exc}")] * n
                continue
            if self.max_positions and len(ids) + self.max_new_tokens > self.max_positions:
                msg = f"prompt_too_long: {len(ids)} + {self.max_new_tokens} tokens > {self.max_positions}"
                results[i] = [PlanResponse(None, msg, {"input_tokens": len(ids), "output_tokens": 0})] * n
                continue
            encoded.append((i, ids))
        per_call = max(1, self.batch_size // n)
        for b, start in enumerate(range(0, len(encoded), per_call)):
            chunk = encoded[start:start + per_call]
            schemas = [requests[i].json_schema for i, _ in chunk]
            outs = self._generate([ids for _, ids in chunk], n, sampling, mix_seed(seed, b),
                                  schemas if any(x is not None for x in schemas) else None)
            for (i, _), resp in zip(chunk, outs, strict=True):
                results[i] = resp
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]], n: int, sampling: tuple[float, float] | None,
                  seed: int, schemas: list[dict | None] | None = None) -> list[list[PlanResponse]]:
        tok = self.tokenizer
        if self.share_prefill:
            shared = common_prefix_len(prompts)
            input_ids, attention_mask = pad_after_prefix(prompts, shared, tok.pad_token_id)
            input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        else:  # reference path: the tokenizer's own (left) padding
            enc = tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
            input_ids = enc["input_ids"].to(self.device)
            attention_mask = enc["attention_mask"].to(self.device)
        prompt_lens = attention_mask.sum(dim=1).tolist()
        prompt_width = input_ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens, "num_return_sequences": n,
            "eos_token_id": self.eos_token_ids, "pad_token_id": tok.pad_token_id,
        }
        if sampling is None:
            kwargs.update(do_sample=False)
        else:
            # top_k=0 and no repetition penalty: exactly the distribution the caller asked for, whatever
            # defaults the checkpoint's generation_config carries (and the same as the vLLM backend).
            kwargs.update(do_sample=True, temperature=sampling[0], top_p=sampling[1], top_k=0,
                          repetition_penalty=1.0)
        # rows are prompts repeated n times, consecutively; each row decodes under its request's schema
        row_schemas = [x for x in schemas for _ in range(n)] if schemas is not None else None
        processor = self.constraint.processor(row_schemas) if self.constraint is not None else None
        if processor is not None:
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        if self.share_prefill:
            # Prefill the batch's common prefix (the system spec, identical for every query) once, the
            # rest of each prompt once, and copy each prompt's KV cache n times, instead of letting
            # generate prefill every prompt (and num_return_sequences every copy) from scratch: on CPU
            # the ~900-token system spec dominates both evaluation and N-sample TAO sampling.
            cache = self._prefill(input_ids, attention_mask, shared)
            if n > 1:
                cache.batch_repeat_interleave(n)
                input_ids = input_ids.repeat_interleave(n, dim=0)
                attention_mask = attention_mask.repeat_interleave(n, dim=0)
            kwargs.update(num_return_sequences=1, past_key_values=cache)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new = out[:, prompt_width:].tolist()
        eos = set(self.eos_token_ids)
        responses: list[list[PlanResponse]] = []
        for p in range(len(prompts)):
            row_responses = []
            for s in range(n):
                row = p * n + s  # generate repeats each prompt n times, consecutively
                tokens = new[row]
                end = next((j for j, t in enumerate(tokens) if t in eos), None)
                usage = {"input_tokens": int(prompt_lens[p]),
                         "output_tokens": end + 1 if end is not None else len(tokens)}
                grammar_error = processor.errors[row] if processor is not None else None
                if end is None:
                    row_responses.append(PlanResponse(None, TRUNCATED, usage))
                elif grammar_error:
                    row_responses.append(PlanResponse(None, f"grammar_error: {grammar_error}", usage))
                else:
                    text = tok.decode(tokens[:end], skip_special_tokens=True)
                    row_responses.append(PlanResponse(text.strip(), None, usage))
            responses.append(row_responses)
        return responses

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, shared: int) -> Any:
        """KV cache of every prompt token but the last (generate feeds that one to get the first logits).

        The first `shared` columns are the same unpadded tokens in every row: they run once, as a batch
        of one, and the cache is copied to every row. Position ids follow the attention mask, as generate
        computes them, so the padding between the shared prefix and each row's own tokens is skipped.
        """
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        ids, mask = input_ids[:, :-1], attention_mask[:, :-1]
        if shared > 0:
            self.model(input_ids=ids[:1, :shared], position_ids=torch.arange(shared, device=ids.device)[None],
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(ids.shape[0])
        if ids.shape[1] > shared:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            self.model(input_ids=ids[:, shared:], attention_mask=mask, position_ids=positions[:, shared:],
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cache

    def __repr__(self) -> str:
        return (f"HFPlanner({self.model_path!r}, adapter={self.adapter_path!r}, device={self.device}, "
                f"constrained={self.constrained})")


def common_prefix_len(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all prompts share, leaving every prompt at least its last token."""
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    shared = 0
    while shared < limit and all(p[shared] == first[shared] for p in prompts):
        shared += 1
    return shared


def pad_after_prefix(prompts: Sequence[Sequence[int]], shared: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of [shared prefix][padding][own tokens]: the prefix's columns line up across the batch (so
    its cache can be computed once) and every row still ends at the last column, as left padding does."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, :shared], mask[row, :shared] = torch.tensor(p[:shared]), 1
        own = len(p) - shared
        ids[row, width - own:], mask[row, width - own:] = torch.tensor(p[shared:]), 1
    return ids, mask


__all__ = ["HFPlanner", "TRUNCATED", "common_prefix_len", "default_device", "pad_after_prefix", "render_chat"]
