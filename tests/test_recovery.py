"""Replies left in progress by a process that died are marked interrupted when the app starts again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nicegui.testing import User

from chat.models import Kind, Message, Status
from chat.room import Room
from chat.store import Store

from .conftest import SentReplyText, open_room, status_shown


@pytest.fixture
def left_in_progress(db_path: Path) -> None:
    async def write() -> None:
        store = Store(f'sqlite:///{db_path}')
        await store.open()
        question = await store.add(Message(author='Ian', author_id='ian', body='@gpt hello?'))
        await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot', body='Half an ans',
                                status=Status.STREAMING, reply_to=question.id))
        await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot', status=Status.THINKING))
        await store.close()
    asyncio.run(write())


async def test_replies_left_in_progress_are_marked_interrupted(left_in_progress: None, user: User, room: Room,
                                                               sent_reply_text: SentReplyText) -> None:
    await open_room(user)
    stored = await room.store.recent(10)
    assert [(m.status, m.body) for m in stored] == [
        (Status.DONE, '@gpt hello?'), (Status.INTERRUPTED, 'Half an ans'), (Status.INTERRUPTED, '')]
    for reply in stored[1:]:
        assert 'Interrupted' in status_shown(user, reply.id)  # type: ignore[arg-type]
    assert sent_reply_text.shown(user, stored[1].id) == 'Half an ans'  # type: ignore[arg-type]
