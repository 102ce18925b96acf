"""A scripted stand-in for the OpenAI and Anthropic HTTP APIs, for testing the real SDK clients offline.

It serves `POST /v1/chat/completions` (OpenAI format: a tool call, or the plan as text when the request
sets `response_format`) and `POST /v1/messages` (Anthropic format) on
127.0.0.1 with an ephemeral port. The scenario comes from the request itself: the last user message
contains `scenario=<name>`; each scenario is a script of actions, one per attempt (the last repeats),
so retries of the same request walk through the script. Every request is recorded (provider, scenario,
the credential header it carried) and the peak number of requests in flight is tracked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID_PLAN: dict[str, Any] = {
    "searches": [
        {"query": "insulated jacket", "filter": {"field": "brand", "op": "ne", "value": "foobrand"}},
    ]
}

# action = (kind, arg); kinds: ok, malformed, empty, notool, refusal, truncated, wrongtool,
# status (arg: (code, headers)), hang (arg: seconds), slow (arg: seconds, then ok), echo_key (arg: code)
SCRIPTS: dict[str, list[tuple[str, Any]]] = {
    "ok": [("ok", None)],
    "malformed": [("malformed", None)],
    "empty": [("empty", None)],
    "notool": [("notool", None)],
    "refusal": [("refusal", None)],
    "truncated": [("truncated", None)],
    "wrongtool": [("wrongtool", None)],
    "ratelimit": [("status", (429, {"retry-after": "0"})), ("ok", None)],
    # waits longer than the SDKs' first backoff (at most 0.5 s), so a test can tell they were honoured
    "ratelimit_ms": [("status", (429, {"retry-after-ms": "1200"})), ("ok", None)],
    "ratelimit_s": [("status", (429, {"retry-after": "1.2"})), ("ok", None)],
    "server_error": [("status", (500, {})), ("ok", None)],
    "overloaded": [("status", (529, {})), ("status", (503, {})), ("ok", None)],
    "always_500": [("status", (500, {}))],
    "bad_request": [("status", (400, {}))],
    "auth": [("status", (401, {}))],
    "no_model": [("status", (404, {}))],
    "hang_then_ok": [("hang", 2.5), ("ok", None)],
    "always_hang": [("hang", 2.5)],
    "slow": [("slow", 0.15)],
    "echo_key": [("echo_key", 500)],
    "drop_then_ok": [("drop", None), ("ok", None)],
}


@dataclass
class Recorded:
    provider: str
    scenario: str
    credential: str
    body: dict


@dataclass
class StubState:
    requests: list[Recorded] = field(default_factory=list)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _scenario(provider: str, body: dict) -> str:
    texts: list[str] = []
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    match = re.search(r"scenario=(\w+)", " ".join(texts))
    return match.group(1) if match else "ok"


def _openai_body(model: str, kind: str, key: str, structured: bool = False) -> dict:
    """A chat completion; `structured` (the request set `response_format`): the plan is the message text."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "tool_calls"
    if structured and kind in ("ok", "malformed", "empty", "truncated"):
        message["content"] = {"ok": json.dumps(VALID_PLAN), "malformed": '{"searches": [{"query": "jack',
                              "empty": "", "truncated": '{"searches": ['}[kind]
        finish = "length" if kind == "truncated" else "stop"
    elif kind in ("ok", "malformed", "empty", "wrongtool", "truncated"):
        args = {"ok": json.dumps(VALID_PLAN), "malformed": '{"searches": [{"query": "jack',
                "empty": "", "wrongtool": json.dumps(VALID_PLAN), "truncated": '{"searches": ['}[kind]
        name = "lookup" if kind == "wrongtool" else "search_plan"
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]
        if kind == "truncated":
            finish = "length"
    elif kind == "notool":
        message["content"] = "Here is a plan: search for insulated jackets."
        finish = "stop"
    elif kind == "refusal":
        message["refusal"] = "I can't help with that."
        finish = "stop"
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": message, "logprobs": None}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
    }


def _anthropic_body(model: str, kind: str, key: str) -> dict:
    content: list[dict] = []
    stop = "tool_use"
    if kind in ("ok", "malformed", "empty", "wrongtool", "truncated"):
        tool_input: Any = {"ok": VALID_PLAN, "malformed": '{"searches": [{"query": "jack', "empty": {},
                           "wrongtool": VALID_PLAN, "truncated": {}}[kind]
        name = "lookup" if kind == "wrongtool" else "search_plan"
        content.append({"type": "tool_use", "id": "toolu_1", "name": name, "input": tool_input})
        if kind == "truncated":
            stop = "max_tokens"
    elif kind == "notool":
        content.append({"type": "text", "text": "Here is a plan: search for insulated jackets."})
        stop = "end_turn"
    elif kind == "refusal":
        content.append({"type": "text", "text": "I can't help with that."})
        stop = "refusal"
    return {
        "id": "msg_stub", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 1000, "output_tokens": 200},
    }


class StubLLMServer:
    """Start with `with StubLLMServer() as stub:`; `stub.openai_url` / `stub.anthropic_url` are base URLs."""

    def __init__(self, scripts: dict[str, list[tuple[str, Any]]] | None = None):
        self.scripts = {**SCRIPTS, **(scripts or {})}
        self.state = StubState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, provider: str | None = None, scenario: str | None = None) -> int:
        with self.state.lock:
            return sum(1 for r in self.state.requests
                       if (provider is None or r.provider == provider) and (scenario is None or r.scenario == scenario))

    def __enter__(self) -> StubLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _send_json(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                # the SDKs send the key as `Authorization: Bearer` or `x-api-key` depending on version
                credential = (self.headers.get("x-api-key")
                              or self.headers.get("authorization", "").removeprefix("Bearer "))
                if self.path.endswith("/chat/completions"):
                    provider = "openai"
                elif self.path.endswith("/messages"):
                    provider = "anthropic"
                else:
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                scenario = _scenario(provider, body)
                with stub.state.lock:
                    stub.state.requests.append(Recorded(provider, scenario, credential, body))
                    n = stub.state.attempts.get((provider, scenario), 0)
                    stub.state.attempts[(provider, scenario)] = n + 1
                    stub.state.in_flight += 1
                    stub.state.peak_in_flight = max(stub.state.peak_in_flight, stub.state.in_flight)
                try:
                    script = stub.scripts[scenario]
                    kind, arg = script[min(n, len(script) - 1)]
                    self._act(provider, body, kind, arg, credential)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to answer
                finally:
                    with stub.state.lock:
                        stub.state.in_flight -= 1

            def _act(self, provider: str, body: dict, kind: str, arg: Any, credential: str) -> None:
                model = body.get("model", "stub")
                if kind == "hang":
                    time.sleep(arg)
                    kind = "ok"
                elif kind == "slow":
                    time.sleep(arg)
                    kind = "ok"
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "status":
                    code, headers = arg
                    self._send_json(code, {"type": "error", "error": {"type": "stub_error", "message": f"stub {code}"}},
                                    headers)
                    return
                if kind == "echo_key":
                    # a hostile/buggy server that echoes the credential back in its error body
                    self._send_json(arg, {"error": {"type": "stub_error",
                                                    "message": f"Incorrect API key provided: {credential}"}})
                    return
                if provider == "openai":
                    self._send_json(200, _openai_body(model, kind, credential, "response_format" in body))
                else:
                    self._send_json(200, _anthropic_body(model, kind, credential))

        return Handler
