"""Limits hit with clear notices, and the API key never reaching a browser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nicegui import core
from nicegui.testing import User

from chat.bot import Bot
from chat.demo_bot import DemoProvider
from chat.limits import RateLimit, counted
from chat.models import Kind, Message, Status
from chat.room import Room

from .conftest import eventually, open_room
from .fake_openai import FakeOpenAI, Script, numbered_tokens


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return [*openai_args, '--messages-per-10s', '3', '--gpt-per-minute', '2', '--max-replies-at-once', '2',
            '--max-tokens', '5']


async def say(user: User, text: str) -> None:
    with user:
        user.find(marker='input').elements.pop().value = text
    user.find(marker='send').click()


def refusal_shown(user: User) -> str:
    """The notice under this tab's message box (the simulated tabs share one `ui.notify` recorder)."""
    with user:
        return user.find(marker='input').elements.pop().error or ''


def input_value(user: User) -> str:
    with user:
        return user.find(marker='input').elements.pop().value


async def test_too_many_messages_in_10_seconds(user: User, room: Room) -> None:
    await open_room(user)
    for index in range(3):
        await say(user, f'message {index}')
        await eventually(lambda index=index: len(room.recent) == index + 1)
    await say(user, 'one too many')
    await eventually(lambda: 'at most 3 in 10 seconds' in refusal_shown(user))
    assert input_value(user) == 'one too many' and len(room.recent) == 3



