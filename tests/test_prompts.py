import datetime as dt
import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rewards.parse import parse_plan
from rewards.prompts import GRAMMAR, build_messages, default_examples, render_prompt
from stark_instruct.schema import product_schema

SCHEMA = product_schema(dt.date(2024, 2, 29), brands=["trailforge", "acme"], colors=["olive"], categories=["tents"])

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NO_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                      "{% endif %}" + TEMPLATE)


def tokenizer(template):
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    t.chat_template = template
    return t


def test_separate_mode_puts_instruction_in_system_spec():
    msgs = build_messages(SCHEMA, "a two person tent", "Only TrailForge products.", default_examples(SCHEMA))
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert user == "a two person tent"
    assert GRAMMAR in system
    assert SCHEMA.render() in system
    assert system.rstrip().endswith("## User instructions\nOnly TrailForge products.")
    assert system.count("Plan: ") == len(default_examples(SCHEMA)) == 8
    assert "Today is 2024-02-29" in system


def test_no_instruction_and_no_examples():
    system = build_messages(SCHEMA, "tent")[0]["content"]
    assert "## User instructions\n(none)" in system
    assert "## Examples" not in system


def test_merged_mode_has_no_instruction_section():
    ex = default_examples(SCHEMA)
    msgs = build_messages(SCHEMA, "a two person tent Only TrailForge products.", examples=ex, mode="merged")
    system = msgs[0]["content"]
    assert "User instructions" not in system
    assert msgs[1]["content"] == "a two person tent Only TrailForge products."
    # examples show the merged request, so the model sees one format
    assert f"Request: {ex[0]['query']} {ex[0]['instruction']}" in system


