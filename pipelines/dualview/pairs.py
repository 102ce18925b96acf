"""Training triples for an instruction-aware encoder, with polarity-reversed (dual-view) twins.

From each instructed variant (query q, instruction c, qrels R within the base answer set A) we take a
relevant document p ∈ R and a topical hard negative n that violates c (n ∈ A \\ R, i.e. the instruction
filtered it out, ranked by BM25 for q; failing that, a top BM25 hit that fails c's filter). The twin
shows the same pair under the complementary instruction c' with the labels swapped: (q + c', n, p).
For structured constraints c' = `complement(c)` and the swap is verified on metadata (p satisfies c and
not c'; n satisfies c' and not c; n ∈ A so it is topical); for free-text instructions a text generator
writes c' and a judge must confirm the swap. A pair that does not verify gets no twin: a wrong twin
would teach the encoder the opposite of the instruction.

Rows carry `anchor`, `positive`, `negative` (the columns the trainer reads), `view`
("plain"|"single"|"dual") and ids; they are written as JSONL that `datasets` loads directly.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rewards.doc_text import DOC_CHARS, DocTexts
from stark_instruct.filters import matches

Generate = Callable[[str], str]  # prompt -> completion (local transformers, an API planner, a test fake)
Judge = Callable[[str, str, str], bool | None]  # (query, instruction, document text) -> satisfied? None: unsure

VIEWS = ("plain", "single", "dual")
ARMS = ("plain", "single", "dual", "dual_plain")
TRAIN_COLUMNS = ("anchor", "positive", "negative")
SECOND_NEGATIVE = "negative_2"  # a top BM25 non-answer of the base query: wrong under every instruction


# --- texts the encoder sees ---------------------------------------------------------------------------


def anchor_text(query: str, instruction: str | None = None) -> str:
    """Query plus instruction, merged the way the benchmark merges them, so training matches serving."""
    if not instruction:
        return query.strip()
    try:
        from stark_instruct.instructions import merge
    except ImportError:  # the benchmark package without its instruction module (early checkouts)
        return f"{query.strip()} {instruction.strip()}"
    return merge(query, instruction)


# --- free-text instructions: an LLM writes the complement, a judge verifies it -------------------------

COMPLEMENT_PROMPT = """You write search instructions for a product search engine.
A shopper searched for: "{query}"
and added the instruction: "{instruction}"

Document A satisfies the instruction:
{pos}

Document B matches the search but violates the instruction:
{neg}

Write the complementary instruction: one sentence in the same style under which Document B is what the \
shopper wants and Document A is not. Reply with the instruction only."""

JUDGE_PROMPT = """Search: "{query}"
Instruction: "{instruction}"
Product: {doc}