def count_queries(room: Room, monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """The name of each of these store queries, as it is made from now on (it is still made)."""
    queries: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        query = getattr(room.store, name)

        async def counted(*args: Any) -> Any:
            queries.append(name)
            return await query(*args)
        return counted
    for name in names:
        monkeypatch.setattr(room.store, name, counting(name))
    return queries


async def test_a_refused_flood_costs_no_database_query(user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer over their message rate, or a message too long, is refused before the room's count in the database:
    a flood of them costs the database nothing."""
    queries = count_queries(room, monkeypatch, 'replies_since', 'spending_since')
    await open_room(user)
    await say(user, '@gpt ' + 'x' * room.settings.max_message_chars)
    await eventually(lambda: 'characters long' in refusal_shown(user))
    for index in range(3):
        await say(user, f'message {index}')
        await eventually(lambda index=index: len(room.recent) == index + 1)
    for attempt in ('@gpt one too many', '@gpt one too many, again'):
        await say(user, attempt)
        await eventually(lambda attempt=attempt: input_value(user) == attempt
                         and 'at most 3 in 10 seconds' in refusal_shown(user))
    assert queries == [] and len(room.recent) == 3


async def test_too_many_questions_a_minute(user: User, room: Room) -> None:
    await open_room(user)
    for index in range(2):
        await say(user, f'@gpt question {index}')
        await eventually(lambda index=index: len(room.recent) == 2 * (index + 1)
                         and not room.recent[-1].status.in_progress)
    await say(user, '@gpt a third')
    await eventually(lambda: 'ask @gpt 2 times a minute' in refusal_shown(user))
    assert input_value(user) == '@gpt a third'


async def test_replies_at_once_in_the_room(create_user: Callable[[], User], room: Room,
                                           fake_openai: FakeOpenAI) -> None:
    fake_openai.script = Script(tokens=numbered_tokens(5), delay=1)
    tabs = [create_user() for _ in range(3)]
    for tab in tabs:
        await open_room(tab)
    await say(tabs[0], '@gpt one')
    await say(tabs[1], '@gpt two')
    await eventually(lambda: len(room.replies.in_progress) == 2)
    await say(tabs[2], '@gpt three')
    await eventually(lambda: 'already writing 2 replies' in refusal_shown(tabs[2]))
    for reply_id in list(room.replies.in_progress):
        room.stop(reply_id)


async def test_the_completion_token_cap_reaches_the_provider(user: User, room: Room) -> None:
    await open_room(user)
    await say(user, '@gpt a long answer please [[tokens:50]]')
    await eventually(lambda: len(room.recent) == 2 and room.recent[-1].status == Status.DONE)
    assert room.recent[-1].body == ''.join(numbered_tokens(5))


def test_the_context_is_cut_to_its_character_budget() -> None:
    context = [Message(author='Ian', author_id='i', body='x' * 100), Message(author='Abhi', author_id='a', body='y'),
               Message(kind=Kind.BOT, author='GPT', author_id='bot', body='z' * 10),
               Message(author='Ian', author_id='i', body='@gpt ' + 'q' * 50)]
    bot = Bot('gpt', DemoProvider(), system_prompt='S', max_tokens=100)
    prompt = bot.prompt(context, max_chars=80)
    assert [turn['content'][:5] for turn in prompt] == ['S', 'Abhi:', 'zzzzz', 'Ian: ']
    prompt = bot.prompt(context, max_chars=10)  # the question itself always stays
    assert [turn['content'][:5] for turn in prompt] == ['S', 'Ian: ']


async def test_the_api_key_never_reaches_a_browser(user: User, room: Room, fake_openai: FakeOpenAI,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    original_emit = core.sio.emit

    async def recording_emit(event: str, data: Any = None, **kwargs: Any) -> None:
        sent.append(json.dumps([event, data], default=str))
        await original_emit(event, data, **kwargs)
    monkeypatch.setattr(core.sio, 'emit', recording_emit)

    page = (await user.http_client.get('/')).text
    await open_room(user)
    await say(user, '@gpt hello')
    await eventually(lambda: len(room.recent) == 2 and room.recent[-1].status == Status.DONE)
    await say(user, '@gpt again [[status:401]]')  # an error that is about the key itself
    await eventually(lambda: len(room.recent) == 4 and room.recent[-1].status == Status.ERROR)
    await eventually(lambda: any('API key was rejected' in message for message in sent))

    assert fake_openai.requests[-1]['headers']['authorization'] == 'Bearer sk-test-secret-key'
    assert 'sk-test-secret-key' not in page
    assert sent and not [message for message in sent if 'sk-test-secret-key' in message]
    assert all('sk-test-secret-key' not in json.dumps(request['body']) for request in fake_openai.requests)


def test_a_rate_limit_forgets_people_who_went_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = RateLimit(count=2, seconds=10)
    clock = [1000.0]
    fake_time = SimpleNamespace(monotonic=lambda: clock[0])
    monkeypatch.setitem(RateLimit.wait.__globals__, 'time', fake_time)  # the limits module's clock
    for _ in range(2):
        assert limit.wait('ann') == 0
        limit.record('ann')
    assert limit.wait('ann') == pytest.approx(10)
    for index in range(1001):
        limit.record(f'visitor {index}')
    clock[0] += 11
    limit.record('bob')  # past 1,000 people, the idle ones are dropped
    assert set(limit.times) == {'bob'}


TWO_BOTS = '''
[[bots]]
name = "critic"
provider = "openai"

[[bots]]
name = "helper"
provider = "openai"
'''


class TestAMessageAskingMoreBotsThanTheRoomTakesAtOnce:
    """Whichever limit is the smallest (replies at once, one person's questions a minute, the room's), a message
    asking more bots than it can never pass: waiting would not help, so the writer is told to ask fewer."""

    @pytest.fixture(params=['--max-replies-at-once', '--gpt-per-minute', '--room-gpt-per-minute'])
    def app_args(self, request: pytest.FixtureRequest, openai_args: list[str], tmp_path: Path) -> list[str]:
        bots = tmp_path / 'bots.toml'
        bots.write_text(TWO_BOTS)
        # The other two limits are roomy: only the one under test is smaller than the two bots asked.
        return [*openai_args, '--bots', str(bots), '--max-replies-at-once', '10', '--gpt-per-minute', '10',
                '--room-gpt-per-minute', '10', request.param, '1']

    async def test_it_is_refused_with_its_text_left_and_nothing_stored(self, user: User, room: Room,
                                                                       fake_openai: FakeOpenAI) -> None:
        await open_room(user)
        await say(user, '@critic and @helper, both of you')
        await eventually(lambda: refusal_shown(user) or room.recent)  # refused, or (wrongly) taken
        assert refusal_shown(user) == ('This room takes 1 question to the bots in one message at most: ask fewer '
                                       'bots. Your message is still in the box.')
        assert input_value(user) == '@critic and @helper, both of you'
        assert await room.store.count() == 0 and not room.recent and not room.limits.reserved
        assert not fake_openai.requests and not room.replies.in_progress


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limits module's monotonic clock, moved by hand: clock[0] is now."""
    now = [1000.0]
    monkeypatch.setitem(RateLimit.wait.__globals__, 'time', SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_idle_keys_are_swept_once_a_window_at_most(clock: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    limit = RateLimit(count=2, seconds=10)
    sweeps: list[float] = []
    sweep = limit.forget_idle
    monkeypatch.setattr(limit, 'forget_idle', lambda *now: sweeps.append(clock[0]) or sweep(*now))
    for index in range(RateLimit.KEYS_BEFORE_SWEEP + 500):  # a crowd arriving within one window
        limit.record(f'visitor {index}')
    assert sweeps == [1000.0]  # once, past 1,000 keys: a sweep on every act would go over all the keys each time
    assert len(limit.times) == RateLimit.KEYS_BEFORE_SWEEP + 500  # (none was idle yet)
    clock[0] += 9.9
    limit.record('ann')
    assert len(sweeps) == 1
    clock[0] += 0.2  # a window after the last sweep: the next act sweeps again, and the crowd went quiet
    limit.record('bob')
    assert sweeps == [1000.0, 1010.1] and set(limit.times) == {'ann', 'bob'}


def test_at_most_so_many_keys_are_kept_the_first_seen_going_first(clock: list[float],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    limit = RateLimit(count=2, seconds=10)
    monkeypatch.setattr(limit, 'KEYS_AT_MOST', 3)  # a flood of new keys, in small
    for key in ('ann', 'bob', 'cy', 'dee'):
        limit.record(key)
    assert list(limit.times) == ['bob', 'cy', 'dee']  # ann, the first seen, made room
    limit.record('bob')  # a key already kept drops no one, and not itself: its count goes on
    assert list(limit.times) == ['bob', 'cy', 'dee'] and limit.wait('bob') == pytest.approx(10)
    limit.record('eve')
    assert list(limit.times) == ['cy', 'dee', 'eve']


def test_a_limit_of_one_is_said_in_the_singular() -> None:
    """'at most 1 questions a minute' read badly: refusals count their things as people say them."""
    assert [counted(1, 'question'), counted(3, 'question'), counted(1, 'time'), counted(2, 'time')] == [
        '1 question', '3 questions', 'once', '2 times']
    assert counted(1, 'message') == '1 message'
