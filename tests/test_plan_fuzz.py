"""Fuzzing the parser (no input string may crash it) and the executor (no result may violate its filter).

The four parser fuzzers together feed >= 10,000 completions: random unicode text, random JSON, mutated
valid plans, and adversarial packaging (wrappers, deep nesting, huge numbers, NaN).
"""

import datetime as dt
import json
import random

import jsonschema
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from rewards.execute import Executor
from rewards.parse import ERROR_CODES, PlanError, parse_plan
from rewards.plan import MAX_SEARCHES, SearchPlan, plan_json_schema, plan_to_json
from stark_instruct.filters import MAX_DEPTH, matches
from stark_instruct.records import derive_meta
from stark_instruct.schema import product_schema
from stark_instruct.synthetic import iter_products

REF = dt.date(2025, 6, 30)
PRODUCTS = [p for p, _ in iter_products(500, seed=11)]
METAS = {p.doc_id: derive_meta(p) for p in PRODUCTS}
BRANDS = sorted({m["brand"] for m in METAS.values() if m["brand"]})
COLORS = sorted({c for m in METAS.values() for c in m["color"]})
CATEGORIES = sorted({c for m in METAS.values() for c in m["category"]})
WORDS = sorted({w.lower() for p in PRODUCTS[:60] for w in p.title.split() if w.isalpha()})
SCHEMA = product_schema(REF, brands=BRANDS, colors=COLORS, categories=CATEGORIES)
VALIDATOR = jsonschema.Draft202012Validator(plan_json_schema(SCHEMA))

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


def check(text: str) -> None:
    """The parser's contract: a SearchPlan (whose canonical JSON re-parses to it) or a known PlanError."""
    try:
        plan = parse_plan(text, SCHEMA)
    except PlanError as e:
        assert e.code in ERROR_CODES, e.code
        assert isinstance(e.reason, str) and e.reason
        return
    assert isinstance(plan, SearchPlan) and 1 <= len(plan.searches) <= MAX_SEARCHES
    assert parse_plan(json.dumps(plan_to_json(plan)), SCHEMA) == plan  # canonical form round-trips


# ---- strategies ----------------------------------------------------------------------------------------

def leaf_values(ftype: str, op: str):
    if ftype in ("keyword", "keywords"):
        pool = {"keyword": BRANDS, "keywords": COLORS + CATEGORIES}[ftype]
        scalar = st.sampled_from(pool)
    elif ftype == "number":
        scalar = st.one_of(st.integers(0, 500), st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 2)))
    else:
        scalar = st.dates(dt.date(2000, 1, 1), dt.date(2026, 12, 31)).map(dt.date.isoformat)
    return st.lists(scalar, min_size=1, max_size=4) if op in ("in", "nin") else scalar


@st.composite
def leaves(draw):
    spec = draw(st.sampled_from(SCHEMA.fields))
    op = draw(st.sampled_from(spec.ops))
    return {"field": spec.name, "op": op, "value": draw(leaf_values(spec.type, op))}


def filters(depth: int = 1):
    if depth == MAX_DEPTH:
        return leaves()
    child = filters(depth + 1)
    return st.one_of(
        leaves(), leaves(),
        st.lists(child, min_size=1, max_size=2).map(lambda c: {"all": c}),
        st.lists(child, min_size=1, max_size=2).map(lambda c: {"any": c}),
        child.map(lambda c: {"not": c}),
    )


FILTERS = filters()


@st.composite
def searches(draw):
    words = draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=4))
    flt = draw(st.none() | FILTERS)
    if not words and flt is None:
        words = [draw(st.sampled_from(WORDS))]
    out = {"query": " ".join(words)}
    if flt is not None or draw(st.booleans()):
        out["filter"] = flt
    if draw(st.booleans()):
        out["weight"] = draw(st.floats(0.1, 10))
    return out


valid_plans = st.lists(searches(), min_size=1, max_size=MAX_SEARCHES).map(lambda s: {"searches": s})

