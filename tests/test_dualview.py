"""Pair synthesis (verified polarity reversal, matched budgets, the LLM path) and a tiny training run."""

import json

import numpy as np
import pytest

from pipelines.dualview.pairs import (
    arm_rows,
    available,
    llm_judge,
    load_pairs,
    matched_budget,
    save_pairs,
    swap_verifies,
    synthesize_pairs,
)
from rewards.doc_text import DocTexts, document_text
from stark_instruct.filters import matches
from stark_instruct.instructions import complement, constraint_filter, paraphrases


@pytest.fixture(scope="module")
def synthesized(tiny_benchmark):
    return synthesize_pairs(tiny_benchmark, "train", per_variant=3, seed=1)


def test_every_dual_pair_is_a_verified_swap(tiny_benchmark, synthesized):
    rows, counts = synthesized
    singles = {r["pair_id"]: r for r in rows if r["view"] == "single"}
    duals = [r for r in rows if r["view"] == "dual"]
    assert duals and counts["dual"] == len(duals)
    queries = {q["id"]: q for q in tiny_benchmark.queries("train")}
    answers = {q["base_id"]: set(q["relevant_ids"]) for q in queries.values() if q["kind"] == "none"}
    for d in duals:
        s = singles[d["pair_id"]]
        c, cc = json.loads(s["constraint"]), json.loads(d["constraint"])
        assert cc == complement(c)
        p, n = s["pos_id"], s["neg_id"]
        assert (d["pos_id"], d["neg_id"]) == (n, p)  # same documents, labels swapped
        assert (d["positive"], d["negative"]) == (s["negative"], s["positive"])
        f, g = constraint_filter(c), constraint_filter(cc)
        mp, mn = tiny_benchmark.meta(p), tiny_benchmark.meta(n)
        assert matches(f, mp) and not matches(g, mp)
        assert matches(g, mn) and not matches(f, mn)
        assert n in answers[s["base_id"]]  # n is topical: a base answer the instruction removed
        assert d["instruction"] in paraphrases(cc) and d["anchor"] != s["anchor"]


def test_single_view_rows_follow_the_qrels(tiny_benchmark, synthesized):
    rows, _ = synthesized
    queries = {q["id"]: q for q in tiny_benchmark.queries("train")}
    singles = [r for r in rows if r["view"] == "single"]
    assert singles
    for r in singles:
        rel = set(queries[r["variant_id"]]["relevant_ids"])
        assert r["pos_id"] in rel and r["neg_id"] not in rel
        assert r["instruction"] and r["instruction"] in r["anchor"]
    for r in (r for r in rows if r["view"] == "plain"):
        rel = set(queries[r["variant_id"]]["relevant_ids"])
        assert r["pos_id"] in rel and r["neg_id"] not in rel and r["anchor"] == queries[r["variant_id"]]["query"]


def test_swap_verification_rejects_a_missing_value():
    c = {"kind": "inclusion", "attribute": "price", "field": "price", "op": "lte", "value": 50.0}
    assert swap_verifies(c, complement(c), {"price": 20.0}, {"price": 80.0})
    assert not swap_verifies(c, complement(c), {"price": 20.0}, {"price": None})  # fails both c and c'
    assert not swap_verifies(c, complement(c), {"price": 80.0}, {"price": 20.0})  # labels the wrong way


def test_arms_have_matched_budgets(synthesized, tmp_path):
    rows, _ = synthesized
    budget = matched_budget(rows, 10_000)
    assert budget == min(available(rows).values()) // 4 * 4 and budget > 0
    arms = {arm: arm_rows(rows, arm, budget, seed=0) for arm in ("plain", "single", "dual", "dual_plain")}
    assert {len(v) for v in arms.values()} == {budget}
    assert {r["view"] for r in arms["plain"]} == {"plain"}
    mixed = [r["view"] for r in arms["dual_plain"]]
    assert mixed.count("plain") == budget // 2 and mixed.count("single") == mixed.count("dual") == budget // 4
    assert {r["view"] for r in arms["single"]} == {"single"}
    by_pair: dict[str, list[str]] = {}
    for r in arms["dual"]:
        by_pair.setdefault(r["pair_id"], []).append(r["view"])
    assert all(sorted(v) == ["dual", "single"] for v in by_pair.values())  # every triple comes with its twin
    with pytest.raises(ValueError):
        arm_rows(rows, "dual", budget + 1)
    ds = load_pairs(save_pairs(arms["dual"], tmp_path / "dual.jsonl"))
    assert len(ds) == budget and {"anchor", "positive", "negative", "view", "pos_id"} <= set(ds.column_names)


