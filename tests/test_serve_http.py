"""The FastAPI service in-process (httpx over ASGI): endpoints, batching, limits and the bad-input suite."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import httpx
import pytest

_spec = importlib.util.spec_from_file_location("fixed_planner", Path(__file__).parent / "fakes" / "fixed_planner.py")
fixed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixed)


def service(bench, completions=None, delay_s=0.0, **kw):
    from serve.api import Retriever
    from serve.app import create_app

    planner = fixed.FixedPlanner(completions, delay_s)
    retriever = Retriever(bench, planner, batch_wait_s=0.05)
    return create_app(retriever, **kw), planner


def call(app, method, path, **kw):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def test_search_plan_schema_healthz(tiny_benchmark):
    brand = tiny_benchmark.meta(0)["brand"]
    app, _ = service(tiny_benchmark, {"jacket": fixed.brand_plan("jacket", brand)})
    r = call(app, "POST", "/search", json={"query": "jacket", "instructions": f"not {brand}", "k": 5,
                                           "compare_raw": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"]["searches"][0]["filter"] == {"field": "brand", "op": "ne", "value": brand}
    assert len(body["results"]) == 5 and all(h["meta"]["brand"] != brand for h in body["results"])
    assert body["filter_fields"] == ["brand"] and len(body["raw_results"]) == 5
    assert body["error"] is None and body["fallback"] is None and body["timings"]["plan_s"] >= 0

    p = call(app, "POST", "/plan", json={"query": "jacket"})
    assert p.status_code == 200 and p.json()["plan"]["searches"][0]["query"] == "jacket"
    assert "results" not in p.json()

    s = call(app, "GET", "/schema").json()
    assert {f["name"] for f in s["index"]["fields"]} >= {"brand", "price", "last_review_date"}
    assert s["plan"]["title"] == "SearchPlan" and "Filterable fields" in s["rendered"]
    h = call(app, "GET", "/healthz").json()
    assert h["status"] == "ok" and h["planner"] == "fixed" and h["products"] == len(tiny_benchmark)
    docs = call(app, "GET", "/openapi.json").json()
    assert {"/search", "/plan", "/schema", "/healthz"} <= set(docs["paths"])
    assert call(app, "GET", "/docs").status_code == 200
    assert "<textarea id=\"query\"" in call(app, "GET", "/").text


def test_failed_plan_is_a_typed_error_and_fallback_is_marked(tiny_benchmark):
    app, _ = service(tiny_benchmark, {"tent": '{"searches": [{"query": "tent", "filter": {"field": "brand", '
                                              '"op": "gt", "value": "x"}}]}'})
    r = call(app, "POST", "/search", json={"query": "tent"}).json()
    assert r["error"]["code"] == "bad_op" and r["results"] == [] and r["fallback"] is None
    r = call(app, "POST", "/search", json={"query": "tent", "fallback": "raw"}).json()
    assert r["error"]["code"] == "bad_op" and r["fallback"] == "raw" and r["results"] and r["plan"] is None
    p = call(app, "POST", "/plan", json={"query": "tent"}).json()
    assert p["error"]["code"] == "bad_op" and p["plan"] is None and p["text"].startswith("{")


@pytest.mark.parametrize("body, field", [
    ({}, "query"),
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": "x" * 1001}, "query"),
    ({"query": 5}, "query"),
    ({"query": "tent", "k": 0}, "k"),
    ({"query": "tent", "k": 101}, "k"),
    ({"query": "tent", "k": "many"}, "k"),
    ({"query": "tent", "instructions": "y" * 2001}, "instructions"),
    ({"query": "tent", "fallback": "best"}, "fallback"),
    ({"query": "tent", "colour": "red"}, "colour"),
])
def test_bad_requests_are_422_naming_the_field(tiny_benchmark, body, field):
    app, planner = service(tiny_benchmark)
    r = call(app, "POST", "/search", json=body)
    assert r.status_code == 422, r.text
    assert any(d["loc"][:2] == ["body", field] for d in r.json()["detail"]), r.json()
    assert planner.calls == []


def test_malformed_json_and_oversize_bodies(tiny_benchmark):
    app, planner = service(tiny_benchmark, max_body_bytes=2048)
    r = call(app, "POST", "/search", content=b'{"query": "tent",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    assert r.json()["detail"][0]["loc"][0] == "body"
    r = call(app, "POST", "/search", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422
    big = b'{"query": "' + b"x" * 4000 + b'"}'
    r = call(app, "POST", "/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]

    async def chunks():  # no content-length: the limit is enforced while reading
        for _ in range(5):
            yield b" " * 1000

    r = call(app, "POST", "/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert planner.calls == []


def test_time_limit_is_a_504(tiny_benchmark):
    app, _ = service(tiny_benchmark, delay_s=1.5, timeout_s=0.2)
    r = call(app, "POST", "/search", json={"query": "tent"})
    assert r.status_code == 504 and "0.2 s" in r.json()["detail"]


def test_concurrent_requests_share_planner_batches(tiny_benchmark):
    app, planner = service(tiny_benchmark, delay_s=0.1)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            return await asyncio.gather(*[client.post("/search", json={"query": f"tent {i}", "k": 3})
                                          for i in range(6)])

    responses = asyncio.run(go())
    assert [r.json()["plan"]["searches"][0]["query"] for r in responses] == [f"tent {i}" for i in range(6)]
    assert sum(planner.calls) == 6 and max(planner.calls) > 1
