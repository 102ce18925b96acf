"""Bad inputs, class 3 (concurrency and resume): one writer per stage, and resume keeps every good row.

Real subprocesses: two `pipelines.stages score` processes on one run directory (the second is refused,
naming the first's pid), a score stage and a sample stage killed with SIGKILL mid-stage and resumed
(every row once, byte-identical to an uninterrupted run), and a lock holder for each long stage.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.samplers import SeededSampler, sample_into

from ir_core.errors import DataError, InputError
from ir_core.io import JsonlAppender, atomic_write_json, iter_jsonl, read_jsonl, write_jsonl
from ir_core.locks import FileLock, LockHeld, stage_lock
from pipelines.rundir import RunDir
from pipelines.tao_config import tao_setup

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "OMP_NUM_THREADS": "1"}
KEY = lambda r: (r["p"], r["i"])  # noqa: E731


def _rows_until(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} rows (process exit {proc.poll()})")


def _keys(path: Path) -> list[tuple[str, int]]:
    return [(r["prompt_id"], r["sample_idx"]) for r in read_jsonl(path)]


# --- the score stage through its real command line --------------------------------------------------


@pytest.fixture()
def score_run(tiny_benchmark, tmp_path) -> Path:
    """A run directory whose round 1 holds 1,200 candidate plans waiting to be scored."""
    run = tmp_path / "run"
    atomic_write_json(run / "config.json", tao_setup({"benchmark": str(tiny_benchmark.path), "report_to": "none"}).to_dict())
    rd = run / "round-01"
    queries = tiny_benchmark.queries("train")[:30]
    write_jsonl(rd / "prompts.jsonl", [{"prompt_id": q["id"], "kind": q["kind"], "messages": [],
                                        "relevant_ids": q["relevant_ids"]} for q in queries])
    atomic_write_json(rd / "policy.json", {"model_path": "unused", "adapter_path": None})
    words = ["trail", "shoe", "lamp", "tent", "jacket", "bottle", "camp", "light", "kids", "water"]
    write_jsonl(rd / "candidates.jsonl", [
        {"prompt_id": q["id"], "sample_idx": j,
         "text": json.dumps({"searches": [{"query": f"{q['query']} {words[j % 10]} {words[(j // 10) % 10]} w{j}"}]})}
        for q in queries for j in range(40)])
    return run


def _score_cli(run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.stages", "--stage", "score", "--run-dir", str(run),
                             "--round", "1", "--no-progress"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The first writer: the same stage through RunDir.stage, with the real scorer held after 25 rows until the
# test says go on, so the second writer (the real command line) surely arrives while the stage runs.
_SLOW_SCORE = """
import sys, time
from functools import partial
from pathlib import Path
from ir_core.io import read_jsonl
from pipelines.rundir import RunDir
from pipelines.score import make_scorer, score_stage
from stark_instruct.benchmark import Benchmark
rd, bench, release = RunDir(sys.argv[1]), Benchmark.load(sys.argv[2]), Path(sys.argv[3])
real, done = make_scorer(bench, "tantivy", 20), []
def slow(text, relevant):
    while len(done) >= 25 and not release.exists():
        time.sleep(0.02)  # 25 rows written, then the stage waits for the test
    done.append(1)
    return real(text, relevant)
rd.stage("score", partial(score_stage, rd / "candidates.jsonl", read_jsonl(rd / "prompts.jsonl"),
                          rd / "scored.jsonl", slow, progress=False))
