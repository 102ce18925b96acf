"""The embedded default knowledge base: a deterministic synthetic Sports & Outdoors catalogue.

Product i depends only on (seed, i), so catalogues of different sizes share their first products and a
chunk can be generated anywhere. It is built to be hard for keyword search: product families of
near-duplicates that differ in one attribute, words shared across product types, attribute synonyms,
reviews that mention other brands and features the product lacks, and review dates over 15 years.
Base queries are StaRK-style: a product type plus attributes, answered by every product that has them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import multiprocessing as mp
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stark_instruct.filters import normalize_keyword
from stark_instruct.records import Product, format_review_time
from stark_instruct.vocab import (
    BRAND_HEADS,
    BRAND_TAILS,
    COLORS,
    FEATURES,
    LINE_NAMES,
    LINE_SUFFIXES,
    MATERIALS,
    PRODUCT_TYPES,
    REVIEW_SUMMARIES_BAD,
    REVIEW_SUMMARIES_GOOD,
    USES,
)

REFERENCE_DATE = dt.date(2025, 6, 30)
FAMILY_SIZE = 3
N_BRANDS = 500
FEATURE_NAMES = list(FEATURES)
MATERIAL_NAMES = list(MATERIALS)
USE_NAMES = list(USES)
COLOR_NAMES = list(COLORS)


def brand_names(n: int = N_BRANDS) -> list[str]:
    """Distinct invented brand names, most frequent first (Zipf ranks)."""
    rng = random.Random(12345)
    names = sorted({h + t for h in BRAND_HEADS for t in BRAND_TAILS})
    rng.shuffle(names)
    return names[:n]


BRANDS = brand_names()
_BRAND_WEIGHTS = np.cumsum(1.0 / np.arange(1, N_BRANDS + 1) ** 1.05)
_BRAND_WEIGHTS /= _BRAND_WEIGHTS[-1]
_TYPE_WEIGHTS = np.cumsum(np.random.default_rng(7).uniform(0.6, 1.4, len(PRODUCT_TYPES)))
_TYPE_WEIGHTS /= _TYPE_WEIGHTS[-1]


@dataclass(frozen=True)
class Attributes:
    """What a product *is*, independent of how its text words it; base-query answers are defined on it."""

    ptype: int
    material: int
    uses: int  # bitmask over USE_NAMES
    features: int  # bitmask over FEATURE_NAMES
    colors: int  # bitmask over COLOR_NAMES


def _rng(seed: int, kind: str, i: int) -> random.Random:
    """A generator that depends only on its arguments (str seeds hash stably, unlike hash())."""
    return random.Random(f"{seed}:{kind}:{i}")


_BRAND_CUM = _BRAND_WEIGHTS.tolist()  # bisect on a list: what np.searchsorted(side="right") finds, 10x faster
_TYPE_CUM = _TYPE_WEIGHTS.tolist()


def _pick(rng: random.Random, cum: list[float]) -> int:
    return bisect.bisect_right(cum, rng.random())


def _bits(names: list[str], universe: list[str]) -> int:
    return sum(1 << universe.index(n) for n in names)


@lru_cache(maxsize=64)  # products of one family are generated together; never mutated by callers
def _family(seed: int, fam: int) -> dict:
    rng = _rng(seed, "family", fam)
    t = _pick(rng, _TYPE_CUM)
    spec = PRODUCT_TYPES[t]
    feats = [f for f in spec["feat"] if rng.random() < 0.4] or [rng.choice(spec["feat"])]
    uses = [rng.choice(spec["use"])]
    if rng.random() < 0.3:
        uses.append(rng.choice(spec["use"]))
    return {
        "ptype": t,
        "brand": BRANDS[_pick(rng, _BRAND_CUM)],
        "line": rng.choice(LINE_NAMES) + rng.choice(LINE_SUFFIXES),
        "material": rng.choice(spec["mat"]),
        "uses": sorted(set(uses)),
        "features": feats,
        "colors": rng.sample(COLOR_NAMES, rng.choice((1, 1, 2, 3))),
        "price": spec["price"] * float(np.exp(rng.gauss(0.0, 0.35))),
        "launch": rng.uniform(0, 15 * 365 - 60),
        "quality": rng.betavariate(5, 2),
    }


def _vary(rng: random.Random, fam: dict) -> dict:
    """A near-duplicate of the family's base product that differs in exactly one attribute."""
    p = dict(fam)
    spec = PRODUCT_TYPES[fam["ptype"]]
    what = rng.choice(("material", "color", "use", "feature"))
    if what == "material" and len(spec["mat"]) > 1:
        p["material"] = rng.choice([m for m in spec["mat"] if m != fam["material"]])
    elif what == "color":
        p["colors"] = [rng.choice([c for c in COLOR_NAMES if c not in fam["colors"]])]
    elif what == "use":
        p["uses"] = [rng.choice([u for u in spec["use"] if u not in fam["uses"]] or spec["use"])]
    else:
        extra = [f for f in spec["feat"] if f not in fam["features"]]
        p["features"] = fam["features"][1:] + extra[:1] if extra else fam["features"]
        p["features"] = p["features"] or [spec["feat"][0]]
    p["price"] = fam["price"] * rng.uniform(0.85, 1.2)
    p["launch"] = min(15 * 365 - 60, fam["launch"] + rng.uniform(0, 900))
    p["quality"] = min(1.0, max(0.0, fam["quality"] + rng.gauss(0, 0.1)))
    return p


