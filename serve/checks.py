"""The request rules of every serving surface, written once.

The Python API calls these functions; the HTTP body models and the MCP tool's arguments validate through
the same functions (pydantic plain validators, which replace pydantic's own type handling), so the three
surfaces accept exactly the same input: no coercion (`k` "5", true or 5.0 is refused, as the API refuses
it), and text no search can use (NUL, control characters, lone surrogates) is refused up front, naming
the field, instead of failing late inside the planner or the engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from rewards.parse import BAD_CHARS
from rewards.plan import MAX_QUERY_CHARS

MAX_INSTRUCTION_CHARS = 2000
MAX_K = 100  # the executor's default depth: a ranking is never longer
FALLBACKS = ("raw",)
ITEM_KEYS = ("query", "instructions")  # what one `Retriever.search_batch` item may hold


class RequestError(ValueError):
    """A request the service refuses; `field` names the argument (HTTP puts it in `detail[].loc`)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _show(value: Any) -> str:
    """A short, JSON-safe picture of a refused value (repr escapes surrogates and control characters)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_text(field: str, value: Any, max_chars: int, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RequestError(field, f"{field} must be a string{'' if required else ' or null'}, got {_show(value)}")
    if required and not value.strip():
        raise RequestError(field, f"{field} must be a non-empty string")
    if len(value) > max_chars:
        raise RequestError(field, f"{field} has {len(value)} characters; at most {max_chars}")
    if m := BAD_CHARS.search(value):
        raise RequestError(field, f"{field} holds U+{ord(m.group()):04X} at position {m.start()}: NUL, control "
                                  "characters and lone surrogates are refused (tab and newline are fine)")
    return value


def check_query(value: Any) -> str:
    return check_text("query", value, MAX_QUERY_CHARS, required=True)  # type: ignore[return-value]


def check_instructions(value: Any) -> str | None:
    return check_text("instructions", value, MAX_INSTRUCTION_CHARS, required=False)


def check_k(value: Any, max_k: int = MAX_K) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_k:
        raise RequestError("k", f"k must be an integer in 1..{max_k}, got {_show(value)}")
    return value


def check_fallback(value: Any) -> str | None:
    if value is not None and value not in FALLBACKS:
        raise RequestError("fallback", f"fallback must be one of {FALLBACKS} or null, got {_show(value)}")
    return value


def check_flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestError(field, f"{field} must be true or false, got {_show(value)}")
    return value


def check_options(k: Any, fallback: Any, max_k: int, compare_raw: Any = False) -> None:
    """The options a search takes besides its text (one set for a whole `search_batch`)."""
    check_k(k, max_k)
    check_fallback(fallback)
    check_flag("compare_raw", compare_raw)


def check_request(query: Any, instructions: Any, k: Any, fallback: Any, max_k: int,
                  compare_raw: Any = False) -> None:
    """All of one request's arguments (the Python API's entry check)."""
    check_query(query)
    check_instructions(instructions)
    check_options(k, fallback, max_k, compare_raw)


def check_items(items: Any) -> list[Mapping]:
    """`search_batch`'s items: a list of {"query", "instructions"?} mappings, each checked like a request."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise RequestError("items", f"items must be a list of {{'query', 'instructions'}} dicts, got "
                                    f"{type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestError(f"items[{i}]", f"items[{i}] must be a dict with 'query', got {type(item).__name__}")
        if extra := [key for key in item if key not in ITEM_KEYS]:
            raise RequestError(f"items[{i}]", f"items[{i}] has unknown keys {extra}; allowed: {ITEM_KEYS}")
        try:
            check_query(item.get("query"))
            check_instructions(item.get("instructions"))
        except RequestError as exc:
            raise RequestError(f"items[{i}].{exc.field}", f"items[{i}]: {exc}") from None
    return list(items)


def json_safe(value: Any) -> Any:
    """`value` with what JSON cannot carry made printable: non-finite floats as text, lone surrogates as
    \\uXXXX escapes. Error bodies quote the client's input back, and that input may hold either."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return json_safe(str(value))


# The rules as pydantic types, for the HTTP body models and the MCP tool's arguments. Each field's JSON
# schema (what /docs and an agent's tool list show) is written from the same limits.
Query = Annotated[str, PlainValidator(check_query),
                  WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS}),
                  Field(description="the shopper's request")]
# typed `str` (with a None default) rather than `str | None`: the MCP SDK JSON-decodes string arguments
# whose annotation is not `str`, which would turn instructions such as '["red"]' into a list
Instructions = Annotated[str, PlainValidator(check_instructions),
                         WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_INSTRUCTION_CHARS},
                                                   {"type": "null"}]}),
                         Field(description="the user's instructions (brand, colour, price, rating, recency)")]
K = Annotated[int, PlainValidator(check_k), WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_K}),
              Field(description="number of products to return")]
Fallback = Annotated[str, PlainValidator(check_fallback),
                     WithJsonSchema({"anyOf": [{"enum": list(FALLBACKS)}, {"type": "null"}]}),
                     Field(description='"raw": if the plan fails, return the raw query\'s results '
                                       '(marked fallback="raw")')]
CompareRaw = Annotated[bool, PlainValidator(lambda v: check_flag("compare_raw", v)),
                       WithJsonSchema({"type": "boolean"}),
                       Field(description="also return the raw query's results (raw_results)")]