@pytest.mark.parametrize("kwargs,match", [
    ({"query": "tent", "mode": "both"}, "mode must be one of"),
    ({"query": "  "}, "non-empty string"),
    ({"query": "tent", "instruction": "only acme", "mode": "merged"}, "no separate instruction"),
    ({"query": "tent", "examples": [{"query": "x"}]}, "example 1 must be a dict"),
    ({"query": "tent", "examples": [{"query": "x", "instruction": 3, "plan": {}}]}, "instruction"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_messages(SCHEMA, **kwargs)


def test_basic_examples_are_valid_plans_covering_three_kinds_and_none():
    examples = default_examples(SCHEMA, "basic")
    assert len(examples) == 4
    assert examples[3]["instruction"] is None and parse_plan(json.dumps(examples[3]["plan"]), SCHEMA).searches[0].filter is None
    plans = [parse_plan(json.dumps(ex["plan"]), SCHEMA) for ex in examples]
    leaves = [p.searches[0].filter for p in plans]
    assert (leaves[0].field, leaves[0].op, leaves[0].value) == ("brand", "eq", "trailforge")
    assert (leaves[1].field, leaves[1].op) == ("color", "ne")
    assert all(s.filter == leaves[1] for s in plans[1].searches)  # the exclusion applies to every search
    # two years before a 29 February reference date
    assert (leaves[2].field, leaves[2].op, leaves[2].value) == ("last_review_date", "gte", dt.date(2022, 2, 28))


def test_default_examples_cover_every_constraint_type_and_keep_the_request_words():
    examples = default_examples(SCHEMA)
    kinds = set()
    for ex in examples:
        (search,) = parse_plan(json.dumps(ex["plan"]), SCHEMA).searches
        assert search.query == ex["query"]  # the request's own words are the query
        kinds.add(None if search.filter is None else (search.filter.field, search.filter.op))
    assert kinds == {("brand", "eq"), ("brand", "ne"), ("color", "contains"), ("color", "ne"), ("price", "lte"),
                     ("rating", "gte"), ("last_review_date", "gte"), None}
    with pytest.raises(ValueError, match="example set"):
        default_examples(SCHEMA, "nosuch")


def test_chat_mode_answers_each_example_in_a_turn_and_ends_with_the_request():
    examples = default_examples(SCHEMA)
    msgs = build_messages(SCHEMA, "a two person tent", "Only TrailForge products.", examples, mode="chat")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * len(examples) + ["user"]
    assert "## Examples" not in msgs[0]["content"] and "User instructions" not in msgs[0]["content"]
    assert SCHEMA.render() in msgs[0]["content"]
    assert json.loads(msgs[2]["content"]) == examples[0]["plan"]
    assert msgs[-1]["content"].startswith("Request: a two person tent\nUser instructions: Only TrailForge products.")
    none = build_messages(SCHEMA, "tent", None, (), mode="chat")
    assert none[-1]["content"] == "Request: tent\nUser instructions: (none)"


def test_compact_mode_is_chat_with_a_short_spec_of_what_filters_mean():
    chat = build_messages(SCHEMA, "a two person tent", "No Acme.", (), mode="chat")
    compact = build_messages(SCHEMA, "a two person tent", "No Acme.", (), mode="compact")
    assert compact[1:] == chat[1:]  # the same request turn
    spec = compact[0]["content"]
    assert GRAMMAR not in spec and SCHEMA.render() not in spec and len(spec) < 0.7 * len(chat[0]["content"])
    assert "ne = must not be" in spec and '"Skip the red ones." -> color ne "red"' in spec and "Today is 2024-02-29." in spec
    assert all(f"- {f.name}: " in spec for f in SCHEMA.fields)


def test_request_mode_is_the_compact_request_turn_without_the_spec():
    compact = build_messages(SCHEMA, "a two person tent", "No Acme.", (), mode="compact")
    request = build_messages(SCHEMA, "a two person tent", "No Acme.", (), mode="request")
    assert request == compact[-1:]  # the same request turn, no system spec: the distilled policy's prompt
    assert request[0]["role"] == "user" and request[0]["content"].startswith("Request: a two person tent\n")
    ex = [{"query": "tent", "instruction": None, "plan": {"searches": [{"query": "tent", "filter": None}]}}]
    with pytest.raises(ValueError, match="no few-shot examples"):
        build_messages(SCHEMA, "a tent", None, ex, mode="request")


def test_index_values_the_request_names_are_linked_in_the_prompt():
    schema = product_schema(dt.date(2024, 2, 29), ["trailforge"], ["red"], ["tents"],
                            {"brand": ["trailforge", "acme"], "color": ["red", "tan"]})
    msgs = build_messages(schema, "a tan tank top", "Only TrailForge, nothing in red.", (), mode="chat")
    # the request turn names the values of the whole request, the query's apart from the instructions'
    assert msgs[-1]["content"].endswith('Index values named in the query: color "tan".\n'
                                        'Index values named in the instructions: brand "trailforge", color "red".')
    both = build_messages(schema, "a red tent", "Only red ones.", (), mode="request")[-1]["content"]
    assert both.endswith('named in the query: color "red".\nIndex values named in the instructions: color "red".')
    system = build_messages(schema, "a tank top", "No tanks.")[0]["content"]  # "tan" is not in "tanks"
    assert "Index values named" not in system
    system = build_messages(schema, "a tan tank top", "Only TrailForge.")[0]["content"]  # separate mode
    assert system.endswith('Index values named in the instructions: brand "trailforge".')


def test_default_examples_need_product_fields():
    from stark_instruct.schema import FieldSpec, IndexSchema

    with pytest.raises(ValueError, match="missing fields"):
        default_examples(IndexSchema((FieldSpec("price", "number", "usd"),), dt.date(2020, 1, 1)))


def test_render_prompt_uses_chat_template():
    msgs = build_messages(SCHEMA, "tent", "Only acme.")
    text = render_prompt(tokenizer(TEMPLATE), msgs)
    assert text.startswith("<|system|>You are a query planner")
    assert "<|user|>tent<|end|>" in text
    assert text.endswith("<|assistant|>")


def test_render_prompt_folds_system_into_user_when_template_refuses_it():
    msgs = build_messages(SCHEMA, "tent", "Only acme.")
    text = render_prompt(tokenizer(NO_SYSTEM_TEMPLATE), msgs)
    assert "<|system|>" not in text
    assert text.startswith("<|user|>You are a query planner")
    assert text.endswith("Only acme.\n\ntent<|end|>\n<|assistant|>")


def test_render_prompt_without_template_is_a_clear_error():
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(tokenizer(None), build_messages(SCHEMA, "tent"))


def test_messages_for_query_modes_agree_with_the_row():
    import datetime as dt

    from rewards.prompts import messages_for_query
    from stark_instruct.schema import product_schema

    schema = product_schema(dt.date(2025, 6, 30))
    row = {"query": "rain jacket", "instruction": "Not Acme.", "merged_query": "rain jacket Not Acme."}
    sep = messages_for_query(schema, row, (), "separate")
    merged = messages_for_query(schema, row, (), "merged")
    assert sep[1]["content"] == "rain jacket" and "Not Acme." in sep[0]["content"]
    assert merged[1]["content"] == "rain jacket Not Acme." and "Not Acme." not in merged[0]["content"]
