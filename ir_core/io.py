"""Whole-file writes that never leave half a file, and JSONL files that resume after a kill.

All whole-file writes go through a temporary file and ``os.replace`` so a reader never sees half a file.
:class:`JsonlAppender` makes a killed stage resume where it stopped: rows are keyed, keys already on disk
are skipped, and every line kept is verified (`ir_core.jsonl_check`): a torn last line is cut off, a
damaged line is dropped with a warning while the good rows after it stay. Secret values never reach
these files (`ir_core.secrets`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ir_core.atomic import atomic_open
from ir_core.errors import DataError
from ir_core.jsonl_check import repair_jsonl
from ir_core.secrets import scrub


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` so that ``path`` holds either the old content or all of the new one, never a part.

    Every secret value (`ir_core.secrets.scrub`) is removed first: this is the one writer configs,
    manifests, reports and caches go through."""
    return _write_scrubbed(path, scrub(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """`obj` as JSON, atomically; secret-named fields (``hub_token``) and secret values removed."""
    return _write_scrubbed(path, json.dumps(scrub(obj), indent=2, sort_keys=True, default=str) + "\n")


def _write_scrubbed(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete rows of a JSONL file (a torn final line, left by a killed writer, is ignored)."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                break  # torn tail
            line = raw.strip()
            if line:
                try:
                    yield json.loads(line)
                except ValueError as e:  # a damaged line is named, not a bare JSONDecodeError
                    why = f"{e.msg} (column {e.colno})" if isinstance(e, json.JSONDecodeError) else str(e)[:100]
                    raise DataError(str(path), line_no, None, f"invalid JSON: {why}") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write a whole JSONL file atomically (for outputs that are produced in one go)."""
    return atomic_write_text(path, "".join(jsonl_line(r) for r in rows))


def jsonl_line(row: dict) -> str:
    """One row as a JSONL line; text with lone surrogates (from a model's ``\\ud800``) is escaped, not lost."""
    line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row, ensure_ascii=True, sort_keys=True) + "\n"
    return line


class JsonlAppender:
    """Append-only JSONL writer that resumes: existing keys are loaded, a torn last line is truncated.

    ``key`` maps a row to its identity (e.g. ``(prompt_id, sample_idx)``); :meth:`append` refuses a key
    that is already on disk, so a rerun after a kill neither loses nor duplicates rows. Every row is
    flushed (and fsynced when ``fsync``) before ``append`` returns.
    """

    def __init__(self, path: str | Path, key: Callable[[dict], Hashable], fsync: bool = False,
                 required: Iterable[str] = ()):
        self.path = Path(path)
        self.key = key
        self.fsync = fsync
        self.required = tuple(required)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keys: set[Hashable] = set()
        self.rows_on_disk = 0
        self._repair_and_load()
        self._fh = self.path.open("ab")

    def _repair_and_load(self) -> None:
        """Keep every good row on disk (see `ir_core.jsonl_check`); dropped lines are warned about."""
        if self.path.exists():
            found = repair_jsonl(self.path, self.key, self.required)
            self.keys, self.rows_on_disk = found.keys, found.rows

    def __contains__(self, key: Hashable) -> bool:
        return key in self.keys

    def append(self, row: dict) -> bool:
        """Write ``row`` unless its key is already present; returns whether it was written."""
        k = self.key(row)
        if k in self.keys:
            return False
        self._fh.write(scrub(jsonl_line(row)).encode("utf-8"))
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.keys.add(k)
        return True

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
