"""Command line: evaluate baselines and planners on a StaRK-Instruct split and write a report.

    python -m eval.run --bench data/benchmark/synthetic --split test --methods raw concat oracle --out runs/eval

Running again with other methods and the same --out merges them into the same table and chart.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from eval.harness import evaluate
from eval.report import METRICS_MD, PLOT, ReportError, markdown
from ir_core.config import ConfigError, check, check_range, comma_list, help_field, parse_or_exit
from ir_core.errors import run_main
from rewards.prompts import default_examples, query_schema
from rewards.rerank import EncoderReranker
from stark_instruct.benchmark import Benchmark


@dataclass
class EvalArgs:
    """Evaluate retrieval methods (raw query, query+instruction, oracle filter, local or API planners) on a
    StaRK-Instruct split: Recall@k per instruction kind, gain over raw, paired bootstrap CIs, a bar chart and
    per-query logs in --out. Methods already in --out are kept and merged into the table."""

    bench: str = help_field("benchmark folder (from `make benchmark`)", default="data/benchmark/synthetic")
    split: Literal["train", "dev", "test"] = help_field("query split to evaluate", default="test")
    methods: list[str] = help_field("methods to evaluate: raw, concat, oracle, oracle_full, hf:<path-or-hub-id>, "
                                    "vllm:<id>, openai:<model>, anthropic:<model>, plans:<per-query log> (a "
                                    "comma-separated list is read too)",
                                    default_factory=lambda: ["raw", "concat", "oracle"])
    out: str = help_field("report folder (metrics.json/.md, chart, per_query/)", default="runs/eval")
    engine: Literal["tantivy", "bm25"] = help_field("search engine", default="tantivy")
    k: int = help_field("cutoff of the headline recall (Recall@k)", default=20)
    limit: int | None = help_field("evaluate only the first N queries of the split", default=None)
    mode: Literal["separate", "merged", "chat", "compact"] = help_field(
        "prompt mode for planners: instruction in the system spec, merged into the query, or a chat of "
        "answered examples", default="separate")
    examples: Literal["default", "basic", "none"] = help_field(
        "few-shot examples in planner prompts (rewards.prompts.EXAMPLE_SETS, as TAO configs name them): one per "
        "constraint type, the earlier four, or zero-shot", default="default")
    link_request: bool = help_field(
        "each planner request decodes under its own plan schema (rewards.prompts.query_schema: the request's "
        "own query, filter values its instructions name), as TAO runs with link_request do; sent as "
        "response_format by API planners in json_schema mode, used by local planners that constrain decoding",
        default=False)
    max_searches: int | None = help_field("with --link-request: at most this many searches per plan", default=None)
    max_filter_depth: int | None = help_field("with --link-request: filter nesting depth bound", default=None)
    rerank: str | None = help_field("rerank every method's ranking with this sentence-transformers encoder (folder or "
                               "local id) reading query + instruction; method names get a '+rerank' suffix",
                               default=None)
    rerank_top_n: int = help_field("how many top documents the reranker reorders", default=50)
    compare: list[str] = help_field("also report a paired bootstrap CI of A minus B for each A,B given",
                               default_factory=list)
    resamples: int = help_field("bootstrap resamples", default=1000)
    seed: int = help_field("bootstrap seed", default=0)
    fresh: bool = help_field("discard an existing report in --out instead of merging", default=False)

    def __post_init__(self) -> None:
        for name in ("k", "rerank_top_n", "resamples"):
            check_range(self, name, 1)
        check_range(self, "limit", 1, optional=True)
        for name in ("max_searches", "max_filter_depth"):
            check_range(self, name, 1, optional=True)
            check(getattr(self, name) is None or self.link_request, name, "bounds a request schema: add --link-request")
        self.methods = comma_list(self.methods)
        check(bool(self.methods), "methods", "is empty")
        try:
            _pairs(self.compare)
        except ValueError as e:
            raise ConfigError("compare", str(e)) from None

    def example_list(self, bench: Benchmark) -> list[dict] | None:
        """The few-shot examples of --examples; None for the default set, which the harness builds only
        when a planner is evaluated."""
        return None if self.examples == "default" else default_examples(bench.schema, self.examples)

    def request_schema(self, bench: Benchmark) -> Callable[[dict], dict] | None:
        """Query row -> its own decoding schema (--link-request), or None: every request uses the planner's."""
        if not self.link_request:
            return None
        bounds = {kw: v for kw, v in (("max_searches", self.max_searches), ("max_depth", self.max_filter_depth))
                  if v is not None}
        return partial(query_schema, bench.schema, mode=self.mode, **bounds)


def _pairs(values: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for v in values:
        a, sep, b = v.partition(",")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f"--compare needs A,B, got {v!r}")
        pairs.append((a.strip(), b.strip()))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    (args,) = parse_or_exit([EvalArgs], argv, "python -m eval.run")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    methods = args.methods
    bench_path = Path(args.bench)
    if not bench_path.exists():
        print(f"error: no benchmark at {bench_path} (run `make benchmark`)", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.fresh and (out / "metrics.json").exists():
        (out / "metrics.json").unlink()
    try:
        bench = Benchmark.load(bench_path)
        rerank = None
        if args.rerank:
            rerank = EncoderReranker(args.rerank, bench, top_n=args.rerank_top_n)
        result = evaluate(bench, args.split, methods, engine=args.engine, k=args.k, rerank=rerank, out_dir=out,
                          limit=args.limit, compare_pairs=_pairs(args.compare), n_resamples=args.resamples,
                          seed=args.seed, examples=args.example_list(bench), mode=args.mode,
                          request_schema=args.request_schema(bench))
    except (ReportError, ValueError, ImportError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a backend that stops the run (e.g. an API 404 or auth failure)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(markdown(result))
    print(f"report: {out / METRICS_MD}, chart: {out / PLOT}, per-query logs: {out / 'per_query'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
