"""API query planners: GPT and Claude, and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).

Every planner sends the prompt from `rewards.prompts` unchanged, and the harness parses what comes back
with the same parser as every local model. How the plan is asked for depends on the endpoint
(`OpenAIPlanner.output`):
- `tools` (the hosted APIs): one tool, `search_plan`, whose parameters are the plan JSON schema, forced
  with `tool_choice`; the plan is the tool call's arguments.
- `json_schema` (OpenAI-compatible servers): structured outputs, `response_format` `json_schema` with
  the request's own plan schema (`PlanRequest.json_schema`, else the planner's), which those servers
  enforce with their grammar engines; greedy, like the local backends. The plan is the message text.
  Servers that do not enforce it still answer, and the parser judges the text.

Every answer is cached on disk before it is returned (`eval.response_cache`); requests run with
bounded concurrency. Retries (429, 408, 409, 5xx, timeouts, dropped connections, with `retry-after`
and jittered backoff) and timeouts are the SDKs' own (`max_retries`, `timeout` on the client). One bad
response becomes a `PlanResponse` with an error, never an exception. What stops the run instead is a
failure every later request would repeat: a rejected key (401/403), an unknown model (404), or the first
requests all failing the same way with no answer at all (a server that refuses the request's shape,
one that is not running).

API keys are read from the environment only and scrubbed from every error text this module produces.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from eval.response_cache import ResponseCache, cache_key
from ir_core.types import PlanRequest, PlanResponse
from pipelines.backends import DecodingSpec, register_planner

log = logging.getLogger(__name__)

TOOL_NAME = "search_plan"
TOOL_DESCRIPTION = (
    "Run the search plan against the product index: one or more keyword searches, each with an optional "
    "metadata filter that enforces the user's instructions."
)
DEFAULT_CACHE_DIR = "runs/api_cache"
# The harness builds planners from a spec alone, so run-wide knobs also come from the environment.
ENV_CACHE_DIR = "IR_API_CACHE"
ENV_CONCURRENCY = "IR_API_CONCURRENCY"
ENV_TIMEOUT = "IR_API_TIMEOUT"
ENV_MAX_RETRIES = "IR_API_MAX_RETRIES"
ENV_OUTPUT = "IR_API_OUTPUT"  # tools | json_schema | auto (the default)
ENV_PRICES = "IR_API_PRICES"  # JSON: {"model": [usd_per_1m_input, usd_per_1m_output], ...}
OUTPUTS = ("tools", "json_schema")
HOSTED_OPENAI = "api.openai.com"
_USE_DEFAULT: Any = object()
INSTALL_HINT = "pip install 'instructed-retriever[api]'"
# This many failures in a row with one and the same error, before any answer, stop the run (fewer when
# the run sends fewer requests): a per-query problem (one prompt too long) does not repeat word for word.
SAME_FAILURE_LIMIT = 5

# List prices in USD per 1M tokens (input, output) at the time of writing; pass `prices=` to override.
# Estimates ignore provider-side prompt-cache discounts, so they are an upper bound.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.80, 4.0),
}

AUTH_STATUS = frozenset({401, 403})
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-)?[A-Za-z0-9_\-]{8,})")


class MissingAPIKeyError(ValueError):
    """The provider's key variable is not set; raised before any request is sent (a ValueError, so CLIs
    that report bad configuration cleanly report this one too)."""


class MissingSDKError(ImportError):
    """The optional API client package is not installed."""


class APIRunError(RuntimeError):
    """A failure that every further request would repeat (unknown model, a refused request shape), so
    the run stops."""


class APIAuthError(APIRunError):
    """The provider rejected the key (401/403)."""


def estimate_cost(model: str, input_tokens: int | None, output_tokens: int | None,
                  prices: Mapping[str, tuple[float, float]]) -> float | None:
    """USD cost from the price table. A dated snapshot (`claude-sonnet-4-5-20250929`,
    `gpt-5-nano-2025-08-07`) or `-latest` alias takes its base model's price; any other unknown model
    gets None (a `gpt-5-pro` is not priced as `gpt-5`)."""
    if input_tokens is None or output_tokens is None:
        return None
    base = model if model in prices else _SNAPSHOT_SUFFIX.sub("", model)
    if base not in prices:
        return None
    price_in, price_out = prices[base]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


@dataclass
class _Outcome:
    """What one request ended as: a model answer (cacheable) or a transport failure (not cacheable)."""

    text: str | None
    error: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cacheable: bool = True
    attempts: int = 0
    raw: str | None = None  # what the model wrote when it is not a usable plan (kept for error analysis)

    def settle(self) -> _Outcome:
        """An outcome with an error carries no text: the harness parses any text it gets, so the raw
        answer moves into `raw` and a snippet of it into the error message."""
        if self.error is not None and self.text is not None:
            self.raw = self.text
            self.text = None
            if _short(self.raw, 120) not in self.error:
                self.error = f"{self.error}; answer: {_short(self.raw, 120)!r}"
        return self


def _quiet_http_logs() -> None:
    """The HTTP layer logs every request at INFO (hundreds of lines per run); keep its warnings only,
    unless the user configured those loggers themselves."""
    for name in ("httpx", "httpx2"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def _env_prices() -> dict[str, tuple[float, float]]:
    raw = os.environ.get(ENV_PRICES)
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        return {str(m): (float(p[0]), float(p[1])) for m, p in table.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ValueError(f'{ENV_PRICES} must be JSON like {{"gpt-5-nano": [0.05, 0.4]}}') from None


class _APIPlanner:
    """Shared machinery: cache, concurrency, failure handling, key handling. Subclasses speak one API."""

    provider: str = ""
    key_env: str = ""
    sdk_package: str = ""
    client_class = ""  # the SDK's client class name, e.g. "OpenAI"
    output = "tools"

    def __init__(
        self,
        model: str,
        *,
        tool_schema: dict,
        cache_dir: str | os.PathLike[str] | None = _USE_DEFAULT,
        concurrency: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        params: Mapping[str, Any] | None = None,
    ):
        if cache_dir is _USE_DEFAULT:
            cache_dir = os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR
        concurrency = concurrency if concurrency is not None else int(_env_number(ENV_CONCURRENCY, 4))
        timeout = timeout if timeout is not None else float(_env_number(ENV_TIMEOUT, 60.0))
        max_retries = max_retries if max_retries is not None else int(_env_number(ENV_MAX_RETRIES, 5))
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.model = model
        self.name = f"{self.provider}:{model}"
        self.tool_schema = tool_schema
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.base_url = base_url
        self.prices: dict[str, tuple[float, float]] = {**DEFAULT_PRICES, **_env_prices(), **(prices or {})}
        self.params: dict[str, Any] = {**self.default_params(), **(params or {})}
        self._sdk = self._import_sdk()
        _quiet_http_logs()
        key = os.environ.get(self.key_env, "").strip()
        if not key:
            raise MissingAPIKeyError(
                f"{self.key_env} is not set: export {self.key_env}=... to run the {self.name} planner "
                "(keys are read from the environment only; a local server without --api-key takes any value)"
            )
        self._secrets = (key,)
        # the SDK retries transient failures itself (status codes, retry-after, jittered backoff)
        opts: dict[str, Any] = {"api_key": key, "timeout": self.timeout, "max_retries": self.max_retries}
        if self.base_url is not None:
            opts["base_url"] = self.base_url
        self._client = getattr(self._sdk, self.client_class)(**opts)
        self._fatal: APIRunError | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._answered = False  # any request answered yet (then a repeated failure is not a setup error)
        self._same_failures: tuple[str, int] | None = None  # (error, how many in a row) before any answer

    # ---- provider hooks -------------------------------------------------------------------------
    def default_params(self) -> dict[str, Any]:
        return {}

    def _import_sdk(self) -> Any:
        try:
            return __import__(self.sdk_package)
        except ImportError as exc:
            raise MissingSDKError(
                f"the {self.name} planner needs the `{self.sdk_package}` package: {INSTALL_HINT}"
            ) from exc

    def _send(self, req: PlanRequest) -> Any:
        """The SDK's raw response (`with_raw_response`: it carries `retries_taken`)."""
        raise NotImplementedError

    def _extract(self, response: Any) -> _Outcome:
        raise NotImplementedError

    def _tool_parameters(self) -> dict:
        """The plan schema as tool parameters; the `$schema` dialect tag is metadata that tool
        definitions do not need, so it is left out rather than risk a provider rejecting it."""
        return {k: v for k, v in self.tool_schema.items() if k != "$schema"}

    def _request_key(self, req: PlanRequest) -> str:
        return cache_key(self.provider, self.model, req.messages, self.tool_schema, self.params)

    def _setup_hint(self) -> str:
        """What to check when every request fails the same way."""
        return "check the model name, the endpoint and the request parameters"

    # ---- public API -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What a manifest may record about this planner (never the key)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "output": self.output,
            "tool": TOOL_NAME if self.output == "tools" else None,
            "params": self.params,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "base_url": self.base_url,
            "cache_dir": str(self.cache.root) if self.cache else None,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, output={self.output!r})"

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """One response per request, in order. Cached answers cost nothing; identical requests in one
        batch are sent once; a failure every request would repeat (`APIRunError`, `APIAuthError` for a
        rejected key) stops sending and raises once in-flight requests have finished."""
        keys = [self._request_key(r) for r in requests]
        results: dict[str, PlanResponse] = {}
        todo: dict[str, PlanRequest] = {}
        for req, key in zip(requests, keys, strict=True):
            if key in results or key in todo:
                continue
            hit = self._cached(key)
            if hit is not None:
                results[key] = hit
            else:
                todo[key] = req
        if todo:
            log.info("%s: %d request(s) to send, %d answered from cache", self.name, len(todo), len(results))
            self._stopping = False
            self._answered = self._answered or bool(results)  # this setup has answered before
            limit = min(SAME_FAILURE_LIMIT, len(todo))
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)))
            try:
                futures = {key: pool.submit(self._request_one, key, req, limit) for key, req in todo.items()}
                for key, fut in futures.items():
                    results[key] = fut.result()
            except BaseException:
                # Ctrl-C or a crash: send nothing new, let in-flight calls land in the cache, re-raise
                self._stopping = True
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
        if self._fatal is not None:
            raise self._fatal
        return [results[key] for key in keys]

    # ---- internals ------------------------------------------------------------------------------
    def _redact(self, text: str | None, *, loose: bool = True) -> str | None:
        """Remove the key from text; `loose` also masks anything shaped like a key (error texts only,
        so that a plan's own words are never rewritten)."""
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _KEY_PATTERN.sub("sk-***", text) if loose else text

    def _usage(self, out: _Outcome, cached: bool, latency: float) -> dict[str, Any]:
        return {
            "input_tokens": out.input_tokens,
            "output_tokens": out.output_tokens,
            "cost_usd": estimate_cost(self.model, out.input_tokens, out.output_tokens, self.prices),
            "cached": cached,
            "attempts": out.attempts,
            "latency_s": round(latency, 3),
        }

    def _cached(self, key: str) -> PlanResponse | None:
        if self.cache is None:
            return None
        entry = self.cache.get(key)
        if entry is None:
            return None
        out = _Outcome(entry.get("text"), entry.get("error"), entry.get("input_tokens"), entry.get("output_tokens"))
        return PlanResponse(text=out.text, error=out.error, usage=self._usage(out, cached=True, latency=0.0))

    def _request_one(self, key: str, req: PlanRequest, same_failure_limit: int) -> PlanResponse:
        start = time.monotonic()
        if self._fatal is not None:
            out = _Outcome(None, f"skipped: {self._fatal}", cacheable=False)
        elif self._stopping:
            out = _Outcome(None, "cancelled: the run is stopping", cacheable=False)
        else:
            try:
                raw = self._send(req)
                out = self._extract(raw.parse())
                out.attempts = raw.retries_taken + 1
            except self._sdk.APIError as exc:
                out = self._failure(exc)
            except Exception as exc:  # a bug or an SDK surprise must not sink the whole run
                out = _Outcome(None, f"client_error: {type(exc).__name__}: {exc}", cacheable=False)
            except BaseException:  # interrupt / exit inside a worker: stop the run like Ctrl-C would
                self._stopping = True
                raise
            self._tally(out, same_failure_limit)
        latency = time.monotonic() - start
        out.settle()
        out.text, out.error, out.raw = self._redact(out.text, loose=False), self._redact(out.error), self._redact(out.raw)
        if out.cacheable and self.cache is not None:
            self._store(key, req, out)
        if out.error:
            log.warning("%s: request %s: %s", self.name, req.id, out.error)
        return PlanResponse(text=out.text, error=out.error, usage=self._usage(out, cached=False, latency=latency))

    def _store(self, key: str, req: PlanRequest, out: _Outcome) -> None:
        """Cache the answer; a failed write (disk full) is logged, not fatal: the answer still returns."""
        assert self.cache is not None
        try:
            self.cache.put(key, {
                "provider": self.provider,
                "model": self.model,
                "request_id": req.id,
                "text": out.text,
                "error": out.error,
                "raw": out.raw,
                "input_tokens": out.input_tokens,
                "output_tokens": out.output_tokens,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
        except OSError as exc:
            log.error("%s: could not cache the answer to %s: %s", self.name, req.id, exc)

    def _failure(self, exc: Exception) -> _Outcome:
        """An SDK error (after the SDK's own retries) as an outcome; a rejected key or an unknown model
        also stops the run. The SDK retries timeouts, connection errors, 408/409/429 and 5xx, so those
        took `max_retries + 1` attempts."""
        sdk, gave_up = self._sdk, f" (gave up after {self.max_retries + 1} attempt(s))"
        retried = self.max_retries + 1
        if isinstance(exc, sdk.APITimeoutError):
            return _Outcome(None, f"timeout: no response within {self.timeout:g}s{gave_up}", cacheable=False,
                            attempts=retried)
        if isinstance(exc, sdk.APIConnectionError):
            return _Outcome(None, f"connection_error: {exc.message}{gave_up}", cacheable=False, attempts=retried)
        if not isinstance(exc, sdk.APIStatusError):
            return _Outcome(None, f"api_error: {_short(str(exc))}", cacheable=False, attempts=1)
        status = exc.status_code
        detail = f"http_{status}: {_short(exc.message)}"
        with self._lock:
            if status in AUTH_STATUS:
                self._fatal = APIAuthError(
                    f"{self.name}: the key in {self.key_env} was rejected (HTTP {status}); "
                    "check the variable and the account's access to the model")
            elif status == 404:
                self._fatal = APIRunError(
                    f"{self.name}: HTTP 404 ({self._redact(_short(exc.message, 200))}); check the model "
                    "name and, with a custom base URL, the endpoint")
        if status in (408, 409, 429) or status >= 500:
            return _Outcome(None, detail + gave_up, cacheable=False, attempts=retried)
        return _Outcome(None, detail, cacheable=False, attempts=1)

    def _tally(self, out: _Outcome, limit: int) -> None:
        """Stop the run when its first `limit` requests all failed with one and the same error (HTTP
        400 for a request shape the server refuses, no server at the URL): every query would."""
        with self._lock:
            if self._answered or self._fatal is not None:
                return
            if out.cacheable:  # the model answered (usable or not): the setup works
                self._answered = True
                return
            error = out.error or ""
            seen, n = self._same_failures or (error, 0)
            if seen != error:
                self._answered = True  # failures that differ are per-query problems
                return
            self._same_failures = (error, n + 1)
            if n + 1 >= limit:
                self._fatal = APIRunError(
                    f"{self.name}: the first {n + 1} request(s) all failed with {self._redact(error)}; "
                    f"{self._setup_hint()}")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arguments_outcome(raw: Any) -> tuple[str | None, str | None]:
    """Normalise tool arguments (a JSON string or an already-decoded object) to (text, error)."""
    if raw is None:
        return None, "empty_arguments: the tool call has no arguments"
    if isinstance(raw, str):
        stripped = raw.strip()
        if not stripped:
            return None, "empty_arguments: the tool call has no arguments"
        try:
            decoded = json.loads(stripped)
        except ValueError as exc:
            return raw, f"malformed_arguments: not valid JSON ({exc.msg} at char {exc.pos})"
    else:
        decoded = raw
    if not isinstance(decoded, dict):
        return json.dumps(decoded), f"malformed_arguments: expected a JSON object, got {type(decoded).__name__}"
    if not decoded:
        return "{}", "empty_arguments: the tool call arguments are an empty object"
    return json.dumps(decoded, ensure_ascii=False), None


def detect_output(base_url: str | None) -> str:
    """`tools` for OpenAI's own API (no base URL, or api.openai.com), `json_schema` for any other
    endpoint: OpenAI-compatible servers enforce a `response_format` schema with their grammar engines,
    while their tool calls need server-side parser flags and are not held to the schema."""
    if not base_url:
        return "tools"
    host = urlparse(base_url).hostname or ""
    return "tools" if host == HOSTED_OPENAI or host.endswith("." + HOSTED_OPENAI) else "json_schema"


class OpenAIPlanner(_APIPlanner):
    """GPT models through the Chat Completions API (a forced `search_plan` function call), or any
    OpenAI-compatible server through structured outputs (`output`; module doc)."""

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    sdk_package = "openai"
    client_class = "OpenAI"

    def __init__(self, model: str = "gpt-5-nano", *, output: str | None = None, **kwargs: Any):
        base_url = kwargs.get("base_url") or os.environ.get("OPENAI_BASE_URL")  # the SDK reads it too
        output = output or os.environ.get(ENV_OUTPUT, "").strip() or "auto"
        if output == "auto":
            output = detect_output(base_url)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)} or auto, got {output!r} ({ENV_OUTPUT})")
        self.output = output
        super().__init__(model, **kwargs)
        self.base_url = base_url

    def default_params(self) -> dict[str, Any]:
        # a served open model is evaluated as the local backends run it: greedy, a bounded plan length
        return {"temperature": 0.0, "max_tokens": 512} if self.output == "json_schema" else {}

    def _schema(self, req: PlanRequest) -> dict:
        return req.json_schema if req.json_schema is not None else self.tool_schema

    def _request_key(self, req: PlanRequest) -> str:
        if self.output == "tools":
            return super()._request_key(req)
        # a served name says little about the weights behind it: the endpoint is part of the key here
        return cache_key(self.provider, self.model, req.messages, self._schema(req),
                         {**self.params, "output": self.output, "base_url": self.base_url})

    def _setup_hint(self) -> str:
        if self.output == "tools" and self.base_url:
            return (f"an OpenAI-compatible server? {ENV_OUTPUT}=json_schema asks for the plan through "
                    "response_format instead of tool calling")
        return super()._setup_hint()

    def _send(self, req: PlanRequest) -> Any:
        create = self._client.chat.completions.with_raw_response.create
        if self.output == "json_schema":
            return create(model=self.model, messages=req.messages, response_format={
                "type": "json_schema", "json_schema": {"name": TOOL_NAME, "schema": self._schema(req)}},
                **self.params)
        return create(
            model=self.model,
            messages=req.messages,
            tools=[{"type": "function", "function": {
                "name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": self._tool_parameters()}}],
            tool_choice={"type": "function", "function": {"name": TOOL_NAME}},
            **self.params,
        )

    def _extract(self, response: Any) -> _Outcome:
        usage = getattr(response, "usage", None)
        tokens_in = getattr(usage, "prompt_tokens", None)
        tokens_out = getattr(usage, "completion_tokens", None)

        def done(text: str | None, error: str | None) -> _Outcome:
            return _Outcome(text, error, tokens_in, tokens_out)

        choices = getattr(response, "choices", None) or []
        if not choices:
            return done(None, "no_choices: the response has no choices")
        choice = choices[0]
        message = choice.message
        if getattr(message, "refusal", None):
            return done(message.refusal, f"refusal: {_short(message.refusal)}")
        if self.output == "json_schema":  # the text is the plan; the harness's parser judges it
            if choice.finish_reason == "length":
                return done(message.content, "truncated: finish_reason=length before the plan was complete")
            if not (message.content or "").strip():
                return done(None, "empty_output: the answer has no text")
            return done(message.content, None)
        calls = [c for c in (message.tool_calls or []) if getattr(c, "type", None) == "function"]
        call = next((c for c in calls if c.function.name == TOOL_NAME), None)
        if call is None:
            if calls:
                return done(None, f"wrong_tool: called {calls[0].function.name!r} instead of {TOOL_NAME!r}")
            reason = "no_tool_call: the model answered in text"
            if choice.finish_reason == "length":
                reason = "truncated: finish_reason=length before a tool call"
            return done(message.content, reason)
        if choice.finish_reason == "length":
            return done(call.function.arguments or None, "truncated: finish_reason=length inside the tool call")
        return done(*_arguments_outcome(call.function.arguments))


