"""Typed product records with STaRK-Amazon's field names, and the filterable metadata derived from them.

Both sources (the synthetic catalogue and STaRK-Amazon's node_info) become `Product`s, so everything
downstream reads one shape. Bad input raises `DataError` (from `ir_core.errors`) naming file, record and
field; dirt the real data is known to carry (NaN votes, missing brand, odd price strings) is normalised
and counted instead.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from ir_core.errors import DataError
from stark_instruct.filters import normalize_keyword

_REVIEW_TIME = re.compile(r"^\s*(\d{1,2})\s+(\d{1,2}),\s*(\d{4})\s*$")
_PRICE = re.compile(r"\$?\s*(\d[\d,]*(?:\.\d+)?)")


class RecordError(DataError):
    """A bad field of one knowledge-base record: ``path: node <id>: field: reason``."""

    def __init__(self, path: str, row: int | str | None, fld: str | None, reason: str):
        super().__init__(path, row, fld, reason, unit="node")


@dataclass(slots=True)
class Product:
    doc_id: int
    asin: str
    title: str
    brand: str = ""
    category: list[str] = field(default_factory=list)
    color: list[str] = field(default_factory=list)
    price: str = ""
    feature: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)
    qa: list[dict] = field(default_factory=list)

    def text(self) -> str:
        """The searchable text: everything a shopper could match keywords against."""
        parts = [self.title, self.brand, " ".join(self.category), " ".join(self.color),
                 " ".join(self.feature), " ".join(self.description)]
        parts += [f"{r.get('summary', '')} {r.get('reviewText', '')}" for r in self.review]
        parts += [f"{q.get('question', '')} {q.get('answer', '')}" for q in self.qa]
        return " ".join(p for p in parts if p)


def parse_review_time(value: str) -> dt.date:
    """STaRK/Amazon review dates look like '06 13, 2014' (month day, year)."""
    m = _REVIEW_TIME.match(str(value))
    if not m:
        raise ValueError(f"unparseable reviewTime {value!r} (expected 'MM DD, YYYY')")
    month, day, year = map(int, m.groups())
    return dt.date(year, month, day)


def format_review_time(day: dt.date) -> str:
    return f"{day.month:02d} {day.day}, {day.year}"


def parse_price(value: str) -> float | None:
    """'$14.99' -> 14.99; a range '$10.99 - $20.99' -> its lower end; '' -> None."""
    m = _PRICE.search(str(value or ""))
    if not m:
        return None
    try:
        return float(m.group(1).replace(",", ""))
    except ValueError:
        return None


def derive_meta(p: Product) -> dict:
    """Typed filterable metadata (see schema.product_schema) from a product record."""
    dates = [parse_review_time(r["reviewTime"]) for r in p.review]
    ratings = [float(r["overall"]) for r in p.review if r.get("overall") is not None]
    return {
        "brand": normalize_keyword(p.brand) if p.brand and p.brand.strip() else None,
        "category": sorted({normalize_keyword(c) for c in p.category if c and c.strip()}),
        "color": sorted({normalize_keyword(c) for c in p.color if c and c.strip()}),
        "price": parse_price(p.price),
        "rating": round(sum(ratings) / len(ratings), 3) if ratings else None,
        "review_count": float(len(p.review)),
        "first_review_date": min(dates) if dates else None,
        "last_review_date": max(dates) if dates else None,
    }


def _is_nan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _str_list(info: dict, key: str, where: tuple, stats: Counter) -> list[str]:
    value = info.get(key)
    if value is None or _is_nan(value) or value == "":
        return []
    if isinstance(value, str):
        stats[f"{key}_string_as_list"] += 1
        return [value]
    if not isinstance(value, list | tuple):
        raise RecordError(*where, key, f"expected a list of strings, got {type(value).__name__}")
    return [str(v) for v in value if v is not None and not _is_nan(v)]


def product_from_stark(doc_id: int, info: dict, path: str, stats: Counter) -> Product:
    """One STaRK-Amazon node_info product entry -> Product, validating types and normalising known dirt."""
    where = (path, doc_id)
    if not isinstance(info, dict):
        raise RecordError(*where, None, f"expected a dict of product fields, got {type(info).__name__}")
    title = info.get("title")
    if not isinstance(title, str) or not title.strip():
        raise RecordError(*where, "title", "missing or not a string")
    brand = info.get("brand")
    if brand is None or _is_nan(brand) or (isinstance(brand, str) and not brand.strip()):
        stats["missing_brand"] += 1
        brand = ""
    elif not isinstance(brand, str):
        raise RecordError(*where, "brand", f"expected a string, got {type(brand).__name__}")
    price = info.get("price", "")
    if price is None or _is_nan(price):
        price = ""
    elif isinstance(price, int | float):
        price = f"${price:.2f}"
    elif not isinstance(price, str):
        raise RecordError(*where, "price", f"expected a string like '$14.99', got {type(price).__name__}")
    if price and parse_price(price) is None:
        stats["unparseable_price"] += 1
    reviews = []
    for i, r in enumerate(info.get("review") or []):
        rf = f"review[{i}]"
        if not isinstance(r, dict):
            raise RecordError(*where, rf, "expected a dict")
        try:
            day = parse_review_time(r.get("reviewTime"))
        except ValueError as e:
            raise RecordError(*where, f"{rf}.reviewTime", str(e)) from None
        overall = r.get("overall")
        if overall is None or _is_nan(overall):
            stats["missing_overall"] += 1
            overall = None
        else:
            try:
                overall = float(overall)
            except (TypeError, ValueError):
                raise RecordError(*where, f"{rf}.overall", f"expected a rating 1-5, got {overall!r}") from None
            if not 1 <= overall <= 5:
                raise RecordError(*where, f"{rf}.overall", f"rating {overall} outside 1-5")
        vote = r.get("vote")
        if vote is None or _is_nan(vote):
            stats["nan_vote"] += 1
            vote = 0
        else:
            try:
                vote = int(str(vote).replace(",", ""))
            except ValueError:
                raise RecordError(*where, f"{rf}.vote", f"expected a count, got {vote!r}") from None
        reviews.append({
            "reviewerID": str(r.get("reviewerID") or ""),
            "summary": "" if _is_nan(r.get("summary")) else str(r.get("summary") or ""),
            "reviewText": "" if _is_nan(r.get("reviewText")) else str(r.get("reviewText") or ""),
            "overall": overall,
            "vote": vote,
            "reviewTime": format_review_time(day),
        })
    qa = []
    for i, q in enumerate(info.get("qa") or []):
        if not isinstance(q, dict):
            raise RecordError(*where, f"qa[{i}]", "expected a dict")
        qa.append({k: "" if q.get(k) is None or _is_nan(q.get(k)) else str(q.get(k))
                   for k in ("question", "answer", "answerTime")})
    return Product(
        doc_id=int(doc_id),
        asin=str(info.get("asin") or ""),
        title=title.strip(),
        brand=brand.strip(),
        category=_str_list(info, "category", where, stats),
        color=_str_list(info, "color", where, stats),
        price=price,
        feature=_str_list(info, "feature", where, stats),
        description=_str_list(info, "description", where, stats),
        review=reviews,
        qa=qa,
    )
