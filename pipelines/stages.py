"""Command line: one stage of a TAO round that ``pipelines.tao --stop_after prompts`` prepared.

A SLURM array samples a round's shards (pipelines.sample), or a separate process scores it
(pipelines.score); ``pipelines.tao`` then merges the shards and goes on::

    python -m pipelines.stages --stage sample --run_dir runs/x --round 1 --shard 3/8
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from ir_core.config import ConfigError, check_range, exit_with, parse_or_exit
from ir_core.errors import run_main
from ir_core.io import read_json, read_jsonl
from ir_core.types import Policy
from pipelines.backends import make_planner
from pipelines.policy_spec import policy_spec
from pipelines.round_prompts import PROMPTS
from pipelines.rundir import RunDir
from pipelines.sample import CANDIDATES, parse_shard, sample_stage, shard_path, shard_stage
from pipelines.score import SCORED, make_scorer, score_stage
from pipelines.tao_config import TaoSetup
from stark_instruct.benchmark import Benchmark


@dataclass
class StageArgs:
    """One stage of a round that ``pipelines.tao`` prepared (``--stop_after prompts``)."""

    stage: Literal["sample", "score"] = field(metadata={"help": "the stage to run"})
    run_dir: str = field(metadata={"help": "the TAO run directory"})
    round: int = field(metadata={"help": "the round (1-based)"})
    shard: str | None = field(default=None, metadata={"help": "i/n: sample every n-th prompt (0-based i)"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bars"})

    def __post_init__(self) -> None:
        check_range(self, "round", 1)
        try:
            parse_shard(self.shard)
        except ValueError as e:
            raise ConfigError("shard", str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    (args,) = parse_or_exit([StageArgs], argv, "python -m pipelines.stages")
    run = RunDir(args.run_dir)
    if not (run / "config.json").exists():
        exit_with(ConfigError("run_dir", f"{run.path} holds no TAO run (no config.json)"))
    try:
        setup = TaoSetup.from_dict(read_json(run / "config.json"))
    except ConfigError as e:
        exit_with(ConfigError(None, f"{run / 'config.json'}: {e}"))
    cfg = setup.tao
    rd = run.sub(f"round-{args.round:02d}")
    prompts = read_jsonl(rd / PROMPTS)
    if args.stage == "sample":
        shard = parse_shard(args.shard)
        policy = Policy.from_dict(read_json(rd / "policy.json"))
        sampler = make_planner(policy_spec(cfg, policy, read_json(run / "plan_schema.json")))
        info = rd.stage(shard_stage(shard), partial(
            sample_stage, sampler, prompts, shard_path(rd / CANDIDATES, shard), cfg.n, cfg.temperature,
            cfg.top_p, setup.training.seed + args.round, shard=shard, batch_size=cfg.sample_batch_size,
            progress=not args.no_progress))
    else:
        scorer = make_scorer(Benchmark.load(cfg.benchmark), cfg.engine, cfg.k)
        info = rd.stage("score", partial(score_stage, rd / CANDIDATES, prompts, rd / SCORED, scorer,
                                         progress=not args.no_progress))
    print(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
