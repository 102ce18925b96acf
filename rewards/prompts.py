"""The planner prompt: the one place every backend (transformers, vLLM, OpenAI, Anthropic) gets it from.

The system specification holds the role, the output contract (one JSON plan, with a compact grammar),
the index schema, labelled examples and the user's instructions; the user message holds the query. The
same prompt is used for sampling, training and evaluation so that a plan's reward does not depend on
which backend wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rewards.plan import MAX_SEARCHES, request_plan_schema
from stark_instruct.filters import MAX_DEPTH
from stark_instruct.schema import IndexSchema, years_before

MODES = ("separate", "merged", "chat", "compact", "request")

ROLE = (
    "You are a query planner for a product search engine. You turn a shopper's request into a search "
    "plan: keyword searches over the product text, each with metadata filters that enforce the user's "
    "instructions. You never answer the request yourself."
)

GRAMMAR = f"""\
Reply with ONLY one JSON object, no prose and no code fences:
{{"searches": [{{"query": "<keywords>", "filter": <filter or null>}}, ...]}}
- 1 to {MAX_SEARCHES} searches; their result lists are fused, so extra searches can cover synonyms or
  alternative phrasings. An optional "weight" (number > 0, default 1) scales a search in the fusion.
- filter := {{"field": <field>, "op": <op>, "value": <value>}} | {{"all": [filter, ...]}}
  | {{"any": [filter, ...]}} | {{"not": filter}}   (nested at most {MAX_DEPTH} levels)
- Use only the fields and ops listed in the index schema. "in" and "nin" take a list of values;
  numbers are plain JSON numbers; dates are "YYYY-MM-DD" strings.
- Express every instruction about brand, colour, price, rating or review dates as a filter, and apply
  it to every search; use the request's own words as the query and leave the instruction out of it."""


# The "compact" system spec: for a planner decoding under per-request schemas
# (rewards.plan.request_plan_schema), where the grammar already fixes the query, the single search and
# which values exist (those the request names), the prompt only has to say what the filter means and
# which of those values a shopper wants (the product and colour asked for, the instructions' values). A third of the tokens of the full
# spec, which is what sampling and training on a CPU pay for.
COMPACT_FORMAT = """\
Reply with ONLY one JSON object: {"searches": [{"filter": <filter or null>, "query": <the request>}]}
filter := {"all": [1 to 3 of {"field": <field>, "op": <op>, "value": <value>}]}; null when the request names
no index value. Ops: eq = must be / must have the value; ne = must not be / must not have it (to exclude);
gt, gte, lt, lte = greater than, at least, less than, at most.
The product and colour asked for: eq; what the instructions require: eq; what they exclude: ne. E.g.
"a crimson tent" -> all of category eq "tents", color eq "red";
"a tent. Nothing from Acme." -> all of category eq "tents", brand ne "acme";
"Only Acme products." -> brand eq "acme"; "Skip the red ones." -> color ne "red";
"Under $40." -> price lte 40; "Rated 4.5 or more." -> rating gte 4.5;
"Reviewed in the last 2 years." -> last_review_date gte (the date 2 years ago)."""


def compact_schema(schema: IndexSchema) -> str:
    """The index schema in a few lines: today and each field's name and meaning (no date anchors: the
    request's schema allows only the dates its instructions name)."""
    lines = [f"Today is {schema.reference_date.isoformat()}.", "Fields:",
             *(f"- {f.name}: {f.description}" for f in schema.fields)]
    return "\n".join(lines)


def _check_example(ex: dict, i: int) -> None:
    if not isinstance(ex, dict) or not isinstance(ex.get("query"), str) or not isinstance(ex.get("plan"), dict):
        raise ValueError(f"example {i + 1} must be a dict with 'query' (str), 'instruction' (str|None), 'plan' (dict)")
    if ex.get("instruction") is not None and not isinstance(ex["instruction"], str):
        raise ValueError(f"example {i + 1}: 'instruction' must be a string or None")


def _merge(query: str, instruction: str | None) -> str:
    if not instruction:
        return query
    from stark_instruct.instructions import merge  # the benchmark owns how merged queries read

    return merge(query, instruction)


def _render_example(schema: IndexSchema, ex: dict, mode: str) -> str:
    plan = json.dumps(ex["plan"], ensure_ascii=False)
    if mode == "merged":
        return f"Request: {_merge(ex['query'], ex.get('instruction'))}\nPlan: {plan}"
    return f"Request: {ex['query']}\nUser instructions: {_instructions(schema, ex.get('instruction'))}\nPlan: {plan}"


def system_prompt(schema: IndexSchema, instruction: str | None = None, examples: Sequence[dict] = (),
                  mode: str = "separate") -> str:
    """The system specification; only "separate" mode has an instructions section ("chat" puts the
    instructions in the user turn, "merged" in the query)."""
    if mode == "compact":
        parts = [ROLE, COMPACT_FORMAT, compact_schema(schema)]
    else:
        parts = [ROLE, "## Output format\n" + GRAMMAR, "## Index schema\n" + schema.render()]
    if examples:
        rendered = "\n\n".join(_render_example(schema, ex, mode) for ex in examples)
        parts.append("## Examples\n" + rendered)
    if mode == "separate":
        parts.append("## User instructions\n" + _instructions(schema, instruction))
    return "\n\n".join(parts)


