"""HFPlanner on a tiny random Llama built in-process: shapes, usage, seeded reproducibility,
truncation, LoRA adapters, and grammar-constrained decoding that always yields schema-valid JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest
import torch

from ir_core.types import PlanRequest
from pipelines.backends.hf import TRUNCATED, HFPlanner

_spec = importlib.util.spec_from_file_location("tiny_lm", Path(__file__).parent / "fakes" / "tiny_lm.py")
tiny_lm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_lm)

# Every string and array is bounded, so even a random model must close the JSON within the budget.
SCHEMA = {
    "type": "object",
    "properties": {"searches": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 8},
            "filter": {"type": "object", "properties": {
                "field": {"enum": ["brand", "color"]}, "op": {"enum": ["eq", "ne"]},
                "value": {"type": "string", "maxLength": 6}},
                "required": ["field", "op", "value"], "additionalProperties": False},
        },
        "required": ["query"], "additionalProperties": False}}},
    "required": ["searches"], "additionalProperties": False,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return tiny_lm.tiny_tokenizer()


def _requests(k: int = 3) -> list[PlanRequest]:
    return [PlanRequest(f"q{i}", [{"role": "system", "content": "Write a search plan."},
                                  {"role": "user", "content": f"find tents number {i}"}]) for i in range(k)]


def test_sample_shapes_usage_and_seeded_reproducibility(tok):
    model = tiny_lm.tiny_model(tok, eos_bias=3.0)
    p = HFPlanner("tiny", model=model, tokenizer=tok, batch_size=4, max_new_tokens=40)
    reqs = _requests(3)
    rng_before = torch.random.get_rng_state()
    a = p.sample(reqs, n=3, temperature=1.0, top_p=0.95, seed=0)
    assert torch.equal(rng_before, torch.random.get_rng_state())  # global RNG left alone
    assert [len(r) for r in a] == [3, 3, 3]

    rendered = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
    prompt_lens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in rendered]
    finished = 0
    for i, samples in enumerate(a):
        for resp in samples:
            assert resp.usage["input_tokens"] == prompt_lens[i]
            assert 1 <= resp.usage["output_tokens"] <= 40
            if resp.error is None:
                finished += 1
                assert isinstance(resp.text, str)
            else:
                assert resp.error == TRUNCATED and resp.text is None and resp.usage["output_tokens"] == 40
    assert finished >= 3  # the EOS bias makes most samples stop on their own

    texts = [[r.text for r in s] for s in a]
    assert texts == [[r.text for r in s] for s in p.sample(reqs, n=3, temperature=1.0, top_p=0.95, seed=0)]
    assert texts != [[r.text for r in s] for s in p.sample(reqs, n=3, temperature=1.0, top_p=0.95, seed=1)]
    assert len({t for s in texts for t in s}) > 3  # samples differ from each other

    # temperature 0 is greedy: n copies of plan()'s answer
    greedy = p.plan(reqs)
    assert [[r.text for r in s] for s in p.sample(reqs, n=2, temperature=0.0, top_p=1.0, seed=5)] == \
        [[g.text, g.text] for g in greedy]


def test_truncated_outputs_are_invalid(tok):
    p = HFPlanner("tiny", model=tiny_lm.tiny_model(tok), tokenizer=tok, max_new_tokens=3)
    out = p.plan(_requests(2))
    # a random model without the EOS bias essentially never stops within 3 tokens
    assert all(r.text is None and r.error == TRUNCATED and r.usage["output_tokens"] == 3 for r in out)


def test_bad_request_does_not_sink_the_batch(tok):
    p = HFPlanner("tiny", model=tiny_lm.tiny_model(tok, eos_bias=3.0), tokenizer=tok, max_new_tokens=8)
    reqs = _requests(2)
    reqs.insert(1, PlanRequest("bad", [{"role": "user"}]))  # no content: the template cannot render it
    out = p.plan(reqs)
    assert len(out) == 3
    assert out[1].text is None and out[1].error.startswith("prompt_error")
    assert out[0].error in (None, TRUNCATED) and out[2].error in (None, TRUNCATED)


def test_constrained_samples_always_match_the_schema(tok):
    model = tiny_lm.tiny_model(tok, eos_bias=3.0)
    reqs = _requests(3)
    free = HFPlanner("tiny", model=model, tokenizer=tok, max_new_tokens=96)
    unconstrained = [r for s in free.sample(reqs, n=3, temperature=1.0, top_p=1.0, seed=0) for r in s]

    def valid(resp) -> bool:
        if resp.text is None:
            return False
        try:
            jsonschema.validate(json.loads(resp.text), SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            return False
        return True

    assert not any(valid(r) for r in unconstrained)

    p = HFPlanner("tiny", model=model, tokenizer=tok, max_new_tokens=96, constrained=True, json_schema=SCHEMA)
    out = [r for s in p.sample(reqs, n=3, temperature=1.0, top_p=1.0, seed=0) for r in s] + p.plan(reqs)
    assert len(out) == 12
    for r in out:
        assert r.error is None, r.error
        assert valid(r), r.text
        assert r.text == json.dumps(json.loads(r.text), separators=(",", ":"), ensure_ascii=False)  # compact


def test_constrained_needs_a_schema(tok):
    with pytest.raises(ValueError, match="json_schema"):
        HFPlanner("tiny", model=tiny_lm.tiny_model(tok), tokenizer=tok, constrained=True)


def test_lora_adapter_is_applied(tok, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_lm.tiny_model(tok)  # (a sequence_bias does not survive save_pretrained's JSON)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    # init_lora_weights=False: random A and B, so the adapter really changes the model
    peft = get_peft_model(tiny_lm.tiny_model(tok), LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")

    plain = HFPlanner(tmp_path / "base", device="cpu", max_new_tokens=24)
    tuned = HFPlanner(tmp_path / "base", adapter_path=tmp_path / "adapter", device="cpu", max_new_tokens=24)
    assert tuned.tokenizer.padding_side == "left" and tuned.tokenizer.pad_token is not None
    assert "adapter" in tuned.name
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        base_logits = plain.model(ids).logits
        tuned_logits = tuned.model(ids).logits
        peft_logits = peft.eval()(ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-4)
    assert torch.allclose(tuned_logits, peft_logits, atol=1e-4)  # merged adapter == PEFT forward
    for planner in (plain, tuned):  # let the random models stop, so there are texts to compare
        planner.model.generation_config.sequence_bias = {(tok.eos_token_id,): 3.0}
    reqs = _requests(2)
    plain_texts = [r.text for s in plain.sample(reqs, 2, 1.0, 1.0, 0) for r in s]
    tuned_texts = [r.text for s in tuned.sample(reqs, 2, 1.0, 1.0, 0) for r in s]
    assert any(t is not None for t in plain_texts) and plain_texts != tuned_texts


def test_shared_prefill_matches_plain_num_return_sequences(tok):
    """Prefilling once and copying the KV cache n times samples exactly what n separate prefills do."""
    model = tiny_lm.tiny_model(tok, eos_bias=3.0)
    reqs = _requests(3)
    reqs[1] = PlanRequest("long", reqs[1].messages + [{"role": "user", "content": "and more words here"}])
    p = HFPlanner("tiny", model=model, tokenizer=tok, batch_size=9, max_new_tokens=24)
    shared = p.sample(reqs, n=3, temperature=1.0, top_p=1.0, seed=4)
    p.share_prefill = False
    plain = p.sample(reqs, n=3, temperature=1.0, top_p=1.0, seed=4)
    assert [[(r.text, r.error, r.usage) for r in s] for s in shared] == \
        [[(r.text, r.error, r.usage) for r in s] for s in plain]


def test_common_prefix_is_prefilled_once_with_the_same_greedy_plans(tok):
    """Queries share the system spec: computing its cache once per batch changes no plan."""
    from pipelines.backends.hf import common_prefix_len, pad_after_prefix

    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_len([[7, 8], [7, 8]]) == 1  # every row keeps its last token
    ids, mask = pad_after_prefix([[1, 2, 3, 4], [1, 2, 5]], 2, 0)
    assert ids.tolist() == [[1, 2, 3, 4], [1, 2, 0, 5]] and mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 1]]

    model = tiny_lm.tiny_model(tok, eos_bias=2.0)
    spec = "You plan searches. " + "Fields: brand, colour, price, rating and review dates. " * 6
    reqs = [PlanRequest(f"q{i}", [{"role": "system", "content": spec},
                                  {"role": "user", "content": "tents " * (i + 1)}]) for i in range(4)]
    p = HFPlanner("tiny", model=model, tokenizer=tok, batch_size=4, max_new_tokens=24)
    calls = []
    forward = model.forward
    model.forward = lambda *a, **kw: calls.append(kw["input_ids"].shape) or forward(*a, **kw)
    shared = p.plan(reqs) + p.sample(reqs, n=2, temperature=1.0, top_p=1.0, seed=1)[0]
    assert calls[0][0] == 1 and calls[0][1] > 40  # the spec, once, as a batch of one
    p.share_prefill = False
    plain = p.plan(reqs) + p.sample(reqs, n=2, temperature=1.0, top_p=1.0, seed=1)[0]
    assert [(r.text, r.error, r.usage) for r in shared] == [(r.text, r.error, r.usage) for r in plain]
    assert any(r.text for r in shared)


def test_each_request_decodes_under_its_own_schema(tok):
    model = tiny_lm.tiny_model(tok, eos_bias=3.0)

    def only(query: str) -> dict:
        return {"type": "object", "properties": {"searches": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "properties": {"query": {"enum": [query]}}, "required": ["query"],
            "additionalProperties": False}}}, "required": ["searches"], "additionalProperties": False}

    reqs = _requests(3)
    reqs[0].json_schema, reqs[2].json_schema = only("ab"), only("cd")
    p = HFPlanner("tiny", model=model, tokenizer=tok, batch_size=6, max_new_tokens=96, constrained=True,
                  json_schema=SCHEMA)
    samples = p.sample(reqs, n=2, temperature=1.0, top_p=1.0, seed=0)
    greedy = [[r] for r in p.plan(reqs)]
    for per_request in (samples, greedy):
        assert all(json.loads(r.text) == {"searches": [{"query": "ab"}]} for r in per_request[0])
        assert all(json.loads(r.text) == {"searches": [{"query": "cd"}]} for r in per_request[2])
        for r in per_request[1]:  # no schema of its own: the planner's
            jsonschema.validate(json.loads(r.text), SCHEMA)
