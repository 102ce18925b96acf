"""The Python API: `Retriever(bench, planner).search(query, instructions)` -> plan, products, timings, error.

A request goes through exactly the stages training and evaluation use: `rewards.prompts.build_messages`
writes the prompt, the planner writes a plan, `rewards.parse.parse_plan` validates it against the index
schema and `rewards.execute.Executor` runs it (fused searches, then the optional reranker). A plan that
fails is returned as its typed error with no results; only a caller who asks (`fallback="raw"`) gets the
raw query's results instead, and the result says so.

Arguments are checked up front by the rules HTTP and MCP also use (serve.checks): a bad one raises
`RequestError` (a ValueError naming the field) before the planner is called. A prompt longer than the
model's context is the result's error `prompt_too_long`, as the backends report it.

`search` / `search_batch` are synchronous (one `planner.plan` call per batch); `asearch` is for servers:
concurrent calls are batched into the planner (vLLM's async engine, or a micro-batcher over `plan`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ir_core.types import Planner, PlanRequest, PlanResponse
from rewards.execute import Executor, Reranker
from rewards.parse import PlanError, parse_plan
from rewards.plan import SearchPlan, plan_json_schema, plan_to_json
from rewards.prompts import default_examples
from serve.checks import MAX_INSTRUCTION_CHARS, RequestError, check_items, check_options, check_request

__all__ = ["MAX_INSTRUCTION_CHARS", "Hit", "PlanFailure", "PlanResult", "RequestError", "Retriever", "SearchResult",
           "check_request"]
PROMPT_TOO_LONG = "prompt_too_long"  # the backends' error for a prompt the model's context cannot take


class PlanSubmitter(Protocol):
    """What `asearch` needs: a non-blocking submit (AsyncVLLMPlanner has one; MicroBatcher adds one)."""

    def submit(self, request: PlanRequest) -> Future: ...


@dataclass
class PlanFailure:
    """Why a request has no plan: a backend failure (`backend_error`, e.g. truncated) or a PlanError code."""

    code: str
    reason: str
    text: str | None = None  # what the planner wrote, when it wrote something


@dataclass
class Hit:
    rank: int
    doc_id: int
    asin: str
    title: str
    meta: dict  # the derived metadata the filters run on (brand, category, color, price, rating, dates)


@dataclass
class SearchResult:
    query: str
    instructions: str | None
    k: int
    planner: str
    plan: dict | None  # canonical plan JSON (rewards.plan.plan_to_json), None when the plan failed
    error: PlanFailure | None
    results: list[Hit]
    fallback: str | None = None  # "raw" when `results` come from the raw query because the plan failed
    filter_fields: list[str] = field(default_factory=list)  # metadata fields the plan's filters touch
    raw_results: list[Hit] | None = None  # the raw query's results, when asked for (the page shows both)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: plan, parse, search, raw_search, total
    usage: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PlanResult:
    """The planner's output for one request without executing it (POST /plan)."""

    query: str
    instructions: str | None
    planner: str
    plan: dict | None
    error: PlanFailure | None
    text: str | None  # the completion as written
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict = field(default_factory=dict)


def _json_value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.date) else v


def filter_fields(plan_json: dict | None) -> list[str]:
    """The metadata fields a plan's filters name, in first-seen order."""
    seen: dict[str, None] = {}
    stack = [s.get("filter") for s in (plan_json or {}).get("searches", [])][::-1]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "field" in node:
            seen.setdefault(str(node["field"]), None)
        for key in ("all", "any"):
            stack.extend(reversed(node.get(key) or []))
        if "not" in node:
            stack.append(node["not"])
    return list(seen)


