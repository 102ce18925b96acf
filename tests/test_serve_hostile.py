"""Serving under hostile input (issue 25): every client mistake is a 4xx naming the field (HTTP), a
`RequestError` (Python API) or an MCP error result that says what was wrong, never a 500 or a traceback;
and the three surfaces accept exactly the same input (one set of rules, serve.checks)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from pathlib import Path

import anyio
import httpx
import pytest

_spec = importlib.util.spec_from_file_location("fixed_planner", Path(__file__).parent / "fakes" / "fixed_planner.py")
fixed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixed)

TOO_LONG = "prompt_too_long: 6400 + 160 tokens > 4096"


def retriever(bench, planner=None):
    from serve.api import Retriever

    planner = planner or fixed.FixedPlanner(errors={"enormous tent": TOO_LONG})
    return Retriever(bench, planner, batch_wait_s=0.01), planner


def call(app, method, path, host="127.0.0.1:8000", **kw):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def post_raw(app, path, body: bytes):
    return call(app, "POST", path, content=body, headers={"content-type": "application/json"})


@pytest.fixture
def service(tiny_benchmark):
    from serve.app import create_app

    r, planner = retriever(tiny_benchmark)
    return create_app(r), planner


# (arguments, the field a refusal must name): the same table goes through all three surfaces
BAD = [
    ({"query": ""}, "query"),
    ({"query": " \n\t "}, "query"),
    ({"query": "x" * 1001}, "query"),
    ({"query": 5}, "query"),
    ({"query": None}, "query"),
    ({"query": ["tent"]}, "query"),
    ({"query": "tent\x00"}, "query"),
    ({"query": "tent \x1b[31m"}, "query"),
    ({"query": "tent \x85"}, "query"),
    ({"query": "tent \ud800"}, "query"),
    ({"query": "tent", "instructions": "only red\x00"}, "instructions"),
    ({"query": "tent", "instructions": "only \udfff red"}, "instructions"),
    ({"query": "tent", "instructions": "y" * 2001}, "instructions"),
    ({"query": "tent", "instructions": 3}, "instructions"),
    ({"query": "tent", "k": "5"}, "k"),
    ({"query": "tent", "k": True}, "k"),
    ({"query": "tent", "k": 5.0}, "k"),
    ({"query": "tent", "k": float("nan")}, "k"),
    ({"query": "tent", "k": float("inf")}, "k"),
    ({"query": "tent", "k": 0}, "k"),
    ({"query": "tent", "k": 101}, "k"),
]


@pytest.mark.parametrize("args, field", BAD)
def test_python_api_refuses_with_a_typed_error(tiny_benchmark, args, field):
    from serve.checks import RequestError

    r, planner = retriever(tiny_benchmark)
    with pytest.raises(RequestError, match=field) as info:
        r.search(**args)
    assert info.value.field == field
    with pytest.raises(RequestError):
        asyncio.run(r.asearch(**args))
    if "k" not in args:
        with pytest.raises(RequestError):
            r.plan(**args)
    assert planner.calls == []


@pytest.mark.parametrize("args, field", BAD)
def test_http_refuses_with_a_422_naming_the_field(service, args, field, caplog):
    app, planner = service
    # json.dumps writes NaN/Infinity and escapes lone surrogates, as a careless client would send them
    body = json.dumps(args).encode()
    for path in ("/search", "/plan") if "k" not in args else ("/search",):
        with caplog.at_level(logging.WARNING):
            r = post_raw(app, path, body)
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"]  # the error body itself is valid JSON
        assert any(d["loc"][:2] == ["body", field] for d in detail), detail
        assert r.headers["x-content-type-options"] == "nosniff"
    assert planner.calls == []
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_mcp_refuses_with_the_reason_in_the_error(tiny_benchmark, caplog):
    from mcp import Client

    from serve.mcp_server import build_mcp

    r, planner = retriever(tiny_benchmark)
    server = build_mcp(r)

    async def go():
        async with Client(server) as client:
            out = [await client.call_tool("search_products", args) for args, _ in BAD]
            typo = await client.call_tool("search_products", {"query": "tent", "instruction": "only red"})
            listed = (await client.list_tools()).tools
            ok = await client.call_tool("search_products", {"query": "tent", "instructions": '["red"]', "k": 2})
            long = await client.call_tool("search_products", {"query": "enormous tent"})
            return out, typo, listed, ok, long

    with caplog.at_level(logging.INFO):
        out, typo, listed, ok, long = anyio.run(go)
    for (args, field), res in zip(BAD, out, strict=True):
        assert res.is_error, args
        text = res.content[0].text
        assert f"{field}\n" in text and f"{field} " in text.split("Value error, ")[1], text  # the field, its reason
    blank = out[1].content[0].text
    assert "query must be a non-empty string" in blank
    assert typo.is_error and "instruction\n  Extra inputs are not permitted" in typo.content[0].text
    assert listed[0].input_schema["additionalProperties"] is False  # agents see that the list is closed
    # a string argument stays a string (the SDK would JSON-decode it for a non-str annotation)
    assert not ok.is_error and ok.structured_content["instructions"] == '["red"]'
    assert long.is_error and "too long for the planner model" in long.content[0].text
    assert "6400 + 160 tokens > 4096" in long.content[0].text
    assert planner.calls == [1, 1]  # only the two legal calls reached the planner
    assert not [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR]


@pytest.mark.parametrize("body, field", [
    (b'{"query": "tent", "k": 1e999}', "k"), (b'{"query": "tent", "k": -1e999}', "k"), (b'{"query": NaN}', "query"),
    (b'{"query": "tent", "instructions": Infinity}', "instructions"), (b'{"query": "tent", "k": 1e2}', "k"),
    (b'{"query": "tent", "compare_raw": "true"}', "compare_raw"), (b'{"query": "tent", "compare_raw": 1}', "compare_raw"),
    (b'{"query": "tent", "fallback": "RAW"}', "fallback"), (b'{"query": "tent \\ud800x"}', "query"),
])
def test_non_finite_numbers_and_escapes_are_422_not_500(service, body, field):
    app, planner = service
    r = post_raw(app, "/search", body)
    assert r.status_code == 422, r.text
    assert any(d["loc"] == ["body", field] for d in r.json()["detail"]), r.text
    assert planner.calls == []


def test_tabs_and_newlines_are_text(tiny_benchmark):
    r, _ = retriever(tiny_benchmark)
    res = r.search("two person\ttent", "only red\r\nor blue", k=3)
    assert res.error is None and res.results


@pytest.mark.parametrize("items, field", [
    (["tent"], "items[0]"),
    ({"query": "tent"}, "items"),
    ("tent", "items"),
    (None, "items"),
    ([{"query": "tent"}, {"query": "mat", "instruction": "only red"}], "items[1]"),
    ([{"query": "tent"}, {"instructions": "only red"}], "items[1].query"),
    ([{"query": "tent\x00"}], "items[0].query"),
])
def test_search_batch_refuses_the_wrong_shape(tiny_benchmark, items, field):
    from serve.checks import RequestError

    r, planner = retriever(tiny_benchmark)
    with pytest.raises(RequestError) as info:
        r.search_batch(items)
    assert info.value.field == field, info.value
    assert planner.calls == []


def test_prompt_too_long_is_typed_and_a_422(service, tiny_benchmark):
    r, _ = retriever(tiny_benchmark)
    res = r.search("enormous tent", "only red")
    assert res.error.code == "prompt_too_long" and "4096" in res.error.reason and res.results == []
    assert r.search_batch([{"query": "tent"}, {"query": "enormous tent"}])[1].error.code == "prompt_too_long"
    app, _ = service
    for path in ("/search", "/plan"):
        resp = call(app, "POST", path, json={"query": "enormous tent"})
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"][0]["type"] == "prompt_too_long" and "4096" in resp.json()["detail"][0]["msg"]
    fell_back = call(app, "POST", "/search", json={"query": "enormous tent", "fallback": "raw", "k": 3}).json()
    assert fell_back["fallback"] == "raw" and fell_back["error"]["code"] == "prompt_too_long" and fell_back["results"]


def test_legal_requests_fit_the_body_limit_in_any_encoding(service):
    app, planner = service
    for ch in ("\u5e10", "\U0001f3d5"):  # CJK (6-byte escape) and an emoji (a 12-byte surrogate pair escape)
        body = json.dumps({"query": ch * 1000, "instructions": ch * 2000, "k": 100, "fallback": "raw",
                           "compare_raw": False}, indent=4).encode()  # ASCII escapes, as requests sends
        assert len(body) > 16_384
        r = post_raw(app, "/search", body)
        assert r.status_code == 200, r.text[:300]
    assert call(app, "POST", "/search", json={"query": "x" * 70_000}).status_code == 413
    assert len(planner.calls) == 2


@pytest.mark.parametrize("body", [
    b"[" * 7000 + b"]" * 7000,
    b'{"q":' * 7000,
    b'{"query": "tent \xff\xfe"}',
    b'{"query": "tent", "instructions": "\xc3"}',
    b'{"query": "tent",',
    b"\xef\xbb\xbf\xef\xbb\xbf{}",
])
def test_unparseable_bodies_are_the_documented_422(service, body):
    app, planner = service
    r = post_raw(app, "/search", body)
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert detail[0]["loc"][0] == "body" and detail[0]["type"] == "json_invalid", detail
    assert detail[0]["ctx"]["error"]  # what was wrong: "nested too deeply", "not UTF-8 ...", "Expecting value"
    assert planner.calls == []


def test_host_header_is_checked(tiny_benchmark):
    from serve.app import create_app

    r, _ = retriever(tiny_benchmark)
    app = create_app(r)
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert call(app, "GET", "/healthz", host=host).status_code == 200, host
    for host in ("evil.example:8000", "127.0.0.1.evil.example"):
        bad = call(app, "GET", "/healthz", host=host)
        assert bad.status_code == 400 and bad.headers["x-content-type-options"] == "nosniff"
    wide = create_app(r, allowed_hosts=["search.example"])
    assert call(wide, "GET", "/healthz", host="search.example").status_code == 200
    assert call(wide, "GET", "/healthz").status_code == 400


def test_every_response_says_nosniff(service):
    app, _ = service
    for method, path, kw in [("GET", "/healthz", {}), ("GET", "/", {}), ("GET", "/nowhere", {}),
                             ("POST", "/search", {"json": {"query": "tent", "k": 2}}),
                             ("POST", "/search", {"json": {}}), ("POST", "/search", {"content": b"x" * 70_000})]:
        r = call(app, method, path, **kw)
        assert r.headers["x-content-type-options"] == "nosniff", (method, path, r.status_code)


def test_an_internal_error_is_a_500_with_one_traceback_in_the_log(tiny_benchmark, caplog):
    from serve.app import create_app

    class Broken(fixed.FixedPlanner):
        def plan(self, requests):
            raise RuntimeError("the model fell over")

    r, _ = retriever(tiny_benchmark, Broken())
    app = create_app(r)
    with caplog.at_level(logging.ERROR, logger="serve.app"):
        responses = [call(app, "POST", "/search", json={"query": f"tent {i}"}) for i in range(3)]
    assert [x.status_code for x in responses] == [500] * 3
    assert responses[0].json() == {"detail": "internal error"}
    assert responses[0].headers["x-content-type-options"] == "nosniff"
    errors = [rec for rec in caplog.records if rec.name == "serve.app"]
    assert len(errors) == 3 and "the model fell over" in errors[2].getMessage()
    assert [rec.exc_info is not None for rec in errors] == [True, False, False]
    r.close()


def test_the_cast_we_ask_vllm_for_is_not_a_warning_per_weight(caplog):
    """vLLM warns once per weight for the float32 -> bfloat16 cast serving asks for; the filter goes into
    the logging config vLLM's spawned processes load (here applied in-process with dictConfig)."""
    import logging.config

    import torch

    from pipelines.backends.vllm_async import WEIGHTS_LOGGER, with_cast_filter

    base = {"version": 1, "disable_existing_loggers": False,
            "handlers": {"h": {"class": "logging.NullHandler"}},
            "loggers": {"ir-test-vllm": {"handlers": ["h"], "level": "INFO", "propagate": True}}}
    config = json.loads(json.dumps(with_cast_filter(base, "bfloat16")))  # it travels as a JSON file
    assert "filters" not in base and config["loggers"]["ir-test-vllm"] == base["loggers"]["ir-test-vllm"]
    weights_log = logging.getLogger(WEIGHTS_LOGGER)
    try:
        logging.config.dictConfig(config)
        message = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
        with caplog.at_level(logging.WARNING, logger=WEIGHTS_LOGGER):
            weights_log.warning(message, "model.layers.0.q_proj.weight", torch.float32, torch.bfloat16)
            weights_log.warning(message, "model.layers.0.k_proj.weight", torch.float16, torch.bfloat16)
            weights_log.warning("another warning")
        assert [r.getMessage().split(" with dtype")[0] for r in caplog.records] == [
            "Attempted to load weight model.layers.0.k_proj.weight", "another warning"]
    finally:
        weights_log.filters.clear()
