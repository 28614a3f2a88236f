"""Property-based tests: any text from people or from the model is stored exactly, shown safely, rendered in time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nicegui import core

from chat.bot import Bot
from chat.config import Settings
from chat.markdown import render_markdown
from chat.models import Message, Status
from chat.presence import Person
from chat.providers import Request
from chat.reply import Growth
from chat.room import Room
from chat.store import Store

# Every kind of character, control characters, right-to-left marks and emoji included (not lone surrogates,
# which no browser or JSON encoder could carry); and text that leans towards what breaks renderers.
any_character = st.characters(exclude_categories=('Cs',))
unicode_text = st.text(any_character, min_size=1, max_size=400)
TRICKY_PIECES = [
    '\u202e', '\u200f', '\u200d', '👨\u200d👩\u200d👧', '🇩🇪', 'e\u0301', '\x00', '\x1b[31m', '\r\n', '\t', '<script>',
    '</div>', '<img src=x onerror=alert(1)>', '[a](javascript:alert(1))', '![i](http://evil.example/x.png)', '```',
    '> ', '* ', '1. ', '    ', '|a|b|\n|-|-|', '**', '_', '`', '\\', '&amp;', '&#x3C;', '@gpt', 'x' * 300,
    '[d](data:text/html,<script>alert(1)</script>)', '~~~\n', '- ```py\n', '\n  ```\n', '[1]: data:text/html,x\n']
tricky_text = st.lists(st.sampled_from(TRICKY_PIECES), min_size=1, max_size=40).map(''.join)
message_text = st.one_of(unicode_text, tricky_text).filter(lambda text: bool(text.strip()))


class ChunkProvider:
    """A provider that streams exactly the chunks it is given, as a model would."""

    name = 'GPT'
    model = 'chunks'
    description = 'chunks under test'

    def __init__(self) -> None:
        self.chunks: list[str] = []

    async def stream(self, request: Request) -> AsyncIterator[str]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk


@pytest.fixture(scope='module')
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for all examples; NiceGUI's background tasks (the bot uses them) run on `core.loop`."""
    loop = asyncio.new_event_loop()
    core.loop = loop
    yield loop
    core.loop = None
    loop.close()


@pytest.fixture(scope='module')
def room(loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    db = tmp_path_factory.mktemp('fuzz') / 'chat.db'
    settings = replace(Settings(), messages_per_10s=10**9, gpt_per_minute=10**9, room_messages_per_minute=10**9,
                       room_gpt_per_minute=10**9, ui_interval=0, db_interval=0.01)
    room = Room(settings, Store(f'sqlite:///{db}'), [Bot('gpt', ChunkProvider(), 'Be brief.', 1024)])
    loop.run_until_complete(room.open())
    yield room
    loop.run_until_complete(room.close())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=message_text)
def test_any_message_is_stored_exactly(loop: asyncio.AbstractEventLoop, room: Room, text: str) -> None:
    async def post_and_read() -> Message | None:
        message = await room.post(Person(f'p{time.monotonic_ns()}', 'Fuzz'), text[:4000])
        assert message is not None and message.id is not None
        for reply in list(room.replies.in_progress.values()):  # '@gpt' may turn up in the text: let it finish
            await reply.task  # type: ignore[misc]
        return await room.store.get(message.id)
    stored = loop.run_until_complete(post_and_read())
    assert stored is not None and stored.body == text[:4000]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.one_of(unicode_text, tricky_text), min_size=1, max_size=30))
