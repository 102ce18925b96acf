"""The offline TAO loop: sample -> score -> select -> train -> evaluate on dev, for R rounds.

Round 0 evaluates the starting policy (and the ``raw`` baseline) so every later round has a reference.
Round r samples N plans per training prompt from the current policy (temperature > 0, fixed seeds),
scores them with the benchmark reward, selects training rows (best-of-N SFT, DPO pairs or KTO labels),
fine-tunes with TRL and evaluates the new policy on dev (and, only for reporting, on test). The best
checkpoint is chosen by dev Recall@k, never by test. Everything lives in one run directory; every stage
has a done marker, so an interrupted run continues where it stopped when started again with the same
``--run-dir``.

    python -m pipelines.tao --config configs/tao/smollm2-cpu.yaml --run-dir runs/tao
    python -m pipelines.tao --config configs/tao/smollm2-cpu.yaml --set strategy=dpo --set rounds=3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ir_core.io import JsonlAppender, atomic_write_json, atomic_write_text, read_json, read_jsonl
from pipelines.rundir import RunDir
from pipelines.select import STRATEGIES, select_to_files
from pipelines.stages import (
    CANDIDATES,
    PROMPTS,
    SCORED,
    build_prompts,
    merge_shards,
    sample_stage,
    score_round,
)
from pipelines.train import TrainConfig, config_from_dict, load_config_file, train

GROUPS = ("none", "inclusion", "exclusion", "recency", "instructed", "all")


# TaoConfig's decoding-bound fields -> plan_json_schema keywords
SCHEMA_BOUNDS = {"max_searches": "max_searches", "max_filter_depth": "max_depth",
                 "max_query_chars": "max_query_chars", "max_filter_items": "max_items"}


@dataclass
class TaoConfig:
    benchmark: str = "data/benchmark/synthetic"
    model: str = "models/smollm2-135m-instruct"
    run_dir: str = "runs/tao"
    backend: str = "hf"  # hf | vllm
    engine: str = "tantivy"
    k: int = 20
    rounds: int = 2
    # sampling
    n: int = 6
    temperature: float = 0.9
    top_p: float = 0.95
    seed: int = 0
    max_train_prompts: int | None = 96
    sample_batch_size: int = 16
    max_new_tokens: int = 160
    constrained: bool = False
    # bounds of the decoding schema (constrained decoding only; None = the plan language's own limits)
    max_searches: int | None = None
    max_filter_depth: int | None = None
    max_query_chars: int | None = None
    max_filter_items: int | None = None  # values of an in/nin list, children of all/any
    mode: str = "separate"  # prompt mode of rewards.prompts (same in sampling, training, evaluation)
    examples: str = "default"  # default: rewards.prompts.default_examples; none: zero-shot
    # selection
    strategy: str = "best-of-n"  # best-of-n | dpo | kto
    threshold: float = 0.1
    min_gap: float = 0.2
    drop_ties: bool = True
    # training
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lr: float = 2e-4
    epochs: float = 2.0
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    beta: float = 0.1
    merge: bool = False
    continue_from: str = "best"  # next round starts from the best checkpoint so far, or the last one
    train_extra: dict[str, Any] = field(default_factory=dict)  # more TrainConfig fields
    train_launcher: str | None = None  # e.g. "accelerate launch --config_file launch/accelerate/ddp.yaml"
    # evaluation
    eval_dev_limit: int | None = None
    eval_test_limit: int | None = None
    eval_test: bool = True  # reported per round, never used for selection
    eval_batch_size: int = 32
    baselines: list[str] = field(default_factory=lambda: ["raw"])
    # CPU threads for torch in this process (None: torch's default). On an oversubscribed CPU one thread
    # can be far faster than two spinning ones (docs/tao.md, Measurements).
    torch_threads: int | None = None
    # logging
    report_to: str = "wandb"  # wandb (offline unless configured) | none
    wandb_project: str = "instructed-retriever"

    @classmethod
    def from_dict(cls, d: dict) -> TaoConfig:
        cfg = config_from_dict(cls, d, "tao")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}")
        if self.backend not in ("hf", "vllm"):
            raise ValueError("backend must be hf or vllm")
        if self.temperature <= 0 or self.n < 2:
            raise ValueError("TAO needs temperature > 0 and n >= 2 candidates per prompt")
        if self.continue_from not in ("best", "last"):
            raise ValueError("continue_from must be best or last")
        if self.examples not in ("default", "none"):
            raise ValueError("examples must be default or none")
        self.schema_bounds()  # raises on a bound outside the plan language's limits

    def schema_bounds(self) -> dict[str, int]:
        """The decoding bounds that are set, as `rewards.plan.plan_json_schema` keywords (checked)."""
        from rewards.plan import check_bound

        return {kw: check_bound(kw, getattr(self, f), f) for f, kw in SCHEMA_BOUNDS.items()
                if getattr(self, f) is not None}


# --- factories (tests inject fakes) ------------------------------------------------------------------


def open_benchmark(path: str) -> Any:
    from stark_instruct.benchmark import Benchmark

    return Benchmark.load(path)


def make_sampler(cfg: TaoConfig, model_path: str, adapter_path: str | None, json_schema: dict | None) -> Any:
    """A planner backend with ``.plan`` (greedy) and ``.sample``; imported lazily (vLLM is GPU-only)."""
    kwargs = dict(
        adapter_path=adapter_path,
        batch_size=cfg.sample_batch_size,
        max_new_tokens=cfg.max_new_tokens,
        constrained=cfg.constrained,
        json_schema=json_schema,
    )
    if cfg.backend == "vllm":
        from pipelines.backends.vllm import VLLMPlanner

        return VLLMPlanner(model_path, **kwargs)
    from pipelines.backends.hf import HFPlanner

    return HFPlanner(model_path, **kwargs)


PlannerFactory = Callable[[TaoConfig, str, str | None, dict | None], Any]


def _examples(cfg: TaoConfig, bench: Any) -> list[dict]:
    if cfg.examples == "none":
        return []
    from rewards.prompts import default_examples

    return default_examples(bench.schema)


def decoding_schema(cfg: TaoConfig, bench: Any) -> dict | None:
    """The plan's JSON schema under the config's decoding bounds (what constrained sampling obeys)."""
    try:
        from rewards.plan import plan_json_schema
    except ImportError:
        return None
    return plan_json_schema(bench.schema, **cfg.schema_bounds())


# --- evaluation ------------------------------------------------------------------------------------


def release(planner: Any) -> None:
    """Free a backend's model (vLLM holds GPU memory that a training subprocess will need)."""
    for name in ("close", "shutdown"):
        fn = getattr(planner, name, None)
        if callable(fn):
            fn()
            break
    del planner
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def summarize(result: dict, method: str, k: int) -> dict:
    """Recall@k and validity per kind group of one method from an eval.harness result."""
    by_kind = result["methods"][method]["by_kind"]
    key = f"recall@{k}"
    return {
        g: {"recall": by_kind[g].get(key), "validity": by_kind[g].get("validity"), "n": by_kind[g].get("n")}
        for g in GROUPS
        if g in by_kind
    }


