"""The retrieval methods the harness compares: three baselines and any planner backend.

Every method turns benchmark query rows into search plans (or a recorded reason why there is none); the
harness then executes all plans with one shared executor, so methods differ only in the plan they write:
- `raw`: one search with the base query alone (the instruction is ignored);
- `concat`: one search with the query and the instruction text merged (what plain RAG would do);
- `oracle`: the base query plus the variant's exact constraint as a filter;
- `oracle_full`: also the metadata the base query implies (`query_constraint`, where the benchmark records
  it) in one `all` filter: the ceiling of a one-search plan;
- a planner (`ir_core.types.Planner`): a model writes the plan from the prompt of `rewards.prompts`;
- `plans:<per-query log>`: the plans a planner wrote in an earlier evaluation (the harness's
  `per_query/<method>.jsonl`, e.g. a TAO round's `eval/test`), parsed again and executed as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import eval.api_planners  # noqa: F401  (registers the openai and anthropic backends)
from ir_core.types import Planner, PlanRequest, PlanResponse
from pipelines.backends import PLANNERS, DecodingSpec, make_planner
from rewards.parse import PlanError, parse_plan
from rewards.plan import Search, SearchPlan, plan_json_schema, plan_to_json
from rewards.prompts import default_examples, messages_for_query
from stark_instruct.benchmark import oracle_filter
from stark_instruct.instructions import constraint_filter


@dataclass
class PlanOutput:
    """One method's plan for one query: the text it wrote, the parsed plan, or why there is none."""

    text: str | None
    plan: Any | None  # rewards.plan.SearchPlan
    error: str | None = None  # "code: reason" when the plan is invalid or the backend failed
    usage: dict = field(default_factory=dict)


class Method(Protocol):
    name: str

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        """One output per row, in order."""
        ...


def _plan_output(plan: Any) -> PlanOutput:
    return PlanOutput(text=json.dumps(plan_to_json(plan), ensure_ascii=False), plan=plan)


def _single_search(query: str, node: Any = None) -> Any:
    return SearchPlan([Search(query=query, filter=node)])


class RawMethod:
    """The base query alone: what retrieval does when it ignores the user's instruction."""

    name = "raw"

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        return [_plan_output(_single_search(row["query"])) for row in rows]


class ConcatMethod:
    """Query and instruction as one keyword string: the instruction only as extra search terms."""

    name = "concat"

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        return [_plan_output(_single_search(row.get("merged_query") or row["query"])) for row in rows]


class OracleMethod:
    """Base query plus the exact constraint as a filter: the best a one-search plan can do."""

    name = "oracle"

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        out = []
        for row in rows:
            constraint = row.get("constraint")
            if row.get("kind", "none") != "none" and not constraint:
                raise ValueError(f"query {row.get('id')!r} of kind {row.get('kind')!r} has no constraint")
            node = constraint_filter(constraint) if constraint else None
            out.append(_plan_output(_single_search(row["query"], node)))
        return out


class OracleFullMethod:
    """Base query plus the instruction's constraint and the query's own recorded metadata as one `all`
    filter (`stark_instruct.benchmark.oracle_filter`); the same as `oracle` where no metadata is recorded
    (STaRK-Amazon, or a benchmark built before the field existed)."""

    name = "oracle_full"

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        return [_plan_output(_single_search(row["query"], oracle_filter(row, full=True))) for row in rows]