KEYS = ["searches", "query", "filter", "weight", "field", "op", "value", "all", "any", "not", "name",
        "arguments", "function", "input"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(KEYS + ["brand", "price", "eq", "in", "gte", "2020-01-01"]),
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), c, max_size=5),
    max_leaves=12,
)
any_text = st.text(alphabet=st.characters(), max_size=400)  # all code points, surrogates included


# ---- parser fuzzing: 3000 + 500 + 1500 + 3500 + 1500 = 10,000 completions -------------------------------------

@settings(FUZZ, max_examples=3000)
@given(any_text)
def test_random_text(text):
    check(text)


WRAPPERS = ["{}", "```json\n{}\n```", "<tool_call>{}</tool_call>", "Plan: {} done"]


@settings(FUZZ, max_examples=500)
@given(json_values, st.sampled_from(WRAPPERS))
def test_random_json(value, wrapper):
    check(wrapper.replace("{}", json.dumps(value, ensure_ascii=False)))


@settings(FUZZ, max_examples=1500)
@given(st.randoms(use_true_random=True))
def test_random_plan_like_json(rng):
    value = random_json(rng, depth=-3) if rng.random() < 0.5 else {"searches": random_json(rng)}
    text = rng.choice(WRAPPERS).replace("{}", json.dumps(value, ensure_ascii=rng.random() < 0.5))
    note(text)
    check(text)


def random_filter(rng: random.Random, depth: int = 1) -> dict:
    """Plain-Python twin of `filters()`: the 10k-example fuzzers need plans far faster than composite
    strategies draw them on a shared 2-core machine; hypothesis still supplies (and reports) the seed."""
    kind = "leaf" if depth == MAX_DEPTH else rng.choice(["leaf", "leaf", "all", "any", "not"])
    if kind == "not":
        return {"not": random_filter(rng, depth + 1)}
    if kind != "leaf":
        return {kind: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    spec = rng.choice(SCHEMA.fields)
    op = rng.choice(spec.ops)

    def one():
        if spec.type == "keyword":
            return rng.choice(BRANDS)
        if spec.type == "keywords":
            return rng.choice(COLORS + CATEGORIES)
        if spec.type == "number":
            return rng.choice([rng.randint(0, 500), round(rng.uniform(0, 500), 2)])
        return (dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 9800))).isoformat()

    value = [one() for _ in range(rng.randint(1, 4))] if op in ("in", "nin") else one()
    return {"field": spec.name, "op": op, "value": value}


