"""The page at GET / in a real headless Chromium (Debian's package, driven by playwright): load, submit,
check the DOM against the service's own answer, save a screenshot."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fixed_planner", Path(__file__).parent / "fakes" / "fixed_planner.py")
fixed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixed)

PLAN = ('{"searches": [{"query": "jacket", "filter": {"all": [{"field": "brand", "op": "ne", "value": "%s"}, '
        '{"field": "last_review_date", "op": "gte", "value": "2023-06-30"}]}}, {"query": "insulated coat", '
        '"filter": {"field": "brand", "op": "ne", "value": "%s"}}]}')


@pytest.fixture
def live_service(tiny_benchmark):
    import uvicorn

    from serve.api import Retriever
    from serve.app import create_app

    brand = tiny_benchmark.meta(0)["brand"]
    planner = fixed.FixedPlanner({"jacket": PLAN % (brand, brand), "broken": "not a plan"})
    retriever = Retriever(tiny_benchmark, planner)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(retriever), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", retriever, brand
    server.should_exit = True
    thread.join(timeout=10)
    retriever.close()


def test_page_draws_plan_chips_and_both_result_lists(live_service, tmp_path):
    from serve.screenshot import drive

    url, retriever, brand = live_service
    shot = tmp_path / "page.png"
    seen = drive(url, "jacket", f"not {brand}, reviewed in the last two years", shot, k=8)
    expected = retriever.search("jacket", "x", k=8, compare_raw=True)

    assert seen["error"] is None and seen["searches"] == ["jacket", "insulated coat"]
    assert seen["chips"] == [f"brand ≠ {brand}", "last_review_date ≥ 2023-06-30", f"brand ≠ {brand}"]
    assert [r["doc_id"] for r in seen["results"]] == [h.doc_id for h in expected.results]
    assert seen["raw"] == [h.doc_id for h in expected.raw_results]
    # each result shows the metadata fields the filters touched, with the product's values
    for shown, hit in zip(seen["results"], expected.results, strict=True):
        assert set(shown["fields"]) == {"brand", "last_review_date"}
        assert shown["fields"]["brand"] == hit.meta["brand"] != brand
        assert shown["fields"]["last_review_date"] == hit.meta["last_review_date"] >= "2023-06-30"
    planned, raw = {r["doc_id"] for r in seen["results"]}, set(seen["raw"])
    assert seen["onlyPlanned"] == len(planned - raw) > 0  # the difference is marked
    assert "fixed" in seen["planner"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_shows_a_failed_plan_as_its_error(live_service):
    from serve.screenshot import drive

    url, _, _ = live_service
    seen = drive(url, "broken", None)
    assert seen["error"].startswith("Plan error no_json") and seen["results"] == [] and seen["searches"] == []
