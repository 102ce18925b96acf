"""The search-plan language: what a planner writes and the executor runs.

A plan is 1-5 keyword searches, each with an optional metadata filter (`stark_instruct.filters`) and a
fusion weight. The typed objects here are what parsing produces and execution consumes; the JSON Schema
is generated from the index schema so that prompts, API tool definitions and grammar-constrained
decoding all describe exactly the fields, ops and value types the index accepts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stark_instruct.filters import MAX_CHILDREN, MAX_DEPTH, MAX_LIST_VALUES, All, AnyOf, Leaf, Node, to_json
from stark_instruct.schema import LIST_OPS, IndexSchema

MIN_SEARCHES = 1
MAX_SEARCHES = 5
MAX_QUERY_CHARS = 1000
MAX_WEIGHT = 10.0
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True)
class Search:
    """One keyword search; `filter` is pushed into the engine, `weight` scales its fused contribution."""

    query: str
    filter: Node | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.query, str):
            raise TypeError(f"query must be a string, got {type(self.query).__name__}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float) \
                or not math.isfinite(self.weight) or not 0 < self.weight <= MAX_WEIGHT:
            raise ValueError(f"weight must be a number in (0, {MAX_WEIGHT}], got {self.weight!r}")
        object.__setattr__(self, "weight", float(self.weight))
        if not self.query.strip() and self.filter is None:
            raise ValueError("a search needs a query or a filter")


@dataclass(frozen=True)
class SearchPlan:
    """The fused searches; their order only matters for tie-breaking reproducibility, not scoring."""

    searches: tuple[Search, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.searches, tuple):
            object.__setattr__(self, "searches", tuple(self.searches))
        if not MIN_SEARCHES <= len(self.searches) <= MAX_SEARCHES:
            raise ValueError(f"a plan has {MIN_SEARCHES}-{MAX_SEARCHES} searches, got {len(self.searches)}")


def search_to_json(search: Search) -> dict:
    """Canonical JSON of a search: `filter` only when set, `weight` only when not the default 1."""
    out: dict = {"query": search.query}
    if search.filter is not None:
        out["filter"] = to_json(search.filter)
    if search.weight != 1.0:
        out["weight"] = float(search.weight)
    return out


def plan_to_json(plan: SearchPlan) -> dict:
    """Canonical JSON of a plan (values normalised as parsed), valid against `plan_json_schema`."""
    return {"searches": [search_to_json(s) for s in plan.searches]}


def _value_schema(ftype: str, max_chars: int | None = None, values: tuple = ()) -> dict:
    if values:  # schema-linked: only values that exist in the index (or that the request names)
        return {"type": "number" if ftype == "number" else "string", "enum": list(values)}
    if ftype in ("keyword", "keywords"):
        return {"type": "string", "minLength": 1, **({"maxLength": max_chars} if max_chars else {})}
    if ftype == "number":
        return {"type": "number"}
    if ftype == "date":
        return {"type": "string", "pattern": ISO_DATE_PATTERN}
    raise ValueError(f"unknown field type {ftype!r}")


def _leaf_schemas(schema: IndexSchema, max_list_values: int = MAX_LIST_VALUES,
                  max_value_chars: int | None = None, link_values: bool = False) -> list[dict]:
    """One alternative per (field, scalar ops) and per (field, list ops): field enum, op enum, value type."""
    leaves = []
    for spec in schema.fields:
        scalar_ops = [op for op in spec.ops if op not in LIST_OPS]
        list_ops = [op for op in spec.ops if op in LIST_OPS]
        if link_values and len(spec.values) == 1:
            # one allowed value: in [v] / nin [v] / contains v are eq v / ne v, and synonyms only split a
            # small model's probability between spellings of one decision
            scalar_ops, list_ops = [op for op in scalar_ops if op != "contains"], []
        value = _value_schema(spec.type, max_value_chars, spec.values if link_values else ())
        for ops, value_schema in (
            (scalar_ops, value),
            (list_ops, {"type": "array", "items": value, "minItems": 1, "maxItems": max_list_values}),
        ):
            if not ops:
                continue
            leaves.append({
                "type": "object",
                "properties": {
                    "field": {"type": "string", "enum": [spec.name]},
                    "op": {"type": "string", "enum": list(ops)},
                    "value": value_schema,
                },
                "required": ["field", "op", "value"],
                "additionalProperties": False,
            })
    if not leaves:
        raise ValueError("the index schema has no filterable fields")
    return leaves


def _combinator(key: str, child_ref: dict, max_children: int = MAX_CHILDREN) -> dict:
    if key == "not":
        prop = child_ref
    else:
        prop = {"type": "array", "items": child_ref, "minItems": 1, "maxItems": max_children}
    return {"type": "object", "properties": {key: prop}, "required": [key], "additionalProperties": False}


# The plan language's own limits, by `plan_json_schema` keyword: a decoding bound may only tighten them.
BOUND_LIMITS = {"max_searches": MAX_SEARCHES, "max_depth": MAX_DEPTH, "max_query_chars": MAX_QUERY_CHARS,
                "max_items": MAX_LIST_VALUES}


def check_bound(keyword: str, value: int, name: str | None = None) -> int:
    """`value` if it is a valid `keyword` bound of `plan_json_schema`; the error names it `name` (default:
    the keyword), so a config can report its own field name."""
    limit = BOUND_LIMITS[keyword]
    if not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{name or keyword} must be an integer in 1..{limit} (the plan language's bound), "
                         f"got {value!r}")
    return value


def plan_json_schema(schema: IndexSchema, *, max_searches: int = MAX_SEARCHES, max_depth: int = MAX_DEPTH,
                     max_query_chars: int = MAX_QUERY_CHARS, max_items: int | None = None,
                     link_values: bool = False, queries: Sequence[str] = ()) -> dict:
    """JSON Schema (draft 2020-12) of a plan over this index.

    Filter nesting is unrolled into `filter_1` .. `filter_{max_depth}` (the deepest level is a leaf)
    instead of a recursive `$ref`, so the schema is acyclic: API tool definitions and grammar-constrained
    decoders that refuse recursion accept it, and by default it admits exactly what `parse_plan` allows.
    The keyword bounds can only tighten the language: a small model decoding under the schema then
    cannot loop through five copies of one search or a 1,000-character query until it is truncated.
    `link_values` restricts keyword filter values to the values the index holds (`FieldSpec.values`);
    the parser accepts any string, so this too only tightens what a decoder may write. `queries`, when
    given, are the only query texts a search may use; a schema with no filterable field allows only
    `"filter": null`.
    """
    max_searches = check_bound("max_searches", max_searches)
    max_depth = check_bound("max_depth", max_depth)
    max_query_chars = check_bound("max_query_chars", max_query_chars)
    # max_items bounds both "in"/"nin" value lists and all/any children
    max_list = MAX_LIST_VALUES if max_items is None else check_bound("max_items", max_items)
    max_children = MAX_CHILDREN if max_items is None else min(max_items, MAX_CHILDREN)
    # a bounded query length also bounds keyword values (brand, colour, category names)
    max_value_chars = None if max_query_chars == MAX_QUERY_CHARS else max_query_chars
    defs: dict[str, dict] = {}
    if schema.fields:
        defs["leaf"] = {"anyOf": _leaf_schemas(schema, max_list, max_value_chars, link_values)}
        defs[f"filter_{max_depth}"] = {"$ref": "#/$defs/leaf"}
        filter_schema: dict = {"anyOf": [{"$ref": "#/$defs/filter_1"}, {"type": "null"}]}
    else:
        max_depth, filter_schema = 0, {"type": "null"}
    for level in range(max_depth - 1, 0, -1):
        child = {"$ref": f"#/$defs/filter_{level + 1}"}
        defs[f"filter_{level}"] = {"anyOf": [
            {"$ref": "#/$defs/leaf"},
            _combinator("all", child, max_children),
            _combinator("any", child, max_children),
            _combinator("not", child),
        ]}
    search = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "keywords to search the product text for",
                      **({"enum": list(dict.fromkeys(q[:max_query_chars] for q in queries))} if queries
                         else {"maxLength": max_query_chars})},
            "filter": {**filter_schema, "description": "metadata filter the results must satisfy"},
            "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WEIGHT,
                       "description": "weight of this search in rank fusion (default 1)"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    defs["search"] = search
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "SearchPlan",
        "description": f"Keyword searches with metadata filters over the `{schema.name}` index; "
                       "their rankings are fused.",
        "type": "object",
        "properties": {
            "searches": {"type": "array", "items": {"$ref": "#/$defs/search"},
                         "minItems": MIN_SEARCHES, "maxItems": max_searches},
        },
        "required": ["searches"],
        "additionalProperties": False,
        "$defs": defs,
    }


def carries_filter(plan: SearchPlan, leaf: Leaf) -> bool:
    """Whether some search of the plan filters with exactly this leaf (positively, not under a `not`):
    the check that a plan obeys an instruction's constraint, as opposed to scoring well by chance."""
    want = canonical_leaf(leaf)
    return any(canonical_leaf(found) == want for s in plan.searches for found in _positive_leaves(s.filter))


