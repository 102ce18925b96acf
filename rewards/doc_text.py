"""How a product reads to an instruction-aware encoder: training pairs, the FollowIR-format evaluation and
the reranking stage all embed exactly this text, so it lives below all three."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stark_instruct.records import Product, derive_meta

DOC_CHARS = 900


def _age(last: dt.date, today: dt.date) -> str:
    months = (today.year - last.year) * 12 + today.month - last.month
    if months < 12:
        return "less than a year ago"
    years = months // 12
    return f"{years} year{'s' if years > 1 else ''} ago"


def document_text(product: Product, meta: dict | None = None, today: dt.date | None = None,
                  max_chars: int = DOC_CHARS) -> str:
    """A product as the encoder reads it: the attributes instructions talk about come first.

    Encoders truncate (128-192 tokens here), so brand, colour, price, rating and review recency lead,
    then categories, features and description; reviews are left out because other brands' names in them
    are exactly the distractors that make instructions hard.
    """
    meta = meta if meta is not None else derive_meta(product)
    parts = [product.title.strip().rstrip(".") + "."]
    if product.brand:
        parts.append(f"Brand: {product.brand}.")
    if product.color:
        parts.append(f"Colour: {', '.join(product.color)}.")
    if meta.get("price") is not None:
        parts.append(f"Price: ${meta['price']:.2f}.")
    if meta.get("rating") is not None:
        parts.append(f"Rating {meta['rating']:.1f} ({int(meta.get('review_count') or 0)} reviews).")
    last = meta.get("last_review_date")
    if last is not None:
        parts.append(f"Last review {last:%b %Y}" + (f" ({_age(last, today)})." if today is not None else "."))
    parts += [f.strip().rstrip(".") + "." for f in product.feature if f.strip()]
    categories = product.category[1:] if len(product.category) > 1 else product.category  # drop the root
    if categories:
        parts.append(", ".join(categories) + ".")
    parts += list(product.description)
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text[:max_chars]


class DocTexts:
    """Lazily built, cached `document_text` for a benchmark's products (training, eval and reranking share it)."""

    def __init__(self, bench: Any, max_chars: int = DOC_CHARS):
        self.bench = bench
        self.max_chars = max_chars
        schema = getattr(bench, "schema", None)
        self.today = getattr(schema, "reference_date", None)
        self._cache: dict[int, str] = {}

    def __getitem__(self, doc_id: int) -> str:
        doc_id = int(doc_id)
        text = self._cache.get(doc_id)
        if text is None:
            text = document_text(self.bench.product(doc_id), self.bench.meta(doc_id), self.today, self.max_chars)
            self._cache[doc_id] = text
        return text
