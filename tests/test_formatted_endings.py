"""A reply that ends badly keeps its formatting: stopped, failed or interrupted, the blocks the tabs were sent while
it streamed are the HTML it ends with (so nothing changes in them), and a tab opened afterwards draws the same.

A simulated tab runs no JavaScript: what it shows is read from its reply element's state and the `grew` pieces it
was sent (see tests/conftest.py), as reply_text.js would draw them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from nicegui import ElementFilter
from nicegui.testing import User

from chat.markdown import render_markdown
from chat.models import Kind, Message, Status
from chat.room import Room
from chat.store import Store
from chat.ui.stream import ReplyText

from .conftest import SentReplyText, eventually, open_room
from .fake_openai import FakeOpenAI, Script, numbered_tokens, split_reply

MARKDOWN = '# The plan\n\nSome **bold** words.\n\n```python\nx = 1\n```\n\nAnd then'
FORMATTED = ['<h1>The plan</h1>', '<strong>bold</strong>', 'class="codehilite"']


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return openai_args


def reply_state(user: User, message_id: int) -> dict:
    """The state this tab's reply element holds: what it was drawn with, or, once the reply ended, its final HTML."""
    with user:
        (bubble,) = ElementFilter(marker=f'message-{message_id}')
        (view,) = [element for element in bubble.descendants() if isinstance(element, ReplyText)]
        return dict(view.props)


def blocks_sent(sent: SentReplyText, user: User, message_id: int) -> tuple[str, int]:
    """The finished blocks this tab was sent while the reply streamed (its element began empty): their HTML, and
    where they end."""
    html, done = '', 0
    for recipients, pieces in sent.broadcasts:
        if user.client.id in recipients and message_id in pieces and len(pieces[message_id]) == 5:
            _, _, _, done, block_html = pieces[message_id]
            html += block_html
    return html, done


def the_reply(room: Room) -> Message | None:
    return next((m for m in room.recent if m.kind == Kind.BOT), None)


@pytest.mark.parametrize('ending', ['stopped', 'failed', 'interrupted'])
async def test_a_reply_that_ends_badly_keeps_its_formatted_blocks(
        create_user: Callable[[], User], room: Room, fake_openai: FakeOpenAI, sent_reply_text: SentReplyText,
        ending: str) -> None:
    markdown_tokens = split_reply(MARKDOWN)
    fake_openai.script = Script(tokens=[*markdown_tokens, *numbered_tokens(300)], delay=0.02,
                                drop_after=len(markdown_tokens) + 10 if ending == 'failed' else None)
    watcher = create_user()
    await open_room(watcher)
    watcher.find(marker='input').type('@gpt the plan, please')
    watcher.find(marker='send').click()
    await eventually(lambda: the_reply(room), message='no reply began')
    reply_id = the_reply(room).id  # type: ignore[union-attr]
    assert reply_id is not None
    await eventually(lambda: ' w5' in getattr(room.reply_so_far(reply_id), 'text', ''),
                     message='the reply did not get past its Markdown')
    if ending == 'stopped':
        watcher.find(marker='stop').click()
    elif ending == 'interrupted':
        await room.replies.interrupt_all()  # as when the app shuts down mid-reply
    await eventually(lambda: not the_reply(room).status.in_progress, timeout=10,  # type: ignore[union-attr]
                     message='the reply did not end')
    stored = await room.store.get(reply_id)
    assert stored is not None and stored.body.startswith(MARKDOWN)
    assert stored.status == {'stopped': Status.STOPPED, 'failed': Status.ERROR,
                             'interrupted': Status.INTERRUPTED}[ending]

    final = reply_state(watcher, reply_id)
    assert (final['html'], final['done'], final['tail']) == (render_markdown(stored.body), len(stored.body), '')
    assert all(part in final['html'] for part in FORMATTED), final['html']
    streamed_html, streamed_to = blocks_sent(sent_reply_text, watcher, reply_id)
    # The tab already holds every block, as formatted while it streamed: it keeps them and asks for nothing.
    assert (streamed_html, streamed_to) == (final['html'], final['done'])

    latecomer = create_user()
    await open_room(latecomer)
    assert reply_state(latecomer, reply_id)['html'] == final['html']


@pytest.fixture
def left_streaming(db_path: Path) -> None:
    """A reply that a process which died was streaming, its Markdown half written."""
    async def write() -> None:
        store = Store(f'sqlite:///{db_path}')
        await store.open()
        question = await store.add(Message(author='Ian', author_id='ian', body='@gpt the plan?'))
        await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot', body=MARKDOWN, status=Status.STREAMING,
                                reply_to=question.id))
        await store.close()
    asyncio.run(write())


async def test_a_reply_left_streaming_by_a_dead_process_is_shown_formatted(left_streaming: None, user: User,
                                                                           room: Room) -> None:
    await open_room(user)
    reply = next(m for m in await room.store.recent(10) if m.kind == Kind.BOT)
    assert reply.status == Status.INTERRUPTED and reply.id is not None
    state = reply_state(user, reply.id)
    assert (state['html'], state['tail'], state['live']) == (render_markdown(MARKDOWN), '', False)
    assert all(part in state['html'] for part in FORMATTED), state['html']