def canonical_leaf(leaf: Leaf) -> Leaf:
    """`contains v` and `in [v]` mean `eq v` (on a multi-valued field: has v); `nin [v]` means `ne v`."""
    op, value = leaf.op, leaf.value
    if op == "contains":
        op = "eq"
    if op in ("in", "nin") and isinstance(value, tuple) and len(value) == 1:
        op, value = ("eq" if op == "in" else "ne"), value[0]
    return Leaf(leaf.field, op, value)


def _positive_leaves(node: Node | None) -> Iterator[Leaf]:
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, All | AnyOf):
        for child in node.children:
            yield from _positive_leaves(child)


# The ops a per-request schema allows: a keyword value is required or excluded (`in [v]`, `nin [v]` and
# `contains v` are synonyms that only split a small model's probability between spellings of one
# decision); a number or date is a bound (an exact price or review date is never what a shopper asks for).
REQUEST_OPS = {"keyword": ("eq", "ne"), "keywords": ("eq", "ne"), "number": ("gt", "gte", "lt", "lte"),
               "date": ("gt", "gte", "lt", "lte")}
MAX_REQUEST_LEAVES = 3  # a request's filter: one leaf or a conjunction of up to this many


def _request_leaf(spec, max_chars: int) -> dict:
    value = ({"type": "number", "enum": list(spec.values)} if spec.type == "number"
             else {"type": "string", "enum": [v for v in spec.values if len(v) <= max_chars] or list(spec.values)})
    return {"type": "object",
            "properties": {"field": {"type": "string", "enum": [spec.name]},
                           "op": {"type": "string", "enum": list(REQUEST_OPS[spec.type])},
                           "value": value},
            "required": ["field", "op", "value"], "additionalProperties": False}