class Retriever:
    """One benchmark (or any index the builder made) + one planner + an optional reranker.

    `examples` default to `rewards.prompts.default_examples` (what TAO trains with); `mode` is the prompt
    mode of `rewards.prompts`. `submitter` is what `asearch` batches through; by default the planner's
    own `submit` (AsyncVLLMPlanner) or a `serve.batching.MicroBatcher` over `planner.plan`.
    """

    def __init__(self, bench: Any, planner: Planner, reranker: Reranker | None = None, *,
                 examples: Sequence[dict] | None = None, mode: str = "separate", engine: str = "tantivy",
                 depth: int = 100, plan_schema: dict | None = None, submitter: PlanSubmitter | None = None,
                 max_batch: int = 8, batch_wait_s: float = 0.01, request_bounds: dict | None = None):
        from rewards.prompts import MODES, default_examples

        if isinstance(bench, str | Path):
            from stark_instruct.benchmark import Benchmark

            bench = Benchmark.load(bench)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.bench, self.planner, self.reranker, self.mode = bench, planner, reranker, mode
        self.schema = bench.schema
        self.examples = tuple(default_examples(self.schema) if examples is None else examples)
        self.executor = Executor(bench.index(engine), depth=depth, reranker=reranker)
        self.plan_schema = plan_schema or plan_json_schema(self.schema)
        # set: every request decodes under its own schema (rewards.plan.request_plan_schema), as the
        # TAO run that trained the policy sampled and evaluated it
        self.request_bounds = request_bounds
        self.name = getattr(planner, "name", type(planner).__name__)
        self.policy: Any = None  # serve.planners.PolicyChoice when built by `load`
        self._search_lock = threading.Lock()  # one engine searcher, shared by server threads
        bench.products(), bench.metas()  # load the corpus now, not inside the first request's timing
        if submitter is None:
            if callable(getattr(planner, "submit", None)):
                submitter = planner  # type: ignore[assignment]
            else:
                from serve.batching import MicroBatcher

                submitter = MicroBatcher(planner, max_batch=max_batch, max_wait_s=batch_wait_s)
        self.submitter = submitter

    @classmethod
    def load(cls, bench: str | Path, backend: str = "vllm", model: str | None = None, runs_dir: str | Path = "runs",
             reranker: str | None = None, engine: str = "tantivy", **planner_kwargs: Any) -> Retriever:
        """A retriever over a built benchmark: `model` (a checkpoint folder, or an API model name for
        openai/anthropic), else the newest tuned TAO checkpoint under `runs_dir`, else the untrained
        model; `reranker` is an encoder folder for `rewards.rerank.EncoderReranker`."""
        from pipelines.backends import make_planner
        from serve.planners import choose_policy, serving_spec
        from stark_instruct.benchmark import Benchmark

        bench_obj = Benchmark.load(bench)
        choice = choose_policy(runs_dir, model)
        spec = serving_spec(backend, choice, bench_obj, **planner_kwargs)
        planner = make_planner(spec)
        rr = None
        if reranker is not None:
            from rewards.rerank import EncoderReranker

            rr = EncoderReranker(reranker, bench_obj)
        out = cls(bench_obj, planner, rr, examples=default_examples(bench_obj.schema, spec.examples), mode=spec.mode,
                  engine=engine, plan_schema=spec.plan_schema, request_bounds=spec.request_bounds)
        out.policy = choice
        return out

    # -- stages ---------------------------------------------------------------------------------

    def request(self, query: str, instructions: str | None = None, request_id: str = "q") -> PlanRequest:
        """The planner request for a query, from the project's one prompt builder."""
        from rewards.prompts import build_messages, query_schema

        row = {"query": query, "instruction": instructions or ""}
        if self.mode == "merged":
            from stark_instruct.instructions import merge

            row["merged_query"] = merge(query, instructions) if instructions else query
            messages = build_messages(self.schema, row["merged_query"], None, self.examples, "merged")
        else:
            messages = build_messages(self.schema, query, instructions or None, self.examples, self.mode)
        own = query_schema(self.schema, row, self.mode, **self.request_bounds) if self.request_bounds is not None \
            else None
        return PlanRequest(request_id, messages, json_schema=own)

    def parse(self, response: PlanResponse) -> tuple[SearchPlan | None, PlanFailure | None]:
        if response.text is None:
            error = response.error or "the planner returned no text"
            # the request, not the planner, is at fault: too long for the model's context (HTTP: 422)
            code = PROMPT_TOO_LONG if error.startswith(PROMPT_TOO_LONG) else "backend_error"
            return None, PlanFailure(code, error)
        try:
            return parse_plan(response.text, self.schema), None
        except PlanError as exc:
            return None, PlanFailure(exc.code, exc.reason, response.text)

    def raw_plan(self, query: str) -> SearchPlan:
        from eval.methods import RawMethod  # the `raw` baseline: the query alone, no filter

        return RawMethod().plans([{"query": query}])[0].plan

    def hits(self, doc_ids: Sequence[int], k: int) -> list[Hit]:
        out = []
        for rank, doc in enumerate(doc_ids[:k], 1):
            product = self.bench.product(doc)
            meta = {key: _json_value(v) for key, v in self.bench.meta(doc).items()}
            out.append(Hit(rank, int(doc), product.asin, product.title, meta))
        return out

    def execute(self, plan: SearchPlan, rerank_text: str | None) -> list[int]:
        with self._search_lock:
            return self.executor.run(plan, rerank_text if self.reranker is not None else None)

    # -- the API --------------------------------------------------------------------------------

    def finish(self, query: str, instructions: str | None, k: int, response: PlanResponse, plan_s: float,
               fallback: str | None = None, compare_raw: bool = False) -> SearchResult:
        """Parse, execute and package one planner response (the part after the planner call)."""
        t0 = time.perf_counter()
        plan, error = self.parse(response)
        t1 = time.perf_counter()
        rerank_text = f"{query} {instructions}" if instructions else query
        used_fallback = None
        if plan is None and fallback == "raw":
            plan, used_fallback = self.raw_plan(query), "raw"
        ranking = self.execute(plan, rerank_text) if plan is not None else []
        t2 = time.perf_counter()
        raw = self.hits(self.execute(self.raw_plan(query), rerank_text), k) if compare_raw else None
        t3 = time.perf_counter()
        plan_json = plan_to_json(plan) if plan is not None and used_fallback is None else None
        timings = {"plan_s": plan_s, "parse_s": t1 - t0, "search_s": t2 - t1}
        if compare_raw:
            timings["raw_search_s"] = t3 - t2
        timings["total_s"] = plan_s + (t3 - t0)
        return SearchResult(query=query, instructions=instructions, k=k, planner=self.name, plan=plan_json,
                            error=error, results=self.hits(ranking, k), fallback=used_fallback,
                            filter_fields=filter_fields(plan_json), raw_results=raw, timings=timings,
                            usage=dict(response.usage or {}))

    def search(self, query: str, instructions: str | None = None, k: int = 20, *, fallback: str | None = None,
               compare_raw: bool = False) -> SearchResult:
        """Plan, validate and execute one request (blocking)."""
        check_request(query, instructions, k, fallback, self.executor.depth, compare_raw)
        return self.search_batch([{"query": query, "instructions": instructions}], k, fallback=fallback,
                                 compare_raw=compare_raw)[0]

    def search_batch(self, items: Sequence[dict], k: int = 20, *, fallback: str | None = None,
                     compare_raw: bool = False) -> list[SearchResult]:
        """Many requests ({"query", "instructions"}) in one planner call, results in input order."""
        items = check_items(items)
        check_options(k, fallback, self.executor.depth, compare_raw)
        requests = [self.request(it["query"], it.get("instructions"), f"q{i}") for i, it in enumerate(items)]
        t0 = time.perf_counter()
        responses = self.planner.plan(requests) if requests else []
        if len(responses) != len(requests):
            raise RuntimeError(f"planner returned {len(responses)} responses for {len(requests)} requests")
        per_request = (time.perf_counter() - t0) / max(1, len(requests))  # one call: the batch's share
        return [self.finish(it["query"], it.get("instructions"), k, resp, per_request, fallback, compare_raw)
                for it, resp in zip(items, responses, strict=True)]

    async def aplan(self, query: str, instructions: str | None = None) -> tuple[PlanResponse, float]:
        """The planner's response for one request, batched with whatever else is in flight."""
        t0 = time.perf_counter()
        fut = self.submitter.submit(self.request(query, instructions))
        try:
            response = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        return response, time.perf_counter() - t0

    def plan_result(self, query: str, instructions: str | None, response: PlanResponse,
                    plan_s: float) -> PlanResult:
        t0 = time.perf_counter()
        plan, error = self.parse(response)
        parse_s = time.perf_counter() - t0
        return PlanResult(query=query, instructions=instructions, planner=self.name,
                          plan=plan_to_json(plan) if plan is not None else None, error=error, text=response.text,
                          timings={"plan_s": plan_s, "parse_s": parse_s, "total_s": plan_s + parse_s},
                          usage=dict(response.usage or {}))

    def plan(self, query: str, instructions: str | None = None) -> PlanResult:
        """The validated plan for one request, not executed (blocking)."""
        check_request(query, instructions, 1, None, self.executor.depth)
        t0 = time.perf_counter()
        (response,) = self.planner.plan([self.request(query, instructions)])
        return self.plan_result(query, instructions, response, time.perf_counter() - t0)

    async def aplan_result(self, query: str, instructions: str | None = None) -> PlanResult:
        check_request(query, instructions, 1, None, self.executor.depth)
        response, plan_s = await self.aplan(query, instructions)
        return self.plan_result(query, instructions, response, plan_s)

    async def asearch(self, query: str, instructions: str | None = None, k: int = 20, *,
                      fallback: str | None = None, compare_raw: bool = False) -> SearchResult:
        """`search` for event loops: the planner call is batched, the search runs in a worker thread."""
        check_request(query, instructions, k, fallback, self.executor.depth, compare_raw)
        response, plan_s = await self.aplan(query, instructions)
        return await asyncio.to_thread(self.finish, query, instructions, k, response, plan_s, fallback,
                                       compare_raw)

    def close(self) -> None:
        for obj in (self.submitter, self.planner):
            closer = getattr(obj, "close", None)
            if callable(closer):
                closer()
