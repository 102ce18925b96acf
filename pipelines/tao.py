"""The offline TAO loop: sample -> score -> select -> train -> evaluate on dev, for R rounds.

Round 0 evaluates the starting policy (and the baselines) so every later round has a reference. Round r
samples N plans per training prompt from the current policy (temperature > 0, seeds seed + r), scores
them with the benchmark reward, selects training rows (best-of-N SFT, DPO pairs or KTO labels),
fine-tunes with TRL and evaluates the new policy on dev (and, only for reporting, on test). The best
checkpoint is chosen by dev Recall@k, never by test. Everything lives in one run directory; every stage
has a done marker (all set here), so an interrupted run continues where it stopped when started again
with the same ``--run_dir``.

    python -m pipelines.tao --config configs/tao/smollm2-cpu.yaml --run_dir runs/tao
    python -m pipelines.tao --config configs/tao/smollm2-cpu.yaml --strategy dpo --rounds 3

Settings: pipelines/tao_config.py (the loop's own, TRL's trainer config and TRL's ModelConfig).
"""

from __future__ import annotations

import dataclasses
import json
import os
from contextlib import closing
from functools import partial
from pathlib import Path

from ir_core.config import ConfigError, exit_with
from ir_core.errors import run_main
from ir_core.io import JsonlAppender, atomic_write_json, atomic_write_text, read_json, read_jsonl
from ir_core.types import Policy
from pipelines.backends import PlannerFactory, ReusedPlanners, make_planner
from pipelines.explore import EXPLORED, explore_stage
from pipelines.policy_eval import evaluate_split
from pipelines.policy_spec import policy_mode, prompt_examples, train_mode
from pipelines.round_prompts import PROMPTS, build_prompts, write_prompts
from pipelines.rundir import RunDir
from pipelines.sample import CANDIDATES, sample_round
from pipelines.score import SCORED, make_scorer, score_stage
from pipelines.select import select_to_files
from pipelines.tao_config import TaoSetup, decoding_schema, parse_tao, request_schemas
from pipelines.tao_logger import WandbLogger
from pipelines.tao_report import markdown_table
from pipelines.train import TrainArgs, for_round, launch_training, next_policy
from stark_instruct.benchmark import Benchmark


