"""A small knowledge base in STaRK-Amazon's processed layout, with the real format's known dirt."""

from __future__ import annotations

import pickle
from pathlib import Path

NAN = float("nan")


def review(day: str, overall=5.0, vote=NAN, text="works great") -> dict:
    return {"reviewerID": "A1", "summary": "ok", "reviewText": text, "overall": overall, "vote": vote,
            "verified": True, "style": None, "reviewTime": day}


def write_skb(root: Path, n: int = 12, overrides: dict | None = None) -> Path:
    """A small knowledge base in STaRK-Amazon's processed layout (node_info.pkl under processed/cache/...)."""
    info = {}
    for i in range(n):
        info[i] = {
            "asin": f"B{i:09d}", "title": f"Trail runner {i} shoe" if i % 2 else f"Camp lantern {i}",
            "global_category": "Sports & Outdoors", "category": ["Sports & Outdoors", "Running"],
            "brand": ["Salomon", "Coleman", NAN, ""][i % 4], "color": ["Black"] if i % 3 else [],
            "price": ["$14.99", "", "$10.00 - $20.00", NAN][i % 4], "feature": ["Lightweight mesh"],
            "description": ["A great product."], "rank": "1",
            "review": [review(f"0{1 + i % 9} {1 + i % 27}, {2010 + i % 9}", vote="3" if i % 2 else NAN),
                       review("10 2, 2018", overall=4.0, vote="1,024")],
            "qa": [{"question": "Is it light?", "answer": "yes", "answerTime": "Mar 1, 2015"}],
        }
    info[n] = {"brand_name": "Salomon"}  # graph nodes that are not products are skipped
    info.update(overrides or {})
    path = root / "processed" / "cache" / "brand-category-color"
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "node_info.pkl", "wb") as f:
        pickle.dump(info, f)
    return root
