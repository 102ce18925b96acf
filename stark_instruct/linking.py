"""Aliases of index values, learnt from the corpus itself: which words name which colour or category.

A request rarely names a keyword value in the index's own spelling: shoppers ask for "crimson" or
"espresso" shoes while the index's colour values are "red" and "brown", and for a "tent" while the
category value is "tents". Value retrieval (schema linking, as text-to-SQL does it) needs those aliases,
and the corpus already states them: a word that (almost) only ever appears on products carrying one
value, far more often than that value's base rate, names it. This module measures that association per
product text field (the title says what a product is; the description which colours it comes in) and
keeps the words that pass. It reads only the corpus and its metadata, never a generator's vocabulary, so
the same code links STaRK-Amazon's values. `IndexSchema.mentioned_values` uses the aliases;
`stark_instruct.benchmark.Benchmark.schema` attaches them (computed once per index, then cached).

Hand-written rather than a library call: the statistic is a few counters (precision and lift of a word
for a value), and no installed package computes value aliases from a product table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from stark_instruct.text import STOPWORDS, tokenize

# The keyword fields whose values get corpus aliases. Brands are named by their own spelling; a word
# that predicts a brand is usually a model line, not a name a shopper would use for the brand.
ALIASED_FIELDS = ("category", "color")
TEXT_FIELDS = ("title", "description")  # each measured on its own: descriptions cross-sell other products
MIN_PRODUCTS = 10  # a word seen on fewer products says nothing reliable
MIN_PRECISION = 0.8  # share of the word's products that carry the value
MIN_LIFT = 3.0  # ... and how much more often than the value's base rate
MIN_COVERAGE = 0.15  # share of the value's products whose field says the word: a name for the value, not an
# adjective that a few of its products happen to carry ("shell", "small", "free")
MAX_VALUES_PER_ALIAS = 3  # a word predicting more values than this is too generic to link


def _words(text: str) -> set[str]:
    """The words of a text field that may become aliases: no stopwords, numbers or one-/two-letter
    fragments ("usb-c" -> "c")."""
    return {t for t in tokenize(text) if len(t) > 2 and not t.isdigit() and t not in STOPWORDS}


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        return " ".join(v for v in value if isinstance(v, str))
    return ""


def corpus_aliases(texts: Iterable[Mapping[str, object]], metas: Iterable[Mapping[str, object]],
                   fields: Sequence[str] = ALIASED_FIELDS) -> dict[str, tuple[tuple[str, str, float, float], ...]]:
    """word -> the (field, value, precision, coverage) it names, from products' text fields and their
    metadata, each the highest over the text fields: how surely the word names the value ("midnight" ->
    navy: 1.0; "blue" -> blue: 0.52, shoppers say blue of navy products too) and how much of the value it
    covers (a product noun, "tent": 1.0; an adjective, "light": 0.36). A one-word value's own spelling is
    always listed, however weak ("hiking" says little about the category "hiking": socks and boots say it too),
    so that a value spelt out is ranked by the same evidence as an alias.

    `texts` and `metas` are parallel rows (a product's title/description, and its normalised keyword
    values). A word names a value when, in at least one text field, it appears on >= MIN_PRODUCTS
    products of which >= MIN_PRECISION carry the value, MIN_LIFT times the value's base rate, and on
    >= MIN_COVERAGE of the value's products ("shoes" -> footwear and running shoes); a word naming more than MAX_VALUES_PER_ALIAS values is dropped. Values of a word are ordered by how few products carry them (most specific first).
    """
    n = 0
    value_count: Counter = Counter()
    word_count = {f: Counter() for f in TEXT_FIELDS}
    pair_count = {f: Counter() for f in TEXT_FIELDS}
    for text, meta in zip(texts, metas, strict=True):
        n += 1
        values = {(f, v) for f in fields for v in (meta.get(f) or ()) if isinstance(v, str) and v}
        value_count.update(values)
        for tf in TEXT_FIELDS:
            words = _words(_text(text.get(tf)))
            word_count[tf].update(words)
            pair_count[tf].update((w, fv) for w in words for fv in values)
    found: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
    for tf in TEXT_FIELDS:
        for (word, fv), both in pair_count[tf].items():
            seen = word_count[tf][word]
            if seen < MIN_PRODUCTS and word != fv[1]:
                continue
            precision, coverage = both / seen, both / value_count[fv]
            own = word == fv[1]
            if own or (precision >= MIN_PRECISION and precision / (value_count[fv] / n) >= MIN_LIFT
                       and coverage >= MIN_COVERAGE):
                named = found.setdefault(word, {})
                was = named.get(fv, (0.0, 0.0))
                named[fv] = (max(was[0], round(precision, 3)), max(was[1], round(coverage, 3)))
    return {w: tuple((f, v, *named[(f, v)]) for f, v in sorted(named, key=lambda fv: (value_count[fv], fv)))
            for w, named in sorted(found.items()) if len(named) <= MAX_VALUES_PER_ALIAS}


def benchmark_aliases(path: str, batch_size: int = 50_000) -> dict[str, tuple[tuple[str, str, float, float], ...]]:
    """`corpus_aliases` of a built benchmark folder, streaming only the columns it needs."""
    import pyarrow.parquet as pq

    def rows(name: str, columns: list[str]):
        for batch in pq.ParquetFile(f"{path}/{name}").iter_batches(batch_size=batch_size, columns=columns):
            yield from batch.to_pylist()

    return corpus_aliases(rows("corpus.parquet", list(TEXT_FIELDS)), rows("meta.parquet", list(ALIASED_FIELDS)))
