"""The sample and score stages of a TAO round, resumable and shardable.

``sample`` asks any backend with a ``.sample(requests, n, temperature, top_p, seed)`` method (transformers,
vLLM, a fake in tests) for N plans per prompt and appends one row per (prompt_id, sample_idx) to a JSONL
file. Prompts are cut into fixed batches whose seed depends only on the run seed and the batch's first
prompt, so a killed run that is restarted re-creates the same batch and writes only the rows it lacks.
``--shard i/n`` takes every n-th prompt, so a SLURM array can fan sampling out; shards are merged later.

``score`` executes every candidate plan with the rewards package's scorer (the same parser, executor and
Recall@k as evaluation) and appends reward, validity, error and per-query metrics, also resumably.

Command line (one shard of a round prepared by ``pipelines.tao --stop_after prompts``)::

    python -m pipelines.stages --stage sample --run_dir runs/x --round 1 --shard 3/8
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from ir_core.config import ConfigError, check_range, exit_with, parse_or_exit
from ir_core.errors import run_main
from ir_core.io import JsonlAppender, iter_jsonl, read_json, read_jsonl, write_jsonl
from ir_core.types import Candidate, PlanRequest, Policy, PromptRow, Sampler, ScoredCandidate, row_key
from pipelines.backends import PlannerFactory, make_planner, release
from pipelines.policy_spec import policy_spec
from pipelines.rundir import RunDir
from pipelines.strategies import decision
from pipelines.tao_config import TaoSetup
from rewards.execute import Executor, score_plan, score_text
from rewards.parse import parse_plan
from rewards.plan import Search, SearchPlan, carries_filter
from rewards.prompts import default_examples, messages_for_query
from stark_instruct.benchmark import Benchmark
from stark_instruct.instructions import constraint_filter

CANDIDATES = "candidates.jsonl"
SCORED = "scored.jsonl"
PROMPTS = "prompts.jsonl"


# (candidate text, its prompt row) -> the scored fields of the row
Scorer = Callable[[str | None, dict], dict]


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"3/8"`` -> (3, 8); shards are 0-based, ``None`` means the whole set."""
    if not spec:
        return (0, 1)
    i, n = (int(x) for x in spec.split("/"))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"bad shard {spec!r}: want i/n with 0 <= i < n")
    return (i, n)


def shard_path(out_path: str | Path, shard: tuple[int, int]) -> Path:
    out_path = Path(out_path)
    if shard[1] == 1:
        return out_path
    return out_path.with_name(f"{out_path.stem}.shard-{shard[0]:03d}-of-{shard[1]:03d}{out_path.suffix}")


def batch_seed(seed: int, first_prompt_id: str) -> int:
    """A seed that depends only on the run seed and the batch's first prompt (not on shard or resume)."""
    digest = hashlib.sha256(f"{seed}:{first_prompt_id}".encode()).hexdigest()
    return int(digest[:8], 16)


# --- prompts -------------------------------------------------------------------------------------


def build_prompts(
    bench: Any,
    split: str,
    max_prompts: int | None = None,
    seed: int = 0,
    mode: str = "separate",
    examples: Sequence[dict] | None = None,
    window: int = 0,
    request_schema: Callable[[dict], dict] | None = None,
) -> list[dict]:
    """Prompt rows (prompt_id, kind, messages, relevant_ids, query, constraint, json_schema) for a split;
    `request_schema` maps a query row to its own decoding schema (None: the run's one schema).

    A deterministic subset of ``max_prompts`` queries keeps CPU rounds small: window w of a seeded
    permutation, so rounds 1, 2, 3 ... (windows 0, 1, 2 ...) walk through the whole split before any
    prompt comes back; the order of the benchmark is kept so files are stable.
    """
    queries = list(bench.queries(split))
    if max_prompts is not None and len(queries) > max_prompts:
        order = random.Random(seed).sample(range(len(queries)), len(queries))
        start = window * max_prompts
        keep = {order[(start + j) % len(order)] for j in range(max_prompts)}
        queries = [q for i, q in enumerate(queries) if i in keep]
    if examples is None:
        examples = default_examples(bench.schema)
    rows = []
    for q in queries:
        messages = messages_for_query(bench.schema, q, examples, mode)
        rows.append(
            PromptRow(
                prompt_id=str(q["id"]),
                kind=q.get("kind", "none"),
                messages=messages,
                relevant_ids=[int(x) for x in q["relevant_ids"]],
                query=q["query"],
                constraint=q.get("constraint"),
                json_schema=request_schema(q) if request_schema is not None else None,
            ).to_dict()
        )
    return rows


