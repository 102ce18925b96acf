"""A killed sample or score stage resumes without losing or duplicating rows: the final files are
byte-identical to an uninterrupted run (exception injected mid-stage, SIGKILL of a subprocess, torn line)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.samplers import PROMPTS, CountingScorer, SeededSampler, sample_into

from ir_core.io import read_jsonl
from pipelines.sample import merge_shards, sample_stage, shard_path
from pipelines.score import score_stage

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture()
def reference(tmp_path) -> tuple[bytes, bytes]:
    ref = tmp_path / "ref"
    sample_into(ref / "c.jsonl", SeededSampler())
    score_stage(ref / "c.jsonl", PROMPTS, ref / "s.jsonl", CountingScorer(), progress=False)
    return (ref / "c.jsonl").read_bytes(), (ref / "s.jsonl").read_bytes()


def test_sample_resumes_after_exception_and_torn_line(tmp_path, reference):
    out = tmp_path / "c.jsonl"
    with pytest.raises(RuntimeError):
        sample_into(out, SeededSampler(fail_after_batches=3))
    assert len(read_jsonl(out)) == 3 * 4 * 3
    with out.open("ab") as fh:
        fh.write(b'{"prompt_id": "q012", "sample_idx": 0, "se')  # died mid-write
    resumed = SeededSampler()
    info = sample_into(out, resumed)
    assert resumed.batches == 3  # 6 batches in all, 3 were done
    assert info["written"] == (23 - 12) * 3 and info["rows"] == 69
    assert out.read_bytes() == reference[0]


def test_sample_resumes_after_sigkill(tmp_path, reference):
    out = tmp_path / "c.jsonl"
    code = f"""
import sys
sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
from fakes.samplers import SeededSampler, sample_into
from pathlib import Path
sample_into(Path({str(out)!r}), SeededSampler(delay=0.4))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 12):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(read_jsonl(out))
    assert 12 <= partial < 69
    sample_into(out, SeededSampler())
    assert out.read_bytes() == reference[0]


def test_score_resumes_without_duplicates(tmp_path, reference):
    cands = tmp_path / "c.jsonl"
    cands.write_bytes(reference[0])
    out = tmp_path / "s.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score_stage(cands, PROMPTS, out, CountingScorer(fail_after=20), progress=False)
    assert len(read_jsonl(out)) == 20
    scorer = CountingScorer()
    info = score_stage(cands, PROMPTS, out, scorer, progress=False)
    assert scorer.calls == 69 - 20 and info["scored"] == 49 and info["rows"] == 69
    assert out.read_bytes() == reference[1]
    keys = [(r["prompt_id"], r["sample_idx"]) for r in read_jsonl(out)]
    assert len(keys) == len(set(keys)) == 69


def test_shards_cover_every_prompt_once_and_merge_to_the_unsharded_file(tmp_path, reference):
    shards = []
    for i in range(3):
        p = shard_path(tmp_path / "c.jsonl", (i, 3))
        sample_stage(
            SeededSampler(),
            PROMPTS,
            p,
            n=3,
            temperature=0.8,
            top_p=0.9,
            seed=7,
            batch_size=4,
            shard=(i, 3),
            progress=False,
        )
        shards.append(p)
    ids = [r["prompt_id"] for p in shards for r in read_jsonl(p) if r["sample_idx"] == 0]
    assert sorted(ids) == [p["prompt_id"] for p in PROMPTS]
    merge_shards(shards, PROMPTS, tmp_path / "c.jsonl")
    merged = read_jsonl(tmp_path / "c.jsonl")
    assert [(r["prompt_id"], r["sample_idx"]) for r in merged] == [
        (p["prompt_id"], j) for p in PROMPTS for j in range(3)
    ]
    assert all(json.dumps(r) for r in merged)


def test_greedy_sampling_is_refused(tmp_path):
    with pytest.raises(ValueError):
        sample_stage(SeededSampler(), PROMPTS, tmp_path / "c.jsonl", n=2, temperature=0.0, top_p=1.0, seed=0)