def _phrase(rng: random.Random, table: dict[str, list[str]], key: str) -> str:
    return rng.choice(table[key])


def make_product(seed: int, i: int, reference_date: dt.date = REFERENCE_DATE) -> tuple[Product, Attributes]:
    fam = _family(seed, i // FAMILY_SIZE)
    rng = _rng(seed, "product", i)
    p = fam if i % FAMILY_SIZE == 0 else _vary(rng, fam)
    spec = PRODUCT_TYPES[p["ptype"]]
    noun, mat, use = spec["noun"], p["material"], p["uses"][0]

    title = [p["brand"], p["line"]]
    if rng.random() < 0.5:
        title.append(_phrase(rng, FEATURES, p["features"][0]).title())
    if rng.random() < 0.5:
        title.append(_phrase(rng, MATERIALS, mat).title())
    title.append(noun.title())
    if rng.random() < 0.4:
        title.append("for " + _phrase(rng, USES, use).title())

    feature = [f"Made from {_phrase(rng, MATERIALS, mat)}"]
    feature += [f"{_phrase(rng, FEATURES, f).capitalize()} design" for f in p["features"]]
    feature.append(f"Ideal for {_phrase(rng, USES, use)}")
    other = PRODUCT_TYPES[rng.randrange(len(PRODUCT_TYPES))]["noun"]
    description = [
        f"The {p['line']} {rng.choice(spec['syn'])} from {p['brand']} is built for {', '.join(_phrase(rng, USES, u) for u in p['uses'])}.",
        f"Available in {' and '.join(_phrase(rng, COLORS, c) for c in p['colors'])}. Pairs well with our {other}.",
    ]

    price = "" if rng.random() < 0.04 else f"${max(4.0, round(p['price'])) - 0.01:.2f}"
    start = reference_date - dt.timedelta(days=15 * 365) + dt.timedelta(days=p["launch"])
    span = min((reference_date - start).days, int(rng.uniform(1, 8) * 365))
    n_reviews = 0 if rng.random() < 0.12 else min(40, int(rng.expovariate(1 / 4.0)) + 1)
    reviews = []
    for _ in range(n_reviews):
        day = start + dt.timedelta(days=rng.randint(0, max(span, 0)))
        overall = int(min(5, max(1, round(rng.gauss(1 + 4 * p["quality"], 0.9)))))
        good = overall >= 4
        # Half the time reviews talk about what the product is, half about anything (keyword noise).
        parts = [f"Used it for {_phrase(rng, USES, rng.choice(p['uses'] if rng.random() < 0.5 else USE_NAMES))}."]
        f = rng.choice(p["features"] if rng.random() < 0.5 else FEATURE_NAMES)
        if f in p["features"]:
            parts.append(f"Really {_phrase(rng, FEATURES, f)} as promised.")
        else:
            parts.append(f"Not exactly {_phrase(rng, FEATURES, f)} but {'fine' if good else 'disappointing'}.")
        if rng.random() < 0.3:
            parts.append(f"Replaced my old {BRANDS[_pick(rng, _BRAND_CUM)]} {rng.choice(spec['syn'])} with this one.")
        if rng.random() < 0.3:
            parts.append(f"Got the {_phrase(rng, COLORS, rng.choice(p['colors']))} one.")
        reviews.append({
            "reviewerID": f"R{rng.getrandbits(40):010X}",
            "summary": rng.choice(REVIEW_SUMMARIES_GOOD if good else REVIEW_SUMMARIES_BAD),
            "reviewText": " ".join(parts),
            "overall": float(overall),
            "vote": rng.choice((0, 0, 0, 1, 2, 5)),
            "reviewTime": format_review_time(day),
        })
    qa = []
    if rng.random() < 0.3:
        f = rng.choice(spec["feat"])
        qa.append({"question": f"Is this {_phrase(rng, FEATURES, f)}?",
                   "answer": "Yes." if f in p["features"] else "No, it is not.", "answerTime": ""})

    product = Product(
        doc_id=i,
        asin=f"S{seed:02d}{i:08d}",
        title=" ".join(title),
        brand=p["brand"],
        category=["Sports & Outdoors", *[c.title() for c in spec["cat"]]],
        color=[c.title() for c in p["colors"]],
        price=price,
        feature=feature,
        description=description,
        review=reviews,
        qa=qa,
    )
    attrs = Attributes(p["ptype"], MATERIAL_NAMES.index(mat), _bits(p["uses"], USE_NAMES),
                       _bits(p["features"], FEATURE_NAMES), _bits(p["colors"], COLOR_NAMES))
    return product, attrs


def _make_chunk(args: tuple[int, int, int, dt.date]) -> list[tuple[Product, Attributes]]:
    seed, lo, hi, reference_date = args
    return [make_product(seed, i, reference_date) for i in range(lo, hi)]


def iter_products(size: int, seed: int = 0, start: int = 0, reference_date: dt.date = REFERENCE_DATE,
                  processes: int = 1, chunk: int = 2000) -> Iterator[tuple[Product, Attributes]]:
    """Products start..size-1 in order; with processes > 1, chunks are generated in a spawned pool
    (product i depends only on seed and i, so the output is the same)."""
    if processes <= 1 or size - start <= chunk:
        for i in range(start, size):
            yield make_product(seed, i, reference_date)
        return
    tasks = [(seed, lo, min(lo + chunk, size), reference_date) for lo in range(start, size, chunk)]
    with mp.get_context("spawn").Pool(processes) as pool:
        # A few chunks in flight, not all: workers that outrun the consumer would pile products up in memory.
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_make_chunk, (task,)))
            if len(pending) > 2 * processes:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def generation_processes(size: int) -> int:
    """Worker processes worth starting to generate `size` products (a pool costs ~1 s to start)."""
    return min(2, mp.cpu_count()) if size >= 100_000 else 1


