"""The types that cross stage boundaries: planner requests and responses, and the rows of a TAO round.

A backend (local transformers, vLLM, OpenAI, Anthropic) turns chat messages (built by `rewards.prompts`,
the one place prompts come from) into the raw text of a search plan; parsing, validation and execution stay
in `rewards`, so every backend is judged by the same code.

A TAO round moves rows from stage to stage through JSONL files: prompts -> candidates -> scored candidates
-> training rows. Each row type below names the fields one stage writes and the next one reads, so a
reader sees the contract in one place; ``to_dict``/``from_dict`` are the on-disk form (plain JSON objects,
one per line).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")

# Instruction kinds of StaRK-Instruct queries, and the groups every report averages over
# ("instructed": every kind with an instruction; "all": every query).
KINDS = ("none", "inclusion", "exclusion", "recency")
GROUPS = (*KINDS, "instructed", "all")


# --- planners ---------------------------------------------------------------------------------------


@dataclass
class PlanRequest:
    id: str  # the query id, for logs and caches
    messages: list[dict]  # [{"role": "system", "content": ...}, {"role": "user", "content": ...}]
    json_schema: dict | None = None  # this request's decoding schema; None: the planner's own


@dataclass
class PlanResponse:
    text: str | None  # the completion (or a tool call's JSON arguments); None when the backend failed
    error: str | None = None  # why there is no usable text (refusal, no tool call, HTTP error, ...)
    usage: dict = field(default_factory=dict)  # e.g. {"input_tokens": .., "output_tokens": .., "cost_usd": ..}


class Planner(Protocol):
    name: str

    def plan(self, requests: list[PlanRequest]) -> list[PlanResponse]:
        """One response per request, in order; never raises for a single bad request."""
        ...


class Sampler(Protocol):
    """A backend that also samples N plans per request (TAO's sampling stage)."""

    def sample(
        self, requests: list[PlanRequest], n: int, temperature: float, top_p: float, seed: int
    ) -> list[list[PlanResponse]]: ...


# --- rows between the stages of a TAO round ------------------------------------------------------------


class _Row:
    """On-disk form of a row dataclass: a JSON object with exactly the dataclass's fields."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_T], d: dict) -> _T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        missing = sorted(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                         if f.name not in d and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ValueError(f"{cls.__name__} row lacks {missing}")
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class PromptRow(_Row):
    """One training prompt of a round (prompts.jsonl): the chat the sampler, trainer and evaluator see."""

    prompt_id: str
    kind: str  # instruction kind: none | inclusion | exclusion | recency
    messages: list[dict]
    relevant_ids: list[int]
    query: str = ""  # the request alone: its raw-query plan is the baseline a sample must beat
    constraint: dict | str | None = None  # the instruction's constraint (stark_instruct.instructions)
    json_schema: dict | None = None  # its decoding schema (rewards.plan.request_plan_schema); None: the run's


@dataclass
class Candidate(_Row):
    """One sampled plan (candidates.jsonl), keyed by (prompt_id, sample_idx)."""

    prompt_id: str
    sample_idx: int
    seed: int | None = None  # the batch seed it was sampled with (None: a plan from elsewhere, e.g. a test's)
    text: str | None = None  # None: the backend gave no text (see error)
    error: str | None = None  # the backend's reason when text is None
    usage: dict = field(default_factory=dict)
    source: str = "sample"  # "sample": the policy wrote it; "edit": pipelines.explore's local search did

    @property
    def key(self) -> tuple[str, int]:
        return (str(self.prompt_id), int(self.sample_idx))


@dataclass
class ScoredCandidate(Candidate):
    """A candidate with its reward (scored.jsonl), built by `pipelines.score.score_stage` and read by
    `pipelines.select`; ``error`` becomes the reward's reason for an invalid plan."""

    reward: float = 0.0
    valid: bool = False
    error_code: str | None = None
    n_searches: int = 0
    retrieved: int = 0  # length of the fused ranking
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_reward: float | None = None  # the prompt's raw-query plan's reward
    right_filter: bool | None = None  # the plan filters with the instruction's constraint (None: no instruction)
    decision: list[str] = field(default_factory=list)  # "field op" of each filter leaf (pipelines.strategies.decision)


@dataclass
class Policy(_Row):
    """What a round samples from or produces: a base model, optionally with a LoRA adapter on top."""

    model_path: str
    adapter_path: str | None = None
    # the prompt form (rewards.prompts mode) it was trained on; None: the run's configured mode
    prompt_mode: str | None = None


def row_key(row: dict[str, Any]) -> tuple[str, int]:
    """The identity of a candidate or scored row on disk: (prompt_id, sample_idx)."""
    return (str(row["prompt_id"]), int(row["sample_idx"]))