def _linked(schema: IndexSchema, text: str, what: str) -> str:
    """A line naming the index values `text` mentions (schema linking), or "" when it names none."""
    return _values_line(schema.mentioned_values(text) if text.strip() else [], what)


def _instructions(schema: IndexSchema, instruction: str | None) -> str:
    """The instructions as the system spec shows them: the text (or "(none)") and a line naming the
    index values it mentions (schema linking), when there are any."""
    text = instruction.strip() if instruction and instruction.strip() else ""
    return (text or "(none)") + _linked(schema, text, "instructions")


def _values_line(found: Sequence[tuple[str, str]], what: str) -> str:
    return (f"\nIndex values named in the {what}: "
            + ", ".join(f"{name} {json.dumps(value)}" for name, value in found) + ".") if found else ""


def _request_turn(schema: IndexSchema, query: str, instruction: str | None) -> str:
    """The request as a user turn: query, instructions, and the index values the whole request names
    (the values the request's decoding schema, `rewards.plan.request_plan_schema`, lets a filter use),
    listed by where they are named: the query's own (its product type and colour) apart from the
    instructions' (what to require or exclude). A small planner that sees "color "brown", color "blue""
    under one heading has to work out which colour the instruction said to avoid; by heading, the
    instruction's wording decides the op of its own values and the query's values are what is asked for.
    A value named in both is listed under both."""
    text = instruction.strip() if instruction and instruction.strip() else ""
    named = schema.mentioned_values(f"{query}\n{text}")  # exactly the values decoding allows
    in_instructions = set(schema.mentioned_values(text)) if text else set()
    in_query = set(schema.mentioned_values(query)) if query.strip() else set()
    query_values = [v for v in named if v in in_query or v not in in_instructions]
    return (f"Request: {query.strip()}\nUser instructions: {text or '(none)'}"
            + _values_line(query_values, "query")
            + _values_line([v for v in named if v in in_instructions], "instructions"))


def build_messages(schema: IndexSchema, query: str, instruction: str | None = None,
                   examples: Sequence[dict] = (), mode: str = "separate") -> list[dict]:
    """Chat messages for one request.

    mode "separate": [system spec, user query]; the instruction goes into the system spec's "User
    instructions" section. mode "merged": `query` is already the merged query (query + instruction in one
    text); passing an instruction too is an error, so the instruction cannot silently appear twice.
    mode "chat": the system spec holds role, format and schema; each example is a user turn ("Request:
    ... / User instructions: ...") answered by an assistant turn (its plan), and the request itself is the
    last user turn in the same form: a small model continues a pattern it has just seen answered far
    more faithfully than it follows a section of a long system prompt. mode "compact": "chat" with the
    short system spec of COMPACT_FORMAT, for per-request decoding schemas. mode "request": the request
    turn alone (see `request_only_messages`), for a policy that has learned the spec.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    if mode == "merged" and instruction is not None:
        raise ValueError("mode 'merged' takes the merged query as `query` and no separate instruction")
    for i, ex in enumerate(examples):
        _check_example(ex, i)
    if mode == "request":
        return request_only_messages(schema, query, instruction, examples)
    if mode in ("chat", "compact"):
        turns = [{"role": "system", "content": system_prompt(schema, None, (), mode)}]
        for ex in examples:
            turns.append({"role": "user", "content": _request_turn(schema, ex["query"], ex.get("instruction"))})
            turns.append({"role": "assistant", "content": json.dumps(ex["plan"], ensure_ascii=False)})
        return [*turns, {"role": "user", "content": _request_turn(schema, query, instruction)}]
    return [
        {"role": "system", "content": system_prompt(schema, instruction, examples, mode)},
        {"role": "user", "content": query.strip()},
    ]


def request_only_messages(schema: IndexSchema, query: str, instruction: str | None,
                          examples: Sequence[dict] = ()) -> list[dict]:
    """Context distillation: the request turn of "compact" mode without the system spec.

    A policy trained on plans sampled under the spec learns to act as if the spec were there, so its
    later rounds, training rows, evaluation and serving can drop the ~400 tokens every prompt repeats
    (95% of what a compact row trains on and prefills). The model's chat template supplies its own default
    system turn, if it has one. Examples are refused: a distilled prompt carries only the request.
    """
    if examples:
        raise ValueError("mode 'request' carries no few-shot examples (use examples: none)")
    return [{"role": "user", "content": _request_turn(schema, query, instruction)}]


def messages_for_query(schema: IndexSchema, row: dict, examples: Sequence[dict] = (),
                       mode: str = "separate") -> list[dict]:
    """Messages for a benchmark query row, in either mode: the one mapping sampling, training and
    evaluation share, so a model is trained on exactly the prompts it is evaluated with."""
    if mode == "merged":  # the instruction is already part of the merged query text
        return build_messages(schema, row.get("merged_query") or row["query"], None, examples, "merged")
    return build_messages(schema, row["query"], row.get("instruction") or None, examples, mode)


def query_schema(schema: IndexSchema, row: dict, mode: str = "separate", **bounds: int) -> dict:
    """The per-request decoding schema (`rewards.plan.request_plan_schema`) of a benchmark query row, read
    the way `messages_for_query` reads it: in "merged" mode the query and the words linked to filter
    values are both the merged text (the planner sees no separate instruction)."""
    if mode == "merged":
        merged = row.get("merged_query") or row["query"]
        return request_plan_schema(schema, merged, merged, **bounds)
    return request_plan_schema(schema, row["query"], row.get("instruction") or None, **bounds)


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text for a local model, via its chat template (generation prompt appended).

    Templates that refuse a system role (they raise a TemplateError) get the system spec folded into
    the user turn instead.
    """
    import jinja2

    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template; use an instruction-tuned model or set tokenizer.chat_template")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except jinja2.exceptions.TemplateError:
        if not messages or messages[0].get("role") != "system":
            raise
        system, rest = messages[0]["content"], list(messages[1:])
        if not rest or rest[0].get("role") != "user":
            raise
        rest[0] = {**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}
        return tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)