def test_free_text_instructions_go_through_the_generator_and_are_verified(tiny_benchmark):
    """Constraints hidden (free text): a fake LLM writes complements, half of them wrong; only verified swaps stay."""
    rows = tiny_benchmark.queries("train")
    by_text = {r["instruction"]: r["constraint"] for r in rows if r["constraint"]}
    for c in list(by_text.values()):
        for cc in (c, complement(c)):
            for text in paraphrases(cc):
                by_text.setdefault(text, cc)

    class FreeText:
        def __init__(self, bench):
            self.b, self.schema = bench, bench.schema

        def __getattr__(self, name):
            return getattr(self.b, name)

        def queries(self, split=None):
            return [{**r, "constraint": None} for r in self.b.queries(split)]

    calls = {"n": 0}

    def generate(prompt: str) -> str:
        calls["n"] += 1
        instruction = prompt.split('added the instruction: "', 1)[1].split('"\n', 1)[0]
        c = by_text[instruction]
        wrong = calls["n"] % 2 == 0  # every other answer just restates the instruction's own polarity
        return "Instruction: " + (paraphrases(c)[-1] if wrong else paraphrases(complement(c))[0])

    texts = DocTexts(tiny_benchmark)
    doc_of = {texts[d]: d for d in range(len(tiny_benchmark))}

    def judge(query, instruction, doc):
        return matches(constraint_filter(by_text[instruction]), tiny_benchmark.meta(doc_of[doc]))

    out, counts = synthesize_pairs(FreeText(tiny_benchmark), "train", per_variant=2, seed=0, generate=generate,
                                   judge=judge, index=tiny_benchmark.index())
    duals = [r for r in out if r["view"] == "dual"]
    assert counts["llm_tried"] > 0 and 0 < counts["llm_kept"] < counts["llm_tried"]
    assert len(duals) == counts["llm_kept"] and {r["complement_source"] for r in duals} == {"llm"}
    for d in duals:  # every kept twin really swaps the labels
        c = by_text[d["instruction"]]
        assert matches(constraint_filter(c), tiny_benchmark.meta(d["pos_id"]))
        assert not matches(constraint_filter(c), tiny_benchmark.meta(d["neg_id"]))


def test_llm_judge_parses_yes_and_no():
    answers = iter(["Yes, it does.", "no", "Maybe?"])
    judge = llm_judge(lambda prompt: next(answers))
    assert [judge("q", "i", "doc") for _ in range(3)] == [True, False, None]


def test_document_text_leads_with_the_instruction_attributes(tiny_benchmark):
    p, meta = tiny_benchmark.product(0), tiny_benchmark.meta(0)
    text = document_text(p, meta, tiny_benchmark.schema.reference_date, max_chars=400)
    assert len(text) <= 400 and text.startswith(p.title.rstrip("."))
    if p.brand:
        assert f"Brand: {p.brand}." in text[:200]


def test_tiny_training_run_changes_embeddings(tiny_benchmark, synthesized, tmp_path):
    from pipelines.dualview.train import train_encoder
    from rewards.rerank import load_encoder

    rows, _ = synthesized
    triples = arm_rows(rows, "dual", 6, seed=0)
    probe = [triples[0]["anchor"], triples[0]["positive"]]
    before = load_encoder(max_seq_length=64).encode(probe)
    info = train_encoder(triples, tmp_path, batch_size=3, max_steps=2, learning_rate=1e-4, max_seq_length=64)
    after = load_encoder(info["model"], 64).encode(probe)
    assert info["steps"] == 2 and info["triples"] == 6
    assert np.abs(before - after).max() > 1e-4


