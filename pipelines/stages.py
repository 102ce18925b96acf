"""The sample and score stages of a TAO round, resumable and shardable.

``sample`` asks any backend with a ``.sample(requests, n, temperature, top_p, seed)`` method (transformers,
vLLM, a fake in tests) for N plans per prompt and appends one row per (prompt_id, sample_idx) to a JSONL
file. Prompts are cut into fixed batches whose seed depends only on the run seed and the batch's first
prompt, so a killed run that is restarted re-creates the same batch and writes only the rows it lacks.
``--shard i/n`` takes every n-th prompt, so a SLURM array can fan sampling out; shards are merged later.

``score`` executes every candidate plan with the rewards package's scorer (the same parser, executor and
Recall@k as evaluation) and appends reward, validity, error and per-query metrics, also resumably.

Command line (one shard of a round prepared by ``pipelines.tao``)::

    python -m pipelines.stages sample --run-dir runs/x --round 1 --shard 3/8
"""

from __future__ import annotations

import argparse
import hashlib
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ir_core.io import JsonlAppender, iter_jsonl, read_json, read_jsonl, write_jsonl
from ir_core.types import Candidate, PlanRequest, PromptRow, Sampler, row_key
from pipelines.rundir import RunDir

CANDIDATES = "candidates.jsonl"
SCORED = "scored.jsonl"
PROMPTS = "prompts.jsonl"


Scorer = Callable[[str | None, Sequence[int]], dict]


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
) -> list[dict]:
    """Prompt rows (prompt_id, kind, messages, relevant_ids) for a split, from ``rewards.prompts``.

    A deterministic subset of ``max_prompts`` queries (seeded) keeps CPU rounds small; the order of the
    benchmark is kept so files are stable.
    """
    from rewards.prompts import default_examples, messages_for_query

    queries = list(bench.queries(split))
    if max_prompts is not None and len(queries) > max_prompts:
        keep = set(random.Random(seed).sample(range(len(queries)), max_prompts))
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
            ).to_dict()
        )
    return rows


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
            requests = [PlanRequest(id=p["prompt_id"], messages=p["messages"]) for p in batch]
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


# --- score ---------------------------------------------------------------------------------------


def make_scorer(bench: Any, engine: str = "tantivy", k: int = 20) -> Scorer:
    """The reward used everywhere: parse, validate, execute with the benchmark index, Recall@k."""
    from rewards.execute import Executor, score_text

    executor = Executor(bench.index(engine))
    schema = bench.schema

    def score(text: str | None, relevant: Sequence[int]) -> dict:
        if text is None:
            return {
                "reward": 0.0,
                "valid": False,
                "error_code": "no_text",
                "error": "backend returned no text",
                "n_searches": 0,
                "retrieved": 0,
                "metrics": {},
            }
        res = score_text(text, list(relevant), schema, executor, k=k)
        return {
            "reward": float(res.reward),
            "valid": bool(res.valid),
            "error_code": getattr(res, "error_code", None),
            "error": res.error,
            "n_searches": int(res.n_searches or 0),
            "retrieved": _jsonable(res.retrieved),
            "metrics": _jsonable(getattr(res, "metrics", {}) or {}),
        }

    return score


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


def score_stage(
    candidates_path: str | Path,
    prompts: Sequence[dict],
    out_path: str | Path,
    scorer: Scorer,
    progress: bool = True,
) -> dict:
    """Append a scored copy of every candidate to ``out_path``, skipping rows scored by an earlier run."""
    relevant = {p["prompt_id"]: p["relevant_ids"] for p in prompts}
    candidates = read_jsonl(candidates_path)
    scored = 0
    with JsonlAppender(out_path, row_key) as out:
        todo = [c for c in candidates if row_key(c) not in out]
        for c in tqdm(todo, desc="score", unit="plan", disable=not progress):
            res = scorer(c.get("text"), relevant[c["prompt_id"]])
            scored += out.append({**c, **res})
        total = len(out.keys)
    rows = read_jsonl(out_path)
    rewards = [r["reward"] for r in rows]
    return {
        "rows": total,
        "scored": scored,
        "mean_reward": sum(rewards) / len(rewards) if rewards else 0.0,
        "valid_rate": sum(bool(r["valid"]) for r in rows) / len(rows) if rows else 0.0,
    }


def score_round(rd: Any, prompts: Sequence[dict], bench: Any, engine: str, k: int, progress: bool = True) -> dict:
    """A round directory's score stage: candidates -> scored rows, done once and resumable."""
    return rd.stage(
        "score",
        lambda: score_stage(rd / CANDIDATES, prompts, rd / SCORED, make_scorer(bench, engine, k), progress=progress),
    )


# --- command line (sharded sampling for a round prepared by pipelines.tao) ---------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.stages", description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["sample", "score"])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--shard", default=None, help="i/n: this process samples every n-th prompt (0-based i)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from pipelines.tao import TaoConfig, make_sampler, open_benchmark

    run = RunDir(args.run_dir)
    cfg = TaoConfig.from_dict(read_json(run / "config.json"))
    rd = run.sub(f"round-{args.round:02d}")
    prompts = read_jsonl(rd / PROMPTS)
    policy = read_json(rd / "policy.json")
    if args.stage == "sample":
        shard = parse_shard(args.shard)
        sampler = make_sampler(
            cfg, policy["model_path"], policy.get("adapter_path"), read_json(run / "plan_schema.json")
        )
        out = shard_path(rd / CANDIDATES, shard)
        stage = "sample" if shard[1] == 1 else f"sample-shard-{shard[0]:03d}-of-{shard[1]:03d}"
        info = rd.stage(
            stage,
            lambda: sample_stage(
                sampler,
                prompts,
                out,
                cfg.n,
                cfg.temperature,
                cfg.top_p,
                cfg.seed + args.round,
                shard=shard,
                batch_size=cfg.sample_batch_size,
                progress=not args.no_progress,
            ),
        )
    else:
        bench = open_benchmark(cfg.benchmark)
        info = score_round(rd, prompts, bench, cfg.engine, cfg.k, progress=not args.no_progress)
    print(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
