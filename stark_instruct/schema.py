"""The index schema: which metadata fields a search plan may filter on, their types and allowed ops.

It is the single source for the filter semantics of both engines, for the plan language's JSON schema
(rewards/) and for the text the planner's prompt shows, so it is data, not code spread across modules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
from dataclasses import asdict, dataclass, field

from stark_instruct.text import tokenize

# Field types of the filter language and the ops each allows.
#   keyword  - one normalised string (brand)
#   keywords - a set of normalised strings (category, color): eq/contains = has the value,
#              ne = lacks it, in = has any of the values, nin = has none of them
#   number   - float or int; a missing value (price "") fails every op except ne/nin
#   date     - ISO YYYY-MM-DD
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "keyword": ("eq", "ne", "in", "nin"),
    "keywords": ("eq", "ne", "in", "nin", "contains"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte"),
    "date": ("eq", "ne", "gt", "gte", "lt", "lte"),
}
LIST_OPS = ("in", "nin")
NEGATIVE_OPS = ("ne", "nin")


@dataclass(frozen=True)
class FieldSpec:
    """One filterable field. `values` lists the values a keyword field takes in the index (most frequent
    first; capped for a large catalogue): decoding can constrain filter values to them (schema linking,
    as text-to-SQL systems do with value retrieval) so that a planner cannot filter on a brand that does
    not exist. Empty for numbers and dates, and for schemas written before values were recorded."""

    name: str
    type: str
    description: str
    examples: tuple = ()
    values: tuple = ()

    @property
    def ops(self) -> tuple[str, ...]:
        return OPS_BY_TYPE[self.type]


@dataclass(frozen=True)
class IndexSchema:
    """Filterable fields plus the date the planner should treat as 'today'."""

    fields: tuple[FieldSpec, ...]
    reference_date: dt.date
    text_description: str = "title, brand, categories, colours, features, description, reviews and Q&A"
    name: str = "products"
    extra: dict = field(default_factory=dict)
    date_anchors: bool = True  # render() lists dates N years before today (see render)
    # word -> (field, value, precision, coverage) it names, learnt from the corpus (stark_instruct.linking): "crimson"
    # -> color "red", "tent" -> category "tents"; empty for a schema without a corpus
    aliases: dict = field(default_factory=dict, compare=False, repr=False)

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "reference_date": self.reference_date.isoformat(),
            "text_description": self.text_description,
            "fields": [
                {**asdict(f), "examples": list(f.examples), "values": list(f.values), "ops": list(f.ops)}
                for f in self.fields
            ],
            "extra": self.extra,
            "date_anchors": self.date_anchors,
            **({"aliases": {w: [list(fv) for fv in fvs] for w, fvs in self.aliases.items()}} if self.aliases else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> IndexSchema:
        fields = tuple(
            FieldSpec(f["name"], f["type"], f["description"], tuple(f.get("examples", ())), tuple(f.get("values", ())))
            for f in data["fields"]
        )
        return cls(
            fields=fields,
            reference_date=dt.date.fromisoformat(data["reference_date"]),
            text_description=data.get("text_description", ""),
            name=data.get("name", "products"),
            extra=data.get("extra", {}),
            date_anchors=data.get("date_anchors", True),
            aliases={w: tuple((f, v, float(p), float(c)) for f, v, p, c in fvs)
                     for w, fvs in data.get("aliases", {}).items()},
        )

    def with_aliases(self, aliases: dict) -> IndexSchema:
        """This schema with corpus aliases (`stark_instruct.linking.corpus_aliases`) for its keyword fields."""
        return dataclasses.replace(self, aliases=dict(aliases))

    def mentioned_values(self, text: str) -> list[tuple[str, str]]:
        """(field, value) for every keyword-field value that `text` names, in field order; within a field
        the surest first (the corpus's precision of the word for the value, then its coverage, then the
        rarer value; a value spelt out without corpus evidence counts as certain), at most
        MAX_LINKED_PER_FIELD per field. Two adjacent words naming values of one field are one name: only
        the surer word's values count ("midnight blue" is navy, "hiking socks" socks).

        Value retrieval as text-to-SQL systems do it: the planner is shown which index values a user's
        words name ("Stick to Lumia" -> brand "lumia"; with corpus aliases "crimson tent" -> color "red",
        category "tents"), so it copies a value that exists instead of guessing one. Matching is on whole
        tokens, so "tan" does not match "tank" nor "red" "knotred"."""
        words = tokenize(text)
        per_word: list[dict[tuple[int, str], tuple[float, float]]] = []  # per word: (field, value) -> evidence
        for i, word in enumerate(words):
            named: dict[tuple[int, str], tuple[float, float]] = {}
            for spec_i, value, vt in self._values_by_token.get(word, ()):
                if words[i:i + len(vt)] == vt:  # spelt out: as sure as the corpus says (certain without one)
                    named[(spec_i, value)] = next(
                        ((p, c) for name, v, p, c in self.aliases.get(word, ()) if v == value and len(vt) == 1
                         and self._field_index.get(name) == spec_i), (1.0, 1.0))
            for name, value, p, c in self.aliases.get(word, ()):
                spec_i = self._field_index.get(name)
                if spec_i is not None and (spec_i, value) in self._value_rank:  # a value decoding allows
                    named[(spec_i, value)] = max(named.get((spec_i, value), (0.0, 0.0)), (p, c))
            per_word.append(named)
        # two words in a row naming values of one field are one name, and it names what the surer word
        # names: "midnight blue" and "navy blue" are navy, "hiking socks" socks, "fishing pole" rods
        strength: dict[tuple[int, str], tuple[float, float]] = {}
        for i, named in enumerate(per_word):
            for key, x in named.items():
                neighbours = [per_word[j] for j in (i - 1, i + 1) if 0 <= j < len(per_word)]
                if any(y[0] > x[0] for other in neighbours for (f, _), y in other.items() if f == key[0]):
                    continue
                strength[key] = max(strength.get(key, (0.0, 0.0)), x)
        rank = self._value_rank
        ordered = sorted(strength, key=lambda key: (key[0], -strength[key][0], -strength[key][1], -rank.get(key, -1),
                                                    key[1]))
        out: list[tuple[str, str]] = []
        per_field: dict[int, int] = {}
        for spec_i, value in ordered:
            per_field[spec_i] = per_field.get(spec_i, 0) + 1
            if per_field[spec_i] <= MAX_LINKED_PER_FIELD:
                out.append((self.fields[spec_i].name, value))
        return out

    def linked_to(self, text: str, query: str = "") -> IndexSchema:
        """This schema with each field's values cut to those the request names: the keyword values
        `query` or `text` (the instructions) mention, the numbers `text` contains (for number fields) and
        the date anchors (for date fields, when `date_anchors` is on and `text` is about time: those of
        the year counts it names, else all); fields left without values are dropped. Numbers and dates
        come from the instructions alone: a query's "2 person tent" is not a rating.

        Per-request schema linking for decoding: a small planner then chooses among the few filters
        the user's words support instead of among every brand and every number, so its samples differ
        in *which* grounded filter they apply, which is what a reward can teach."""
        keyword = {}
        for name, value in self.mentioned_values(f"{query}\n{text}" if query else text):
            keyword.setdefault(name, []).append(value)
        # a year count ("the last 3 years") names a date, not a price or a rating; an amount of money
        # ("$40", "40 dollars") names a price, and a bare number anything but one
        plain = _YEARS.sub(" ", text)
        money = tuple(dict.fromkeys(_number(a or b) for a, b in _MONEY.findall(plain)))
        numbers = tuple(dict.fromkeys(_number(m) for m in _NUMBER.findall(_MONEY.sub(" ", plain))))
        # dates only for an instruction about time: one that names years (or recency) at all
        timely = self.date_anchors and (bool(_YEARS.search(text)) or "recent" in text.lower())
        anchors = tuple(years_before(self.reference_date, y).isoformat() for y in anchor_years(text)) if timely else ()
        fields = []
        for spec in self.fields:
            if spec.type in ("keyword", "keywords"):
                values = tuple(keyword.get(spec.name, ()))
            elif spec.type == "number":
                values = money if spec.name in CURRENCY_FIELDS else numbers
            else:
                values = anchors
            if values:
                fields.append(FieldSpec(spec.name, spec.type, spec.description, spec.examples, values))
        return IndexSchema(tuple(fields), self.reference_date, self.text_description, self.name, self.extra,
                           self.date_anchors)

    @functools.cached_property
    def _values_by_token(self) -> dict[str, list[tuple[int, str, list[str]]]]:
        """Keyword values by their first token (tokenised once per schema, not once per prompt)."""
        index: dict[str, list[tuple[int, str, list[str]]]] = {}
        for spec_i, spec in enumerate(self.fields):
            for value in spec.values:
                vt = tokenize(value)
                if vt:
                    index.setdefault(vt[0], []).append((spec_i, value, vt))
        return index

    @functools.cached_property
    def _value_rank(self) -> dict[tuple[int, str], int]:
        """(field index, value) -> its place in the field's values (most frequent first): a higher place is
        a more specific value ("running shoes" after "footwear")."""
        return {(spec_i, v): j for spec_i, spec in enumerate(self.fields) for j, v in enumerate(spec.values)}

    @functools.cached_property
    def _field_index(self) -> dict[str, int]:
        return {f.name: i for i, f in enumerate(self.fields) if f.type in ("keyword", "keywords")}

    def render(self) -> str:
        """The text rendering that prompts embed: fields, types, ops, examples and today's date.

        With `date_anchors` it adds the dates 1, 2, 3, 5 and 10 years before today: a small planner copies
        a date far more reliably than it subtracts years from one."""
        lines = [
            f"Index `{self.name}`: keyword search (BM25) over {self.text_description}.",
            f"Today is {self.reference_date.isoformat()}. Dates are ISO YYYY-MM-DD.",
        ]
        if self.date_anchors:
            lines.append("Dates before today: " + "; ".join(
                f"{y} year{'s' if y > 1 else ''} ago = {years_before(self.reference_date, y).isoformat()}"
                for y in DATE_ANCHOR_YEARS) + ".")
        lines.append("Filterable fields:")
        for f in self.fields:
            ex = ", ".join(json.dumps(e) for e in f.examples[:4])
            lines.append(f"- {f.name} ({f.type}; ops: {', '.join(f.ops)}): {f.description}" + (f" e.g. {ex}" if ex else ""))
        return "\n".join(lines)


DATE_ANCHOR_YEARS = (1, 2, 3, 5, 10)
# A request links at most this many values per keyword field (the first it names): a 10,000-character
# request naming every brand must not turn into a decoding schema with every brand.
MAX_LINKED_PER_FIELD = 4
CURRENCY_FIELDS = ("price",)  # number fields an amount of money links to (and only money does)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_MONEY = re.compile(r"[$€£]\s*(\d+(?:\.\d+)?)|(?<![\w.])(\d+(?:\.\d+)?)\s*(?:dollars?|usd|euros?)\b", re.I)
_YEARS = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|a)?\s*(?:full\s+)?(years?)\b", re.I)
_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10}


def anchor_years(text: str) -> tuple[int, ...]:
    """The years before today a text's year counts name ("the last 3 years" -> (3,), "the past year" ->
    (1,)), or the standard anchors when it names none."""
    named = []
    for count, noun in _YEARS.findall(text):
        if not count and noun.lower() == "years":  # "in recent years": no count named
            continue
        years = int(count) if count.isdigit() else _WORDS.get(count.lower(), 1)  # "the past year": 1
        if 0 < years <= 100 and years not in named:
            named.append(years)
    return tuple(named) or DATE_ANCHOR_YEARS


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


# At most this many values of a keyword field are kept (the most frequent): StaRK-Amazon has ~10^4 brands.
MAX_FIELD_VALUES = 2000


def years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` earlier (28 February for a 29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def product_schema(reference_date: dt.date, brands: list[str] = (), colors: list[str] = (),
                   categories: list[str] = (), values: dict[str, list[str]] | None = None) -> IndexSchema:
    """The schema of the product catalogue (synthetic or STaRK-Amazon), with example values from the data
    and, in `values`, every value of the keyword fields by frequency (brand, color, category)."""
    values = values or {}

    def kept(name: str) -> tuple:
        return tuple(values.get(name, ())[:MAX_FIELD_VALUES])

    return IndexSchema(
        fields=(
            FieldSpec("brand", "keyword", "manufacturer brand, lower-case", tuple(brands[:4]), kept("brand")),
            FieldSpec("category", "keywords", "product categories, lower-case", tuple(categories[:4]),
                      kept("category")),
            FieldSpec("color", "keywords", "colours the product comes in, lower-case", tuple(colors[:4]),
                      kept("color")),
            FieldSpec("price", "number", "price in US dollars (missing for some products)", (19.99, 120.0)),
            FieldSpec("rating", "number", "mean review rating, 1 to 5 (missing without reviews)", (4.5,)),
            FieldSpec("review_count", "number", "number of reviews", (12,)),
            FieldSpec("first_review_date", "date", "date of the oldest review", ("2012-05-01",)),
            FieldSpec("last_review_date", "date", "date of the newest review", (reference_date.isoformat(),)),
        ),
        reference_date=reference_date,
    )
