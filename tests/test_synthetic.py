"""The embedded catalogue is deterministic and built to be hard for keyword search."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from stark_instruct.records import derive_meta
from stark_instruct.synthetic import BRANDS, FAMILY_SIZE, iter_products, make_product


def test_product_depends_only_on_seed_and_id():
    a, _ = make_product(0, 1234)
    b = list(iter_products(1236, seed=0, start=1234))[0][0]
    assert a == b
    assert make_product(1, 1234)[0] != a


def test_catalogue_is_hard_for_keyword_search():
    products = [p for p, _ in iter_products(3000, seed=0)]
    metas = [derive_meta(p) for p in products]
    # Near-duplicates: a family shares brand and product line and differs in one attribute.
    fam = products[:FAMILY_SIZE]
    assert len({p.brand for p in fam}) == 1
    assert len({p.title.split()[1] for p in fam}) == 1
    # Brand names appear in reviews of other brands' products.
    brand_re = re.compile(r"\b(" + "|".join(BRANDS) + r")\b")
    cross = sum(1 for p in products for r in p.review
                if any(m != p.brand for m in brand_re.findall(r["reviewText"])))
    assert cross > 300
    # Zipf brands: the most common brand is far more frequent than the median one.
    counts = Counter(m["brand"] for m in metas).most_common()
    assert counts[0][1] > 10 * counts[len(counts) // 2][1]
    # Review dates spread over ~15 years up to the reference date.
    last = [m["last_review_date"] for m in metas if m["last_review_date"]]
    first = [m["first_review_date"] for m in metas if m["first_review_date"]]
    assert max(last) <= dt.date(2025, 6, 30) and (max(last) - min(first)).days > 13 * 365
    # Some products have no reviews, no price: metadata is sometimes missing, as in the real data.
    assert any(m["rating"] is None for m in metas) and any(m["price"] is None for m in metas)
