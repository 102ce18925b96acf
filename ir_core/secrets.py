"""Secrets scrubbed by value from everything the project writes.

A key can reach a file by many routes: a config field (``hub_token``), a command line inside a config
(``train_launcher: env OPENAI_API_KEY=sk-... accelerate launch``), an error message, a cached API
response. Looking at key names misses all but the first, so `scrub` removes the *values*: of every
environment variable whose name marks it as a secret, and of every config field that is one. Only
fields that are secrets by name are blanked (``hub_token``, ``api_key``, ``password``), never ordinary
ones like ``max_new_tokens`` or ``pad_token``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
MIN_SECRET_CHARS = 8  # shorter values ("1", "false") cannot be removed without mangling ordinary text

_ENV_SECRET = re.compile(r"SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)(API_?KEY|ACCESS_?KEY|KEY|TOKEN)$", re.I)
_SPECIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "chat", "special", "added"}
_SECRET_PARTS = {"secret", "password", "passwd", "credential", "credentials", "authorization", "apikey"}
_KEY_PREFIXES = {"api", "access", "secret", "private"}


def is_secret_env_name(name: str) -> bool:
    """``OPENAI_API_KEY``, ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``PGPASSWORD``: yes;
    ``TOKENIZERS_PARALLELISM``, ``HF_TOKEN_PATH``: no."""
    return bool(_ENV_SECRET.search(name))


def is_secret_field(name: str) -> bool:
    """A config field that holds a secret by its name: ``hub_token``, ``api_key``, ``wandb_password``.

    ``max_new_tokens`` (plural), ``pad_token`` (a tokenizer's special token) and ``pad_token_id`` are not.
    """
    parts = [p for p in re.split(r"[^a-z0-9]+", str(name).lower()) if p]
    if not parts:
        return False
    if _SECRET_PARTS.intersection(parts):
        return True
    last, before = parts[-1], parts[-2] if len(parts) > 1 else ""
    if last == "token":
        return before not in _SPECIAL_TOKENS
    return last == "key" and before in _KEY_PREFIXES


def env_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of the environment's secret-named variables (long enough to be removed safely)."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if is_secret_env_name(k) and len(v.strip()) >= MIN_SECRET_CHARS}


def _field_secrets(obj: Any, found: set[str]) -> set[str]:
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for k, v in node.items():
                if isinstance(v, str) and is_secret_field(k) and len(v.strip()) >= MIN_SECRET_CHARS:
                    found.add(v)
                stack.append(v)
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return found


@functools.lru_cache(maxsize=32)
def _forms(secrets: frozenset[str]) -> tuple[str, ...]:
    """Every secret as written raw and inside a JSON string (escaped, ASCII or not), longest first."""
    forms = {f for s in secrets for f in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1]) if f}
    return tuple(sorted(forms, key=len, reverse=True))


def _scrub_text(text: str, forms: tuple[str, ...]) -> str:
    for f in forms:
        if f in text:
            text = text.replace(f, REDACTED)
    return text


def _scrub_data(obj: Any, forms: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        return _scrub_text(obj, forms)
    if isinstance(obj, Mapping):
        return {(_scrub_text(k, forms) if isinstance(k, str) else k):
                (REDACTED if is_secret_field(k) and isinstance(v, str) and v else _scrub_data(v, forms))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub_data(v, forms) for v in obj]
    return obj


def scrub(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of `obj` (text, or JSON-like data) with no secret in it: the one scrubber, called by the
    sinks (`ir_core.io`'s writers, the log record factory below, the wandb config), once per write.

    Removed: the value of every secret-named environment variable and of every secret-named field of
    `obj`, wherever they appear (inside other strings too, raw or JSON-escaped); secret-named fields
    read ``<redacted>``. Text is only searched, never parsed, so a JSONL line costs a few ``in`` tests.
    """
    secrets = env_secrets(environ)
    if isinstance(obj, str):
        return _scrub_text(obj, _forms(frozenset(secrets))) if secrets else obj
    return _scrub_data(obj, _forms(frozenset(_field_secrets(obj, secrets))))


def install_log_scrubber() -> None:
    """Scrub every log record's message (stderr ends up in SLURM and CI logs): an API error that echoes
    a key is logged with ``<redacted>`` in its place. Idempotent; `ir_core.errors.run_main` installs it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "scrubs_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    factory.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