def evaluate_policy(
    cfg: TaoConfig,
    bench: Any,
    planner: Any,
    name: str,
    split: str,
    out_dir: Path,
    limit: int | None,
    baselines: list[str] = (),
) -> dict:
    from eval.harness import evaluate
    from eval.methods import PlannerMethod

    examples = _examples(cfg, bench)
    method = PlannerMethod(
        planner, bench.schema, examples, cfg.mode, name=name, batch_size=cfg.eval_batch_size
    )
    methods: list[Any] = [*baselines, method]
    res = evaluate(
        bench,
        split,
        methods,
        engine=cfg.engine,
        k=cfg.k,
        out_dir=out_dir,
        limit=limit,
        examples=examples,
        mode=cfg.mode,
    )
    out = {name: summarize(res, name, cfg.k)}
    for b in baselines:
        out[b] = summarize(res, b, cfg.k)
    return out


# --- the loop ------------------------------------------------------------------------------------


def _train_config(cfg: TaoConfig, rd: RunDir, policy: dict, data: Path, round_idx: int) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model_path": policy["model_path"],
            "adapter_path": policy.get("adapter_path") if cfg.lora else None,
            "data_path": str(data),
            "output_dir": str(rd / "train"),
            "objective": cfg.strategy,
            "lora": cfg.lora,
            "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha,
            "learning_rate": cfg.lr,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "grad_accum": cfg.grad_accum,
            "max_length": cfg.max_length,
            "beta": cfg.beta,
            "seed": cfg.seed + round_idx,
            "merge": cfg.merge,
            # in-process training logs through the loop's own wandb run
            "report_to": cfg.report_to if cfg.train_launcher else "none",
            "run_name": f"round-{round_idx}",
            **cfg.train_extra,
        }
    )


