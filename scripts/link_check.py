"""Linking quality against the recorded base-query attributes, and what the linked action space allows
(evaluation only: it reads base_queries.jsonl's attributes and the queries' recorded constraints, which no
planner may see). docs/tao.md, "Fifth pass".

    PYTHONPATH=$PWD .venv/bin/python scripts/link_check.py dev
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass

from ir_core.config import help_field, parse_or_exit
from rewards.execute import Executor, score_plan
from rewards.plan import Search, SearchPlan
from stark_instruct.benchmark import Benchmark
from stark_instruct.filters import All, Leaf
from stark_instruct.instructions import constraint_filter


@dataclass
class LinkCheckArgs:
    """Linking quality against the recorded base-query attributes (evaluation only)."""

    split: str = help_field("query split (the first word)", default="dev")
    bench: str = help_field("benchmark folder", default="data/benchmark/synthetic")


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([LinkCheckArgs], argv, "scripts/link_check.py", positional="split")
    bench = Benchmark.load(args.bench)
    schema, metas = bench.schema, bench.metas()
    with open(f"{args.bench}/base_queries.jsonl") as fh:
        base = {row["id"]: row for row in map(json.loads, fh)}
    per_category = Counter(c for m in metas for c in m["category"])
    executor = Executor(bench.index("tantivy"))
    n = colour_named = colour_linked = category_linked = spurious_any = 0
    spurious = 0
    recall: dict[tuple[str, str], list[float]] = defaultdict(list)
    for q in bench.queries(args.split):
        bq = base[q["base_id"]]
        linked = schema.mentioned_values(q["query"])  # the query alone: the metadata it names
        colours = [v for f, v in linked if f == "color"]
        categories = [v for f, v in linked if f == "category"]
        shared = set.intersection(*(set(metas[a]["category"]) for a in bq["answer_ids"]))
        specific = min(shared, key=lambda c: per_category[c])  # the most specific category all answers carry
        if q["kind"] == "none":
            n += 1
            want = bq["attributes"].get("color")
            colour_named += bool(want)
            colour_linked += bool(want) and want in colours
            category_linked += specific in categories
            bad = [v for v in colours if v != want] + [c for c in categories if c not in shared]
            spurious += len(bad)
            spurious_any += bool(bad)
        # the linker's first choices with eq, plus the instruction's recorded constraint
        leaves = [Leaf("category", "eq", categories[0])] if categories else []
        leaves += [Leaf("color", "eq", c) for c in colours[:1]]
        if q.get("constraint"):
            leaves.append(constraint_filter(q["constraint"], schema))
        flt = None if not leaves else leaves[0] if len(leaves) == 1 else All(tuple(leaves))
        group = "instructed" if q["kind"] != "none" else "none"
        for name, plan in (("raw", SearchPlan((Search(q["query"]),))),
                           ("linked-eq", SearchPlan((Search(q["query"], flt),)))):
            r = score_plan(plan, q["relevant_ids"], executor, 20).reward
            recall[(name, q["kind"])].append(r)
            if group == "instructed":
                recall[(name, group)].append(r)
    print(f"{args.split}: base queries {n}; colour named {colour_named}, linked {colour_linked}; most specific "
          f"category linked {category_linked} ({category_linked / n:.3f}); spurious values/query {spurious / n:.3f}; "
          f"queries with any spurious {spurious_any / n:.3f}")
    for key in sorted(recall):
        print(*key, f"R@20 {sum(recall[key]) / len(recall[key]):.3f}", f"n={len(recall[key])}")


if __name__ == "__main__":
    main()