"""


def test_two_score_processes_one_is_refused_naming_the_holder(score_run, tiny_benchmark):
    rd = score_run / "round-01"
    release = score_run / "release"
    first = subprocess.Popen([sys.executable, "-c", _SLOW_SCORE, str(rd), str(tiny_benchmark.path), str(release)],
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _rows_until(rd / "scored.jsonl", 20, first)
    second = _score_cli(score_run)
    _, err = second.communicate(timeout=300)
    release.touch()
    assert second.returncode != 0 and f"pid {first.pid}" in err and "stage 'score'" in err, err[-500:]
    assert first.wait(timeout=300) == 0, first.stderr.read()[-500:]
    keys = _keys(rd / "scored.jsonl")
    assert len(keys) == len(set(keys)) == 1200  # not 2,400


def test_score_killed_mid_stage_resumes_every_row_once(score_run, tmp_path):
    scored = score_run / "round-01" / "scored.jsonl"
    proc = _score_cli(score_run)
    _rows_until(scored, 30, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(read_jsonl(scored))
    assert 30 <= partial < 1200 and not (score_run / "round-01" / ".done" / "score.json").exists()
    resumed = _score_cli(score_run)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    keys = _keys(scored)
    assert len(keys) == len(set(keys)) == 1200
    assert keys == _keys(score_run / "round-01" / "candidates.jsonl")  # same order as a clean run


# --- the sample stage in a subprocess that holds its lock through RunDir.stage ------------------------


def _sample_proc(run: Path, slow_until: Path | None = None) -> subprocess.Popen:
    """The sample stage through RunDir.stage; with `slow_until`, it stops after two batches until that file exists."""
    code = f"""
import time
from pathlib import Path
from pipelines.rundir import RunDir
from fakes.samplers import SeededSampler, sample_into
go = {str(slow_until) if slow_until else None!r}
class Sampler(SeededSampler):
    def sample(self, *args, **kwargs):
        while go and self.batches >= 2 and not Path(go).exists():
            time.sleep(0.05)  # two batches written, then the stage hangs until it is killed
        return super().sample(*args, **kwargs)
