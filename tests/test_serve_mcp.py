"""The MCP server through the SDK's own ClientSession, over stdio and streamable HTTP (real subprocesses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "fakes" / "mcp_fixed_server.py"


async def exercise(session, bench) -> None:
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    tool = tools["search_products"]
    assert set(tool.input_schema["properties"]) == {"query", "instructions", "k"}
    assert tool.input_schema["required"] == ["query"]
    assert {"plan", "results", "error"} <= set(tool.output_schema["properties"])

    brand = bench.meta(0)["brand"]
    res = await session.call_tool("search_products", {"query": "jacket", "instructions": f"not {brand}", "k": 4})
    assert not res.is_error, res
    out = res.structured_content
    assert out["plan"]["searches"][0]["filter"] == {"field": "brand", "op": "ne", "value": brand}
    assert len(out["results"]) == 4 and all(h["meta"]["brand"] != brand for h in out["results"])

    broken = (await session.call_tool("search_products", {"query": "broken"})).structured_content
    assert broken["error"]["code"] == "no_json" and broken["results"] == []

    bad = await session.call_tool("search_products", {"query": "jacket", "k": 1000})
    assert bad.is_error and "k must be an integer in 1..100, got 1000" in bad.content[0].text

    resources = (await session.list_resources()).resources
    assert [str(r.uri) for r in resources] == ["schema://index"]
    schema = await session.read_resource("schema://index")
    assert '"last_review_date"' in schema.contents[0].text


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def test_mcp_over_stdio(tiny_benchmark):
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), str(tiny_benchmark.path)],
                                   env=env(), cwd=str(ROOT))

    async def go():
        with anyio.fail_after(120):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await exercise(session, tiny_benchmark)

    anyio.run(go)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture
def mcp_http_server(tiny_benchmark):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(tiny_benchmark.path), "http", str(port)],
                            env=env(), cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_mcp_over_streamable_http(tiny_benchmark, mcp_http_server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def go():
        with anyio.fail_after(120):
            async with streamable_http_client(mcp_http_server) as (read, write), \
                    ClientSession(read, write) as session:
                await exercise(session, tiny_benchmark)

    anyio.run(go)


def test_mcp_tool_time_limit_in_process(tiny_benchmark):
    import importlib.util

    from mcp import Client

    from serve.api import Retriever
    from serve.mcp_server import build_mcp

    spec = importlib.util.spec_from_file_location("fixed_planner", ROOT / "tests" / "fakes" / "fixed_planner.py")
    fixed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixed)
    retriever = Retriever(tiny_benchmark, fixed.FixedPlanner(delay_s=1.0))
    server = build_mcp(retriever, timeout_s=0.2)

    async def go():
        async with Client(server) as client:
            return await client.call_tool("search_products", {"query": "tent"})

    res = anyio.run(go)
    assert res.is_error and "longer than 0.2 s" in res.content[0].text
    retriever.close()


def _wire():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mcp_wire", ROOT / "tests" / "fakes" / "mcp_wire.py")
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)
    return wire


def test_mcp_stdio_stdout_is_json_rpc_only(tiny_benchmark):
    """The server prints and runs a child process that prints while it loads (as vLLM does); all of it
    goes to stderr, and every stdout line is a JSON-RPC message."""
    calls = [{"query": "jacket", "k": 2}, {"query": "  "}, {"query": "tent", "instruction": "only red"},
             {"query": "enormous"}]
    lines, stderr, answers = _wire().talk([sys.executable, str(SERVER), str(tiny_benchmark.path)], calls,
                                          cwd=str(ROOT), env=env(), timeout_s=120)
    assert lines and all(json.loads(line)["jsonrpc"] == "2.0" for line in lines), lines[:3]
    assert "loading the model" in stderr and "a child process writes to stdout too" in stderr
    ok, blank, typo, long = (answers[i]["result"] for i in (1, 2, 3, 4))
    assert not ok["isError"] and len(ok["structuredContent"]["results"]) == 2
    assert blank["isError"] and "query must be a non-empty string" in blank["content"][0]["text"]
    assert typo["isError"] and "instruction" in typo["content"][0]["text"]
    assert long["isError"] and "too long" in long["content"][0]["text"]
    assert "Traceback" not in stderr