def test_unit_batches_keep_twins_together_and_one_pair_per_query(synthesized):
    from pipelines.dualview.batching import unit_batches

    rows, _ = synthesized
    triples = arm_rows(rows, "dual_plain", matched_budget(rows, 64), seed=0)
    batches = unit_batches(triples, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(triples)))  # every row exactly once
    assert max(len(b) for b in batches) <= 8
    where = {}
    for n, b in enumerate(batches):
        units = {}
        for i in b:
            where.setdefault(triples[i]["pair_id"], set()).add(n)
            units.setdefault(triples[i]["base_id"], set()).add(triples[i]["pair_id"])
        assert all(len(u) == 1 for u in units.values())  # one unit per base query in a batch
    assert all(len(v) == 1 for v in where.values())  # a pair and its twin share their batch
    assert unit_batches(triples, 8, seed=3) == batches and unit_batches(triples, 8, seed=4) != batches


def test_group_masked_loss_ignores_same_query_duplicates():
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from pipelines.dualview.loss import GroupMaskedMNRL

    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    # rows 0 and 1 are twins: the same two documents with swapped labels
    p[1], n[1] = n[0], p[0]
    masked = GroupMaskedMNRL(model=None, scale=20.0, doc_to_query=False)
    plain = MultipleNegativesRankingLoss(model=None, scale=20.0)
    groups = torch.tensor([7, 7, 8, 9])
    distinct = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(masked.compute_loss_from_embeddings([q, p, n], distinct),
                          plain.compute_loss_from_embeddings([q, p, n], distinct))
    # with the twin masked, row 0's softmax has no copy of its own positive among the negatives
    cols = torch.cat([p, n])
    s = torch.nn.functional.cosine_similarity(q[:, None], cols[None], dim=-1) * 20
    keep = [c for c in range(8) if c not in (1, 5)]
    row0 = -torch.log_softmax(s[0, keep], 0)[0]
    per_row = torch.nn.functional.cross_entropy(
        s.masked_fill(torch.tensor([[c in (1, 5) for c in range(8)], [c in (0, 4) for c in range(8)],
                                    [False] * 8, [False] * 8]), float("-inf")), torch.arange(4), reduction="none")
    assert torch.allclose(per_row[0], row0)
    assert torch.allclose(masked.compute_loss_from_embeddings([q, p, n], groups), per_row.mean())
    with pytest.raises(ValueError):
        masked.compute_loss_from_embeddings([q, p, n], torch.tensor([1, 2]))


def test_diagnosis_audits_pass_on_synthesized_pairs(tiny_benchmark, synthesized):
    from eval.followir import build_followir_set
    from pipelines.dualview.batching import unit_batches
    from pipelines.dualview.diagnose import Relevance, audit_batches, audit_followir, audit_swaps, composition

    rows, _ = synthesized
    relevant = Relevance(tiny_benchmark, "train")
    swaps = audit_swaps(rows, relevant)
    assert swaps["twins"] > 0 and swaps["not_same_documents"] == swaps["labels_not_swapped"] == 0
    assert swaps["single_negative_relevant"] == 0
    triples = arm_rows(rows, "dual", matched_budget(rows, 32), seed=0)
    audit = audit_batches(triples, unit_batches(triples, 8), relevant)
    assert audit["twin_pairs_in_one_batch"] == audit["twin_pairs"] > 0
    assert audit["same_base_row_pairs"] == 2 * audit["twin_pairs"]  # only twins share a query within a batch
    fs = build_followir_set(tiny_benchmark, "test", k=20)
    checked = audit_followir(fs, tiny_benchmark)
    assert checked["pairs"] == len(fs.qids) > 0
    assert sum(v for k, v in checked.items() if k != "pairs") == 0
    assert sum(composition(triples).values()) == len(triples)


def test_config_cli_parses_and_refuses_bad_values():
    from pipelines.dualview.run import parse_config

    cfg = parse_config(["--arms", "single", "dual", "--budget", "64", "--rerank-models", "none"])
    assert cfg.arms == ["single", "dual"] and cfg.budget == 64 and cfg.rerank_models == []
    assert parse_config([]).batching == "pairs"
    with pytest.raises(ValueError, match="--arms"):
        parse_config(["--arms", "triple"])
    with pytest.raises(ValueError, match="--rerank_models"):
        parse_config(["--arms", "single", "--rerank-models", "dual"])
    with pytest.raises(ValueError, match="--hard_negatives"):
        parse_config(["--hard-negatives", "3"])


