"""Shared fixtures. The app under test is `main.py` itself, run by NiceGUI's simulated `user` tabs."""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nicegui import Client, ElementFilter, app, core
from nicegui.testing import User

from chat.room import Room
from chat.ui.stream import EVENT_NAME, ReplyText

from .fake_openai import FakeOpenAI


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / 'chat.db'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine: no real key, no real server."""
    for name in list(os.environ):
        if name.startswith(('OPENAI_', 'OPEN_API_', 'CHAT_')) or name == 'DATABASE_URL':
            monkeypatch.delenv(name)


@pytest.fixture
def app_args(clean_environment: None, db_path: Path) -> list[str]:
    """The command line `main.py` sees; a test module or test may override this fixture."""
    return ['--no-browser', '--no-seed', '--db', str(db_path), '--provider', 'demo']


@pytest.fixture(autouse=True)
def command_line(monkeypatch: pytest.MonkeyPatch, app_args: list[str]) -> Iterator[None]:
    # The simulated tabs' requests say "Host: test", which the room refuses unless it is told it is served as `test`
    # (which would make it ask for a key: a proxy's name is a name on a network).
    monkeypatch.setattr(sys, 'argv', ['main.py', *app_args, '--allowed-hosts', 'test', '--no-room-key'])
    yield


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def openai_args(clean_environment: None, db_path: Path, fake_openai: FakeOpenAI,
                monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the app against the local fake OpenAI server, with short timeouts and no retries."""
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test-secret-key')
    monkeypatch.setenv('OPENAI_BASE_URL', fake_openai.base_url)
    return ['--no-browser', '--no-seed', '--db', str(db_path), '--provider', 'openai', '--retries', '0',
            '--timeout', '2']


@pytest.fixture
def room(user: User) -> Room:
    """The running app's room (available once the `user` fixture has started the app)."""
    return app.state.room


@pytest.fixture
async def two_tabs(create_user: Callable[[], User]) -> tuple[User, User]:
    """Two simulated tabs, two different people, both with the room open."""
    first, second = create_user(), create_user()
    await open_room(first)
    await open_room(second)
    return first, second


async def eventually(condition: Callable[[], object], timeout: float = 5.0, message: str = '') -> None:
    """Wait until `condition()` is true; fail with `message` if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message or f'condition not met within {timeout} s')
        await asyncio.sleep(0.02)


async def open_room(user: User) -> None:
    """Open the room in this simulated tab and wait until the page is built (it waits for the socket first)."""
    await user.open('/')
    await user.should_see(marker='me', retries=50)  # up to 5 s: on a loaded machine the page may take a while


def status_shown(user: User, message_id: int) -> str:
    """The status line under a message on this tab (Quasar's stamp): its time, and how a reply is doing."""
    with user:
        (bubble,) = ElementFilter(marker=f'message-{message_id}')
        return bubble.props.get('stamp', '')


def texts_of(user: User, marker: str) -> list[str]:
    """The text content of every element carrying `marker` on this tab."""
    with user:
        return [getattr(element, 'text', '') for element in user.find(marker=marker).elements]


def people_listed(user: User) -> list[str]:
    """The names in this tab's "Here now" list, whole: a name can hold another (Jane, Janet), so no substring test."""
    with user:
        (people,) = user.find(marker='people').elements
        return [row.text.removesuffix(' (you)') for row in people.default_slot.children]


class SentReplyText:
    """Every `grew` broadcast (see chat/ui/stream.py): whom it went to, and what it held.

    A simulated tab runs no JavaScript, so this reads a tab the way reply_text.js would show it: the state its
    element was made with (finished blocks, where they end, the text after them), then each piece sent to that tab,
    from the piece's offset on, with the blocks it finished.
    """

    def __init__(self) -> None:
        self.broadcasts: list[tuple[list[str], dict[int, list]]] = []

    def shown(self, user: User, message_id: int) -> str:
        """What this tab shows of the reply, as text with its spaces evened out."""
        with user:
            (bubble,) = ElementFilter(marker=f'message-{message_id}')
            views = [element for element in bubble.descendants() if isinstance(element, ReplyText)]
            if not views:
                return ''
            state = dict(views[0].props)
        html_so_far, done, tail = state['html'], state['done'], state['tail']
        if state['live']:
            length = done + len(tail)
            for recipients, pieces in self.broadcasts:
                if user.client.id not in recipients or message_id not in pieces:
                    continue
                offset, text, *blocks = pieces[message_id]
                if offset > length:
                    break  # a gap: the tab would ask for the reply so far, and show nothing new until then
                fresh = text[length - offset:]
                tail, length = tail + fresh, length + len(fresh)
                if blocks and blocks[1] > done:
                    html_so_far, tail, done = html_so_far + blocks[2], tail[blocks[1] - done:], blocks[1]
        return ' '.join((html.unescape(re.sub(r'<[^>]+>', ' ', html_so_far)) + ' ' + tail).split())


@pytest.fixture
def sent_reply_text(monkeypatch: pytest.MonkeyPatch) -> SentReplyText:
    record = SentReplyText()
    original_emit = core.sio.emit

    async def recording_emit(event: str, data: Any = None, **kwargs: Any) -> None:
        if event == EVENT_NAME:
            record.broadcasts.append((list(kwargs['room']), data))
        await original_emit(event, data, **kwargs)
    monkeypatch.setattr(core.sio, 'emit', recording_emit)
    return record


def count_connected_returns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the clients whose `await client.connected()` has returned in the page. The page awaits nothing
    after it, so once a client's id is here, its page handler has run to its end (joined the room or not)."""
    returned: list[str] = []
    connected = Client.connected

    async def counted(self: Client, *args: Any, **kwargs: Any) -> None:
        try:
            await connected(self, *args, **kwargs)
        finally:
            returned.append(self.id)
    monkeypatch.setattr(Client, 'connected', counted)
    return returned
