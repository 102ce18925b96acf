"""Grammar-constrained decoding for transformers: every sample is JSON of the plan schema.

A 135M model writes malformed JSON often enough that most of its samples would score 0 for syntax alone,
which starves TAO's selection step of signal about *which* plan is better. Masking the logits with the
plan's JSON schema at every step removes that failure mode, so reward differences come from the searches
and filters the model chose. The masks come from llguidance (the Rust engine vLLM and llama.cpp also use
for structured outputs): a prebuilt wheel with no dependencies, it compiles a schema in milliseconds and
computes a token mask in microseconds, which keeps constrained sampling on two CPU cores close to the
cost of unconstrained sampling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

try:  # imported lazily by the HF backend only when constrained=True, so a clear error is enough here
    import llguidance
except ImportError as exc:  # pragma: no cover - llguidance is a core dependency
    raise ImportError("constrained decoding needs llguidance: pip install llguidance") from exc

_BITS = torch.arange(32, dtype=torch.int32)
_MAX_TEMPLATES = 4096  # compiled per-request grammars kept (a TAO round has one per prompt)


class GrammarError(ValueError):
    """The JSON schema could not be compiled into a grammar (unsupported keyword, malformed schema)."""


class JSONSchemaConstraint:
    """A JSON schema compiled for one tokenizer; hands out a fresh logits processor per `generate` call.

    Building the token table costs about a second for a 50k vocabulary, so the backend builds this once
    and reuses it. `whitespace_flexible=False` (the default) makes the grammar emit compact JSON: no
    whitespace between tokens, so an untrained or small model cannot burn its token budget on
    indentation and hit max_new_tokens in the middle of a plan.
    """

    def __init__(self, tokenizer: Any, json_schema: dict | str, vocab_size: int | None = None,
                 eos_token_ids: Sequence[int] | int | None = None, whitespace_flexible: bool = False) -> None:
        schema = json.loads(json_schema) if isinstance(json_schema, str) else json_schema
        if not isinstance(schema, dict):
            raise GrammarError("json_schema must be a JSON object")
        self.schema = schema
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise GrammarError("constrained decoding needs a fast (tokenizers-backed) tokenizer")
        eos = eos_token_ids if eos_token_ids is not None else tokenizer.eos_token_id
        self.eos_token_ids = [eos] if isinstance(eos, int) else list(eos)
        n_vocab = max(vocab_size or 0, len(tokenizer))
        self.vocab_size = n_vocab
        # Serialise the Rust tokenizer with padding/truncation off: llguidance re-reads it to learn each
        # token's bytes (what llguidance.hf.from_tokenizer does, minus its isinstance check, which
        # transformers 5's TokenizersBackend class does not pass).
        from copy import copy

        rust = copy(backend)
        rust.no_padding()
        rust.no_truncation()
        self.ll_tokenizer = llguidance.LLTokenizer(rust.to_str(), n_vocab=n_vocab, eos_token=self.eos_token_ids)
        self.whitespace_flexible = whitespace_flexible
        self._templates: dict[str, Any] = {}
        self._template = self._compile(schema)

    def _compile(self, schema: dict) -> Any:
        """A matcher template for `schema`, compiled once per distinct schema (the token table is shared,
        so a per-request schema costs milliseconds, not the second the tokenizer takes)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._templates:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                schema, overrides={"whitespace_flexible": self.whitespace_flexible})
            is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.ll_tokenizer)
            if is_error:
                raise GrammarError(f"JSON schema not supported for constrained decoding: {messages[0]}")
            template = llguidance.LLMatcher(self.ll_tokenizer, grammar, log_level=0)
            if template.is_error():
                raise GrammarError(template.get_error())
            if len(self._templates) >= _MAX_TEMPLATES:
                self._templates.pop(next(iter(self._templates)))
            self._templates[key] = template
        return self._templates[key]

    def matcher(self, schema: dict | None = None) -> Any:
        """A matcher at the start of the grammar of `schema` (default: the constraint's own), a copy of a
        compiled template: cheaper than compiling."""
        return (self._template if schema is None else self._compile(schema)).deep_copy()

    def processor(self, schemas: Sequence[dict | None] | None = None) -> JSONSchemaLogitsProcessor:
        """A logits processor for one `generate` call; `schemas` gives each row its own schema (None:
        the constraint's own)."""
        return JSONSchemaLogitsProcessor(self, schemas)

    def accepts(self, text: str) -> bool:
        """Whether `text` is a complete sentence of the grammar (used by tests and diagnostics)."""
        m = self.matcher()
        ids = self.ll_tokenizer.tokenize_bytes(text.encode("utf-8"))
        return m.consume_tokens(ids) and m.is_accepting()


class JSONSchemaLogitsProcessor(LogitsProcessor):
    """Masks, at each step and for each row, every token the grammar does not allow next.

    One matcher per row of the generation batch (batch x num_return_sequences). The row's last token is
    fed to its matcher at each call; once a row has produced an end-of-sequence token its matcher is
    retired and its scores are left alone (transformers pads finished rows itself, and a row of all
    -inf would turn into NaN probabilities under sampling). Runs before temperature/top-p, as
    transformers applies custom processors before its sampling warpers.
    """

    def __init__(self, constraint: JSONSchemaConstraint, schemas: Sequence[dict | None] | None = None) -> None:
        self.constraint = constraint
        self.schemas = list(schemas) if schemas is not None else None
        self.matchers: list[Any] | None = None
        self.done: list[bool] = []
        self.errors: list[str | None] = []
        self._length = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        eos = self.constraint.eos_token_ids
        if self.matchers is None:
            if self.schemas is not None and len(self.schemas) != batch:
                raise ValueError(f"{len(self.schemas)} row schemas for a batch of {batch}")
            self.matchers = [self.constraint.matcher(self.schemas[i] if self.schemas else None)
                             for i in range(batch)]
            self.done = [False] * batch
            self.errors = [None] * batch
        else:
            if length != self._length + 1:
                raise RuntimeError("JSONSchemaLogitsProcessor is single-use: make a new one per generate call")
            last = input_ids[:, -1].tolist()
            for i, tok in enumerate(last):
                if self.done[i]:
                    continue
                if tok in eos:
                    self.done[i] = True
                elif not self.matchers[i].consume_token(tok):
                    self.done[i] = True
                    self.errors[i] = self.matchers[i].get_error() or "token rejected by grammar"
        self._length = length

        vocab = scores.shape[-1]
        words = (max(vocab, self.constraint.vocab_size) + 31) // 32
        mask = torch.full((batch, words), -1, dtype=torch.int32)
        for i, m in enumerate(self.matchers):
            if not self.done[i]:
                bits = torch.frombuffer(bytearray(m.compute_bitmask()), dtype=torch.int32)[:words]
                mask[i] = 0
                mask[i, : bits.numel()] = bits
        allowed = ((mask.unsqueeze(-1) >> _BITS) & 1).bool().reshape(batch, -1)[:, :vocab]
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))
