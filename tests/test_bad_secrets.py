"""Bad inputs, class 4 (secrets): a planted key never reaches a file the project writes, by any route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.policies import FakePolicy

from eval.response_cache import ResponseCache
from ir_core.io import JsonlAppender, atomic_write_json, write_jsonl
from ir_core.secrets import REDACTED, env_secrets, is_secret_env_name, is_secret_field, scrub
from pipelines.rundir import RunDir, redact
from pipelines.tao import run_tao
from pipelines.tao_config import tao_setup

OPENAI = "sk-test-PLANTED-0123456789abcdef"
HF = "hf_PLANTED_zyxwvutsrqponm"
IN_CONFIG_ONLY = "hub-PLANTED-only-in-the-config-42"
PLANTED = (OPENAI, HF, IN_CONFIG_ONLY)


@pytest.fixture()
def planted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # a name with TOKEN in it, not a secret


def _leaks(root: Path) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p}: {s}" for s in PLANTED if s.encode() in data or json.dumps(s)[1:-1].encode() in data]
    return found


def test_names_that_mark_secrets_and_names_that_do_not():
    assert all(map(is_secret_env_name, ["OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"]))
    assert not any(map(is_secret_env_name, ["TOKENIZERS_PARALLELISM", "HF_TOKEN_PATH", "PATH"]))
    assert all(map(is_secret_field, ["hub_token", "api_key", "openai_api_key", "password", "token"]))
    assert not any(map(is_secret_field, ["max_new_tokens", "pad_token", "pad_token_id", "tokenizer"]))


def test_values_are_scrubbed_wherever_they_appear(planted):
    cfg = {"train_launcher": f"env OPENAI_API_KEY={OPENAI} accelerate launch", "max_new_tokens": 160,
           "nested": [{"note": f"token was {HF}!"}], "hub_token": IN_CONFIG_ONLY,
           "log": f"Authorization: Bearer {IN_CONFIG_ONLY}", "pad_token": "<|im_end|>"}
    out = scrub(cfg)
    assert out["max_new_tokens"] == 160 and out["pad_token"] == "<|im_end|>"  # ordinary fields kept
    assert out["hub_token"] == REDACTED and out["train_launcher"] == f"env OPENAI_API_KEY={REDACTED} accelerate launch"
    assert not any(s in json.dumps(out) for s in PLANTED)
    assert redact(cfg) == out  # the manifest's and wandb's redaction is the same function
    assert "false" not in env_secrets()  # short values are never treated as secrets


def test_every_writer_scrubs_env_secrets(planted, tmp_path):
    atomic_write_json(tmp_path / "a.json", {"msg": f"key {OPENAI}", "quoted": f'"{HF}"'})
    write_jsonl(tmp_path / "b.jsonl", [{"text": f"{OPENAI}"}])
    with JsonlAppender(tmp_path / "c.jsonl", key=lambda r: r["i"]) as out:
        out.append({"i": 0, "error": f"401 for key {HF}"})
    ResponseCache(tmp_path / "cache").put("k" * 64, {"text": f"echo {OPENAI}", "usage": {}})
    RunDir(tmp_path / "run").write_manifest({"cmd": f"env OPENAI_API_KEY={OPENAI} x", "hub_token": IN_CONFIG_ONLY})
    assert _leaks(tmp_path) == []


def test_a_tao_run_writes_no_planted_secret_anywhere(planted, tiny_benchmark, tmp_path):
    setup = tao_setup(dict(benchmark=str(tiny_benchmark.path), model_name_or_path=str(tmp_path / "no-model"),
                           run_dir=str(tmp_path / "run"), rounds=1, n=2, max_train_prompts=4, sample_batch_size=4,
                           eval_dev_limit=4, eval_test_limit=4, report_to="none",
                           train_launcher=f"env OPENAI_API_KEY={OPENAI} HF_TOKEN={HF} accelerate launch",
                           hub_token=IN_CONFIG_ONLY))
    cfg = setup.tao
    calls: list = []
    factory = lambda spec: FakePolicy(spec.model, spec.adapter, calls)  # noqa: E731
    assert run_tao(setup, planner_factory=factory, stop_after="prompts", progress=False)["round"] == 1
    run = Path(cfg.run_dir)
    written = [p.name for p in run.rglob("*") if p.is_file()]
    assert {"config.json", "manifest.json", "prompts.jsonl"} <= set(written)
    assert _leaks(run) == []
    config = json.loads((run / "config.json").read_text())
    assert config["tao"]["max_new_tokens"] == cfg.max_new_tokens  # no longer blanked by a name rule
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["tao"]["max_new_tokens"] == cfg.max_new_tokens
    assert "accelerate launch" in config["tao"]["train_launcher"]
    assert config["training"].get("hub_token") in (None, REDACTED)


def test_the_benchmark_manifest_is_scrubbed(planted, tmp_path):
    from stark_instruct.build import build_benchmark

    out = build_benchmark(tmp_path / "b", size=120, queries=12, stark_queries=f"/data/{OPENAI}/qa")
    assert _leaks(out) == [] and REDACTED in (out / "manifest.json").read_text()


def test_log_records_are_scrubbed_once_installed(planted, caplog):
    import logging

    from ir_core.secrets import install_log_scrubber

    before = logging.getLogRecordFactory()
    try:
        install_log_scrubber()
        install_log_scrubber()  # idempotent
        with caplog.at_level(logging.WARNING):
            logging.getLogger("eval.api").warning("401 Unauthorized for key %s", OPENAI)
        assert OPENAI not in caplog.text and f"key {REDACTED}" in caplog.text
    finally:
        logging.setLogRecordFactory(before)


def test_command_lines_run_through_run_main_scrub_their_logs(planted, caplog):
    import logging

    from ir_core.errors import run_main

    before = logging.getLogRecordFactory()
    try:
        with caplog.at_level(logging.WARNING):
            assert run_main(lambda argv: logging.getLogger("eval.api").warning("401 for %s", OPENAI)) == 0
        assert OPENAI not in caplog.text and f"401 for {REDACTED}" in caplog.text
    finally:
        logging.setLogRecordFactory(before)


def test_a_jsonl_row_and_a_json_file_are_scrubbed_in_one_pass(planted, tmp_path, monkeypatch):
    import ir_core.io as io

    calls: list = []
    monkeypatch.setattr(io, "scrub", lambda obj: calls.append(obj) or scrub(obj))
    with JsonlAppender(tmp_path / "c.jsonl", key=lambda r: r["i"]) as out:
        out.append({"i": 0, "error": f"401 for key {HF}"})
    atomic_write_json(tmp_path / "a.json", {"hub_token": IN_CONFIG_ONLY})
    assert len(calls) == 2 and _leaks(tmp_path) == []
