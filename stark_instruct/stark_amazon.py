"""The real knowledge base: STaRK-Amazon product records and query files.

Product records come from STaRK's processed knowledge base (`node_info.pkl`, a dict node id -> fields),
either already on disk or fetched through the `stark-qa` package (`load_skb`, which downloads from the
Hugging Face hub on the user's machine). Query files are `id,query,answer_ids[,answer_ids_source]` CSVs
whose `answer_ids` is a list literal, parsed as JSON data (never evaluated as code).
"""

from __future__ import annotations

import csv
import json
import pickle
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from stark_instruct.records import DataError, Product, product_from_stark

NODE_INFO_GLOB = "processed/cache/*/node_info.pkl"


def find_node_info(root: str | Path) -> Path:
    """Locate node_info.pkl in a STaRK-Amazon root (as extracted from processed.zip) or take the file itself."""
    root = Path(root)
    if root.is_file():
        return root
    for candidate in [root / "node_info.pkl", *sorted(root.glob(NODE_INFO_GLOB)), *sorted(root.glob("**/node_info.pkl"))]:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{root}: no node_info.pkl found (expected {root}/{NODE_INFO_GLOB}); "
        "run with --download to fetch STaRK-Amazon through stark-qa, or point --stark-root at the extracted data"
    )


def download_skb(root: str | Path) -> Path:
    """Fetch STaRK-Amazon's processed knowledge base via stark-qa (network; only when the user asks)."""
    try:
        from stark_qa import load_skb
    except ImportError as e:
        raise SystemExit("the real STaRK-Amazon source needs `pip install 'instructed-retriever[stark]'`") from e
    load_skb("amazon", download_processed=True, root=str(root))
    return find_node_info(root)


def load_products(root: str | Path, stats: Counter | None = None) -> Iterator[Product]:
    """Product records in doc_id order; brand/category/colour nodes of the graph are skipped."""
    path = find_node_info(root)
    stats = stats if stats is not None else Counter()
    with open(path, "rb") as f:
        node_info = pickle.load(f)  # STaRK's own format; the user's local download
    if not isinstance(node_info, dict):
        raise DataError(str(path), None, None, f"expected a dict of node id -> fields, got {type(node_info).__name__}")
    bad = next((k for k in node_info if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_ID), None)
    if bad is not None:
        got = f"an integer of {bad.bit_length()} bits" if isinstance(bad, int) else _short(repr(bad))
        raise DataError(str(path), None, "node id", f"expected non-negative int64 ids, got {got}")
    for node_id in sorted(node_info):
        info = node_info[node_id]
        if isinstance(info, dict) and "title" not in info and ("brand_name" in info or "category_name" in info
                                                               or "color_name" in info):
            stats["non_product_nodes"] += 1
            continue
        yield product_from_stark(int(node_id), info, str(path), stats)


MAX_ID = 2**63 - 1  # ids are int64 in the corpus and the index


def _short(value: str, n: int = 60) -> str:
    return repr(value if len(value) <= n else value[:n] + "...")


def _int_id(text: str, path: Path, line: int, fld: str) -> int:
    """A non-negative int64 id, or a `DataError` (a 5,000-digit number included, which `int` refuses)."""
    s = text.strip()
    if not s.isdigit() or len(s) > 19 or int(s) > MAX_ID:
        raise DataError(str(path), line, fld, f"expected a non-negative integer id, got {_short(text)}")
    return int(s)


def read_query_csv(path: str | Path, known_ids: set[int] | None = None) -> list[dict]:
    """Parse a STaRK query CSV strictly: every problem names the file, line and field."""
    path = Path(path)
    try:
        return _read_query_csv(path, known_ids)
    except UnicodeDecodeError as e:
        raise DataError(str(path), None, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_query_csv(path: Path, known_ids: set[int] | None) -> list[dict]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            missing = {"id", "query", "answer_ids"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(str(path), 1, ",".join(sorted(missing)),
                                f"missing column(s); header is {reader.fieldnames}")
            for row in reader:
                rows.append(_query_row(row, path, reader.line_num, known_ids))
        except csv.Error as e:  # a field over csv's size limit, a NUL byte, an unclosed quote at EOF
            raise DataError(str(path), reader.line_num + 1, None, f"malformed CSV ({e})") from None
    return rows


def _query_row(row: dict, path: Path, line: int, known_ids: set[int] | None) -> dict:
    if None in row or any(v is None for v in row.values()):
        raise DataError(str(path), line, None, "wrong number of columns (malformed CSV row)")
    qid = _int_id(row["id"], path, line, "id")
    query = row["query"].strip()
    if not query:
        raise DataError(str(path), line, "query", "empty query")
    try:
        answers = json.loads(row["answer_ids"])
    except ValueError:  # not JSON, or an integer beyond Python's digit limit
        raise DataError(str(path), line, "answer_ids",
                        f"expected a list literal like [1, 2], got {_short(row['answer_ids'])}") from None
    if not isinstance(answers, list) or not answers or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= MAX_ID for a in answers):
        raise DataError(str(path), line, "answer_ids", "expected a non-empty list of integer product ids")
    if known_ids is not None:
        unknown = [a for a in answers if a not in known_ids]
        if unknown:
            raise DataError(str(path), line, "answer_ids",
                            f"answer id(s) {[_short(str(a), 20) for a in unknown[:5]]} not in the knowledge base")
    return {"id": qid, "query": query, "answer_ids": list(dict.fromkeys(answers))}


def read_split_ids(path: str | Path) -> list[int]:
    path = Path(path)
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(str(path), None, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(_int_id(line, path, line_no, "id"))
    return out