def _example_value(schema: IndexSchema, name: str, fallback: str) -> str:
    spec = schema.field(name)
    values = [v for v in (spec.examples if spec else ()) if isinstance(v, str) and v.strip()]
    return values[0] if values else fallback


# the few-shot sets by name, everywhere a set is named (TAO configs, the eval CLI, serving): one mapping
EXAMPLE_SETS = ("default", "basic", "none")


def _example(query: str, instruction: str | None, search_query: str, *filters: dict | None) -> dict:
    return {"query": query, "instruction": instruction,
            "plan": {"searches": [{"query": search_query, "filter": f} for f in filters]}}


def default_examples(schema: IndexSchema, kinds: str = "default") -> list[dict]:
    """Hand-written few-shot examples for the product schema, by set name (`EXAMPLE_SETS`).

    "default": one example per constraint type the benchmark asks for (brand in/out,
    colour in/out, price bound, minimum rating, recency) plus one without instructions, each keeping the
    request's own words as the query: a dropped word costs recall that no filter wins back. "basic": the
    earlier four (brand, colour, recency, none) with shortened queries, kept for the ablation. "none":
    zero-shot.
    """
    if kinds not in EXAMPLE_SETS:
        raise ValueError(f"example set must be one of {EXAMPLE_SETS}, got {kinds!r}")
    if kinds == "none":
        return []
    missing = [f for f in ("brand", "color", "price", "rating", "last_review_date") if schema.field(f) is None]
    if missing:
        raise ValueError(f"default examples need the product schema; missing fields {missing}")
    brand = _example_value(schema, "brand", "summitline")
    color = _example_value(schema, "color", "orange")
    since = years_before(schema.reference_date, 2).isoformat()
    brand_eq = {"field": "brand", "op": "eq", "value": brand}
    color_ne = {"field": "color", "op": "ne", "value": color}
    recent = {"field": "last_review_date", "op": "gte", "value": since}
    if kinds == "basic":
        return [
            _example("lightweight waterproof rain jacket for hiking", f"Only show me products made by {brand}.",
                     "lightweight waterproof rain jacket hiking", brand_eq),
            {"query": "an insulated water bottle that keeps drinks cold all day",
             "instruction": f"I don't want anything in {color}.",
             "plan": {"searches": [{"query": "insulated water bottle keeps drinks cold", "filter": color_ne},
                                   {"query": "vacuum insulated stainless steel bottle", "filter": color_ne}]}},
            _example("two person backpacking tent", "Only products with reviews from the last two years.",
                     "two person backpacking tent", recent),
            _example("Can you suggest comfortable trail running shoes with good grip?", None,
                     "comfortable trail running shoes grip", None),
        ]
    other_brand = next((v for v in (schema.field("brand").examples or ())[1:] if isinstance(v, str)), brand)
    other_color = next((v for v in (schema.field("color").examples or ())[1:] if isinstance(v, str)), color)
    examples = [
        ("What is a lightweight waterproof rain jacket for hiking?", f"Only show me products made by {brand}.",
         brand_eq),
        ("I need an insulated water bottle that keeps drinks cold all day.", f"I don't want anything in {color}.",
         color_ne),
        ("Looking for a two person backpacking tent.", "Only products with reviews from the last two years.",
         recent),
        ("Can you suggest comfortable trail running shoes with good grip?", None, None),
        ("Any recommendations for a compact camping stove?", f"Please leave out {other_brand}.",
         {"field": "brand", "op": "ne", "value": other_brand}),
        ("I want a fleece pullover for cold mornings.", f"Only ones available in {other_color}.",
         {"field": "color", "op": "contains", "value": other_color}),
        ("Which headlamp is good for night runs?", "It should cost $40 or less.",
         {"field": "price", "op": "lte", "value": 40}),
        ("Suggest a yoga mat with good cushioning.", "Only items rated 4.5 stars or higher.",
         {"field": "rating", "op": "gte", "value": 4.5}),
    ]
    return [_example(q, ins, q, f) for q, ins, f in examples]