def test_any_model_chunks_are_stored_and_sent_exactly(loop: asyncio.AbstractEventLoop, room: Room,
                                                      chunks: list[str]) -> None:
    """Through the real streaming path: the text the tabs are sent is the text stored, and the blocks they are sent,
    rendered as the reply grew, are inert and are what the stored reply renders to."""
    room.bots['gpt'].provider.chunks = chunks  # type: ignore[attr-defined]
    sent_to_tabs: list[str] = []
    blocks_sent: list[tuple[int, int, str]] = []

    def on_grew(growth: dict[int, Growth]) -> None:
        (grown,) = growth.values()
        assert grown.offset == len(''.join(sent_to_tabs)), 'each piece starts where the text sent so far ends'
        sent_to_tabs.append(grown.text)
        if grown.finished:
            assert grown.finished[0] == (blocks_sent[-1][1] if blocks_sent else 0), 'blocks start where the last ended'
            assert grown.finished[1] <= len(''.join(sent_to_tabs)), 'a block is sent with its text, never before'
            blocks_sent.append(grown.finished)

    async def ask() -> Message | None:
        room.grew.subscribe(on_grew)
        try:
            question = await room.post(Person(f'p{time.monotonic_ns()}', 'Fuzz'), '@gpt go')
            assert question is not None
            (reply,) = room.replies.in_progress.values()
            await reply.task  # type: ignore[misc]
            return await room.store.get(reply.id)
        finally:
            room.grew.unsubscribe(on_grew)
    stored = loop.run_until_complete(ask())
    expected = ''.join(chunks)
    assert stored is not None
    assert stored.status == (Status.DONE if expected.strip() else Status.ERROR)
    assert stored.body == expected == ''.join(sent_to_tabs)
    streamed_html = ''.join(html for _, _, html in blocks_sent)
    assert (blocks_sent[-1][1] if blocks_sent else 0) == len(stored.body), 'the tabs got every block by the end'
    assert streamed_html == render_markdown(stored.body)
    assert what_could_run(streamed_html) == []


class TagCollector(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def what_could_run(html: str) -> list[tuple[str, str]]:
    """The elements and attributes in this HTML that could run something or fetch from elsewhere."""
    parser = TagCollector()
    parser.feed(html)
    found = []
    for tag, attributes in parser.tags:
        if tag in {'script', 'img', 'iframe', 'object', 'embed', 'svg', 'style', 'link', 'meta', 'form'}:
            found.append((tag, ''))
        for name, value in attributes:
            if name.startswith('on') or (name in {'href', 'src'} and re.match(
                    r'\s*(javascript|data|vbscript):', value or '', re.IGNORECASE)):
                found.append((tag, f'{name}={value}'))
    return found


@settings(max_examples=300, deadline=None)
@given(text=message_text)
@example(text='`|\n-|\r<SCRIPT>`')  # found by this test: markdown2 let the tag through
def test_rendering_is_inert_and_fast(text: str) -> None:
    started = time.perf_counter()
    rendered = render_markdown(text)
    # A few ms here; the bound is for a renderer gone quadratic or worse (seconds), with room for a busy machine.
    assert time.perf_counter() - started < 3.0
    assert what_could_run(rendered) == []


@pytest.mark.parametrize('nested', [
    '> ' * 2000 + 'deep quote', '* ' * 2000 + 'deep list', '[' * 3000 + 'x' + ']' * 3000,
    '*' * 4000, '`' * 4000, '    ' * 1000 + 'code', ('- a\n' + '  ' * 50) * 40, '|' * 4000,
], ids=['quotes', 'lists', 'brackets', 'stars', 'backticks', 'indent', 'list-indent', 'pipes'])
def test_deeply_nested_markdown_renders_in_bounded_time(nested: str) -> None:
    started = time.perf_counter()
    render_markdown(nested[:4000] + str(time.perf_counter_ns()))  # a fresh string: the cache must not help
    assert time.perf_counter() - started < 5.0  # tens of ms here; exponential backtracking would take minutes


def test_what_the_fuzzing_stored_is_in_the_file_on_disk(loop: asyncio.AbstractEventLoop, room: Room) -> None:
    """Read back with sqlite3 itself, not through the app: every message stored is in the file (those of the
    examples above, and, so that the test stands alone, each tricky piece on its own)."""
    for piece in TRICKY_PIECES:
        loop.run_until_complete(room.post(Person('alone', 'Fuzz'), f'{piece}.'.replace('@gpt', '@ gpt')))
    in_memory = loop.run_until_complete(room.store.recent(10**6))
    with contextlib.closing(sqlite3.connect(room.store.engine.url.database or '')) as connection:
        on_disk = connection.execute('SELECT id, body FROM message ORDER BY id').fetchall()
    assert len(on_disk) >= len(TRICKY_PIECES) and on_disk == [(message.id, message.body) for message in in_memory]
