"""The metadata filter language shared by the index engines, the benchmark's constraints and search plans.

A filter is `{"all": [...]}`, `{"any": [...]}`, `{"not": node}` or a leaf `{"field", "op", "value"}`.
`parse_filter` turns JSON into a typed tree with values coerced to the field's type (strict: every
problem is a `FilterError` with a reason, never a silent fallback); `matches` is the reference
semantics that both engines must reproduce and that the benchmark uses to filter qrels.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any as AnyType

from stark_instruct.schema import LIST_OPS, IndexSchema

MAX_DEPTH = 4
MAX_CHILDREN = 16
MAX_LIST_VALUES = 32


class FilterError(ValueError):
    """A filter that cannot be executed; `code` is machine-readable, the message is for humans."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Leaf:
    field: str
    op: str
    value: AnyType  # str | float | dt.date, or a tuple of those for in/nin


@dataclass(frozen=True)
class All:
    children: tuple


@dataclass(frozen=True)
class AnyOf:
    children: tuple


@dataclass(frozen=True)
class Not:
    child: AnyType


Node = Leaf | All | AnyOf | Not


def normalize_keyword(value: str) -> str:
    """Brands, colours and categories compare case- and space-insensitively."""
    return re.sub(r"\s+", " ", str(value)).strip().casefold()


def _coerce_scalar(ftype: str, fname: str, value: AnyType) -> AnyType:
    if ftype in ("keyword", "keywords"):
        if not isinstance(value, str) or not value.strip():
            raise FilterError("bad_value", f"field '{fname}' needs a non-empty string, got {value!r}")
        return normalize_keyword(value)
    if ftype == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, str):
                try:
                    value = float(value.strip().lstrip("$").replace(",", ""))
                except ValueError:
                    raise FilterError("bad_value", f"field '{fname}' needs a number, got {value!r}") from None
            else:
                raise FilterError("bad_value", f"field '{fname}' needs a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise FilterError("bad_value", f"field '{fname}' needs a finite number, got {str(value)[:40]}")
        return number
    if ftype == "date":
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise FilterError("bad_date", f"field '{fname}' needs an ISO date YYYY-MM-DD, got {value!r}")
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise FilterError("bad_date", f"field '{fname}': {value!r} is not a real date") from None
    raise FilterError("bad_type", f"unknown field type {ftype!r}")


def parse_filter(obj: AnyType, schema: IndexSchema, depth: int = 1) -> Node:
    """Validate a JSON filter against the schema and coerce its values."""
    if depth > MAX_DEPTH:
        raise FilterError("too_deep", f"filter nesting deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, dict):
        raise FilterError("bad_node", f"a filter node must be an object, got {type(obj).__name__}")
    keys = set(obj)
    for combinator, cls in (("all", All), ("any", AnyOf)):
        if keys == {combinator}:
            children = obj[combinator]
            if not isinstance(children, list) or not children:
                raise FilterError("bad_node", f"'{combinator}' needs a non-empty list of filters")
            if len(children) > MAX_CHILDREN:
                raise FilterError("too_many", f"'{combinator}' has more than {MAX_CHILDREN} filters")
            return cls(tuple(parse_filter(c, schema, depth + 1) for c in children))
    if keys == {"not"}:
        return Not(parse_filter(obj["not"], schema, depth + 1))
    if keys != {"field", "op", "value"}:
        raise FilterError(
            "bad_node",
            "a filter node is {'all': [...]}, {'any': [...]}, {'not': {...}} or {'field', 'op', 'value'}; "
            f"got keys {sorted(map(str, keys))}",
        )
    fname, op, value = obj["field"], obj["op"], obj["value"]
    spec = schema.field(fname) if isinstance(fname, str) else None
    if spec is None:
        raise FilterError("unknown_field", f"unknown field {fname!r}; fields are {', '.join(schema.field_names)}")
    if op not in spec.ops:
        raise FilterError("bad_op", f"op {op!r} is not allowed for {spec.type} field '{fname}'; use {', '.join(spec.ops)}")
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            raise FilterError("bad_value", f"op '{op}' on '{fname}' needs a non-empty list of values")
        if len(value) > MAX_LIST_VALUES:
            raise FilterError("too_many", f"op '{op}' on '{fname}' has more than {MAX_LIST_VALUES} values")
        return Leaf(fname, op, tuple(_coerce_scalar(spec.type, fname, v) for v in value))
    return Leaf(fname, op, _coerce_scalar(spec.type, fname, value))


def to_json(node: Node) -> dict:
    if isinstance(node, All):
        return {"all": [to_json(c) for c in node.children]}
    if isinstance(node, AnyOf):
        return {"any": [to_json(c) for c in node.children]}
    if isinstance(node, Not):
        return {"not": to_json(node.child)}

    def plain(v: AnyType) -> AnyType:
        return v.isoformat() if isinstance(v, dt.date) else v

    value = [plain(v) for v in node.value] if isinstance(node.value, tuple) else plain(node.value)
    return {"field": node.field, "op": node.op, "value": value}


def _leaf_matches(leaf: Leaf, actual: AnyType) -> bool:
    op, value = leaf.op, leaf.value
    if isinstance(actual, list | tuple | set | frozenset):  # multi-valued keyword field
        have = set(actual)
        if op in ("eq", "contains"):
            return value in have
        if op == "ne":
            return value not in have
        if op == "in":
            return bool(have.intersection(value))
        return not have.intersection(value)  # nin
    if actual is None:  # a missing value satisfies only the negative ops
        return op in ("ne", "nin")
    if op == "eq":
        return actual == value
    if op == "ne":
        return actual != value
    if op == "in":
        return actual in value
    if op == "nin":
        return actual not in value
    if op == "gt":
        return actual > value
    if op == "gte":
        return actual >= value
    if op == "lt":
        return actual < value
    return actual <= value  # lte


def matches(node: Node | None, meta: dict) -> bool:
    """Reference semantics: does a product's derived metadata satisfy the filter?"""
    if node is None:
        return True
    if isinstance(node, All):
        return all(matches(c, meta) for c in node.children)
    if isinstance(node, AnyOf):
        return any(matches(c, meta) for c in node.children)
    if isinstance(node, Not):
        return not matches(node.child, meta)
    return _leaf_matches(node, meta.get(node.field))