def test_query_side_training_leaves_documents_to_the_base_encoder(tiny_benchmark, synthesized, tmp_path):
    from pipelines.dualview.train import train_encoder
    from rewards.rerank import default_base_model, document_encoder, load_encoder

    rows, _ = synthesized
    triples = arm_rows(rows, "dual", 6, seed=0)
    info = train_encoder(triples, tmp_path, batch_size=4, max_steps=2, learning_rate=1e-3, max_seq_length=32,
                         freeze_documents=True)
    assert info["freeze_documents"] and info["doc_to_query"]
    assert document_encoder(info["model"]) == default_base_model()
    probe = [triples[0]["anchor"]]
    assert np.abs(load_encoder(info["model"], 32).encode(probe) - load_encoder(None, 32).encode(probe)).max() > 1e-4
    with pytest.raises(ValueError, match="group-masked"):
        train_encoder(triples, tmp_path / "x", batching="no_duplicates", freeze_documents=True, max_steps=1)


def test_twin_margin_is_the_polarity_reversal_of_one_pair():
    import torch

    from pipelines.dualview.loss import GroupMaskedMNRL

    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    p[1], n[1] = n[0], p[0]  # rows 0 and 1 are twins (unit 0); rows 2 and 3 have none
    units = torch.tensor([[7, 0], [7, 0], [8, 1], [9, 2]])
    loss = GroupMaskedMNRL(model=None, scale=20.0, doc_to_query=False, twin_weight=1.0)
    cos = torch.nn.functional.cosine_similarity
    d = cos(q, p) - cos(q, n)
    want = torch.nn.functional.softplus(-20 * (d[0] + d[1]))
    assert torch.allclose(loss.twin_loss(q, p, n, units[:, 1]), want)
    # with fixed documents the margin is (A - A') . (p - n) on unit vectors: no plain-query term left
    unit = torch.nn.functional.normalize
    assert torch.allclose(d[0] + d[1], ((unit(q[0], dim=0) - unit(q[1], dim=0)) * (unit(p[0], dim=0) - unit(n[0], dim=0))).sum())
    base = GroupMaskedMNRL(model=None, scale=20.0, doc_to_query=False)
    assert torch.allclose(loss.compute_loss_from_embeddings([q, p, n], units),
                          base.compute_loss_from_embeddings([q, p, n], units[:, 0]) + want)
    assert loss.twin_loss(q, p, n, torch.arange(4)) == 0  # no twins in the batch: no term


def test_plain_view_masks_the_base_answers_of_its_own_query():
    import torch

    from pipelines.dualview.loss import GroupMaskedMNRL

    torch.manual_seed(1)
    q, p, n, n2, og = (torch.randn(3, 8) for _ in range(5))
    groups = torch.tensor([4, 4, 5])  # rows 0 and 1 share a base query
    loss = GroupMaskedMNRL(model=None, scale=20.0, doc_to_query=False, og_weight=0.5)
    cols = torch.cat([p, n2])
    s = torch.nn.functional.cosine_similarity(og[:, None], cols[None], dim=-1) * 20
    # row 0 competes with its own non-answer and row 2's documents, not with row 1's (same query)
    row0 = -torch.log_softmax(s[0, [0, 2, 3, 5]], 0)[0]
    row1 = -torch.log_softmax(s[1, [1, 2, 4, 5]], 0)[0]
    row2 = -torch.log_softmax(s[2], 0)[2]
    want = (row0 + row1 + row2) / 3
    assert torch.allclose(loss.plain_view_loss(og, p, n2, groups), want)
    base = GroupMaskedMNRL(model=None, scale=20.0, doc_to_query=False)
    assert torch.allclose(loss.compute_loss_from_embeddings([q, p, n, n2, og], groups),
                          base.compute_loss_from_embeddings([q, p, n, n2], groups) + 0.5 * want)
    with pytest.raises(ValueError):
        loss.compute_loss_from_embeddings([q, p, og], groups)


