"""Check every line a resumed JSONL file keeps, and repair the file without losing good rows.

A killed writer leaves a torn last line; a disk or a hand edit can damage a line in the middle; two
writers (before stage locks) could leave the same row twice. On resume each line must decode to an
object with no repeated field, carry the required fields and a row key not seen before; every other line
is dropped with a warning naming ``file:line`` and the reason, and the good rows after a bad one are
kept (not cut off with it and silently redone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ir_core.atomic import atomic_open

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dropped:
    line: int
    reason: str


@dataclass
class Verified:
    """What a scan found: the keys of the good rows and the lines to drop."""

    keys: set[Hashable] = field(default_factory=set)
    rows: int = 0
    dropped: list[Dropped] = field(default_factory=list)
    blank: int = 0
    torn: bool = False  # the last line had no newline (counted in `dropped` too)


def _no_repeated_fields(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"field {k!r} appears twice")
        seen.add(k)
    return dict(pairs)


def parse_row(raw: bytes, required: Iterable[str] = ()) -> dict:
    """One JSONL line as a dict; `ValueError` says why it cannot be kept."""
    try:
        row = json.loads(raw, object_pairs_hook=_no_repeated_fields)
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [k for k in required if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    return row


def verify_jsonl(path: str | Path, key: Callable[[dict], Hashable], required: Iterable[str] = ()) -> Verified:
    """Scan `path` (read only): which lines are good rows, which must be dropped and why."""
    path, required = Path(path), tuple(required)
    out = Verified()
    first_line: dict[Hashable, int] = {}
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                out.dropped.append(Dropped(line_no, "torn last line (no newline: the writer stopped mid-row)"))
                out.torn = True
                break
            if not raw.strip():
                out.blank += 1
                continue
            try:
                row = parse_row(raw, required)
                k = key(row)
                hash(k)
            except (ValueError, KeyError, TypeError, IndexError) as e:
                reason = str(e) if isinstance(e, ValueError) else f"no row key ({type(e).__name__}: {e})"
                out.dropped.append(Dropped(line_no, reason))
                continue
            if k in first_line:
                out.dropped.append(Dropped(line_no, f"row {k!r} repeats line {first_line[k]}"))
                continue
            first_line[k] = line_no
            out.keys.add(k)
            out.rows += 1
    return out


def _rewrite_without(path: Path, drop: set[int]) -> None:
    """Copy `path` minus the lines in `drop` (and blank lines) to a temp file and swap it in."""
    with atomic_open(path, "wb") as dst, path.open("rb") as src:
        for line_no, raw in enumerate(src, 1):
            if line_no not in drop and raw.strip() and raw.endswith(b"\n"):
                dst.write(raw)


def repair_jsonl(path: str | Path, key: Callable[[dict], Hashable], required: Iterable[str] = ()) -> Verified:
    """Verify `path` and rewrite it with only its good rows; warn once per dropped line (``file:line``)."""
    path = Path(path)
    found = verify_jsonl(path, key, required)
    for d in found.dropped:
        log.warning("%s:%d: dropped on resume: %s", path, d.line, d.reason)
    if not found.dropped and not found.blank:
        return found
    if found.torn and len(found.dropped) == 1 and not found.blank:  # the common case: cut the tail off
        with path.open("rb") as fh:
            good = sum(len(raw) for raw in fh if raw.endswith(b"\n"))
        with path.open("r+b") as fh:
            fh.truncate(good)
    else:
        _rewrite_without(path, {d.line for d in found.dropped})
    return found
