"""Compliance beside recall: do a method's results and plans obey the constraint of the query?

- `violations@k`: the share of the top-k results that break the instruction's constraint (an excluded
  brand or colour shown, a colour not asked for, a price over the ceiling, a rating under the minimum, a
  last review outside the window), judged by `stark_instruct.filters.matches` on the index metadata: the
  semantics the qrels are filtered with, so a product without a price breaks a price ceiling here as it
  is left out of the qrels there. Recall barely moves when one excluded brand slips into a large top 20.
- op checks: for each constraint leaf (the instruction's, and the metadata the base query implies), does
  the plan filter that field with the right op, the opposite one, another one, or not at all.

Both read the recorded constraints, which is evaluation's business; planners must never see them. They
work from a per-query log record (its `plan` JSON and `retrieved` ids), so older logs can be annotated too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from ir_core.types import KINDS
from rewards.plan import canonical_leaf
from stark_instruct.benchmark import FILTER_FIELDS
from stark_instruct.filters import All, AnyOf, FilterError, Leaf, Node, Not, matches, parse_filter
from stark_instruct.instructions import constraint_filter

VERDICTS = ("right", "opposite", "other", "none", "invalid")
# What an op asks of a field: keywords have it / lack it; numbers and dates have an upper or a lower bound.
_DIRECTION = {"eq": "has", "contains": "has", "in": "has", "ne": "lacks", "nin": "lacks",
              "lt": "upper", "lte": "upper", "gt": "lower", "gte": "lower"}
_POINT = {"eq": "point", "ne": "not point"}  # on numbers and dates, eq/ne bound nothing
_OPPOSITE = {"has": "lacks", "lacks": "has", "upper": "lower", "lower": "upper", "point": "not point",
             "not point": "point"}


def violations(ranking: list[int], constraint: dict | None, meta: Callable[[int], dict], k: int) -> dict | None:
    """{"k", "shown", "broken"} for the first k results; None for a query without an instruction."""
    if not constraint:
        return None
    node = constraint_filter(constraint)
    shown = [int(d) for d in ranking[:k]]
    return {"k": k, "shown": len(shown), "broken": sum(not matches(node, meta(d)) for d in shown)}


def violation_rate(v: dict | None) -> float | None:
    """broken / shown; None when there is no constraint or nothing was shown (an invalid plan)."""
    return v["broken"] / v["shown"] if v and v["shown"] else None


def _direction(leaf: Leaf, negated: bool) -> str:
    ordered = FILTER_FIELDS.field(leaf.field).type in ("number", "date")
    d = _POINT[leaf.op] if ordered and leaf.op in _POINT else _DIRECTION[leaf.op]
    return _OPPOSITE[d] if negated else d


def _leaves(node: Node | None, negated: bool = False) -> Iterator[tuple[Leaf, bool]]:
    if isinstance(node, Leaf):
        yield node, negated
    elif isinstance(node, All | AnyOf):
        for child in node.children:
            yield from _leaves(child, negated)
    elif isinstance(node, Not):
        yield from _leaves(node.child, not negated)


def plan_filters(plan: dict | None) -> list[Node] | None:
    """The typed filters of a logged plan's searches; None for no plan (or one that no longer parses)."""
    if not isinstance(plan, dict):
        return None
    try:
        return [parse_filter(s["filter"], FILTER_FIELDS) for s in plan.get("searches", []) if s.get("filter")]
    except (FilterError, KeyError, TypeError):
        return None


