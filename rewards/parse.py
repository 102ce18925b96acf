"""Parse an LLM completion into a validated `SearchPlan`.

Lenient about the packaging models really produce (code fences, prose around the JSON, `<think>`
blocks, `<tool_call>` wrappers, tool-call objects whose arguments are a JSON string, a bare list of
searches), strict about the content (known keys only, typed values, filters validated against the index
schema). Every failure is a `PlanError` with a machine-readable code, so an invalid plan scores 0 with a
recorded reason and no input string can crash a scoring worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewards.plan import MAX_QUERY_CHARS, MAX_SEARCHES, MAX_WEIGHT, Search, SearchPlan
from stark_instruct.filters import FilterError, parse_filter
from stark_instruct.schema import IndexSchema

MAX_TEXT_CHARS = 50_000  # a plan is < 2k chars; longer completions are degenerate (loops, dumps)
MAX_JSON_DEPTH = 32  # a legal plan, wrappers included, nests < 20 levels
MAX_JSON_ATTEMPTS = 64  # bounds the scan for a JSON start in adversarial text (each try is linear)
MAX_UNWRAP = 3  # tool call -> arguments string -> plan
MAX_REASON_CHARS = 300

# code -> meaning; filter codes come from stark_instruct.filters.FilterError.
ERROR_CODES = {
    "bad_input": "the completion is not a string",
    "too_long": f"the completion exceeds {MAX_TEXT_CHARS} characters",
    "no_json": "no JSON object or list in the completion",
    "bad_json": "JSON-looking text that does not decode",
    "too_deep": "JSON or filter nested too deeply",
    "bad_shape": "JSON that is not a plan, a search, a list of searches or a tool call",
    "unknown_key": "a key other than the plan language's",
    "no_searches": "an empty list of searches",
    "too_many_searches": f"more than {MAX_SEARCHES} searches",
    "bad_query": "query is not a string or is too long",
    "bad_weight": f"weight is not a finite number in (0, {MAX_WEIGHT}]",
    "empty_search": "a search with an empty query and no filter",
    "bad_node": "filter node of an unknown form",
    "unknown_field": "filter on a field the index does not have",
    "bad_op": "op not allowed for the field's type",
    "bad_value": "value of the wrong type for the field",
    "bad_date": "date that is not ISO YYYY-MM-DD or not a real date",
    "too_many": "too many filter children or list values",
    "bad_text": "a query or value holding NUL, control characters or invalid Unicode (a lone surrogate escape)",
    "engine_error": "the search engine refused the plan (the reason names the engine's error)",
}

_JSON_START = re.compile(r"[{\[]")
# What the engine cannot take (tantivy refuses lone surrogates, e.g. from a JSON "\ud800" escape) or
# should not be asked (NUL and other control characters); tab, newline and carriage return are spacing.
BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SEARCH_KEYS = ("query", "filter", "weight")


class PlanError(ValueError):
    """An unusable completion; `code` is one of ERROR_CODES, `reason` says what to fix."""

    def __init__(self, code: str, reason: str):
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class _SearchJSON(BaseModel):
    """Wire shape of one search; pydantic gives typed errors that map onto PlanError codes."""

    model_config = ConfigDict(extra="forbid", strict=True)
    query: str = Field(max_length=MAX_QUERY_CHARS)
    filter: Any = None
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False)


def _json_depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative depth check, so later recursive code (reprs, parse_filter) can never hit the recursion limit."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def _decoded_values(text: str) -> Iterator[Any]:
    """Top-level JSON values embedded in text, in order; raises no_json / bad_json if none decodes.

    A value that starts inside a span that failed to decode (a plan cut off by max_new_tokens still
    holds complete inner objects) is not top-level and is skipped, so truncation is a bad_json error
    instead of a silently shortened plan.
    """
    decoder = json.JSONDecoder()
    pos, attempts, first_error, yielded = 0, 0, None, False
    broken_until = -1  # furthest point a failed decode reached
    while attempts < MAX_JSON_ATTEMPTS:
        m = _JSON_START.search(text, pos)
        if m is None:
            break
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, m.start())
        except RecursionError:
            raise PlanError("too_deep", "JSON nested too deeply to decode") from None
        except ValueError as e:  # JSONDecodeError, or an integer over Python's digit limit (no .pos)
            first_error = first_error or f"{e} (at char {m.start()})"
            broken_until = max(broken_until, getattr(e, "pos", len(text)))
            pos = m.start() + 1
            continue
        pos = end
        if m.start() < broken_until:
            continue
        if _json_depth_exceeds(value, MAX_JSON_DEPTH):
            raise PlanError("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        yielded = True
        yield value
    if yielded:
        return
    if first_error is None:
        raise PlanError("no_json", "no JSON object found; reply with one JSON object {\"searches\": [...]}")
    raise PlanError("bad_json", f"invalid JSON: {first_error}")


def _tool_arguments(obj: dict) -> Any:
    """The arguments of a tool-call object (OpenAI, Hermes/Qwen, Llama, Anthropic shapes), else None."""
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if "name" not in obj:
        return None
    for key in ("arguments", "parameters", "input"):
        if key in obj:
            return obj[key]
    return None


def _searches_of(value: Any, hops: int = 0) -> list | None:
    """The raw list of searches a decoded value stands for, or None if it does not look like a plan."""
    if hops > MAX_UNWRAP:
        raise PlanError("bad_shape", "tool-call wrappers nested too deeply")
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and _tool_arguments(value[0]) is not None:
            return _searches_of(_tool_arguments(value[0]), hops + 1)
        if any(isinstance(v, dict) and ("query" in v or "filter" in v) for v in value):
            return value
        return None
    if not isinstance(value, dict):
        return None
    if "searches" in value:
        extra = sorted(map(str, set(value) - {"searches"}))
        if extra:
            raise PlanError("unknown_key", f"unknown top-level key(s) {extra}; a plan is {{\"searches\": [...]}}")
        if not isinstance(value["searches"], list):
            raise PlanError("bad_shape", f"'searches' must be a list, got {type(value['searches']).__name__}")
        return value["searches"]
    args = _tool_arguments(value)
    if args is not None:
        if isinstance(args, str):
            if len(args) > MAX_TEXT_CHARS:
                raise PlanError("too_long", "tool-call arguments too long")
            try:
                args = next(_decoded_values(args))
            except StopIteration:
                raise PlanError("bad_json", "tool-call arguments hold no JSON value") from None
        found = _searches_of(args, hops + 1)
        if found is None:
            raise PlanError("bad_shape", "tool-call arguments are not a plan {\"searches\": [...]}")
        return found
    if "query" in value:
        return [value]
    return None


def _check_text(raw: Any, where: str) -> None:
    """Reject a search whose strings the engine cannot take; names the first bad character."""
    stack = [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and (m := BAD_CHARS.search(node)):
            raise PlanError("bad_text", f"{where}: character U+{ord(m.group()):04X} at position {m.start()} of "
                                        f"{node[:40]!r}; use plain text")


def _search(raw: Any, i: int, schema: IndexSchema) -> Search:
    where = f"search {i + 1}"
    if isinstance(raw, dict):
        _check_text(raw, where)
    try:
        s = _SearchJSON.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"][0] if err["loc"] else None
        if err["type"] == "model_type":
            raise PlanError("bad_shape", f"{where} must be an object, got {type(raw).__name__}") from None
        if err["type"] == "extra_forbidden":
            raise PlanError("unknown_key", f"{where}: unknown key {loc!r}; allowed: {', '.join(_SEARCH_KEYS)}") from None
        if err["type"] == "missing":
            raise PlanError("bad_shape", f"{where}: missing {loc!r}") from None
        code = "bad_query" if loc == "query" else "bad_weight"
        raise PlanError(code, f"{where}: {loc}: {err['msg']}") from None
    node = None
    if s.filter is not None:
        try:
            node = parse_filter(s.filter, schema)
        except FilterError as e:
            raise PlanError(e.code, f"{where}: {e.reason}") from None
        except OverflowError:  # parse_filter's float() of a JSON integer beyond float range
            raise PlanError("bad_value", f"{where}: a number in the filter is out of range") from None
    query = s.query.strip()
    if not query and node is None:
        raise PlanError("empty_search", f"{where} has an empty query and no filter")
    return Search(query=query, filter=node, weight=s.weight)


def parse_plan(text: str, schema: IndexSchema) -> SearchPlan:
    """The first plan-shaped JSON value in `text`, validated against `schema`; raises PlanError only."""
    if not isinstance(text, str):
        raise PlanError("bad_input", f"expected the completion as a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise PlanError("too_long", f"completion has {len(text)} characters (max {MAX_TEXT_CHARS})")
    if "</think>" in text:  # reasoning models: only the answer after the thinking block counts
        text = text.rsplit("</think>", 1)[1]
    first = None
    for value in _decoded_values(text):
        raw = _searches_of(value)
        if raw is None:
            first = value if first is None else first
            continue
        if not raw:
            raise PlanError("no_searches", "a plan needs at least one search")
        if len(raw) > MAX_SEARCHES:
            raise PlanError("too_many_searches", f"{len(raw)} searches; at most {MAX_SEARCHES}")
        return SearchPlan(tuple(_search(r, i, schema) for i, r in enumerate(raw)))
    what = f"object with keys {sorted(map(str, first))[:8]}" if isinstance(first, dict) else type(first).__name__
    raise PlanError("bad_shape", f"expected {{\"searches\": [...]}}, got a JSON {what}")