class PlannerMethod:
    """A model backend: prompts from `rewards.prompts`, plans parsed by `rewards.parse` (same as training)."""

    def __init__(self, planner: Planner, schema: Any, examples: Sequence = (), mode: str = "separate",
                 name: str | None = None, batch_size: int = 64,
                 request_schema: Callable[[dict], dict] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.planner = planner
        self.schema = schema
        self.examples = tuple(examples)
        self.mode = mode
        self.name = name or getattr(planner, "name", None) or type(planner).__name__
        self.batch_size = batch_size
        self.request_schema = request_schema  # query row -> its own decoding schema (None: the planner's)

    def requests(self, rows: list[dict]) -> list[PlanRequest]:
        return [PlanRequest(id=str(row["id"]), messages=messages_for_query(self.schema, row, self.examples, self.mode),
                            json_schema=self.request_schema(row) if self.request_schema else None)
                for row in rows]

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        requests = self.requests(rows)
        responses: list[PlanResponse] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            got = list(self.planner.plan(batch))
            if len(got) != len(batch):
                raise RuntimeError(f"planner {self.name!r} returned {len(got)} responses for {len(batch)} requests")
            responses.extend(got)
        return [plan_output(resp, self.schema) for resp in responses]


def plan_output(resp: PlanResponse, schema: Any) -> PlanOutput:
    """A planner's response as the harness scores it: parsed, or with the typed error of why not."""
    usage = dict(resp.usage or {})
    if resp.text is None:
        return PlanOutput(text=None, plan=None, error=f"backend_error: {resp.error or 'no text returned'}",
                          usage=usage)
    try:
        plan = parse_plan(resp.text, schema)
    except PlanError as exc:
        return PlanOutput(text=resp.text, plan=None, error=f"{exc.code}: {exc.reason}", usage=usage)
    return PlanOutput(text=resp.text, plan=plan, usage=usage)


class RecordedPlans:
    """Replays the `plan_text` a planner wrote for each query id in a harness per-query log.

    The text goes through `rewards.parse.parse_plan` again, so validity is judged as it was when the
    planner ran; a query the log lacks gets the error `missing_plan`. Named `plans:<log stem>`.
    """

    def __init__(self, path: str, schema: Any) -> None:
        from pathlib import Path

        from ir_core.io import read_jsonl

        self.path, self.schema = Path(path), schema
        self.name = recorded_plans_name(path)
        self.texts = {str(r["id"]): r.get("plan_text") for r in read_jsonl(self.path)}

    def plans(self, rows: list[dict]) -> list[PlanOutput]:
        out = []
        for row in rows:
            qid = str(row["id"])
            if qid not in self.texts:
                out.append(PlanOutput(text=None, plan=None, error=f"missing_plan: {qid} not in {self.path}"))
            else:
                text = self.texts[qid]
                out.append(plan_output(PlanResponse(text, None if text is not None else "no plan text was recorded"),
                                       self.schema))
        return out


def recorded_plans_name(path: str) -> str:
    """The method name of a recorded-plans log: `plans:<file stem>`."""
    from pathlib import Path

    return f"{RECORDED}:{Path(path).stem}"


BASELINES: dict[str, type] = {"raw": RawMethod, "concat": ConcatMethod, "oracle": OracleMethod,
                              "oracle_full": OracleFullMethod}
RECORDED = "plans"  # spec prefix of RecordedPlans

def resolve_planner(spec: str, bench: Any, **options: Any) -> Planner:
    """Build a planner from `<backend>:<model>` (a name in `pipelines.backends.PLANNERS`: hf, vllm, openai,
    anthropic, ...) through the one planner registry; `options` go to the backend's constructor.

    Backends import their libraries only when built, so evaluating baselines needs neither GPU packages nor
    API clients installed. The plan schema is the benchmark's (API planners declare it as their tool; local
    ones decode freely, as they always did here).
    """
    prefix, sep, target = spec.partition(":")
    if not sep or not target:
        raise ValueError(f"planner spec {spec!r} must look like <backend>:<model>, backends: {', '.join(PLANNERS)}")
    if prefix not in PLANNERS:
        raise ValueError(f"unknown planner backend {prefix!r} in {spec!r}; known backends: {', '.join(PLANNERS)}")
    return make_planner(DecodingSpec(prefix, target, plan_schema=plan_json_schema(bench.schema), options=options))


def resolve_methods(specs: Sequence[str | Method], bench: Any, examples: Sequence | None = None,
                    mode: str = "separate", request_schema: Callable[[dict], dict] | None = None) -> list[Method]:
    """Turn CLI specs ("raw", "concat", "oracle", "hf:models/x", ...), planners or Methods into methods.

    Planners get `examples` as few-shot examples; None means `rewards.prompts.default_examples`, the
    ones TAO training prompts use, so a model is evaluated on the prompt it was trained with.
    `request_schema` gives each planner request its own decoding schema (`PlannerMethod`).
    """
    methods: list[Method] = []
    if examples is None and any(not isinstance(s, str) or (s.strip() not in BASELINES
                                                           and not s.strip().startswith(RECORDED + ":"))
                                for s in specs):
        examples = default_examples(bench.schema)
    examples = tuple(examples or ())
    for spec in specs:
        if not isinstance(spec, str):
            if hasattr(spec, "plans"):
                methods.append(spec)
            elif hasattr(spec, "plan"):
                methods.append(PlannerMethod(spec, bench.schema, examples, mode, request_schema=request_schema))
            else:
                raise TypeError(f"not a method or planner: {spec!r}")
            continue
        spec = spec.strip()
        if spec in BASELINES:
            methods.append(BASELINES[spec]())
        elif spec.startswith(RECORDED + ":"):
            methods.append(RecordedPlans(spec.partition(":")[2], bench.schema))
        elif ":" not in spec:
            raise ValueError(f"unknown method {spec!r}: use {', '.join(BASELINES)} or <backend>:<model> "
                             f"with a backend in {', '.join(PLANNERS)}")
        else:
            planner = resolve_planner(spec, bench)
            methods.append(PlannerMethod(planner, bench.schema, examples, mode, name=spec,
                                         request_schema=request_schema))
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate method names: {', '.join(dupes)}")
    if not methods:
        raise ValueError("no methods to evaluate")
    return methods
