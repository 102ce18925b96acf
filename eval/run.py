"""Command line: evaluate baselines and planners on a StaRK-Instruct split and write a report.

    python -m eval.run --bench data/benchmark/synthetic --split test --methods raw,concat,oracle --out runs/eval

Running again with other methods and the same --out merges them into the same table and chart.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from eval.report import METRICS_MD, PLOT, ReportError, markdown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.run",
        description="Evaluate retrieval methods (raw query, query+instruction, oracle filter, local or API "
                    "planners) on a StaRK-Instruct split: Recall@k per instruction kind, gain over raw, paired "
                    "bootstrap CIs, a bar chart and per-query logs in --out. Methods already in --out are kept "
                    "and merged into the table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bench", default="data/benchmark/synthetic", help="benchmark folder (from `make benchmark`)")
    p.add_argument("--split", default="test", choices=("train", "dev", "test"), help="query split to evaluate")
    p.add_argument("--methods", default="raw,concat,oracle",
                   help="comma-separated: raw, concat, oracle, hf:<path-or-hub-id>, vllm:<id>, openai:<model>, "
                        "anthropic:<model>")
    p.add_argument("--out", default="runs/eval", help="report folder (metrics.json/.md, chart, per_query/)")
    p.add_argument("--engine", default="tantivy", choices=("tantivy", "bm25"), help="search engine")
    p.add_argument("--k", type=int, default=20, help="cutoff of the headline recall (Recall@k)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries of the split")
    p.add_argument("--mode", default="separate", choices=("separate", "merged", "chat"),
                   help="prompt mode for planners: instruction in the system spec, merged into the query, or a chat of answered examples")
    p.add_argument("--examples", default="default", choices=("default", "none"),
                   help="few-shot examples in planner prompts: the ones TAO trains with, or zero-shot")
    p.add_argument("--rerank", default=None, metavar="MODEL",
                   help="rerank every method's ranking with this sentence-transformers encoder (folder or "
                        "local id) reading query + instruction; method names get a '+rerank' suffix")
    p.add_argument("--rerank-top-n", type=int, default=50, help="how many top documents the reranker reorders")
    p.add_argument("--compare", action="append", default=[], metavar="A,B",
                   help="also report a paired bootstrap CI of A minus B (repeatable)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--fresh", action="store_true", help="discard an existing report in --out instead of merging")
    return p


def _pairs(values: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for v in values:
        a, sep, b = v.partition(",")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f"--compare needs A,B, got {v!r}")
        pairs.append((a.strip(), b.strip()))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        print("error: --methods is empty", file=sys.stderr)
        return 2
    bench_path = Path(args.bench)
    if not bench_path.exists():
        print(f"error: no benchmark at {bench_path} (run `make benchmark`)", file=sys.stderr)
        return 2
    from eval.harness import evaluate
    from stark_instruct.benchmark import Benchmark

    out = Path(args.out)
    if args.fresh and (out / "metrics.json").exists():
        (out / "metrics.json").unlink()
    try:
        bench = Benchmark.load(bench_path)
        rerank = None
        if args.rerank:
            from rewards.rerank import EncoderReranker

            rerank = EncoderReranker(args.rerank, bench, top_n=args.rerank_top_n)
        result = evaluate(bench, args.split, methods, engine=args.engine, k=args.k, rerank=rerank, out_dir=out,
                          limit=args.limit, compare_pairs=_pairs(args.compare), n_resamples=args.resamples,
                          seed=args.seed, examples=[] if args.examples == "none" else None, mode=args.mode)
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
    raise SystemExit(main())
