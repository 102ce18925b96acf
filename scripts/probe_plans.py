"""Hostile plans through the real engine: random strings (control characters, lone surrogates,
non-characters, astral planes) in queries and filter values, random fields, ops, nesting, weights and
numbers. Every plan must score or be a typed invalid plan; the first exception stops the probe.

    python scripts/probe_plans.py --bench data/benchmark/synthetic --n 3000
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import check_range, help_field, parse_or_exit  # noqa: E402
from rewards.execute import Executor, score_text  # noqa: E402
from stark_instruct.benchmark import Benchmark  # noqa: E402

POOLS = [(0, 0x20), (0x20, 0x7F), (0x7F, 0xA0), (0xA0, 0x2000), (0xD800, 0xE000), (0xFFF0, 0x10000),
         (0x1F600, 0x1F650), (0x10FFF0, 0x110000)]
OPS = ["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "like"]


class Hostile:
    def __init__(self, fields: list[str], seed: int):
        self.rng, self.fields = random.Random(seed), [*fields, "nosuch"]

    def text(self) -> str:
        n = self.rng.choice([0, 1, 3, 10, 60, 400])
        return "".join(chr(self.rng.randrange(*self.rng.choice(POOLS))) for _ in range(n))

    def value(self):
        r = self.rng
        return r.choice([self.text(), 10 ** r.randint(0, 400), -1e308, 1e308, 0.5, "2024-02-30", "9999-12-31",
                         "0001-01-01", [self.text() for _ in range(r.randint(0, 8))], None, True, {"a": 1}])

    def node(self, depth: int = 0) -> dict:
        r = self.rng.random()
        if depth > 5 or r < 0.5:
            return {"field": self.rng.choice(self.fields), "op": self.rng.choice(OPS), "value": self.value()}
        if r < 0.7:
            return {"not": self.node(depth + 1)}
        return {self.rng.choice(["all", "any"]): [self.node(depth + 1) for _ in range(self.rng.randint(0, 5))]}

    def plan(self) -> str:
        r = self.rng
        searches = [{"query": self.text(), "filter": self.node() if r.random() < 0.8 else None,
                     "weight": r.choice([1, 0.5, 10, 11, -1, 3])} for _ in range(r.randint(1, 6))]
        return json.dumps({"searches": searches}, ensure_ascii=r.random() < 0.5)


@dataclass
class ProbeArgs:
    """Hostile plans through the real engine: every plan must score or be a typed invalid plan."""

    bench: str = help_field("benchmark folder", default="data/benchmark/synthetic")
    n: int = help_field("plans to try", default=3000)
    seed: int = help_field("generator seed", default=0)

    def __post_init__(self) -> None:
        check_range(self, "n", 1)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([ProbeArgs], argv, "scripts/probe_plans.py")
    bench = Benchmark.load(args.bench)
    executor = Executor(bench.index("tantivy"))
    gen = Hostile([f.name for f in bench.schema.fields], args.seed)
    codes: Counter = Counter()
    t0 = time.time()
    for _ in range(args.n):
        codes[score_text(gen.plan(), [1, 2, 3], bench.schema, executor).error_code or "valid"] += 1
    print(json.dumps({"plans": args.n, "seconds": round(time.time() - t0, 1), "crashes": 0,
                      "codes": dict(codes.most_common())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