# -- base queries ------------------------------------------------------------------------------------
_TEMPLATES = [
    "I'm looking for {feat}{mat}{noun}{use}.",
    "Can you recommend {feat}{mat}{noun}{use}?",
    "What {feat}{mat}{noun} would you suggest{use}?",
    "Looking for {feat}{mat}{noun}{use}, any ideas?",
    "I need {feat}{mat}{noun}{use}.",
]


def base_queries(attrs: dict[str, np.ndarray], n: int, seed: int, min_answers: int = 4,
                 max_answers: int = 40) -> list[dict]:
    """StaRK-style queries (type + 1-3 attributes) whose answers are all products having those attributes.

    `attrs` holds one array per Attributes field over the whole catalogue.
    """
    rng = _rng(seed, "queries", 0)
    out, seen = [], set()
    tries = 0
    by_type: dict[int, dict[str, np.ndarray]] = {}  # a type's rows and their attributes: masks stay small at 1M
    while len(out) < n and tries < n * 200:
        tries += 1
        t = rng.randrange(len(PRODUCT_TYPES))
        spec = PRODUCT_TYPES[t]
        if t not in by_type:
            rows = np.flatnonzero(attrs["ptype"] == t)
            by_type[t] = {"rows": rows, **{k: attrs[k][rows] for k in ("material", "uses", "features")}}
        sub = by_type[t]
        mask = np.ones(len(sub["rows"]), dtype=bool)
        chosen: dict[str, str] = {}
        slots = rng.sample(["material", "use", "feature", "feature2"], rng.choice((1, 2, 2, 3)))
        for slot in slots:
            if slot == "material":
                m = rng.choice(spec["mat"])
                chosen["material"] = m
                mask = mask & (sub["material"] == MATERIAL_NAMES.index(m))
            elif slot == "use":
                u = rng.choice(spec["use"])
                chosen["use"] = u
                mask = mask & ((sub["uses"] & (1 << USE_NAMES.index(u))) != 0)
            else:
                f = rng.choice(spec["feat"])
                if f in chosen.values():
                    continue
                chosen[slot] = f
                mask = mask & ((sub["features"] & (1 << FEATURE_NAMES.index(f))) != 0)
        answers = sub["rows"][mask]
        # At large catalogue sizes a query can be too broad: narrow it by colour, as a shopper would.
        if len(answers) > max_answers:
            c = rng.choice(COLOR_NAMES)
            chosen["color"] = c
            answers = answers[(attrs["colors"][answers] & (1 << COLOR_NAMES.index(c))) != 0]
        key = (t, tuple(sorted(chosen.items())))
        if not (min_answers <= len(answers) <= max_answers) or key in seen:
            continue
        seen.add(key)
        feats = [chosen[k] for k in ("feature", "feature2") if k in chosen]
        text = rng.choice(_TEMPLATES).format(
            feat="".join(_phrase(rng, FEATURES, f) + " " for f in feats) or "a ",
            mat=(_phrase(rng, MATERIALS, chosen["material"]) + " ") if "material" in chosen else "",
            noun=(_phrase(rng, COLORS, chosen["color"]) + " " if "color" in chosen else "")
            + (spec["noun"] if rng.random() < 0.5 else rng.choice(spec["syn"])),
            use=f" for {_phrase(rng, USES, chosen['use'])}" if "use" in chosen else "",
        )
        text = text.replace("  ", " ")
        out.append({"query": text[0].upper() + text[1:], "answer_ids": [int(a) for a in answers],
                    "attributes": {"type": spec["noun"], **chosen}})
    return out


def query_constraint(attributes: dict) -> dict:
    """The metadata every answer of a base query has, as a plan-language filter node: `category contains`
    the product type's most specific category, plus `color contains` when the query names a colour.

    It is what a planner could filter on from the query's own words (the ceiling `oracle_full` runs). For
    oracles and reports only: planner code must never read it, as it must never read these vocabularies.
    """
    spec = next(s for s in PRODUCT_TYPES if s["noun"] == attributes["type"])
    # The same normalisation derive_meta applies to the product's title-cased category and colours.
    leaves = [{"field": "category", "op": "contains", "value": normalize_keyword(spec["cat"][-1].title())}]
    if "color" in attributes:
        leaves.append({"field": "color", "op": "contains", "value": normalize_keyword(attributes["color"].title())})
    return {"all": leaves}
