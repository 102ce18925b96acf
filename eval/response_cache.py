"""On-disk cache of paid API responses, so a rerun of an API baseline costs nothing.

Each entry is one JSON file named by a hash of everything that determines the answer (provider, model,
messages, tool schema, request parameters) and written atomically (temp file + `os.replace`): a run
killed part-way keeps every response it already paid for, and a reader never sees half a file.
Transport failures (HTTP errors, timeouts) are never stored, so a rerun retries them; model outcomes,
including invalid ones (refusal, no tool call, malformed arguments), are stored with their error so
the evaluation is reproducible. Nothing secret goes into the key or the entry: callers pass only
request content, never credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ir_core.io import atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def cache_key(provider: str, model: str, messages: list[dict], tool_schema: dict | None, params: dict) -> str:
    """A stable hex digest of the request content (canonical JSON, sorted keys)."""
    payload = {
        "format": CACHE_FORMAT,
        "provider": provider,
        "model": model,
        "messages": messages,
        "tool_schema": tool_schema,
        "params": params,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A directory of `<key[:2]>/<key>.json` entries; safe for concurrent writers of distinct keys."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent or unreadable (a damaged entry is a miss, not a crash)."""
        p = self.path(key)
        try:
            with p.open("r", encoding="utf-8") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", p.name, type(exc).__name__)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            log.warning("ignoring cache entry %s with a mismatched key", p.name)
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> Path:
        """Write the entry atomically; the file appears complete or not at all."""
        data = json.dumps({**entry, "key": key}, ensure_ascii=False, sort_keys=True, indent=1)
        p = atomic_write_text(self.path(key), data)
        return p

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0