def write_prompts(bench: Any, path: Path, max_prompts: int | None, seed: int, mode: str,
                  examples: Sequence[dict], window: int = 0,
                  request_schema: Callable[[dict], dict] | None = None) -> dict:
    """A round's prompts.jsonl from the training split; returns counts per instruction kind."""
    prompts = build_prompts(bench, "train", max_prompts, seed=seed, mode=mode, examples=examples, window=window,
                            request_schema=request_schema)
    write_jsonl(path, prompts)
    kinds: dict[str, int] = {}
    for p in prompts:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    return {"prompts": len(prompts), "kinds": kinds}


# --- sample --------------------------------------------------------------------------------------


def sample_stage(
    sampler: Sampler,
    prompts: Sequence[dict],
    out_path: str | Path,
    n: int,
    temperature: float,
    top_p: float,
    seed: int,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """Append N candidates per prompt of this shard to ``out_path``; rows already there are kept as is."""
    if temperature <= 0:
        raise ValueError("TAO sampling needs temperature > 0 (greedy decoding gives N identical plans)")
    mine = [p for i, p in enumerate(prompts) if i % shard[1] == shard[0]]
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    written = 0
    with JsonlAppender(out_path, row_key) as out:
        todo = [b for b in batches if any((p["prompt_id"], j) not in out for p in b for j in range(n))]
        done = len(mine) - sum(len(b) for b in todo)
        bar = tqdm(total=len(mine) * n, initial=done * n, desc="sample", unit="plan", disable=not progress)
        for batch in todo:
            s = batch_seed(seed, batch[0]["prompt_id"])
            requests = [PlanRequest(id=p["prompt_id"], messages=p["messages"], json_schema=p.get("json_schema"))
                        for p in batch]
            responses = sampler.sample(requests, n=n, temperature=temperature, top_p=top_p, seed=s)
            if len(responses) != len(batch) or any(len(r) != n for r in responses):
                raise RuntimeError("backend returned the wrong number of samples")
            for p, resp in zip(batch, responses, strict=True):
                for j, r in enumerate(resp):
                    row = Candidate(p["prompt_id"], j, s, r.text, r.error, r.usage or {})
                    written += out.append(row.to_dict())
            bar.update(len(batch) * n)
        bar.close()
        total = len(out.keys)
    return {"rows": total, "written": written, "prompts": len(mine), "shard": list(shard)}


def merge_shards(shard_files: Sequence[str | Path], prompts: Sequence[dict], out_path: str | Path) -> dict:
    """Combine shard outputs into one file in prompt order (duplicates across shards are dropped)."""
    order = {p["prompt_id"]: i for i, p in enumerate(prompts)}
    rows: dict[tuple[str, int], dict] = {}
    for f in shard_files:
        for r in iter_jsonl(f):
            rows.setdefault(row_key(r), r)
    merged = sorted(rows.values(), key=lambda r: (order.get(r["prompt_id"], len(order)), r["sample_idx"]))
    write_jsonl(out_path, merged)
    return {"rows": len(merged), "shards": len(shard_files)}


def sample_round(cfg: Any, factory: PlannerFactory, policy: Policy, plan_schema: dict | None,
                 prompts: Sequence[dict], rd: RunDir, seed: int, progress: bool = True) -> dict:
    """A round's candidates.jsonl: sampled here, or merged from the shards an array job sampled."""
    shards = sorted(rd.path.glob(CANDIDATES.replace(".jsonl", ".shard-*.jsonl")))
    if shards:  # sampled by an array job (pipelines.stages --stage sample --shard i/n): every shard must be done
        n_shards = int(shards[0].stem.rsplit("-of-", 1)[1])
        missing = [i for i in range(n_shards) if not rd.is_done(shard_stage((i, n_shards)))]
        if missing:
            raise RuntimeError(f"{rd.path.name}: shards {missing} of {n_shards} are not finished; rerun them first")
        return merge_shards(shards, prompts, rd / CANDIDATES)
    sampler = factory(policy_spec(cfg, policy, plan_schema))
    try:
        return sample_stage(sampler, prompts, rd / CANDIDATES, cfg.n, cfg.temperature, cfg.top_p, seed,
                            batch_size=cfg.sample_batch_size, progress=progress)
    finally:
        release(sampler)


def shard_stage(shard: tuple[int, int]) -> str:
    """The done marker of one shard's sampling (the whole set is the ``sample`` stage)."""
    return "sample" if shard[1] == 1 else f"sample-shard-{shard[0]:03d}-of-{shard[1]:03d}"


# --- score ---------------------------------------------------------------------------------------


def make_scorer(bench: Any, engine: str = "tantivy", k: int = 20) -> Scorer:
    """The reward used everywhere: parse, validate, execute with the benchmark index, Recall@k.

    A scored row is the executor's `RewardResult` (without the ranking, which scored.jsonl does not keep)
    plus what selection needs to tell skill from luck: ``baseline_reward``, the reward of the prompt's
    raw query as the only search (free to compute, and what a sample must beat), ``right_filter``,
    whether the plan filters with the instruction's own constraint (None without an instruction), and
    ``decision``, the "field op" of each filter leaf (what selection balances on).
    """
    executor = Executor(bench.index(engine))
    schema = bench.schema
    baselines: dict[str, float] = {}

    def baseline(prompt: dict) -> float:
        pid = prompt["prompt_id"]
        if pid not in baselines:
            raw = SearchPlan((Search(prompt["query"]),))
            baselines[pid] = score_plan(raw, prompt["relevant_ids"], executor, k).reward
        return baselines[pid]

    def score(text: str | None, prompt: dict) -> dict:
        row = score_text(text, list(prompt["relevant_ids"]), schema, executor, k=k).to_dict()
        del row["ranking"]
        if prompt.get("query"):
            row["baseline_reward"] = baseline(prompt)
        constraint = prompt.get("constraint")
        row["right_filter"] = (None if not constraint
                               else bool(row["valid"]) and obeys_constraint(text, constraint, schema))
        row["decision"] = list(decision(text)) if row["valid"] else []
        return row

    return score


def obeys_constraint(text: str | None, constraint: dict | str | None, schema: Any) -> bool | None:
    """Whether a valid plan filters with the instruction's constraint leaf; None for a plain query."""
    if not constraint:
        return None
    if isinstance(constraint, str):
        constraint = json.loads(constraint)
    return carries_filter(parse_plan(text or "", schema), constraint_filter(constraint, schema))


def score_stage(
    candidates_path: str | Path,
    prompts: Sequence[dict],
    out_path: str | Path,
    scorer: Scorer,
    progress: bool = True,
) -> dict:
    """Append a scored copy of every candidate to ``out_path``, skipping rows scored by an earlier run."""
    by_id = {p["prompt_id"]: p for p in prompts}
    candidates = read_jsonl(candidates_path)
    scored = 0
    with JsonlAppender(out_path, row_key) as out:
        todo = [c for c in candidates if row_key(c) not in out]
        for c in tqdm(todo, desc="score", unit="plan", disable=not progress):
            res = scorer(c.get("text"), by_id[c["prompt_id"]])
            scored += out.append(ScoredCandidate.from_dict({**c, **res}).to_dict())
        total = len(out.keys)
    rows = read_jsonl(out_path)
    return {"rows": total, "scored": scored, **sample_stats(rows)}


def sample_stats(rows: Sequence[dict]) -> dict:
    """What a round's samples were worth: mean and best-of-N reward, the raw-query baseline, how often
    the best sample beat it, and how often the instruction's filter appears (best sample / any sample)."""
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    best = [max(c, key=lambda r: r["reward"]) for c in by_prompt.values()]
    instructed = [c for c in by_prompt.values() if c[0].get("right_filter") is not None]

    def mean(xs: Sequence[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return {
        "mean_reward": mean([r["reward"] for r in rows]) or 0.0,
        "valid_rate": mean([float(bool(r["valid"])) for r in rows]) or 0.0,
        "best_of_n_reward": mean([b["reward"] for b in best]),
        "baseline_reward": mean([b["baseline_reward"] for b in best if b.get("baseline_reward") is not None]),
        "best_beats_baseline": mean([float(b["reward"] > b["baseline_reward"]) for b in best
                                     if b.get("baseline_reward") is not None]),
        "right_filter_any": mean([float(any(r.get("right_filter") for r in c)) for c in instructed]),
        "right_filter_samples": mean([float(bool(r.get("right_filter"))) for c in instructed for r in c]),
    }


# --- command line (sharded sampling for a round prepared by pipelines.tao) ---------------------------


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
