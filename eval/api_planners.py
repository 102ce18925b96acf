"""GPT and Claude query planners: the hosted-model baselines of the evaluation.

Both send the prompt from `rewards.prompts` unchanged and ask for the plan through tool calling (one
tool, `search_plan`, whose parameters are the plan JSON schema, forced with `tool_choice`), so the
harness parses the tool call's arguments with the same parser as every local model. Every response is
cached on disk before it is returned (`eval.response_cache`), requests run with bounded concurrency,
and transient failures (429, 5xx, timeouts, connection errors) are retried here with exponential
backoff and jitter, honouring `retry-after(-ms)`; the SDKs' own retries are switched off so the policy
is the same for both providers and testable. One bad response becomes a `PlanResponse` with an error,
never an exception; only a rejected key (401/403) stops the run, because every later request would
fail the same way.

API keys are read from the environment only and scrubbed from every error text this module produces.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eval.response_cache import ResponseCache, cache_key
from ir_core.types import PlanRequest, PlanResponse

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
ENV_PRICES = "IR_API_PRICES"  # JSON: {"model": [usd_per_1m_input, usd_per_1m_output], ...}
_USE_DEFAULT: Any = object()
INSTALL_HINT = "pip install 'instructed-retriever[api]'"

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

RETRYABLE_STATUS = frozenset({408, 409, 429})
AUTH_STATUS = frozenset({401, 403})
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-)?[A-Za-z0-9_\-]{8,})")


class MissingAPIKeyError(ValueError):
    """The provider's key variable is not set; raised before any request is sent (a ValueError, so CLIs
    that report bad configuration cleanly report this one too)."""


class MissingSDKError(ImportError):
    """The optional API client package is not installed."""


class APIRunError(RuntimeError):
    """A failure that every further request would repeat (unknown model), so the run stops."""


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


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Final(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


def _retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, then `retry-after` (seconds or HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _APIPlanner:
    """Shared machinery: cache, concurrency, retries, key handling. Subclasses speak one provider's API."""

    provider: str = ""
    key_env: str = ""
    sdk_package: str = ""

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
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
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
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sdk = self._import_sdk()
        _quiet_http_logs()
        key = os.environ.get(self.key_env, "").strip()
        if not key:
            raise MissingAPIKeyError(
                f"{self.key_env} is not set: export {self.key_env}=... to run the {self.name} planner "
                "(keys are read from the environment only)"
            )
        self._secrets = (key,)
        self._client = self._make_client(key)
        self._fatal: APIRunError | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self.requests_sent = 0  # HTTP attempts made by this planner (retries included), for reports/tests

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

    client_class = ""  # the SDK's client class name, e.g. "OpenAI"

    def _make_client(self, key: str) -> Any:
        # SDK retries off: the planner retries itself, honouring retry-after, so behaviour is uniform.
        opts: dict[str, Any] = {"api_key": key, "timeout": self.timeout, "max_retries": 0}
        if self.base_url is not None:
            opts["base_url"] = self.base_url
        return getattr(self._sdk, self.client_class)(**opts)

    def _send(self, messages: list[dict]) -> Any:
        raise NotImplementedError

    def _send_classified(self, messages: list[dict]) -> Any:
        """`_send`, with SDK errors mapped to `_Retryable` / `_Final` (unknown ones propagate as they are)."""
        try:
            return self._send(messages)
        except Exception as exc:
            mapped = self._classify(exc)
            if mapped is exc:
                raise
            raise mapped from None

    def _extract(self, response: Any) -> _Outcome:
        raise NotImplementedError

    def _tool_parameters(self) -> dict:
        """The plan schema as tool parameters; the `$schema` dialect tag is metadata that tool
        definitions do not need, so it is left out rather than risk a provider rejecting it."""
        return {k: v for k, v in self.tool_schema.items() if k != "$schema"}

    # ---- public API -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What a manifest may record about this planner (never the key)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "tool": TOOL_NAME,
            "params": self.params,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "base_url": self.base_url,
            "cache_dir": str(self.cache.root) if self.cache else None,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """One response per request, in order. Cached answers cost nothing; identical requests in one
        batch are sent once; a rejected key (`APIAuthError`) or an unknown model (`APIRunError`) stops
        sending and raises once in-flight requests have finished."""
        keys = [cache_key(self.provider, self.model, r.messages, self.tool_schema, self.params) for r in requests]
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
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)))
            try:
                futures = {key: pool.submit(self._request_one, key, req) for key, req in todo.items()}
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

    def _request_one(self, key: str, req: PlanRequest) -> PlanResponse:
        start = time.monotonic()
        try:
            out = self._attempt_loop(req)
        except Exception as exc:  # a bug or an SDK surprise must not sink the whole run
            out = _Outcome(None, f"client_error: {type(exc).__name__}: {exc}", cacheable=False)
        except BaseException:  # interrupt / exit inside a worker: stop the run like Ctrl-C would
            self._stopping = True
            raise
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

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    def _attempt_loop(self, req: PlanRequest) -> _Outcome:
        attempt = 0
        while True:
            if self._fatal is not None:
                return _Outcome(None, f"skipped: {self._fatal}", cacheable=False, attempts=attempt)
            if self._stopping:
                return _Outcome(None, "cancelled: the run is stopping", cacheable=False, attempts=attempt)
            with self._lock:
                self.requests_sent += 1
            try:
                response = self._send_classified(req.messages)
            except _Retryable as exc:
                reason = self._redact(exc.reason) or ""
                if attempt >= self.max_retries:
                    return _Outcome(None, f"{reason} (gave up after {attempt + 1} attempt(s))",
                                    cacheable=False, attempts=attempt + 1)
                delay = self._backoff(attempt, exc.retry_after)
                log.info("%s: request %s: %s; retry %d/%d in %.2fs", self.name, req.id, reason,
                         attempt + 1, self.max_retries, delay)
                time.sleep(delay)
                attempt += 1
                continue
            except _Final as exc:
                return _Outcome(None, self._redact(exc.reason), cacheable=False, attempts=attempt + 1)
            out = self._extract(response)
            out.attempts = attempt + 1
            return out

    def _classify(self, exc: BaseException) -> BaseException:
        """Map an SDK exception to `_Retryable` / `_Final` (or return it unchanged when unknown)."""
        sdk = self._sdk
        if isinstance(exc, sdk.APITimeoutError):
            return _Retryable(f"timeout: no response within {self.timeout:g}s", None)
        if isinstance(exc, sdk.APIConnectionError):
            return _Retryable(f"connection_error: {exc.message}", None)
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            detail = f"http_{status}: {_short(exc.message)}"
            if status in AUTH_STATUS:
                with self._lock:
                    self._fatal = APIAuthError(
                        f"{self.name}: the key in {self.key_env} was rejected (HTTP {status}); "
                        "check the variable and the account's access to the model")
                return _Final(detail)
            if status == 404:
                with self._lock:
                    self._fatal = APIRunError(
                        f"{self.name}: HTTP 404 ({self._redact(_short(exc.message, 200))}); check the model "
                        "name and, with a custom base URL, the endpoint")
                return _Final(detail)
            if status in RETRYABLE_STATUS or status >= 500:
                return _Retryable(detail, _retry_after_seconds(exc.response.headers))
            return _Final(detail)
        if isinstance(exc, sdk.APIError):
            return _Final(f"api_error: {_short(str(exc))}")
        return exc


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