def request_plan_schema(schema: IndexSchema, query: str, instruction: str | None, **bounds: int) -> dict:
    """The plan schema for one request (`plan_json_schema` keywords in `bounds`): every search uses the
    request's own text as its query, and its filter is null or a conjunction `{"all": [...]}` of 1 to
    MAX_REQUEST_LEAVES leaves (fewer with `max_items`; a bare leaf with `max_depth=1`) over the values the
    request names (`IndexSchema.linked_to`): the keyword values of its query and instructions (colours,
    categories, brands, by their own words or a corpus alias), and the numbers and date anchors of its
    instructions. A request that names no value gets no filter.

    This is the action space a small planner is trained in: it cannot drop or invent query words (a
    dropped word costs recall no filter wins back) nor filter on a value the user never named, so what
    its samples differ in, and what the reward teaches, is which grounded values to filter on and with
    which op: the product type and colour a query names (eq), what the instructions require or exclude.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    linked = schema.linked_to(instruction.strip() if instruction else "", query)
    out = plan_json_schema(linked, link_values=True, queries=[query.strip()], **bounds)
    # The filter is the decision: always written (null when none applies), with no fusion weight to
    # write instead (a sampled small model otherwise fills that slot and omits the filter), and first,
    # so the model decides it before copying the query. The order also survives the sorted keys every
    # JSONL row is written with: llguidance emits properties in schema order, so a schema read back from
    # prompts.jsonl decodes exactly as the one evaluation builds.
    search = out["$defs"]["search"]
    search["properties"] = {"filter": search["properties"]["filter"], "query": search["properties"]["query"]}
    search["required"] = ["filter", "query"]
    if not linked.fields:
        return out
    # the filter over linked values: {"all": [1..n leaves]} (a leaf alone under max_depth=1). One shape
    # for one leaf or three, so that how many values to filter on is decided leaf by leaf (close the list
    # or add a leaf), which sampling explores, rather than up front; no any/not: a request's values are
    # each required or excluded, and `ne` already says "not"
    max_query_chars = bounds.get("max_query_chars", MAX_QUERY_CHARS)
    leaves = [_request_leaf(spec, max_query_chars) for spec in linked.fields]
    depth = bounds.get("max_depth", MAX_DEPTH)
    n_leaves = min(MAX_REQUEST_LEAVES, bounds.get("max_items", MAX_REQUEST_LEAVES), MAX_CHILDREN)
    node: list[dict] = [{"$ref": "#/$defs/leaf"}]
    if depth >= 2:
        node = [{"type": "object", "properties": {"all": {
            "type": "array", "items": {"$ref": "#/$defs/leaf"}, "minItems": 1, "maxItems": n_leaves}},
            "required": ["all"], "additionalProperties": False}]
    defs = {"leaf": {"anyOf": leaves}, "filter": {"anyOf": node}, "search": search}
    search["properties"]["filter"] = {"anyOf": [{"$ref": "#/$defs/filter"}, {"type": "null"}],
                                      "description": "metadata filter the results must satisfy"}
    out["$defs"] = defs
    return out


@dataclass(frozen=True)
class ForcedTail:
    """The end of every plan a schema admits, from `stop` on: text a decoder would spend tokens on
    although only one continuation is allowed (the request's query, copied one token at a time)."""

    stop: str
    text: str


def forced_tail(json_schema: dict) -> ForcedTail | None:
    """The forced tail of a `request_plan_schema` with `max_searches=1` (None for any other schema).

    There the plan is `{"searches":[{"filter":F,"query":Q}]}` with a single allowed Q, so everything
    after F is fixed: a decoder may stop at `,"query":` and the tail be appended, and the plan is the
    one it would have written (forced tokens have probability 1 under the grammar, so sampling and
    greedy decoding are unchanged). The stop string cannot occur earlier: no filter node has a `query`
    key, and a quote inside a JSON string is escaped. This halves the decode of a linked plan (about
    20 of its 43 tokens are the copied query). Compact JSON only (the backends' default).
    """
    top = json_schema.get("properties", {})
    searches = top.get("searches", {})
    search = json_schema.get("$defs", {}).get("search", {})
    props = search.get("properties", {})
    queries = props.get("query", {}).get("enum", [])
    if list(top) != ["searches"] or searches.get("maxItems") != 1 or list(props) != ["filter", "query"] \
            or set(search.get("required", ())) != {"filter", "query"} or search.get("additionalProperties") is not False \
            or json_schema.get("additionalProperties") is not False or len(queries) != 1:
        return None
    stop = ',"query":'
    return ForcedTail(stop, stop + json.dumps(queries[0], ensure_ascii=False) + "}]}")