def op_verdict(filters: list[Node] | None, want: Leaf) -> tuple[str, bool]:
    """(verdict, exact) of a plan's filters on `want`'s field: `right` when some leaf asks the same
    direction (eq/contains/in ≡ has the value, ne/nin ≡ lacks it, lt/lte ≡ upper bound, gt/gte ≡ lower
    bound; a `not` flips it), `opposite` for the reverse, `other` for any other op on the field (or, on a
    keyword field, a leaf that does not name the value: `color ne blue` says nothing of red), `none`
    without one; `invalid` without a plan. `exact`: the same canonical op and value, not negated.
    Several leaves on the field: the best of right > opposite > other."""
    if filters is None:
        return "invalid", False
    wanted = _direction(want, False)
    found = [(leaf, neg) for f in filters for leaf, neg in _leaves(f) if leaf.field == want.field]
    if not found:
        return "none", False
    verdicts = []
    for leaf, neg in found:
        d = _direction(leaf, neg)
        named = not isinstance(want.value, str) or want.value in (
            leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
        verdict = "other" if not named else "right" if d == wanted else "opposite" if d == _OPPOSITE[wanted] \
            else "other"
        verdicts.append((VERDICTS.index(verdict), not (verdict == "right" and not neg
                                                       and canonical_leaf(leaf) == canonical_leaf(want))))
    best, inexact = min(verdicts)
    return VERDICTS[best], not inexact


def op_checks(record: dict, row: dict) -> list[dict]:
    """One check per constraint leaf of the row: the instruction's (`source` instruction, labelled by its
    attribute) and each leaf of the metadata the base query implies (`source` query, labelled by field)."""
    filters = plan_filters(record.get("plan")) if record.get("valid", True) else None
    wants: list[tuple[str, str, Leaf]] = []
    if row.get("constraint"):
        wants.append(("instruction", row["constraint"].get("attribute") or row["constraint"]["field"],
                      constraint_filter(row["constraint"])))
    implied = row.get("query_constraint")
    if implied:
        node = parse_filter(implied, FILTER_FIELDS)
        wants += [("query", leaf.field, leaf) for leaf, _ in _leaves(node)]
    out = []
    for source, label, want in wants:
        verdict, exact = op_verdict(filters, want)
        out.append({"source": source, "kind": row.get("kind", "none") if source == "instruction" else "query",
                    "attribute": label, "verdict": verdict, "exact": exact})
    return out


def annotate(record: dict, row: dict, meta: Callable[[int], dict], k: int, ranking: list[int] | None = None) -> dict:
    """Add `violations` and `checks` to a per-query record, in place (returned for chaining); the ranking
    defaults to the record's logged `retrieved` ids (at least the top 20)."""
    if ranking is None:
        ranking = (record.get("retrieved") or []) if record.get("valid", True) else []
    record["violations"] = violations(ranking, row.get("constraint"), meta, k)
    record["checks"] = op_checks(record, row)
    return record


INSTRUCTED_GROUPS = (*KINDS[1:], "instructed")


def violations_key(k: int) -> str:
    return f"violations@{k}"


def violations_by_kind(records: list[dict]) -> dict[str, dict]:
    """Mean violation rate per instructed kind and over all instructed queries, with `n` the queries that
    showed results (invalid plans show none and are left out; the validity column counts them)."""
    out: dict[str, dict] = {}
    for group in INSTRUCTED_GROUPS:
        rows = [r for r in records if r.get("violations") and (group == "instructed" or r.get("kind") == group)]
        rates = [x for x in (violation_rate(r["violations"]) for r in rows) if x is not None]
        if rows:
            k = rows[0]["violations"]["k"]
            out[group] = {"n": len(rates), violations_key(k): sum(rates) / len(rates) if rates else None}
    return out


def op_table(records: list[dict]) -> list[dict]:
    """Per (source, kind, attribute): how many plans carry the right op (and how many exactly the
    constraint's leaf), the opposite op, another op, no filter on the field, or no valid plan."""
    counts: dict[tuple, Counter] = {}
    for r in records:
        for c in r.get("checks") or []:
            key = (c["source"], c["kind"], c["attribute"])
            counts.setdefault(key, Counter()).update({c["verdict"]: 1, "exact": int(c["exact"]), "n": 1})
    order = {k: i for i, k in enumerate((*KINDS, "query"))}
    rows = []
    for (source, kind, attribute), n in sorted(counts.items(), key=lambda x: (x[0][0] == "query", order.get(x[0][1], 99),
                                                                            x[0][2])):
        rows.append({"source": source, "kind": kind, "attribute": attribute, "n": n["n"], "exact": n["exact"],
                     **{v: n[v] for v in VERDICTS}})
    return rows
