"""The HTTP service (FastAPI): POST /search, POST /plan, GET /schema, GET /healthz, the page at GET /.

Request bodies are pydantic models over the Python API's own rules (serve.checks): no type coercion,
unknown keys refused, text no search can use refused; a malformed or unparseable request is a 422 whose
`detail[].loc` names the field. A body over `max_body_bytes` is refused with 413 before it is parsed; a
request too long for the model's context is a 422 (`prompt_too_long`); a request that takes longer than
`timeout_s` is a 504. Requests whose Host header is not the service's are refused (DNS rebinding, as the
MCP SDK's HTTP transport does), every response says `X-Content-Type-Options: nosniff`, and an unexpected
error is a 500 logged in one line (its traceback once per kind). Concurrent requests are batched into the
planner by `Retriever.asearch`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.middleware.trustedhost import TrustedHostMiddleware

from serve.api import PlanFailure, PlanResult, Retriever, SearchResult
from serve.checks import MAX_K, CompareRaw, Fallback, Instructions, K, Query, RequestError, json_safe

# The longest legal request as `json.dumps` (and `requests`) send it: every character of a 1,000-character
# query and 2,000 characters of instructions outside the BMP, escaped as a surrogate pair (12 bytes), is
# 36,000 bytes of text plus the keys; 64 KiB leaves room for indentation.
MAX_BODY_BYTES = 65_536
DEFAULT_TIMEOUT_S = 30.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
log = logging.getLogger(__name__)


class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Query
    instructions: Instructions = None  # type: ignore[assignment]  # None: no instructions


class SearchBody(PlanBody):
    k: K = 20
    fallback: Fallback = None  # type: ignore[assignment]
    compare_raw: CompareRaw = False


class StrictJSONRequest(Request):
    """A request whose JSON body either parses or is a `json_invalid` 422 (FastAPI turns
    JSONDecodeError into one): bodies nested past Python's recursion limit and bodies that are not
    UTF-8 would otherwise be a bare 400 "There was an error parsing the body"."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})",
                                           body.decode("utf-8", "replace"), exc.start) from None
            except RecursionError:
                raise json.JSONDecodeError("the body is nested too deeply", body.decode("utf-8"), 0) from None
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def route(request: Request) -> Any:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return route


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body, built so that it cannot fail: the errors quote the input back, and a NaN, an
    infinity (1e999) or a lone surrogate there made the default handler's JSON encoding a 500."""
    detail = [{key: json_safe(err[key]) for key in ("type", "loc", "msg", "input", "ctx") if key in err}
              for err in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


def refusal(failure: PlanFailure) -> HTTPException:
    """A 422 for a request the model cannot take (its prompt is longer than the model's context)."""
    return HTTPException(422, [{"loc": ["body"], "type": failure.code, "msg": failure.reason}])


class NoSniff:
    """ASGI middleware: `X-Content-Type-Options: nosniff` on every response (no library here sets it)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


class QuietErrors:
    """ASGI middleware: an unexpected exception is a JSON 500, logged in one line; the traceback is logged
    the first time each kind (type and place) happens, so a fault every request hits cannot flood the log.
    (Starlette's own error middleware re-raises to the server, which logs every traceback.)"""

    def __init__(self, app: Any):
        self.app, self.seen = app, set()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def tracking(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking if scope["type"] == "http" else send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for one request
            if scope["type"] != "http":
                raise
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            kind = (type(exc).__name__, tb.tb_frame.f_code.co_filename if tb else "", tb.tb_lineno if tb else 0)
            first = kind not in self.seen
            self.seen.add(kind)
            log.error("%s %s failed: %s: %s%s", scope.get("method"), scope.get("path"), type(exc).__name__,
                      exc, "" if first else " (traceback logged before)", exc_info=exc if first else None)
            if not started:
                await JSONResponse(status_code=500, content={"detail": "internal error"})(scope, receive, send)


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
               max_body_bytes: int = MAX_BODY_BYTES, description: str | None = None,
               allowed_hosts: Sequence[str] = LOCAL_HOSTS) -> FastAPI:
    """The service over one retriever; `description` (e.g. which checkpoint) shows on /healthz and /docs.
    `allowed_hosts`: the Host header values served (Starlette's patterns; "*" for any)."""
    if timeout_s <= 0 or max_body_bytes < 1024:
        raise ValueError("timeout_s must be > 0 and max_body_bytes >= 1024")
    about = description or retriever.name
    app = FastAPI(title="Instructed Retriever", version="0.1.0",
                  description=f"Search plans from an instructed query, executed on the product index. Planner: {about}",
                  exception_handlers={RequestValidationError: validation_error})
    app.router.route_class = StrictJSONRoute
    app.state.retriever = retriever

    async def limited(coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"the request took longer than {timeout_s:g} s") from None
        except RequestError as exc:  # the Python API's own checks (e.g. k over a smaller executor depth)
            raise HTTPException(422, [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]) from None

    @app.post("/search", response_model=SearchResult, summary="plan, validate and execute an instructed query")
    async def search(body: SearchBody) -> SearchResult:
        result = await limited(retriever.asearch(body.query, body.instructions, body.k, fallback=body.fallback,
                                                 compare_raw=body.compare_raw))
        if result.error is not None and result.error.code == "prompt_too_long" and result.fallback is None:
            raise refusal(result.error)
        return result

    @app.post("/plan", response_model=PlanResult, summary="the validated search plan, not executed")
    async def plan(body: PlanBody) -> PlanResult:
        result = await limited(retriever.aplan_result(body.query, body.instructions))
        if result.error is not None and result.error.code == "prompt_too_long":
            raise refusal(result.error)
        return result

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

    # the last added runs first: the header (on every answer), the host check, the 500 guard, the body limit
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(QuietErrors)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(NoSniff)
    return app
