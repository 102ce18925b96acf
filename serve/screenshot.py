"""Drive the page at GET / in headless Chromium (Debian's `chromium` through playwright): type a request
and instructions, submit, wait for the plan and both result lists, and save a screenshot.

`python -m serve.screenshot --url http://127.0.0.1:8000/ --out docs/serve.png` takes the README's
picture of a running service; the page test calls `drive` on a test server.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ir_core.config import check_range, help_field, parse_or_exit

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """The system Chromium (playwright's own browser download is never used: no network at run time)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no chromium on PATH: install Debian's package (apt-get install -y chromium)")


def drive(url: str, query: str, instructions: str | None, screenshot: str | Path | None = None,
          k: int = 10, timeout_s: float = 60) -> dict:
    """Submit one request on the page and return what the DOM shows (plan searches, chips, results)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.fill("#query", query)
            page.fill("#instructions", instructions or "")
            page.fill("#k", str(k))
            page.click("#submit")
            page.wait_for_selector("body[data-state=done], #plan-error", timeout=timeout_s * 1000)
            seen = page.evaluate("""() => ({
                searches: [...document.querySelectorAll('#plan .search .q')].map(e => e.textContent),
                chips: [...document.querySelectorAll('#plan .chip')].map(e => e.textContent),
                chipFields: [...document.querySelectorAll('#plan .chip[data-field]')].map(e => e.dataset.field),
                error: document.querySelector('#plan-error')?.textContent ?? null,
                fallback: document.querySelector('#fallback-note')?.textContent ?? null,
                results: [...document.querySelectorAll('#results li')].map(li => ({
                    doc_id: Number(li.dataset.docId), title: li.querySelector('.title').textContent,
                    fields: Object.fromEntries([...li.querySelectorAll('.field')].map(
                        f => [f.dataset.field, f.lastChild.textContent]))})),
                raw: [...document.querySelectorAll('#raw-results li')].map(li => Number(li.dataset.docId)),
                onlyPlanned: document.querySelectorAll('#results li.only').length,
                planner: document.querySelector('#planner').textContent,
            })""")
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return seen
        finally:
            browser.close()


@dataclass
class ScreenshotArgs:
    """Screenshot the page of a running service after one request."""

    url: str = help_field("the page of a running service", default="http://127.0.0.1:8000/")
    query: str = help_field("the request typed in", default="insulated jacket for cold weather")
    instructions: str = help_field("the instructions typed in",
                                   default="Not made by lumia, and only products reviewed in the last two years.")
    out: str = help_field("the PNG to write", default="docs/serve.png")
    timeout: float = help_field("seconds to wait for the plan", default=300.0)

    def __post_init__(self) -> None:
        check_range(self, "timeout", 0, low_open=True)


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_or_exit([ScreenshotArgs], argv, "python -m serve.screenshot")
    seen = drive(args.url, args.query, args.instructions, args.out, timeout_s=args.timeout)
    print(f"{args.out}: {len(seen['searches'])} searches, chips {seen['chips']}, error {seen['error']}, "
          f"{len(seen['results'])} results ({seen['planner']})")


if __name__ == "__main__":
    main()