def run_tao(setup: TaoSetup, planner_factory: PlannerFactory = make_planner, stop_after: str | None = None,
            progress: bool = True) -> dict:
    """Run (or resume) the loop; returns {"best": {...}, "rounds": [...]}.

    ``stop_after="prompts"`` prepares a round's prompts and starting policy and returns, so a cluster can
    sample it with ``python -m pipelines.stages --stage sample --shard i/n`` array jobs; the next call
    merges the shards and goes on.
    """
    cfg, training, model_args = setup.tao, setup.training, setup.model
    planner_factory = ReusedPlanners(planner_factory)  # one engine per policy, not one per stage
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)

    # --- the run directory: config (the previous one kept if it changed), manifest, decoding schema ------
    run = RunDir(cfg.run_dir)
    config = setup.to_dict()
    if (run / "config.json").exists() and read_json(run / "config.json") != config:
        atomic_write_json(run / "config.previous.json", read_json(run / "config.json"))
    atomic_write_json(run / "config.json", config)
    run.write_manifest(
        config,
        inputs={
            "benchmark_manifest": Path(cfg.benchmark) / "manifest.json",
            "benchmark_queries": Path(cfg.benchmark) / "queries",
            "benchmark_schema": Path(cfg.benchmark) / "schema.json",
            "model_config": Path(model_args.model_name_or_path) / "config.json",
        },
        seeds={"seed": training.seed, "sample_seed_per_round": "seed + round",
               "train_seed_per_round": "seed + round"},
    )
    bench = Benchmark.load(cfg.benchmark)
    plan_schema = decoding_schema(cfg, bench)
    atomic_write_json(run / "plan_schema.json", plan_schema)
    logger = WandbLogger(config, run, "wandb" in (training.report_to or []), cfg.wandb_project)
    splits = ["dev", "test"] if cfg.eval_test else ["dev"]
    rounds_path = run / "rounds.jsonl"
    done = {row["round"]: row for row in read_jsonl(rounds_path)}

    with JsonlAppender(rounds_path, key=lambda row: row["round"]) as log, closing(planner_factory):
        for r in range(cfg.rounds + 1):
            if r in done:
                continue
            rd = run.sub(f"round-{r:02d}")
            best = best_round(done) if done else None
            if r == 0:  # round 0 evaluates the starting policy
                policy = Policy(model_args.model_name_or_path)
                row: dict = {"round": 0, "policy_in": policy.to_dict(), "policy_out": policy.to_dict()}
            else:
                # --- the round's starting policy and prompts ---------------------------------------------
                start = {"best": best["policy_out"], "last": done[max(done)]["policy_out"],
                         "base": done[0]["policy_out"]}[cfg.continue_from]
                policy = Policy.from_dict(rd.stage("policy", lambda start=start: start))
                atomic_write_json(rd / "policy.json", policy.to_dict())
                # the policy's own prompt form: the run's mode until a round trains on a distilled one
                mode = policy_mode(cfg, policy)
                rd.stage("prompts", partial(write_prompts, bench, rd / PROMPTS, cfg.max_train_prompts,
                                            training.seed, mode, prompt_examples(cfg, bench, mode), window=r - 1,
                                            request_schema=request_schemas(cfg, bench)))
                prompts = read_jsonl(rd / PROMPTS)
                # training rows carry the prompt the trained policy will be asked with (context distillation)
                tmode = train_mode(cfg)
                train_prompts = prompts if tmode == mode else build_prompts(
                    bench, "train", cfg.max_train_prompts, training.seed, tmode, prompt_examples(cfg, bench, tmode),
                    window=r - 1)
                if stop_after == "prompts":
                    return {"stopped_after": stop_after, "round": r}

                # --- sample: N plans per prompt (or merge the shards an array job sampled) ---------------
                sample = rd.stage("sample", partial(sample_round, cfg, planner_factory, policy, plan_schema,
                                                    prompts, rd, training.seed + r, progress))

                # --- score: execute every plan on the index, reward = Recall@k -----------------------------
                scorer = make_scorer(bench, cfg.engine, cfg.k)
                score = rd.stage("score", partial(score_stage, rd / CANDIDATES, prompts, rd / SCORED, scorer,
                                                  progress=progress))
                scored = read_jsonl(rd / SCORED)
                if cfg.explore_steps:  # edit search: improve each prompt's best sample, one edit at a time
                    score["explore"] = _strip(rd.stage("explore", partial(
                        explore_stage, scored, prompts, rd / EXPLORED, scorer, cfg.explore_steps,
                        progress=progress)))
                    scored += read_jsonl(rd / EXPLORED)

                # --- select: best-of-N rows, DPO pairs or KTO labels (the round's strategy) ----------------
                this = setup.for_round(r)
                sel = rd.stage("select", partial(select_to_files, scored, train_prompts,
                                                 rd / "train.jsonl", this.tao.strategy, cfg.threshold, cfg.min_gap,
                                                 cfg.drop_ties, margin=cfg.margin, balance=cfg.balance,
                                                 max_repeat=cfg.max_repeat, max_pairs=cfg.max_pairs))

                # --- train: TRL on the selected rows, from the round's starting policy -------------------
                new_policy = policy
                train_info: dict = {"skipped": "no training rows (every prompt tied or under threshold)"}
                if sel["rows"] > 0:
                    planner_factory.close()  # training needs the memory and the cores
                    args = TrainArgs(data_path=str(rd / "train.jsonl"), objective=this.tao.strategy,
                                     adapter_path=policy.adapter_path if model_args.use_peft else None,
                                     merge=cfg.merge)
                    round_training, round_model = for_round(this.training, model_args, policy, rd / "train",
                                                            training.seed + r, f"round-{r}",
                                                            report=bool(cfg.train_launcher))
                    train_info = rd.stage("train", partial(launch_training, args, round_training, round_model,
                                                           cfg.train_launcher))
                    new_policy = dataclasses.replace(next_policy(args, round_model, train_info), prompt_mode=tmode)
                row = {"round": r, "policy_in": policy.to_dict(), "policy_out": new_policy.to_dict(),
                       "sample": _strip(sample), "score": _strip(score), "select": _strip(sel),
                       "train": _strip(train_info), "prompt_mode": {"sampled": mode, "trained": tmode}}
                policy = new_policy

            # --- evaluate: the round's policy on dev (picks the best) and test (reported only) ----------
            for split in splits:
                ev = rd.stage(f"eval-{split}", partial(evaluate_split, cfg, bench, planner_factory,
                                                      plan_schema, rd, policy, r, split))
                row[split] = {k: v for k, v in ev.items() if k in ("policy", "baselines")}

            # --- keep the best: log the round; the best dev round so far starts the next one ------------
            log.append(row)
            done[r] = row
            logger.log(row)

    # --- the record: best.json and the per-round table -------------------------------------------------
    rows = [done[r] for r in sorted(done)]
    best = best_round(done)
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


def best_round(rows: dict[int, dict]) -> dict:
    """The round with the highest dev Recall@k over all queries (earliest wins a tie); test is never used."""

    def dev_recall(row: dict) -> float:
        return row["dev"]["policy"].get("all", {}).get("recall") or 0.0

    return max((rows[r] for r in sorted(rows)), key=lambda row: (dev_recall(row), -row["round"]))


def _strip(info: dict) -> dict:
    """A stage's done-marker info without the marker's own bookkeeping."""
    return {k: v for k, v in info.items() if k not in ("stage", "finished", "config")}


def main(argv: list[str] | None = None) -> int:
    try:
        setup, options = parse_tao(argv)
    except ConfigError as e:  # one line naming the file:line or flag, exit 2, nothing written
        exit_with(e)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = run_tao(setup, stop_after=options.stop_after, progress=not options.no_progress)
    if "best" in summary:
        print(Path(setup.tao.run_dir, "rounds.md").read_text())
        print(json.dumps(summary["best"], indent=2))
    else:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
