"""Fixtures for the real-browser tests: the app as its own process, one headless Chromium, tabs in it.

Without Chromium or Playwright these tests skip, so a laptop without them still runs the rest of the suite.
CI exports REQUIRE_BROWSER=1, which turns every such skip into a failure: a missing browser never passes quietly.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from ..fake_openai import FakeOpenAI
from . import CHROMIUM, AppProcess, Tab, child_environment, launch_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser

BROWSER_INSTALL = "install them with `apt-get install chromium` and `pip install -e '.[test]'`"


def require(available: bool, reason: str) -> None:
    """Skip without `available`, or fail under REQUIRE_BROWSER=1 (CI), where a skip would hide a broken set-up."""
    if available:
        return
    if os.environ.get('REQUIRE_BROWSER') == '1':
        pytest.fail(f'{reason} (REQUIRE_BROWSER=1: failing instead of skipping)', pytrace=False)
    pytest.skip(reason)


def require_browser() -> None:
    require(CHROMIUM.exists(), f'no Chromium at {CHROMIUM}: {BROWSER_INSTALL}')
    require(importlib.util.find_spec('playwright') is not None, f'the playwright package is missing: {BROWSER_INSTALL}')


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    """One Chromium per test module. Module scope, not session: Playwright's sync API runs its own event loop,
    which is gone before the suite's asyncio tests start."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope='module')
def model_server() -> Iterator[FakeOpenAI]:
    """The local OpenAI-compatible server the app talks to; `[[...]]` directives in a message steer its reply."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope='module')
def chat_app(model_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory,
             browser: Browser) -> Iterator[AppProcess]:
    """One app process for the whole module (it starts in about two seconds), answering @gpt through the fake
    model server. It asks for `browser` first so that, without one, the module skips before starting anything."""
    env = child_environment(OPENAI_API_KEY='sk-test', OPENAI_BASE_URL=model_server.base_url)
    app = AppProcess(tmp_path_factory.mktemp('chat-app'), ['--provider', 'openai', '--retries', '0'], env)
    with app:
        yield app


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test's report also shows the end of the app's log: the server's side of the story."""
    report = yield
    if report.failed:
        for value in getattr(item, 'funcargs', {}).values():
            if isinstance(value, AppProcess):
                report.sections.append((f'app log ({value.log_path})', value.log()[-6000:]))
    return report


TabsFactory = Callable[..., list[Tab]]


@pytest.fixture
def open_tabs(browser: Browser) -> Iterator[TabsFactory]:
    """`open_tabs(url, n)`: n tabs of one browser window (pages of one context). NiceGUI tells tabs apart by
    their own session storage, so each is a different person, as separate browser tabs are."""
    contexts = []

    def open_(url: str, count: int = 3, width: int = 1000, height: int = 720) -> list[Tab]:
        context = browser.new_context(viewport={'width': width, 'height': height})
        contexts.append(context)
        tabs = [Tab(context.new_page()) for _ in range(count)]
        for tab in tabs:
            tab.page.goto(url, wait_until='commit')  # all tabs load at once, then each is awaited
        for tab in tabs:
            tab.wait_for_room()
        return tabs

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def tabs(chat_app: AppProcess, open_tabs: TabsFactory) -> list[Tab]:
    """Three fresh tabs on the module's app: three new people, who also see what earlier tests left."""
    return open_tabs(chat_app.url, 3)
