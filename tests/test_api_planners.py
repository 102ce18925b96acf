"""GPT/Claude planners against a local stub of both HTTP APIs, through the real OpenAI and Anthropic SDKs.

Covers: forced tool calling and the request shape each provider gets, structured outputs for
OpenAI-compatible servers (request shape, mode detection), every way a response can be unusable (each
ends as a PlanResponse with a reason, never an exception), that the SDKs retry transient failures (and
honour retry-after) while fatal ones stop the run, timeouts, bounded concurrency, the on-disk cache (a
rerun sends nothing; a transport failure is not cached), token/cost accounting, and that the API key
never leaves the process. tests/test_openai_compatible.py runs the OpenAI planner against a real vLLM
server.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stub_llm_server import VALID_PLAN, StubLLMServer  # noqa: E402

from eval import api_planners  # noqa: E402
from eval.api_planners import (  # noqa: E402
    AnthropicPlanner,
    APIAuthError,
    APIRunError,
    MissingAPIKeyError,
    MissingSDKError,
    OpenAIPlanner,
    detect_output,
    estimate_cost,
)
from eval.response_cache import ResponseCache, cache_key  # noqa: E402
from ir_core.types import PlanRequest  # noqa: E402
from pipelines.backends import DecodingSpec, make_planner  # noqa: E402

SECRET = "sk-test-PLANTED-SECRET-123"
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"searches": {"type": "array", "minItems": 1, "maxItems": 5, "items": {"type": "object"}}},
    "required": ["searches"],
}
PROVIDERS = {"openai": OpenAIPlanner, "anthropic": AnthropicPlanner}
# the installed anthropic SDK warns that claude-sonnet-4-5 (the default) retires 2026-11-30
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "OPENAI_LOG", "ANTHROPIC_LOG",
                "IR_API_CACHE", "IR_API_CONCURRENCY", "IR_API_TIMEOUT", "IR_API_MAX_RETRIES", "IR_API_OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


@pytest.fixture
def stub():
    with StubLLMServer() as server:
        yield server


def make(provider: str, stub: StubLLMServer, cache_dir: Path | None, **kw):
    opts = {"tool_schema": TOOL_SCHEMA, "cache_dir": cache_dir, "timeout": 5.0, "max_retries": 2, "concurrency": 4,
            "base_url": stub.openai_url if provider == "openai" else stub.anthropic_url}
    if provider == "openai":  # the stub stands for the hosted API: tool calling (a local URL detects json_schema)
        opts["output"] = "tools"
    return PROVIDERS[provider](**{**opts, **kw})


def req(scenario: str, tag: str = "") -> PlanRequest:
    return PlanRequest(id=f"{scenario}{tag}", messages=[
        {"role": "system", "content": "You write search plans."},
        {"role": "user", "content": f"insulated jacket, not FooBrand {tag} scenario={scenario}"},
    ])


# scenario -> (error code or None for a valid plan, HTTP requests it takes, cached afterwards?)
SCENARIOS = {
    "ok": (None, 1, True),
    "malformed": ("malformed_arguments", 1, True),
    "empty": ("empty_arguments", 1, True),
    "notool": ("no_tool_call", 1, True),
    "refusal": ("refusal", 1, True),
    "truncated": ("truncated", 1, True),
    "wrongtool": ("wrong_tool", 1, True),
    "ratelimit": (None, 2, True),
    "server_error": (None, 2, True),
    "overloaded": (None, 3, True),
    "drop_then_ok": (None, 2, True),
    "always_500": ("http_500", 3, False),
    "bad_request": ("http_400", 1, False),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_scenario_ends_as_documented_and_rerun_uses_cache(provider, stub, tmp_path):
    cache = tmp_path / "cache"
    planner = make(provider, stub, cache)
    names = list(SCENARIOS)
    responses = planner.plan([req(s) for s in names])

    assert len(responses) == len(names)
    for name, resp in zip(names, responses, strict=True):
        code, n_requests, _ = SCENARIOS[name]
        assert stub.count(provider, name) == n_requests, name
        assert resp.usage["attempts"] == n_requests, name
        assert resp.usage["cached"] is False
        if code is None:
            assert resp.error is None, name
            assert json.loads(resp.text) == VALID_PLAN, name
            assert resp.usage["input_tokens"] == 1000 and resp.usage["output_tokens"] == 200
        else:
            assert resp.text is None, name  # the harness parses any text, so errors carry none
            assert resp.error.startswith(code + ":"), (name, resp.error)
    assert sum(r.usage["attempts"] for r in responses) == stub.count(provider)  # attempts as the server saw them

    # rerun with the same cache: model answers cost nothing; transport failures are retried
    first = stub.count(provider)
    again = make(provider, stub, cache).plan([req(s) for s in names])
    for name, old, new in zip(names, responses, again, strict=True):
        _, n_requests, cached = SCENARIOS[name]
        if cached:
            assert (new.text, new.error) == (old.text, old.error), name
            assert new.usage["cached"] is True and new.usage["attempts"] == 0
            assert new.usage["cost_usd"] == old.usage["cost_usd"]
        else:
            assert new.usage["cached"] is False and new.error is not None
    retried = sum(n for _, n, cached in SCENARIOS.values() if not cached)
    assert stub.count(provider) - first == retried

    cached_only = [req(s) for s, (_, _, cached) in SCENARIOS.items() if cached]
    before = stub.count()
    make(provider, stub, cache).plan(cached_only)
    assert stub.count() == before  # ZERO requests


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hang_past_the_timeout_is_retried_then_given_up(provider, stub, tmp_path):
    # its own test with a short timeout: the table above uses a long one so load never fakes a timeout
    planner = make(provider, stub, tmp_path, timeout=1.0, max_retries=1, concurrency=2)
    t0 = time.monotonic()
    recovered, lost = planner.plan([req("hang_then_ok"), req("always_hang")])
    assert time.monotonic() - t0 < 2.0 + 1.5  # two 1 s timeouts, not the server's 2.5 s hangs
    assert recovered.error is None and json.loads(recovered.text) == VALID_PLAN
    assert stub.count(provider, "hang_then_ok") == 2 and recovered.usage["attempts"] == 2
    assert lost.text is None and lost.error.startswith("timeout:") and "2 attempt" in lost.error
    assert stub.count(provider, "always_hang") == 2
    make(provider, stub, tmp_path, timeout=1.0, max_retries=1).plan([req("hang_then_ok"), req("always_hang")])
    assert stub.count(provider, "hang_then_ok") == 2  # the recovered answer is cached
    assert stub.count(provider, "always_hang") == 4  # the timeout is not


def test_request_shape_openai(stub, tmp_path):
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **TOOL_SCHEMA}
    make("openai", stub, None, params={"reasoning_effort": "low"}, tool_schema=schema).plan([req("ok")])
    (rec,) = stub.state.requests
    body = rec.body
    assert rec.credential == SECRET
    assert body["model"] == "gpt-5-nano"
    assert body["messages"] == req("ok").messages  # sent as is, system message first
    assert body["tools"] == [{"type": "function", "function": {
        "name": "search_plan", "description": api_planners.TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search_plan"}}
    assert body["reasoning_effort"] == "low"


def test_request_shape_anthropic(stub, tmp_path):
    make("anthropic", stub, None).plan([req("ok")])
    (rec,) = stub.state.requests
    body = rec.body
    assert rec.credential == SECRET
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "You write search plans."
    assert body["messages"] == [m for m in req("ok").messages if m["role"] != "system"]
    assert body["tools"] == [{"name": "search_plan", "description": api_planners.TOOL_DESCRIPTION,
                              "input_schema": TOOL_SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "search_plan", "disable_parallel_tool_use": True}
    assert body["max_tokens"] == 2048


@pytest.mark.parametrize("provider,scenario", [("openai", "ratelimit_ms"), ("anthropic", "ratelimit_s")])
def test_the_sdk_waits_as_long_as_retry_after_asks(provider, scenario, stub):
    t0 = time.monotonic()
    (resp,) = make(provider, stub, None).plan([req(scenario)])
    assert resp.error is None and stub.count(provider, scenario) == 2 and resp.usage["attempts"] == 2
    assert time.monotonic() - t0 >= 1.15  # the server asked for 1.2 s; the SDK's own first backoff is <= 0.5 s


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("max_retries", [0, 1])
def test_retries_are_the_sdks_bounded_by_max_retries(provider, max_retries, stub):
    planner = make(provider, stub, None, max_retries=max_retries)
    assert planner._client.max_retries == max_retries  # the SDK client does the retrying
    (lost, fatal) = planner.plan([req("always_500"), req("bad_request")])
    assert stub.count(provider, "always_500") == max_retries + 1 and lost.usage["attempts"] == max_retries + 1
    assert lost.text is None and lost.error.startswith("http_500:") and f"{max_retries + 1} attempt" in lost.error
    assert stub.count(provider, "bad_request") == 1 and fatal.error.startswith("http_400:")  # never retried


def test_concurrency_is_bounded_and_duplicates_sent_once(stub):
    planner = make("openai", stub, None, concurrency=3)
    requests = [req("slow", tag=str(i)) for i in range(8)] + [req("slow", tag="0")]
    responses = planner.plan(requests)
    assert all(r.error is None for r in responses)
    assert stub.count() == 8  # the duplicate of request 0 is answered by the same call
    assert 2 <= stub.state.peak_in_flight <= 3
    assert responses[-1].text == responses[0].text


@pytest.mark.parametrize("provider,var", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_missing_key_names_the_variable_before_any_request(provider, var, stub, monkeypatch):
    monkeypatch.delenv(var)
    with pytest.raises(MissingAPIKeyError, match=var):
        make(provider, stub, None)
    assert stub.count() == 0


def test_missing_sdk_says_how_to_install(monkeypatch, stub):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # `import anthropic` now fails
    with pytest.raises(MissingSDKError, match=r"pip install 'instructed-retriever\[api\]'"):
        make("anthropic", stub, None)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rejected_key_stops_the_run(provider, stub):
    planner = make(provider, stub, None, concurrency=1)
    with pytest.raises(APIAuthError) as info:
        planner.plan([req("auth"), req("ok"), req("notool")])
    message = str(info.value)
    assert PROVIDERS[provider].key_env in message and SECRET not in message
    assert stub.count() == 1  # nothing else is sent once the key is known to be bad


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_model_stops_the_run(provider, stub):
    planner = make(provider, stub, None, concurrency=1, model="no-such-model")
    with pytest.raises(APIRunError, match="no-such-model.*404"):
        planner.plan([req("no_model"), req("ok")])
    assert stub.count() == 1


def test_crash_part_way_keeps_paid_responses(stub, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    planner = make("openai", stub, cache, concurrency=1)
    real_extract = planner._extract

    def extract_then_die(response):
        if response.choices[0].message.content:  # the 'notool' answer arrives second
            raise KeyboardInterrupt
        return real_extract(response)

    monkeypatch.setattr(planner, "_extract", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        planner.plan([req("ok"), req("notool"), req("malformed")])
    assert stub.count("openai", "malformed") == 0  # queued work is cancelled, not sent
    assert len(ResponseCache(cache)) == 1 and not list(cache.rglob("*.tmp"))
    rerun = make("openai", stub, cache).plan([req("ok"), req("notool")])
    assert stub.count("openai", "ok") == 1 and stub.count("openai", "notool") == 2
    assert rerun[0].usage["cached"] is True and rerun[1].error.startswith("no_tool_call:")


def test_cost_accounting():
    prices = api_planners.DEFAULT_PRICES
    assert estimate_cost("gpt-5-nano", 1_000_000, 1_000_000, prices) == pytest.approx(0.45)
    assert estimate_cost("claude-sonnet-4-5-20250929", 1000, 200, prices) == pytest.approx(0.006)
    assert estimate_cost("gpt-5-nano-2025-08-07", 1000, 0, prices) == pytest.approx(0.00005)
    assert estimate_cost("gpt-5", 1000, 0, prices) == pytest.approx(0.00125)  # not gpt-5-nano's price
    assert estimate_cost("my-finetune", 1000, 200, prices) is None
    assert estimate_cost("claude-sonnet-4-5-latest", 1000, 200, prices) == pytest.approx(0.006)
    for unpriced in ("gpt-5-pro", "claude-sonnet-4-6", "gpt-5-nano-x"):
        assert estimate_cost(unpriced, 1000, 200, prices) is None, unpriced
    assert estimate_cost("gpt-5-nano", None, 200, prices) is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_usage_prices_overridable_and_unknown_model_unpriced(provider, stub):
    (priced,) = make(provider, stub, None, prices={"tiny": (1.0, 2.0)}, model="tiny").plan([req("ok")])
    assert priced.usage["cost_usd"] == pytest.approx((1000 * 1.0 + 200 * 2.0) / 1e6)
    (unpriced,) = make(provider, stub, None, model="unknown-model").plan([req("ok")])
    assert unpriced.usage["input_tokens"] == 1000 and unpriced.usage["cost_usd"] is None


def test_cache_key_covers_every_input_and_entries_are_atomic(tmp_path):
    msgs = [{"role": "user", "content": "q"}]
    base = cache_key("openai", "m", msgs, TOOL_SCHEMA, {"a": 1, "b": 2})
    assert base == cache_key("openai", "m", [{"content": "q", "role": "user"}], TOOL_SCHEMA, {"b": 2, "a": 1})
    variants = [
        cache_key("anthropic", "m", msgs, TOOL_SCHEMA, {"a": 1, "b": 2}),
        cache_key("openai", "m2", msgs, TOOL_SCHEMA, {"a": 1, "b": 2}),
        cache_key("openai", "m", [{"role": "user", "content": "q2"}], TOOL_SCHEMA, {"a": 1, "b": 2}),
        cache_key("openai", "m", msgs, {"type": "object"}, {"a": 1, "b": 2}),
        cache_key("openai", "m", msgs, TOOL_SCHEMA, {"a": 1, "b": 3}),
    ]
    assert len({base, *variants}) == 6
    cache = ResponseCache(tmp_path)
    assert cache.get(base) is None
    cache.put(base, {"text": "{}", "error": None})
    assert cache.get(base)["text"] == "{}" and len(cache) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{base}.json"]
    cache.path(base).write_text("{not json")
    assert cache.get(base) is None  # a damaged entry is a miss, not a crash


def make_api_planner(spec: str, tool_schema: dict, **options):
    """An API planner through the one planner registry, from `<provider>:<model>`."""
    backend, _, model = spec.partition(":")
    return make_planner(DecodingSpec(backend, model, plan_schema=tool_schema, options=options))


def test_env_knobs_and_spec_helper(monkeypatch, stub, tmp_path):
    monkeypatch.setenv("IR_API_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("IR_API_CONCURRENCY", "7")
    monkeypatch.setenv("IR_API_MAX_RETRIES", "1")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_url)
    planner = make_api_planner("openai:gpt-5-mini", TOOL_SCHEMA)
    assert (planner.name, planner.concurrency, planner.max_retries) == ("openai:gpt-5-mini", 7, 1)
    assert planner.output == "json_schema" and planner.config()["output"] == "json_schema"  # a local URL
    (resp,) = planner.plan([req("ok")])
    assert json.loads(resp.text) == VALID_PLAN and "response_format" in stub.state.requests[-1].body
    assert len(ResponseCache(tmp_path / "envcache")) == 1 and stub.count("openai") == 1
    assert SECRET not in json.dumps(planner.config()) + repr(planner)
    monkeypatch.setenv("IR_API_OUTPUT", "tools")
    assert make_api_planner("openai:gpt-5-mini", TOOL_SCHEMA).output == "tools"
    monkeypatch.setenv("IR_API_OUTPUT", "grammar")
    with pytest.raises(ValueError, match="IR_API_OUTPUT"):
        make_api_planner("openai:gpt-5-mini", TOOL_SCHEMA)
    monkeypatch.setenv("IR_API_OUTPUT", "tools")
    monkeypatch.setenv("IR_API_PRICES", '{"gpt-5-mini": [2, 4]}')
    (resp,) = make_api_planner("openai:gpt-5-mini", TOOL_SCHEMA, cache_dir=None).plan([req("ok")])
    assert resp.usage["cost_usd"] == pytest.approx((1000 * 2 + 200 * 4) / 1e6)
    monkeypatch.setenv("IR_API_PRICES", "[1, 2]")
    with pytest.raises(ValueError, match="IR_API_PRICES"):
        make_api_planner("openai:gpt-5-mini", TOOL_SCHEMA)
    with pytest.raises(ValueError, match="unknown planner backend 'gemini'"):
        make_api_planner("gemini:x", TOOL_SCHEMA)


def test_key_never_leaves_the_process(stub, tmp_path, caplog, capsys):
    for name in ("", "openai", "anthropic", "httpx", "httpx2", "eval.api_planners", "eval.response_cache"):
        caplog.set_level(logging.DEBUG, logger=name)
    cache, out = tmp_path / "cache", tmp_path / "out"
    scenarios = ["ok", "echo_key", "malformed", "always_500", "notool"]
    for provider in PROVIDERS:
        planner = make(provider, stub, cache, max_retries=1)
        responses = planner.plan([req(s) for s in scenarios])
        assert responses[1].error.startswith("http_500") and "***" in responses[1].error
        (out / provider).mkdir(parents=True)
        for s, r in zip(scenarios, responses, strict=True):  # what a harness writes per query
            (out / provider / f"{s}.json").write_text(json.dumps({"id": s, "text": r.text, "error": r.error,
                                                                  "usage": r.usage, "config": planner.config()}))
        with pytest.raises(APIAuthError) as info:
            make(provider, stub, cache).plan([req("auth")])
        print(info.value, repr(planner))
        logging.getLogger("test").error("failure: %s", info.value)
    # the key did reach the server (and the server echoed it back), so its absence below is meaningful
    assert all(r.credential == SECRET for r in stub.state.requests)
    assert stub.count(scenario="echo_key") == 4
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path
    captured = capsys.readouterr()
    assert caplog.records and SECRET not in caplog.text
    assert SECRET not in captured.out + captured.err


class _ScenarioBench:
    """The tiny benchmark with a stub scenario written into each test query (everything else delegated)."""

    def __init__(self, bench, scenarios: list[str]):
        self._bench = bench
        self._scenarios = scenarios

    def queries(self, split: str | None = None) -> list[dict]:
        rows = self._bench.queries(split)[: len(self._scenarios)]
        return [{**r, "query": f"{r['query']} scenario={s}", "merged_query": f"{r['merged_query']} scenario={s}"}
                for r, s in zip(rows, self._scenarios, strict=True)]

    def __getattr__(self, name: str):
        return getattr(self._bench, name)


def test_harness_end_to_end_with_both_providers(stub, tmp_path, monkeypatch, tiny_benchmark):
    from eval.harness import evaluate
    from eval.report import read_metrics

    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.anthropic_url)
    monkeypatch.setenv("IR_API_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("IR_API_MAX_RETRIES", "1")
    monkeypatch.setenv("IR_API_OUTPUT", "tools")  # the stub stands for the hosted API
    bench = _ScenarioBench(tiny_benchmark, ["ok", "malformed", "bad_request", "ratelimit"])
    ids = [r["id"] for r in bench.queries("test")]
    methods = ["raw", "openai:gpt-5-nano", "anthropic:claude-sonnet-4-5"]
    out = tmp_path / "eval"
    result = evaluate(bench, "test", methods, out_dir=out, n_resamples=50)

    for spec in methods[1:]:
        res = result["methods"][spec]
        assert res["by_kind"]["all"]["validity"] == 0.5  # ok and ratelimit (retried) parse; two do not
        assert res["errors"] == {"backend_error": 2}
        usage = res["usage"]["total"]
        assert usage["input_tokens"] == 3000 and usage["output_tokens"] == 600  # the 400 reported none
        expected = estimate_cost(spec.split(":")[1], 3000, 600, api_planners.DEFAULT_PRICES)
        assert usage["cost_usd"] == pytest.approx(expected)
        errors = [r["error"] for r in result["per_query"][spec]]
        assert [r["id"] for r in result["per_query"][spec]] == ids
        assert errors[0] is None and errors[3] is None
        assert errors[1].startswith("backend_error: malformed_arguments")
        assert errors[2].startswith("backend_error: http_400")
    # the harness handed over the real plan schema from rewards.plan, minus its `$schema` tag
    sent = {r.provider: r.body["tools"][0] for r in stub.state.requests}
    for tool in (sent["openai"]["function"]["parameters"], sent["anthropic"]["input_schema"]):
        assert "$defs" in tool and "$schema" not in tool and tool["required"] == ["searches"]
    report = read_metrics(out)
    assert set(methods) <= set(report["methods"])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" for p in files) and any(p.name == "metrics.json" for p in files)
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path

    before = stub.count()
    again = evaluate(bench, "test", methods[1:], out_dir=tmp_path / "eval2", n_resamples=50)
    assert stub.count() - before == 2  # only the uncached transport failures are sent again
    for spec in methods[1:]:
        assert again["methods"][spec]["by_kind"] == result["methods"][spec]["by_kind"]


def test_unwritable_cache_does_not_lose_the_answer(stub, tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    (resp,) = make("openai", stub, blocker).plan([req("ok")])
    assert resp.error is None and json.loads(resp.text) == VALID_PLAN
    assert "could not cache" in caplog.text


# ---- OpenAI-compatible servers: structured outputs, and failures every request repeats ------------------


def test_output_mode_detected_from_the_base_url():
    assert detect_output(None) == "tools" and detect_output("https://api.openai.com/v1") == "tools"
    assert detect_output("http://127.0.0.1:8000/v1") == "json_schema"
    assert detect_output("http://ollama.local:11434/v1") == "json_schema"


def test_request_shape_openai_compatible(stub):
    own = {"type": "object", "properties": {"searches": {"type": "array", "maxItems": 1}}}
    planner = make("openai", stub, None, output="json_schema", model="smollm2", concurrency=1)
    plain, linked = planner.plan([req("ok"), PlanRequest("q2", req("ok", "2").messages, json_schema=own)])
    bodies = [r.body for r in stub.state.requests]
    assert [b["response_format"]["json_schema"]["schema"] for b in bodies] == [TOOL_SCHEMA, own]
    for body in bodies:  # no tools: the server's grammar engine holds the text to the schema
        assert body["response_format"]["type"] == "json_schema" and "tools" not in body and "tool_choice" not in body
        assert body["temperature"] == 0.0 and body["max_tokens"] == 512  # greedy, like the local backends
    assert json.loads(plain.text) == VALID_PLAN and plain.usage["input_tokens"] == 1000
    assert planner.config()["output"] == "json_schema" and planner.config()["tool"] is None


@pytest.mark.parametrize("scenario,code", [("ok", None), ("malformed", None), ("empty", "empty_output"),
                                           ("truncated", "truncated"), ("refusal", "refusal")])
def test_structured_output_outcomes(scenario, code, stub, tmp_path):
    (resp,) = make("openai", stub, tmp_path, output="json_schema").plan([req(scenario)])
    if code is None:  # the text goes to the harness's parser as it is, like a local model's
        assert resp.error is None and resp.text == stub_text(scenario)
    else:
        assert resp.text is None and resp.error.startswith(code + ":")
    make("openai", stub, tmp_path, output="json_schema").plan([req(scenario)])
    assert stub.count("openai", scenario) == 1  # model answers are cached


def stub_text(scenario: str) -> str:
    return {"ok": json.dumps(VALID_PLAN), "malformed": '{"searches": [{"query": "jack'}[scenario]


@pytest.mark.parametrize("output", ["tools", "json_schema"])
def test_the_same_failure_for_every_request_stops_the_run(output, stub):
    planner = make("openai", stub, None, concurrency=1, output=output)
    with pytest.raises(APIRunError, match="first 5 request.*http_400") as info:
        planner.plan([req("bad_request", str(i)) for i in range(8)])
    assert stub.count() == 5  # nothing more is sent once the setup is known to be wrong
    assert ("IR_API_OUTPUT=json_schema" in str(info.value)) == (output == "tools")  # a server without a tool parser
    # a failure that is not the first answer's fate stays a per-query error
    responses = make("openai", stub, None, concurrency=1).plan([req("ok")] + [req("bad_request", str(i)) for i in range(6)])
    assert responses[0].error is None and all(r.error.startswith("http_400") for r in responses[1:])


def test_no_server_at_the_url_stops_the_run(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    planner = OpenAIPlanner("smollm2", tool_schema=TOOL_SCHEMA, base_url=url, cache_dir=tmp_path, max_retries=0)
    with pytest.raises(APIRunError, match="first 3 request.*connection_error"):
        planner.plan([req("ok", str(i)) for i in range(3)])
    assert len(ResponseCache(tmp_path)) == 0


def test_eval_cli_link_request_sends_each_query_its_own_schema(stub, tmp_path, monkeypatch, capsys, tiny_benchmark):
    from eval.report import read_metrics
    from eval.run import main
    from rewards.prompts import query_schema

    monkeypatch.setenv("OPENAI_BASE_URL", stub.openai_url)  # a local URL: json_schema mode
    monkeypatch.setenv("IR_API_CACHE", str(tmp_path / "cache"))
    argv = ["--bench", str(tiny_benchmark.path), "--methods", "raw,openai:served", "--limit", "3", "--out",
            str(tmp_path / "eval"), "--resamples", "10", "--mode", "compact", "--examples", "none"]
    assert main([*argv, "--link-request", "--max-searches", "1", "--max-filter-depth", "1"]) == 0
    rows = tiny_benchmark.queries("test")[:3]
    expected = [query_schema(tiny_benchmark.schema, r, "compact", max_searches=1, max_depth=1) for r in rows]
    sent = [r.body["response_format"]["json_schema"]["schema"] for r in stub.state.requests]
    assert sorted(map(json.dumps, sent)) == sorted(map(json.dumps, expected))
    assert len({json.dumps(s) for s in sent}) == 3  # one schema per query, not the run's
    run = read_metrics(tmp_path / "eval")["methods"]["openai:served"]["run"]
    assert run["planner"]["output"] == "json_schema" and run["request_schema"] is True and run["mode"] == "compact"
    with pytest.raises(SystemExit):
        main([*argv, "--max-searches", "1"])  # a bound with no request schema to bound
    assert "--link-request" in capsys.readouterr().err