class AnthropicPlanner(_APIPlanner):
    """Claude models through the Anthropic Messages API with a forced `search_plan` tool use."""

    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    sdk_package = "anthropic"
    client_class = "Anthropic"

    def __init__(self, model: str = "claude-sonnet-4-5", **kwargs: Any):
        super().__init__(model, **kwargs)

    def default_params(self) -> dict[str, Any]:
        return {"max_tokens": 2048}  # required by the Messages API; a plan is a few hundred tokens

    def _send(self, req: PlanRequest) -> Any:
        messages = req.messages
        system_parts = [m["content"] for m in messages if m.get("role") == "system"]
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") != "system"]
        extra: dict[str, Any] = {}
        if system_parts and all(isinstance(c, str) for c in system_parts):
            extra["system"] = "\n\n".join(system_parts)
        elif system_parts:  # content blocks: pass them on as text blocks
            extra["system"] = [b for c in system_parts
                               for b in ([{"type": "text", "text": c}] if isinstance(c, str) else c)]
        return self._client.messages.with_raw_response.create(
            model=self.model,
            messages=chat,
            tools=[{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": self._tool_parameters()}],
            tool_choice={"type": "tool", "name": TOOL_NAME, "disable_parallel_tool_use": True},
            **extra,
            **self.params,
        )

    def _extract(self, response: Any) -> _Outcome:
        usage = getattr(response, "usage", None)
        tokens_in = getattr(usage, "input_tokens", None)
        tokens_out = getattr(usage, "output_tokens", None)

        def done(text: str | None, error: str | None) -> _Outcome:
            return _Outcome(text, error, tokens_in, tokens_out)

        blocks = list(getattr(response, "content", None) or [])
        texts = "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text") or None
        stop = getattr(response, "stop_reason", None)
        if stop == "refusal":
            return done(texts, f"refusal: {_short(texts or 'stop_reason=refusal')}")
        uses = [b for b in blocks if getattr(b, "type", None) == "tool_use"]
        use = next((b for b in uses if b.name == TOOL_NAME), None)
        if use is None:
            if uses:
                return done(None, f"wrong_tool: called {uses[0].name!r} instead of {TOOL_NAME!r}")
            if stop == "max_tokens":
                return done(texts, "truncated: stop_reason=max_tokens before a tool call")
            return done(texts, "no_tool_call: the model answered in text")
        if stop == "max_tokens":
            return done(None, "truncated: stop_reason=max_tokens inside the tool call")
        return done(*_arguments_outcome(use.input))


def _from_spec(cls: type[_APIPlanner]) -> Any:
    """A registry constructor: the spec's model, its plan schema as the tool schema, its options as keywords."""

    def build(spec: DecodingSpec) -> _APIPlanner:
        if spec.plan_schema is None:
            raise ValueError(f"an {cls.provider} planner needs the plan JSON schema (DecodingSpec.plan_schema)")
        return cls(spec.model, tool_schema=spec.plan_schema, **spec.options)

    return build


register_planner("openai")(_from_spec(OpenAIPlanner))
register_planner("anthropic")(_from_spec(AnthropicPlanner))


__all__: list[str] = [
    "AnthropicPlanner", "APIAuthError", "APIRunError", "DEFAULT_PRICES", "MissingAPIKeyError", "MissingSDKError",
    "OpenAIPlanner", "TOOL_NAME", "detect_output", "estimate_cost",
]
