"""A few real Chromium tabs beside the simulated ones, to confirm that what the socket tabs measure is what a browser
sees: each token's arrival is timed when it enters the page's DOM, not when it enters a socket.

Debian's /usr/bin/chromium driven by Playwright's Python package (never `playwright install`). A script added before
the page's own scripts watches the DOM with a MutationObserver and notes, for each token `wK`, the first moment
(`Date.now()`, the same wall clock as the fake server's send times) that text holding it was added to the page:
a piece or a finished block appended by reply_text.js, or the naive variant's re-rendered Markdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # the browser tests' own Chromium and flags

WATCH_TOKENS_JS = '''
window.__tokenArrivals = {};
const scan = (text) => {
  const now = Date.now();
  for (const match of text.matchAll(/(?<![0-9A-Za-z])w(\\d+)/g)) {
    if (!(match[1] in window.__tokenArrivals)) window.__tokenArrivals[match[1]] = now;
  }
};
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === 'characterData') scan(record.target.data);
    else for (const node of record.addedNodes) scan(node.textContent || '');
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
'''


def available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM.exists()


class BrowserTabs:
    """`count` tabs of one headless Chromium, each a different person in the room at `url`."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages

    async def arrivals(self) -> list[dict[int, float]]:
        """Per tab: token number -> wall-clock seconds it first appeared in the page."""
        found = []
        for page in self.pages:
            noted = await page.evaluate('window.__tokenArrivals')
            found.append({int(number): milliseconds / 1000 for number, milliseconds in noted.items()})
        return found


@contextlib.asynccontextmanager
async def browser_tabs(url: str, count: int) -> AsyncIterator[BrowserTabs]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            pages = []
            for _ in range(count):
                context = await browser.new_context()  # a context of its own: a different person, as a new tab is
                await context.add_init_script(WATCH_TOKENS_JS)
                page = await context.new_page()
                await page.goto(url)
                await page.get_by_text('Here now').wait_for(timeout=60_000)  # the page is built and connected
                pages.append(page)
            yield BrowserTabs(pages)
        finally:
            await browser.close()