class OpenAIPlanner(_APIPlanner):
    """GPT models through the OpenAI Chat Completions API with a forced `search_plan` function call."""

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    sdk_package = "openai"
    client_class = "OpenAI"

    def __init__(self, model: str = "gpt-5-nano", **kwargs: Any):
        super().__init__(model, **kwargs)

    def _send(self, messages: list[dict]) -> Any:
        return self._client.chat.completions.create(
            model=self.model,
            messages=messages,
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

    def _send(self, messages: list[dict]) -> Any:
        system_parts = [m["content"] for m in messages if m.get("role") == "system"]
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") != "system"]
        extra: dict[str, Any] = {}
        if system_parts and all(isinstance(c, str) for c in system_parts):
            extra["system"] = "\n\n".join(system_parts)
        elif system_parts:  # content blocks: pass them on as text blocks
            extra["system"] = [b for c in system_parts
                               for b in ([{"type": "text", "text": c}] if isinstance(c, str) else c)]
        return self._client.messages.create(
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


PLANNERS: dict[str, type[_APIPlanner]] = {"openai": OpenAIPlanner, "anthropic": AnthropicPlanner}


def make_api_planner(spec: str, tool_schema: dict, **kwargs: Any) -> _APIPlanner:
    """`openai:<model>` / `anthropic:<model>` -> a planner (a convenience for CLIs and notebooks)."""
    provider, _, model = spec.partition(":")
    if provider not in PLANNERS or not model:
        raise ValueError(f"unknown API planner spec {spec!r}: expected openai:<model> or anthropic:<model>")
    return PLANNERS[provider](model, tool_schema=tool_schema, **kwargs)


__all__: list[str] = [
    "AnthropicPlanner", "APIAuthError", "APIRunError", "DEFAULT_PRICES", "MissingAPIKeyError", "MissingSDKError",
    "OpenAIPlanner", "TOOL_NAME", "estimate_cost", "make_api_planner",
]
