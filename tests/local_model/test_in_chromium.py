"""What the issue promised a user: with the 'local' extra and no key, plain `python main.py` answers @gpt with a
real model, streamed into every open tab (two real Chromium tabs here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..browser import AppProcess, child_environment, wait_until
from ..browser.conftest import TabsFactory, browser, open_tabs  # noqa: F401 (fixtures used by name)

pytestmark = pytest.mark.browser


@pytest.fixture
def app_with_no_key(tmp_path: Path) -> Iterator[AppProcess]:
    with AppProcess(tmp_path, [], child_environment()) as app:  # no --provider, no OPENAI_API_KEY: `auto`
        yield app


def test_with_no_key_smollm2_answers_into_every_tab(app_with_no_key: AppProcess, open_tabs: TabsFactory) -> None:  # noqa: F811
    asker, watcher = open_tabs(app_with_no_key.url, 2)
    for tab in (asker, watcher):
        assert 'SmolLM2, a small model running on this computer' in tab.page.locator('.q-header').inner_text()
    reply_id = asker.ask('@gpt what is the moon made of?')

    lengths = set()
    def watch() -> dict:
        message = watcher.message(reply_id) or {'status': None, 'text': ''}
        lengths.add(len(message['text']))
        return message
    wait_until(watch, lambda message: message['status'] in ('done', 'error', 'stopped'), timeout=60,
               interval=0.02, message='the reply did not end in the watching tab')
    done = [wait_until(lambda tab=tab: tab.message(reply_id), lambda m: m and m['status'] == 'done', timeout=10)
            for tab in (asker, watcher)]
    assert done[0]['text'] == done[1]['text'] and len(done[0]['text'].split()) > 3, done
    assert done[0]['author'] == 'SmolLM2'
    assert len(lengths) > 3, f'the watching tab should see the text grow; it saw lengths {sorted(lengths)}'