def _run_training(cfg: TaoConfig, tcfg: TrainConfig, rd: RunDir) -> dict:
    if not cfg.train_launcher:
        return train(tcfg)
    cfg_path = atomic_write_json(rd / "train_config.json", tcfg.to_dict())
    cmd = [*shlex.split(cfg.train_launcher), "-m", "pipelines.train", "--config", str(cfg_path)]
    subprocess.run(cmd, check=True)
    return read_json(Path(tcfg.output_dir) / "train_metrics.json")


def _next_policy(tcfg: TrainConfig, metrics: dict) -> dict:
    if tcfg.lora and not tcfg.merge:
        return {"model_path": tcfg.model_path, "adapter_path": metrics["adapter_path"]}
    if tcfg.lora:
        return {"model_path": metrics["merged_path"], "adapter_path": None}
    return {"model_path": metrics["model_path"], "adapter_path": None}


def markdown_table(rows: list[dict], k: int) -> str:
    """One line per round: dev/test Recall@k per kind, validity, mean sampled reward, training loss."""
    cols = ["none", "inclusion", "exclusion", "recency", "instructed", "all"]
    head = (
        "| round | split | "
        + " | ".join(f"R@{k} {c}" for c in cols)
        + " | validity | mean reward | best-of-N reward | train rows | loss | best |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 8)]
    for r in rows:
        for split in ("dev", "test"):
            ev = r.get(split)
            if not ev:
                continue
            pol = ev.get("policy", {})
            vals = " | ".join(
                f"{pol[c]['recall']:.3f}" if c in pol and pol[c]["recall"] is not None else "-" for c in cols
            )
            valid = pol.get("all", {}).get("validity")
            s = r.get("score", {})
            sel = r.get("select", {})
            tr = r.get("train", {})
            lines.append(
                f"| {r['round']} | {split} | {vals} | {valid:.3f} | "
                f"{_fmt(s.get('mean_reward'))} | {_fmt(sel.get('mean_best_reward'))} | {sel.get('rows', '-')} | "
                f"{_fmt(tr.get('train_loss'))} | {'*' if r.get('is_best') and split == 'dev' else ''} |"
            )
            for b, bv in (ev.get("baselines") or {}).items():
                vals = " | ".join(
                    f"{bv[c]['recall']:.3f}" if c in bv and bv[c]["recall"] is not None else "-" for c in cols
                )
                lines.append(f"| {b} | {split} | {vals} | {bv['all']['validity']:.3f} | | | | | |")
    return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else "-"


class _Logger:
    """wandb (offline unless the user configured it) plus nothing else; rounds.jsonl is the durable log."""

    def __init__(self, cfg: TaoConfig, run: RunDir):
        self.run = None
        if cfg.report_to != "wandb":
            return
        from pipelines.rundir import redact
        from pipelines.train import configure_wandb

        configure_wandb("wandb")
        import wandb

        self.run = wandb.init(
            project=cfg.wandb_project,
            dir=str(run.path),
            config=redact(cfg.to_dict()),
            name=Path(cfg.run_dir).name,
            resume="allow",
            id=_wandb_id(run),
        )

    def log(self, row: dict) -> None:
        if self.run is None:
            return
        flat: dict[str, float] = {"round": row["round"]}
        for split in ("dev", "test"):
            for who, groups in (row.get(split) or {}).items():
                if who == "baselines":
                    continue
                for g, v in groups.items():
                    flat[f"{split}/recall_{g}"] = v["recall"]
                    flat[f"{split}/validity_{g}"] = v["validity"]
        for sect in ("score", "select", "train"):
            for key, v in (row.get(sect) or {}).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    flat[f"{sect}/{key}"] = v
        self.run.log(flat)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _wandb_id(run: RunDir) -> str:
    p = run / "wandb_id.txt"
    if not p.exists():
        import uuid

        atomic_write_text(p, uuid.uuid4().hex[:12])
    return p.read_text().strip()


def run_tao(
    cfg: TaoConfig,
    planner_factory: PlannerFactory = make_sampler,
    stop_after: str | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) the loop; returns {"best": {...}, "rounds": [...]}.

    ``stop_after="prompts"`` prepares a round's prompts and starting policy and returns, so a cluster can
    sample it with ``python -m pipelines.stages sample --shard i/n`` array jobs; the next call merges the
    shards and goes on.
    """
    cfg.validate()
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    run = RunDir(cfg.run_dir)
    cfg_path = run / "config.json"
    if cfg_path.exists():
        old = TaoConfig.from_dict(read_json(cfg_path))
        if old.to_dict() != cfg.to_dict():
            atomic_write_json(run / "config.previous.json", old.to_dict())
    atomic_write_json(cfg_path, cfg.to_dict())
    run.write_manifest(
        cfg.to_dict(),
        inputs={
            "benchmark_manifest": Path(cfg.benchmark) / "manifest.json",
            "benchmark_queries": Path(cfg.benchmark) / "queries",
            "benchmark_schema": Path(cfg.benchmark) / "schema.json",
            "model_config": Path(cfg.model) / "config.json",
        },
        seeds={
            "seed": cfg.seed,
            "sample_seed_per_round": "seed + round",
            "train_seed_per_round": "seed + round",
        },
    )
    bench = open_benchmark(cfg.benchmark)
    plan_schema = decoding_schema(cfg, bench)
    atomic_write_json(run / "plan_schema.json", plan_schema)
    logger = _Logger(cfg, run)
    rounds_path = run / "rounds.jsonl"

    def evaluate_round(rd: RunDir, policy: dict, r: int) -> dict:
        def one(split: str, limit: int | None) -> dict:
            planner = planner_factory(cfg, policy["model_path"], policy.get("adapter_path"), plan_schema)
            try:
                res = evaluate_policy(
                    cfg,
                    bench,
                    planner,
                    f"policy-r{r}",
                    split,
                    rd / "eval" / split,
                    limit,
                    baselines=cfg.baselines if r == 0 else [],
                )
            finally:
                release(planner)
            return {"policy": res.pop(f"policy-r{r}"), "baselines": res}

        out = {"dev": rd.stage("eval-dev", lambda: one("dev", cfg.eval_dev_limit))}
        if cfg.eval_test:
            out["test"] = rd.stage("eval-test", lambda: one("test", cfg.eval_test_limit))
        return {s: {k: v for k, v in e.items() if k in ("policy", "baselines")} for s, e in out.items()}

    def run_round(r: int, start: dict) -> dict | None:
        rd = run.sub(f"round-{r:02d}")
        info = rd.stage("policy", lambda: start)
        policy = {"model_path": info["model_path"], "adapter_path": info.get("adapter_path")}
        atomic_write_json(rd / "policy.json", policy)
        rd.stage("prompts", lambda: _write_prompts(cfg, bench, rd, r))
        prompts = read_jsonl(rd / PROMPTS)
        if stop_after == "prompts":
            return None
        sample_info = rd.stage(
            "sample", lambda: _sample(cfg, planner_factory, policy, plan_schema, prompts, rd, r, progress)
        )
        score_info = score_round(rd, prompts, bench, cfg.engine, cfg.k, progress=progress)
        sel = rd.stage(
            "select",
            lambda: select_to_files(
                read_jsonl(rd / SCORED),
                prompts,
                rd / "train.jsonl",
                cfg.strategy,
                cfg.threshold,
                cfg.min_gap,
                cfg.drop_ties,
            ),
        )
        if sel["rows"] == 0:
            train_info: dict = {"skipped": "no training rows (every prompt tied or under threshold)"}
            new_policy = policy
        else:
            tcfg = _train_config(cfg, rd, policy, rd / "train.jsonl", r)
            train_info = rd.stage("train", lambda: _strip(_run_training(cfg, tcfg, rd)))
            new_policy = _next_policy(tcfg, train_info)
        return {
            "round": r,
            "policy_in": policy,
            "policy_out": new_policy,
            "sample": _strip(sample_info),
            "score": _strip(score_info),
            "select": _strip(sel),
            "train": _strip(train_info),
            **evaluate_round(rd, new_policy, r),
        }

    with JsonlAppender(rounds_path, key=lambda row: row["round"]) as log:
        done_rows = {row["round"]: row for row in read_jsonl(rounds_path)}
        policy = {"model_path": cfg.model, "adapter_path": None}
        r0 = run.sub("round-00")
        if 0 not in done_rows:
            row = {"round": 0, "policy_in": policy, "policy_out": policy, **evaluate_round(r0, policy, 0)}
            log.append(row)
            done_rows[0] = row
            logger.log(row)
        best = _best(done_rows, cfg)
        for r in range(1, cfg.rounds + 1):
            if r in done_rows:
                continue
            last = done_rows[max(done_rows)]
            start = best["policy_out"] if cfg.continue_from == "best" else last["policy_out"]
            row = run_round(r, start)
            if row is None:
                return {"stopped_after": stop_after, "round": r}
            log.append(row)
            done_rows[r] = row
            best = _best(done_rows, cfg)
            logger.log(row)
    rows = [done_rows[r] for r in sorted(done_rows)]
    best = _best(done_rows, cfg)
    for row in rows:
        row["is_best"] = row["round"] == best["round"]
    summary = {
        "best": {"round": best["round"], "policy": best["policy_out"], "dev": best["dev"]["policy"]},
        "rounds": rows,
    }
    atomic_write_json(run / "best.json", summary["best"])
    atomic_write_text(run / "rounds.md", markdown_table(rows, cfg.k))
    logger.finish()
    return summary


def _strip(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in ("stage", "finished", "config")}


def _best(rows: dict[int, dict], cfg: TaoConfig) -> dict:
    """The round with the highest dev Recall@k over all queries (earliest wins a tie); test is never used."""

    def dev_recall(row: dict) -> float:
        return row["dev"]["policy"].get("all", {}).get("recall") or 0.0

    return max((rows[r] for r in sorted(rows)), key=lambda row: (dev_recall(row), -row["round"]))


def _write_prompts(cfg: TaoConfig, bench: Any, rd: RunDir, r: int) -> dict:
    from ir_core.io import write_jsonl

    prompts = build_prompts(
        bench,
        "train",
        cfg.max_train_prompts,
        seed=cfg.seed + r,
        mode=cfg.mode,
        examples=_examples(cfg, bench),
    )
    write_jsonl(rd / PROMPTS, prompts)
    kinds: dict[str, int] = {}
    for p in prompts:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    return {"prompts": len(prompts), "kinds": kinds}


def _sample(
    cfg: TaoConfig,
    factory: PlannerFactory,
    policy: dict,
    plan_schema: dict | None,
    prompts: list[dict],
    rd: RunDir,
    r: int,
    progress: bool,
) -> dict:
    shards = sorted(rd.path.glob(CANDIDATES.replace(".jsonl", ".shard-*.jsonl")))
    if shards:  # sampled by an array job (pipelines.stages sample --shard i/n): every shard must be done
        n_shards = int(shards[0].stem.rsplit("-of-", 1)[1])
        missing = [i for i in range(n_shards) if not rd.is_done(f"sample-shard-{i:03d}-of-{n_shards:03d}")]
        if missing:
            raise RuntimeError(
                f"round {r}: shards {missing} of {n_shards} are not finished; rerun them first"
            )
        return merge_shards(shards, prompts, rd / CANDIDATES)
    sampler = factory(cfg, policy["model_path"], policy.get("adapter_path"), plan_schema)
    try:
        return sample_stage(
            sampler,
            prompts,
            rd / CANDIDATES,
            cfg.n,
            cfg.temperature,
            cfg.top_p,
            cfg.seed + r,
            batch_size=cfg.sample_batch_size,
            progress=progress,
        )
    finally:
        release(sampler)


# --- command line ----------------------------------------------------------------------------------


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


# Config fields that also have their own command-line flag.
CLI_FIELDS = ("model", "benchmark", "backend", "strategy", "rounds", "n", "temperature", "seed",
              "max_train_prompts", "lr", "epochs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.tao", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML/JSON with TaoConfig fields (configs/tao/*.yaml)")
    ap.add_argument("--run-dir")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field (value parsed as JSON when it can be), repeatable",
    )
    for name in CLI_FIELDS:
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    ap.add_argument("--stop-after", choices=["prompts"], default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = _config_from_args(args)
    except (ValueError, OSError) as e:  # bad config file, unknown key, invalid value: one line, no traceback
        ap.exit(2, f"error: {e}\n")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = run_tao(cfg, stop_after=args.stop_after, progress=not args.no_progress)
    if "best" in summary:
        print(Path(cfg.run_dir, "rounds.md").read_text())
        print(json.dumps(summary["best"], indent=2))
    else:
        print(json.dumps(summary))
    return 0


def _config_from_args(args: argparse.Namespace) -> TaoConfig:
    d = load_config_file(args.config) if args.config else {}
    for name in CLI_FIELDS:
        v = getattr(args, name)
        if v is not None:
            d[name] = _parse_value(v) if name not in ("model", "benchmark", "backend", "strategy") else v
    for kv in args.set:
        k, _, v = kv.partition("=")
        d[k] = _parse_value(v)
    if args.run_dir:
        d["run_dir"] = args.run_dir
    return TaoConfig.from_dict(d)


if __name__ == "__main__":
    sys.exit(main())
