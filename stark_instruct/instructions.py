"""Instruction constraints: machine-readable form, natural paraphrases, and their complements.

A constraint is a filter leaf plus what it means to a user:
`{"kind": "inclusion"|"exclusion"|"recency", "attribute": "brand"|"color"|"price"|"rating"|"recency",
  "field", "op", "value", "display"?, "years"?}`. Its leaf is what the `oracle` baseline executes, what
qrels are filtered by, and what dual-view training flips.
"""

from __future__ import annotations

import datetime as dt
import random

from stark_instruct.filters import Node, parse_filter
from stark_instruct.schema import IndexSchema, product_schema

_SCHEMA = product_schema(dt.date(2000, 1, 1))

# (kind, attribute, op) -> paraphrase templates. {v} is the value as a user writes it.
_TEMPLATES: dict[tuple[str, str, str], list[str]] = {
    ("inclusion", "brand", "eq"): [
        "Only show products from {v}.", "I only want {v} gear.", "It has to be made by {v}.",
        "Restrict the results to the {v} brand.", "Stick to {v}, please.",
    ],
    ("exclusion", "brand", "ne"): [
        "Don't show anything from {v}.", "Exclude {v} products.", "I want to avoid {v}.",
        "No {v}, please.", "Anything but {v}.",
    ],
    ("inclusion", "color", "contains"): [
        "It must come in {v}.", "Only {v} ones, please.", "I want it in {v}.", "Show me {v} options only.",
    ],
    ("exclusion", "color", "ne"): [
        "Nothing in {v}.", "I don't want it in {v}.", "Skip the {v} ones.", "Exclude anything available in {v}.",
    ],
    ("inclusion", "price", "lte"): [
        "Keep it under ${v}.", "My budget is at most ${v}.", "Nothing over ${v}.", "It should cost ${v} or less.",
    ],
    ("inclusion", "price", "gt"): [
        "Only items over ${v}.", "I'm happy to spend more than ${v}.", "Show me options above ${v}.",
        "It should cost more than ${v}.",
    ],
    ("inclusion", "rating", "gte"): [
        "Only items rated {v} stars or higher.", "The average rating must be at least {v}.",
        "I only trust products with {v}+ star reviews.", "Show well-reviewed options only ({v} stars and up).",
    ],
    ("inclusion", "rating", "lt"): [
        "Only items rated below {v} stars.", "Show products whose average rating is under {v}.",
        "I'm looking at the lower-rated ones, below {v} stars.",
    ],
    ("recency", "recency", "gte"): [
        "Only products with reviews from the last {v}.", "I care about recent feedback: reviewed within the past {v}.",
        "Ignore anything nobody has reviewed in the last {v}.", "Reviews from the last {v} only.",
    ],
    ("recency", "recency", "lt"): [
        "Show items whose latest review is older than {v}.", "Only products last reviewed more than {v} ago.",
        "I want older products whose newest review is over {v} old.",
    ],
}


def constraint_filter(constraint: dict, schema: IndexSchema = _SCHEMA) -> Node:
    """The constraint's filter leaf, typed and coerced exactly as a search plan's filter would be."""
    return parse_filter({k: constraint[k] for k in ("field", "op", "value")}, schema)


def _spoken(constraint: dict) -> str:
    if constraint["attribute"] == "recency":
        years = constraint["years"]
        return "year" if years == 1 else f"{years} years"
    if constraint["attribute"] == "price":
        return f"{constraint['value']:g}"
    if constraint["attribute"] == "rating":
        return f"{constraint['value']:g}"
    return constraint.get("display") or str(constraint["value"])


def paraphrases(constraint: dict) -> list[str]:
    """All natural-language renderings of a constraint (the builder samples among them)."""
    key = (constraint["kind"], constraint["attribute"], constraint["op"])
    if key not in _TEMPLATES:
        raise ValueError(f"no paraphrase templates for constraint {key}")
    v = _spoken(constraint)
    return [t.format(v=v) for t in _TEMPLATES[key]]


def paraphrase(constraint: dict, rng: random.Random) -> str:
    return rng.choice(paraphrases(constraint))


def complement(constraint: dict) -> dict:
    """The constraint under which the documents it admits are excluded and vice versa (polarity reversal).

    Exact for documents that have the field; one without it (no price, no reviews) satisfies neither a
    bound nor its flipped bound, so callers that need a strict swap verify it on both documents.
    """
    c = dict(constraint)
    attr, op = c["attribute"], c["op"]
    if attr in ("brand", "color"):
        flips = {"eq": ("exclusion", "ne"), "contains": ("exclusion", "ne"), "ne": ("inclusion", "eq")}
        kind, new_op = flips[op]
        if attr == "color" and new_op == "eq":
            new_op = "contains"
        c.update(kind=kind, op=new_op)
        return c
    flips = {"lte": "gt", "gt": "lte", "gte": "lt", "lt": "gte"}
    if op not in flips:
        raise ValueError(f"cannot complement op {op!r} on {attr}")
    c["op"] = flips[op]
    return c


def merge(query: str, instruction: str) -> str:
    """The instruction folded into the query text, as a user typing one message would write it."""
    if not instruction:
        return query
    return f"{query.rstrip()} {instruction.strip()}"


def recency_constraint(reference_date: dt.date, years: int) -> dict:
    start = reference_date.replace(year=reference_date.year - years) if not (
        reference_date.month == 2 and reference_date.day == 29) else reference_date - dt.timedelta(days=365 * years)
    return {"kind": "recency", "attribute": "recency", "field": "last_review_date", "op": "gte",
            "value": start.isoformat(), "years": years}