rd = RunDir({str(run)!r})
rd.stage("sample", lambda: sample_into(rd / "candidates.jsonl", Sampler()))
"""
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_samplers_and_a_kill_no_row_lost_or_twice(tmp_path):
    sample_into(tmp_path / "ref.jsonl", SeededSampler())
    reference = (tmp_path / "ref.jsonl").read_bytes()
    run = tmp_path / "run"
    out = run / "candidates.jsonl"
    first = _sample_proc(run, slow_until=tmp_path / "never")
    _rows_until(out, 12, first)
    second = _sample_proc(run)
    _, err = second.communicate(timeout=300)
    assert second.returncode != 0 and f"pid {first.pid}" in err, err[-500:]
    os.kill(first.pid, signal.SIGKILL)  # then the holder dies mid-stage: the kernel frees its lock
    first.wait()
    assert len(read_jsonl(out)) == 24  # two batches of 4 prompts x 3 samples
    resumed = _sample_proc(run)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.read_bytes() == reference and RunDir(run).is_done("sample")


# --- every long stage is locked; a waiter finds the stage done -----------------------------------------

_HOLD = """
import sys, time
from ir_core.locks import stage_lock
from pipelines.rundir import RunDir
rd = RunDir(sys.argv[1])
with stage_lock(rd.path, sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    rd.mark_done(sys.argv[2], {"by": "holder"})
"""


@pytest.mark.parametrize("stage", ["sample", "score", "select", "train"])
def test_a_second_writer_fails_fast_naming_the_holder(tmp_path, stage):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), stage, "30"], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    ran = []
    t0 = time.time()
    with pytest.raises(LockHeld) as e:
        RunDir(tmp_path).stage(stage, lambda: ran.append(1))
    assert time.time() - t0 < 5 and not ran
    assert f"pid {holder.pid}" in str(e.value) and e.value.holder["pid"] == holder.pid
    holder.kill()
    holder.wait()


def test_a_waiting_writer_finds_the_stage_done(tmp_path, monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), "score", "1.5"], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    monkeypatch.setenv("IR_LOCK_WAIT", "60")
    ran = []
    info = RunDir(tmp_path).stage("score", lambda: ran.append(1))
    assert info["by"] == "holder" and not ran  # not redone
    assert holder.wait(timeout=30) == 0


def test_lock_wait_setting_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("IR_LOCK_WAIT", "soon")
    with pytest.raises(InputError, match="IR_LOCK_WAIT='soon'"):
        FileLock(tmp_path / "x.lock").acquire()


def test_a_lock_in_one_process_excludes_a_second_handle(tmp_path):
    with stage_lock(tmp_path, "select"), pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        stage_lock(tmp_path, "select", wait=0).acquire()
    with stage_lock(tmp_path, "select"):  # released: free again
        pass


# --- resume verifies every line it keeps ------------------------------------------------------------


def _rows(n: int) -> list[bytes]:
    return [json.dumps({"p": "a", "i": i, "text": f"row {i}"}).encode() + b"\n" for i in range(n)]


def test_a_corrupted_middle_line_drops_only_itself_and_says_so(tmp_path, caplog):
    p = tmp_path / "scored.jsonl"
    lines = _rows(10)
    lines[3] = b'{"p": "a", "i": 3, "tex\n'  # a line cut short, then more rows after it
    p.write_bytes(b"".join(lines))
    with caplog.at_level(logging.WARNING), JsonlAppender(p, KEY) as out:
        assert out.rows_on_disk == 9 and ("a", 9) in out and ("a", 3) not in out  # rows after it are kept
        assert out.append({"p": "a", "i": 3, "text": "row 3"})  # only the bad row is redone
    assert f"{p}:4: dropped on resume" in caplog.text and "invalid JSON" in caplog.text
    assert sorted(r["i"] for r in read_jsonl(p)) == list(range(10))


@pytest.mark.parametrize("bad, reason", [
    (b'{"p": "a", "i": 1, "i": 2}\n', "appears twice"),  # repeated field
    (b'{"p": "a", "text": "no i"}\n', "no row key"),  # required key missing
    (b'[1, 2]\n', "JSON object"),
    (b'{"p": "a", "i": 7, "text": "\xff\xfe"}\n', "not UTF-8"),
    (b'{"p": "a", "i": 0, "text": "again"}\n', "repeats line 1"),  # a row a second writer also wrote
])
def test_every_kept_line_is_checked(tmp_path, caplog, bad, reason):
    p = tmp_path / "rows.jsonl"
    lines = _rows(3)
    p.write_bytes(b"".join([lines[0], bad, *lines[1:]]))
    with caplog.at_level(logging.WARNING), JsonlAppender(p, KEY, required=("p",)) as out:
        assert out.rows_on_disk == 3
    assert f"{p}:2: dropped on resume" in caplog.text and reason in caplog.text
    assert p.read_bytes() == b"".join(lines)


def test_readers_name_the_file_and_line_of_a_damaged_row(tmp_path):
    p = tmp_path / "candidates.jsonl"
    lines = _rows(5)
    lines[2] = b"{not json}\n"
    p.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=rf"{p.name}:3: invalid JSON"):
        list(iter_jsonl(p))


def test_rows_with_lone_surrogates_are_written_and_read_back(tmp_path):
    p = tmp_path / "c.jsonl"
    row = {"p": "a", "i": 0, "text": "an API planner's \ud800 text"}
    with JsonlAppender(p, KEY) as out:
        out.append(row)
    write_jsonl(tmp_path / "w.jsonl", [row])
    assert read_jsonl(p) == [row] == read_jsonl(tmp_path / "w.jsonl")


def test_an_interrupted_select_stage_leaves_nothing_and_reruns_identically(tmp_path, monkeypatch):
    from pipelines.select import select_to_files

    scored = [{"prompt_id": f"p{i}", "sample_idx": j, "text": f"plan {i}.{j}", "reward": (i + j) % 3 / 2,
               "valid": True} for i in range(6) for j in range(4)]
    prompts = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(6)]
    rd = RunDir(tmp_path / "ref")
    rd.stage("select", lambda: select_to_files(scored, prompts, rd / "train.jsonl", "best-of-n"))
    reference = (rd / "train.jsonl").read_bytes()
    assert reference.count(b"\n") >= 3
    rd = RunDir(tmp_path / "run")
    real_replace = os.replace

    def killed(src, dst):
        raise KeyboardInterrupt  # the process is stopped while the stage writes its output

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        rd.stage("select", lambda: select_to_files(scored, prompts, rd / "train.jsonl", "best-of-n"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert not rd.is_done("select") and not (rd / "train.jsonl").exists()
    rd.stage("select", lambda: select_to_files(scored, prompts, rd / "train.jsonl", "best-of-n"))
    assert (rd / "train.jsonl").read_bytes() == reference