def test_soup_endpoints_are_the_two_models_and_the_midpoint_is_their_average(tmp_path):
    import torch

    from pipelines.dualview.soup import soup_encoders
    from rewards.rerank import DOCUMENT_ENCODER_FILE, default_base_model, load_encoder

    tuned = load_encoder(None, 32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.02 * torch.randn_like(p))
    tuned.save(str(tmp_path / "tuned"))
    anchor, probe = default_base_model(), ["phone cases", "phone cases, not by Lumia"]
    emb = {name: load_encoder(path, 32).encode(probe) for name, path in (("a", anchor), ("t", str(tmp_path / "tuned")))}
    assert np.abs(emb["a"] - emb["t"]).max() > 1e-3
    for w, want in ((0.0, emb["a"]), (1.0, emb["t"])):
        info = soup_encoders(anchor, tmp_path / "tuned", w, tmp_path / f"soup{w}")
        np.testing.assert_allclose(load_encoder(info["model"], 32).encode(probe), want, atol=1e-5)
    mid = load_encoder(soup_encoders(anchor, tmp_path / "tuned", 0.5, tmp_path / "mid")["model"], 32)
    got = mid.encode(probe)
    assert min(np.abs(got - emb["a"]).max(), np.abs(got - emb["t"]).max()) > 1e-4
    a_state, t_state = load_encoder(anchor).state_dict(), load_encoder(str(tmp_path / "tuned")).state_dict()
    for name, value in mid.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a_state[name] + t_state[name]) / 2)
    (tmp_path / "tuned" / DOCUMENT_ENCODER_FILE).write_text('{"document_encoder": "x"}')
    with pytest.raises(ValueError, match="query side only"):
        soup_encoders(anchor, tmp_path / "tuned", 0.5, tmp_path / "bad")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        soup_encoders(anchor, anchor, 1.5, tmp_path / "bad")


def test_task_arithmetic_soup_adds_part_of_the_tuned_shift_to_the_anchor(tmp_path):
    import torch

    from pipelines.dualview.soup import soup_encoders
    from rewards.rerank import default_base_model, load_encoder

    base = default_base_model()
    for i, name in enumerate(("anchor", "tuned")):
        m = load_encoder(None, 32)
        torch.manual_seed(i)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * torch.randn_like(p))
        m.save(str(tmp_path / name))
    states = {n: load_encoder(p).state_dict() for n, p in
              (("base", base), ("anchor", str(tmp_path / "anchor")), ("tuned", str(tmp_path / "tuned")))}
    info = soup_encoders(tmp_path / "anchor", tmp_path / "tuned", 0.4, tmp_path / "ta", method="task_arithmetic",
                         base=base)
    for name, value in load_encoder(info["model"]).state_dict().items():
        if value.is_floating_point():
            want = states["anchor"][name] + 0.4 * (states["tuned"][name] - states["base"][name])
            torch.testing.assert_close(value, want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="base model"):
        soup_encoders(tmp_path / "anchor", tmp_path / "tuned", 0.4, tmp_path / "x", method="task_arithmetic")


def test_soup_options_name_models_and_refuse_what_cannot_be_souped():
    from pipelines.dualview.run import model_label, parse_config, soup_comparisons, soup_models

    cfg = parse_config(["--soup", "plain", "--soup-weight", "0.6", "--arms", "plain", "single", "dual",
                        "--rerank-models", "dual_soup"])
    names = soup_models(vars(cfg))
    assert names == {"single_soup": ("single", 0.6), "dual_soup": ("dual", 0.6)}
    assert model_label("dual_soup", vars(cfg)) == "dual-view ⊕ plain (0.6)"
    pmrr, ndcg = soup_comparisons(vars(cfg))
    assert ("dual_soup", "single_soup") in pmrr and ("single_soup", "base") in pmrr
    assert ("dual_soup", "plain") in ndcg
    grid = soup_models(vars(parse_config(["--soup", "base", "--soup-weight", "0.3", "0.7"])))
    assert set(grid) == {"single_soup@0.3", "single_soup@0.7", "dual_soup@0.3", "dual_soup@0.7"}
    assert soup_models(vars(parse_config([]))) == {}
    with pytest.raises(ValueError, match="plain arm"):
        parse_config(["--soup", "plain", "--arms", "single", "dual"])
    with pytest.raises(ValueError, match="--soup_weight"):
        parse_config(["--soup", "base", "--soup-weight", "1.2"])
    with pytest.raises(ValueError, match="full encoders"):
        parse_config(["--soup", "base", "--freeze-documents"])
    with pytest.raises(ValueError, match="--soup_arms"):
        parse_config(["--soup", "plain", "--soup-arms", "plain"])
    with pytest.raises(ValueError, match="--soup_method"):
        parse_config(["--soup", "base", "--soup-method", "task_arithmetic"])
    ta = vars(parse_config(["--soup", "plain", "--soup-method", "task_arithmetic", "--soup-weight", "1"]))
    assert model_label("dual_soup", ta) == "dual-view + plain (1)"