def random_plan(rng: random.Random) -> dict:
    out = []
    for _ in range(rng.randint(1, MAX_SEARCHES)):
        search = {"query": " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))}
        if rng.random() < 0.7:
            search["filter"] = random_filter(rng)
        if rng.random() < 0.3:
            search["weight"] = round(rng.uniform(0.1, 10), 2)
        out.append(search)
    return {"searches": out}


def random_json(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([None, True, 0, -1, 1e308, float("nan"), float("inf"), "", "x", rng.choice(KEYS),
                           "2020-02-30", 10**30, "\u0000", "é☃"])
    if r < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS + ["q", ""]): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def mutate(rng: random.Random) -> str:
    obj = random_plan(rng)
    if rng.random() < 0.5:  # swap a random sub-value for random JSON, keeping the rest intact
        parent, key, node = None, None, obj
        while isinstance(node, dict | list) and node and (parent is None or rng.random() < 0.6):
            key = rng.choice(sorted(node) if isinstance(node, dict) else range(len(node)))
            parent, node = node, node[key]
        parent[key] = random_json(rng)
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    for _ in range(rng.randint(0, 3)):
        i = rng.randint(0, len(text))
        j = rng.randint(i, min(len(text), i + 20))
        op = rng.choice(["delete", "insert", "truncate", "dup"])
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + "".join(rng.choices('{}[]",:0123456789.eE-naNulltrue \\', k=rng.randint(1, 6))) + text[i:]
        elif op == "truncate":
            text = text[:i]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(FUZZ, max_examples=3500)
@given(st.randoms(use_true_random=True))
def test_mutated_valid_plans(rng):
    text = mutate(rng)
    note(text)
    check(text)


def adversarial(rng: random.Random) -> str:
    n = rng.randint(1, 6000)
    inner = json.dumps(random_plan(rng))
    kind = rng.choice(["brackets", "objects", "nots", "digits", "specials", "wrapped", "many_braces"])
    if kind == "brackets":
        return "[" * n + "]" * rng.randint(0, n)
    if kind == "objects":
        return '{"searches": ' * n + "[]" + "}" * n
    if kind == "nots":
        m = n % 200
        return ('{"searches": [{"query": "tent", "filter": ' + '{"not": ' * m
                + '{"field": "brand", "op": "eq", "value": "x"}' + "}" * m + "}]}")
    if kind == "digits":
        num = rng.choice(["1" * n, "-" + "9" * n, "1e999", "-1e999", "0." + "0" * n + "1", "1e-999", "1" * 400])
        where = rng.choice(['"weight": {}', '"filter": {{"field": "price", "op": "gt", "value": {}}}',
                            '"filter": {{"field": "price", "op": "ne", "value": "{}"}}'])
        return '{"searches": [{"query": "tent", ' + where.format(num) + "}]}"
    if kind == "specials":
        val = rng.choice(["NaN", "Infinity", "-Infinity", "null", "true", '"\\ud800"', '"\\u0000"', "[]", "{}"])
        field = rng.choice(["query", "weight", "filter"])
        return '{"searches": [{"query": "tent", "' + field + '": ' + val + "}]}"
    if kind == "wrapped":
        wrap = rng.choice([
            '{{"name": "search", "arguments": {}}}', '{{"name": "s", "arguments": "{}"}}',
            '[{{"function": {{"name": "s", "arguments": {}}}}}]', "<tool_call>{}", "```json\n{}",
            '{{"name": "a", "arguments": {{"name": "b", "arguments": {{"name": "c", "arguments": '
            '{{"name": "d", "arguments": {}}}}}}}}}}}',
        ])
        payload = inner.replace('"', '\\"') if '"{}"' in wrap else inner
        noise = "".join(rng.choices("ab {}<>`\n", k=rng.randint(0, 20)))
        return noise + wrap.format(payload) + noise
    return "{" * n + inner


@settings(FUZZ, max_examples=1500)
@given(st.randoms(use_true_random=True))
def test_adversarial_packaging(rng):
    text = adversarial(rng)
    note(text[:2000])
    check(text)


@settings(FUZZ, max_examples=120)
@given(valid_plans)
def test_schema_accepts_generated_plans(plan_json):
    VALIDATOR.validate(plan_json)
    VALIDATOR.validate(plan_to_json(parse_plan(json.dumps(plan_json), SCHEMA)))


def test_wrapped_arguments_string_is_accepted():
    """The fuzzers' wrappers are not all noise: an escaped arguments string really parses."""
    inner = json.dumps({"searches": [{"query": "tent"}]})
    assert parse_plan('{"name": "s", "arguments": "' + inner.replace('"', '\\"') + '"}', SCHEMA).searches[0].query == "tent"


# ---- execution never violates filters -------------------------------------------------------------------

@pytest.fixture(scope="module", params=["tantivy", "bm25"])
def executor(request, tiny_benchmark):
    return Executor(tiny_benchmark.index(request.param), depth=50), tiny_benchmark


@settings(FUZZ, max_examples=150)
@given(plan_json=valid_plans)
def test_executed_plans_respect_filters(executor, plan_json):
    executor, bench = executor
    plan = parse_plan(json.dumps(plan_json), bench.schema)  # generated plans are valid by construction
    ranking = executor.run(plan)
    assert len(ranking) == len(set(ranking)) <= executor.depth
    for s in plan.searches:
        for doc, _ in executor.search(s.query, s.filter):
            assert matches(s.filter, bench.meta(doc)), (s, bench.meta(doc))
    for doc in ranking:
        assert any(matches(s.filter, bench.meta(doc)) for s in plan.searches)
