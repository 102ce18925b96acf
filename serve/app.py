"""The HTTP service (FastAPI): POST /search, POST /plan, GET /schema, GET /healthz, the page at GET /.

Request bodies are pydantic models with limits (query and instruction length, k range, unknown keys
refused), so a malformed request is a 422 whose `detail[].loc` names the field; a body over
`max_body_bytes` is refused with 413 before it is parsed; a request that takes longer than `timeout_s`
is a 504. Concurrent requests are batched into the planner by `Retriever.asearch`.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rewards.plan import MAX_QUERY_CHARS
from serve.api import MAX_INSTRUCTION_CHARS, PlanResult, Retriever, SearchResult

MAX_K = 100  # the executor's default depth: a ranking is never longer
MAX_BODY_BYTES = 16_384  # a legal request is < 4 KB
DEFAULT_TIMEOUT_S = 30.0


class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the shopper's request")
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTION_CHARS,
                                     description="the user's instructions (brand, colour, price, rating, recency)")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v


class SearchBody(PlanBody):
    k: int = Field(20, ge=1, le=MAX_K, description="number of products to return")
    fallback: Literal["raw"] | None = Field(
        None, description='"raw": if the plan fails, return the raw query\'s results (marked fallback="raw")')
    compare_raw: bool = Field(False, description="also return the raw query's results (raw_results)")


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` (413) before anything parses them."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        response = JSONResponse(status_code=413, content={"detail": [{
            "loc": ["body"], "type": "body_too_large",
            "msg": f"request body is larger than {self.max_bytes} bytes"}]})
        await response(scope, receive, send)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks, size = [], 0
        while True:  # read (at most max_bytes of) the body, then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def page_html() -> str:
    return resources.files("serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(retriever: Retriever, *, timeout_s: float = DEFAULT_TIMEOUT_S,
               max_body_bytes: int = MAX_BODY_BYTES, description: str | None = None) -> FastAPI:
    """The service over one retriever; `description` (e.g. which checkpoint) shows on /healthz and /docs."""
    if timeout_s <= 0 or max_body_bytes < 1024:
        raise ValueError("timeout_s must be > 0 and max_body_bytes >= 1024")
    about = description or retriever.name
    app = FastAPI(title="Instructed Retriever", version="0.1.0",
                  description=f"Search plans from an instructed query, executed on the product index. Planner: {about}")
    app.state.retriever = retriever

    async def limited(coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"the request took longer than {timeout_s:g} s") from None
        except ValueError as exc:  # the Python API's own checks (e.g. k over a smaller executor depth)
            raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None

    @app.post("/search", response_model=SearchResult, summary="plan, validate and execute an instructed query")
    async def search(body: SearchBody) -> SearchResult:
        return await limited(retriever.asearch(body.query, body.instructions, body.k, fallback=body.fallback,
                                               compare_raw=body.compare_raw))

    @app.post("/plan", response_model=PlanResult, summary="the validated search plan, not executed")
    async def plan(body: PlanBody) -> PlanResult:
        return await limited(retriever.aplan_result(body.query, body.instructions))

    @app.get("/schema", summary="the index schema and the plan language's JSON schema")
    async def schema() -> dict:
        return {"index": retriever.schema.to_json(), "rendered": retriever.schema.render(),
                "plan": retriever.plan_schema, "max_k": MAX_K}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "planner": retriever.name, "about": about, "products": len(retriever.bench),
                "benchmark": str(retriever.bench.path)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return page_html()

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