Does the product satisfy the instruction? Answer yes or no."""


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(complementary instruction|instruction)\s*:\s*", "", line.strip(), flags=re.I)
        line = line.strip().strip('"').strip("'").strip()
        if line:
            return line
    return ""


def llm_complement(query: str, instruction: str, pos_text: str, neg_text: str, generate: Generate) -> str | None:
    """Ask a text generator for the instruction under which the two documents swap labels (None: unusable)."""
    out = _first_line(generate(COMPLEMENT_PROMPT.format(query=query, instruction=instruction,
                                                        pos=pos_text[:600], neg=neg_text[:600])))
    if not out or len(out) > 300 or out.casefold() == instruction.strip().casefold():
        return None
    return out


def llm_judge(generate: Generate) -> Judge:
    """A judge backed by the same generator: yes/no on whether a document satisfies an instruction."""

    def judge(query: str, instruction: str, doc: str) -> bool | None:
        answer = (generate(JUDGE_PROMPT.format(query=query, instruction=instruction, doc=doc[:600])) or "")
        word = re.match(r"\W*(\w+)", answer.casefold())
        if word and word.group(1) in ("yes", "true"):
            return True
        if word and word.group(1) in ("no", "false"):
            return False
        return None

    return judge


# --- synthesis -----------------------------------------------------------------------------------------


def _constraint_json(c: dict | None) -> str | None:
    return json.dumps(c, sort_keys=True, default=str) if c is not None else None


def swap_verifies(constraint: dict, complement_constraint: dict, pos_meta: dict, neg_meta: dict) -> bool:
    """p satisfies c and violates c'; n satisfies c' and violates c (on the reference filter semantics)."""
    from stark_instruct.instructions import constraint_filter

    f, g = constraint_filter(constraint), constraint_filter(complement_constraint)
    return (matches(f, pos_meta) and not matches(g, pos_meta)
            and matches(g, neg_meta) and not matches(f, neg_meta))


class _Ranker:
    """BM25 rankings of base queries, computed once per query text."""

    def __init__(self, index: Any, depth: int):
        self.index, self.depth = index, depth
        self._cache: dict[str, list[int]] = {}

    def __call__(self, query: str) -> list[int]:
        if query not in self._cache:
            self._cache[query] = [int(d) for d, _ in self.index.search(query, k=self.depth)]
        return self._cache[query]


def _by_rank(ids: Iterable[int], ranking: Sequence[int]) -> list[int]:
    pos = {d: i for i, d in enumerate(ranking)}
    return sorted(set(ids), key=lambda d: (pos.get(d, len(pos)), d))


def synthesize_pairs(bench: Any, split: str = "train", *, engine: str = "tantivy", depth: int = 100,
                     per_variant: int = 4, seed: int = 0, generate: Generate | None = None,
                     judge: Judge | None = None, llm_for_structured: bool = False,
                     max_chars: int = DOC_CHARS, index: Any = None,
                     plain_per_query: int | None = None) -> tuple[list[dict], dict]:
    """Plain, single-view and dual-view rows for one split; returns (rows, counts).

    Up to `per_variant` (p, n) pairs per instructed variant and `plain_per_query` (default: 3 x
    per_variant, as a base query has about three variants) per base query for the plain arm. Structured
    constraints get programmatic complements; free-text ones (constraint None, or all of them with
    `llm_for_structured`) go through `generate` and are kept only if `judge` (default: an LLM judge on
    `generate`) confirms that n satisfies the complement and p does not.
    """
    from stark_instruct.instructions import complement, constraint_filter, paraphrases

    rng = random.Random(seed)
    index = index if index is not None else bench.index(engine=engine)
    ranker = _Ranker(index, depth)
    texts = DocTexts(bench, max_chars)
    if generate is not None and judge is None:
        judge = llm_judge(generate)
    rows_q = list(bench.queries(split))
    answer_sets = {r["base_id"]: [int(i) for i in r["relevant_ids"]] for r in rows_q if r["kind"] == "none"}
    counts = {"variants": 0, "plain": 0, "single": 0, "dual": 0, "no_positive": 0, "no_negative": 0,
              "swap_rejected": 0, "llm_tried": 0, "llm_kept": 0, "bm25_negatives": 0}
    out: list[dict] = []

    def row(view: str, src: dict, j: int, anchor: str, pos: int, neg: int, neg2: int, **extra: Any) -> dict:
        return {"id": f"{src['id']}:{j}:{view}", "pair_id": f"{src['id']}:{j}", "variant_id": str(src["id"]),
                "base_id": str(src["base_id"]), "split": split, "view": view, "anchor": anchor,
                "positive": texts[pos], "negative": texts[neg], "negative_2": texts[neg2], "pos_id": int(pos),
                "neg_id": int(neg), "neg2_id": int(neg2), "query": src["query"], **extra}

    for src in rows_q:
        ranking = ranker(src["query"])
        answers = answer_sets.get(src["base_id"])
        if src["kind"] == "none":
            rel = set(int(i) for i in src["relevant_ids"])
            n_plain = plain_per_query or 3 * per_variant
            positives = rng.sample(sorted(rel), min(n_plain, len(rel)))
            outside = [d for d in ranking if d not in rel]
            negatives = outside[:n_plain]
            for j, (p, n) in enumerate(zip(positives, negatives, strict=False)):
                n2 = outside[(n_plain + j) % len(outside)]
                out.append(row("plain", src, j, anchor_text(src["query"]), p, n, n2, kind="none",
                               instruction=None, constraint=None, neg_source="bm25", complement_source=None))
                counts["plain"] += 1
            continue
        counts["variants"] += 1
        c = src.get("constraint")
        rel = set(int(i) for i in src["relevant_ids"])
        if not rel:
            counts["no_positive"] += 1
            continue
        f = constraint_filter(c) if c is not None else None
        # Topical violators: in the base answer set but filtered out by the instruction, hardest first.
        topical = _by_rank((a for a in answers or () if a not in rel), ranking)
        if f is not None:
            topical = [d for d in topical if not matches(f, bench.meta(d))]
        answer_set = set(answers or ())
        outside = [d for d in ranking if d not in answer_set]  # off-topic for every instruction
        bm25_neg = [d for d in outside if d not in rel and (f is None or not matches(f, bench.meta(d)))]
        negatives = topical[:per_variant] or bm25_neg[:per_variant]
        if not negatives:
            counts["no_negative"] += 1
            continue
        if not topical:
            counts["bm25_negatives"] += 1
        positives = rng.sample(_by_rank(rel, ranking)[: 4 * per_variant], min(per_variant, len(rel)))
        comp = None
        if c is not None and not llm_for_structured:
            try:
                comp = complement(c)
            except (ValueError, KeyError):
                comp = None
        for j in range(min(len(positives), per_variant)):
            p, n = positives[j], negatives[j % len(negatives)]
            n2 = outside[j % len(outside)] if outside else n  # the second negative, shared by both views
            instr = src["instruction"] if j == 0 or c is None else rng.choice(paraphrases(c))
            out.append(row("single", src, j, anchor_text(src["query"], instr), p, n, n2, kind=src["kind"],
                           instruction=instr, constraint=_constraint_json(c),
                           neg_source="answer_set" if topical else "bm25", complement_source=None))
            counts["single"] += 1
            if not topical:  # n is not topical: nothing makes it relevant under any instruction
                continue
            twin_instr, twin_c, source = None, None, None
            if comp is not None:
                if swap_verifies(c, comp, bench.meta(p), bench.meta(n)):
                    twin_instr, twin_c, source = rng.choice(paraphrases(comp)), comp, "programmatic"
            elif generate is not None:
                counts["llm_tried"] += 1
                cand = llm_complement(src["query"], src["instruction"], texts[p], texts[n], generate)
                if cand is not None and judge(src["query"], cand, texts[n]) is True \
                        and judge(src["query"], cand, texts[p]) is False:
                    twin_instr, source = cand, "llm"
                    counts["llm_kept"] += 1
            if twin_instr is None:
                counts["swap_rejected"] += 1
                continue
            out.append(row("dual", src, j, anchor_text(src["query"], twin_instr), n, p, n2,
                           kind=(twin_c or {}).get("kind", "free_text"), instruction=twin_instr,
                           constraint=_constraint_json(twin_c), neg_source="answer_set",
                           complement_source=source))
            counts["dual"] += 1
    return out, counts


# --- arms at matched budgets ---------------------------------------------------------------------------


def available(rows: Sequence[dict]) -> dict[str, int]:
    """How many triples each arm could use: plain rows, single rows, and twinned pairs x 2 for dual."""
    twinned = {r["pair_id"] for r in rows if r["view"] == "dual"}
    return {"plain": sum(r["view"] == "plain" for r in rows), "single": sum(r["view"] == "single" for r in rows),
            "dual": 2 * len(twinned)}


def matched_budget(rows: Sequence[dict], requested: int) -> int:
    """The largest budget (a multiple of 4) every arm can fill, capped at `requested`.

    Arms must see equal triple counts; dual needs pairs of rows, dual_plain half plain and half pairs.
    """
    budget = min(requested, *available(rows).values())
    return budget - budget % 4


def arm_rows(rows: Sequence[dict], arm: str, budget: int, seed: int = 0) -> list[dict]:
    """`budget` training triples for one arm, shuffled.

    plain: base queries without instructions; single: instructed triples; dual: budget/2 instructed
    triples that have a verified twin, plus those twins (same documents, swapped labels); dual_plain:
    budget/2 plain triples plus budget/4 twinned pairs (the paper's diversity + instruction mix).
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms are {', '.join(ARMS)}")
    rng = random.Random(f"{seed}:{arm}")
    if arm in ("plain", "single"):
        pool = [r for r in rows if r["view"] == arm]
        if len(pool) < budget:
            raise ValueError(f"arm {arm!r} has {len(pool)} triples, budget is {budget}")
        return rng.sample(pool, budget)
    step = 2 if arm == "dual" else 4
    if budget % step:
        raise ValueError(f"arm {arm!r} needs a budget divisible by {step}, got {budget}")
    n_pairs = budget // 2 if arm == "dual" else budget // 4
    twins = {r["pair_id"]: r for r in rows if r["view"] == "dual"}
    singles = {r["pair_id"]: r for r in rows if r["view"] == "single" and r["pair_id"] in twins}
    if len(singles) < n_pairs:
        raise ValueError(f"arm {arm!r} has {len(singles)} twinned pairs, budget needs {n_pairs}")
    chosen = rng.sample(sorted(singles), n_pairs)
    out = [singles[k] for k in chosen] + [twins[k] for k in chosen]
    if arm == "dual_plain":
        plain = [r for r in rows if r["view"] == "plain"]
        if len(plain) < budget // 2:
            raise ValueError(f"arm 'dual_plain' has {len(plain)} plain triples, budget needs {budget // 2}")
        out += rng.sample(plain, budget // 2)
    rng.shuffle(out)
    return out


def save_pairs(rows: Iterable[dict], path: str | Path) -> Path:
    """JSONL, written atomically; `load_pairs` (or `datasets.load_dataset("json", ...)`) reads it."""
    from ir_core.io import write_jsonl

    return write_jsonl(path, rows)


def load_pairs(path: str | Path) -> Any:
    """The rows as a `datasets.Dataset`."""
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")
