"""Run directories: atomic writes, stage markers, manifest contents, resumable JSONL."""

from __future__ import annotations

import json
import os

import pytest

from ir_core.io import JsonlAppender, atomic_write_json, read_jsonl
from pipelines.rundir import RunDir, redact


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_stage_runs_once(tmp_path):
    run = RunDir(tmp_path / "run")
    calls = []
    info = run.stage("sample", lambda: calls.append(1) or {"rows": 3})
    again = run.stage("sample", lambda: calls.append(1) or {"rows": 99})
    assert calls == [1] and info["rows"] == again["rows"] == 3
    assert run.is_done("sample") and not run.is_done("score")


def test_failed_stage_is_not_marked(tmp_path):
    run = RunDir(tmp_path)

    def fail():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run.stage("score", fail)
    assert not run.is_done("score")


def test_manifest_records_inputs_and_hides_secrets(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("hello")
    run = RunDir(tmp_path / "run")
    m = run.write_manifest(
        {"model": "m", "openai_api_key": "sk-secret", "nested": {"hf_token": "hf_x"}},
        inputs={"data": data, "missing": tmp_path / "nope"},
        seeds={"seed": 3},
    )
    text = run.manifest_path.read_text()
    assert "sk-secret" not in text and "hf_x" not in text
    assert m["inputs"]["data"]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert "missing" not in m["inputs"]
    assert m["seeds"] == {"seed": 3} and m["packages"]["torch"]
    assert "commit" in m["code"]
    m2 = run.write_manifest({"model": "m"})
    assert m2["created"] == m["created"] and m2["resumed"] == 1


def test_redact_keeps_non_secrets():
    assert redact({"lr": 1e-4, "api_key": "", "wandb": {"token": "t"}}) == {
        "lr": 1e-4,
        "api_key": "",
        "wandb": {"token": "<redacted>"},
    }


def test_appender_resumes_and_truncates_torn_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    key = lambda r: (r["p"], r["i"])  # noqa: E731
    with JsonlAppender(p, key) as out:
        for i in range(3):
            assert out.append({"p": "a", "i": i})
        assert not out.append({"p": "a", "i": 1})  # duplicate key refused
    with p.open("ab") as fh:
        fh.write(b'{"p": "a", "i": 3, "tex')  # the writer died mid-line
    assert len(read_jsonl(p)) == 3  # readers ignore the torn tail
    with JsonlAppender(p, key) as out:
        assert out.rows_on_disk == 3 and ("a", 2) in out
        out.append({"p": "a", "i": 3})
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    assert [r["i"] for r in rows] == [0, 1, 2, 3]
