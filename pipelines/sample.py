"""The sample stage of a TAO round, resumable and shardable.

``sample_stage`` asks any backend with a ``.sample(requests, n, temperature, top_p, seed)`` method
(transformers, vLLM, a fake in tests) for N plans per prompt and appends one row per (prompt_id,
sample_idx) to a JSONL file. Prompts are cut into fixed batches whose seed depends only on the run seed and
the batch's first prompt, so a killed run that is restarted re-creates the same batch and writes only the
rows it lacks. A shard ``i/n`` takes every n-th prompt, so a SLURM array can fan sampling out
(``python -m pipelines.stages --stage sample --shard i/n``); ``sample_round`` merges the shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ir_core.io import JsonlAppender, iter_jsonl, write_jsonl
from ir_core.types import Candidate, PlanRequest, Policy, Sampler, row_key
from pipelines.backends import PlannerFactory, release
from pipelines.policy_spec import policy_spec
from pipelines.rundir import RunDir

CANDIDATES = "candidates.jsonl"


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
