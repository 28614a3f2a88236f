"""The daily token budget where it could leak: a burst of questions, a Stop before the first token, a restart (the
header's figure), and the days' turn. Simulated tabs against the local fake OpenAI server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from nicegui.testing import User

from chat.models import Kind, Message, Status, utc_now
from chat.room import Room
from chat.store import Store
from chat.tokens import estimated_prompt_tokens, longest_prompt_bound, prompt_bound_tokens

from .conftest import eventually, open_room, status_shown
from .fake_openai import FakeOpenAI, llama_tokenizer
from .test_bot import ask, replies

BUDGET = 1000
MAX_TOKENS = 1000  # so each reply in progress holds more than the whole budget: its prompt, and this


@pytest.fixture
def app_args(openai_args: list[str]) -> list[str]:
    return [*openai_args, '--daily-token-budget', str(BUDGET), '--max-tokens', str(MAX_TOKENS)]


def error_under_the_box(user: User) -> str:
    with user:
        return user.find(marker='input').elements.pop().error or ''


def clear_the_box(user: User) -> None:
    """As after a message that went through: empty, and no refusal under it."""
    with user:
        box = user.find(marker='input').elements.pop()
        box.value, box.error = '', None


async def test_a_burst_of_questions_cannot_spend_the_budget_many_times_over(
        create_user: Callable[[], User], room: Room, fake_openai: FakeOpenAI) -> None:
    tabs = [create_user() for _ in range(8)]
    for tab in tabs:
        await open_room(tab)
    for number, tab in enumerate(tabs):  # all at once, as eight people pressing Enter in the same moment
        await ask(tab, f'@gpt number {number} [[tokens:40]] [[delay:0.05]]')
    await eventually(lambda: sum('may be spent by the replies being written' in error_under_the_box(tab)
                                 for tab in tabs) == 7, message='not seven refusals')
    # (the one admitted may still be storing its question: the refusals came without waiting for it)
    await eventually(lambda: len(replies(room)) == 1 and len(fake_openai.requests) == 1)
    refusal = next(error_under_the_box(tab) for tab in tabs if error_under_the_box(tab))
    assert '0 used, and up to ' in refusal and 'held for them' in refusal
    await eventually(lambda: not replies(room)[0].status.in_progress, timeout=10)
    spent = replies(room)[0].prompt_tokens + replies(room)[0].completion_tokens  # type: ignore[operator]
    assert spent < BUDGET  # what it really cost: once it ended, its hold is gone, and the next question goes
    waiting = next(tab for tab in tabs if error_under_the_box(tab))
    clear_the_box(waiting)
    await ask(waiting, '@gpt now me [[tokens:2]]')
    await eventually(lambda: len(replies(room)) == 2)


async def test_a_stop_before_the_first_token_still_counts_the_prompt(user: User, room: Room,
                                                                   fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await ask(user, '@gpt think long first [[first_delay:3]] ' + 'and read this. ' * 240)
    await eventually(lambda: fake_openai.requests, message='the question never reached the provider')
    user.find(marker='stop').click()
    await eventually(lambda: replies(room) and replies(room)[0].status == Status.STOPPED)
    reply = replies(room)[0]
    assert reply.usage_estimated and reply.completion_tokens == 0
    assert reply.prompt_tokens and reply.prompt_tokens > 3600 // 4  # the question alone is 3,600 characters
    stored = await room.store.get(reply.id)  # type: ignore[arg-type]
    assert stored and stored.prompt_tokens == reply.prompt_tokens
    await eventually(lambda: room.limits.spent_today == reply.prompt_tokens, message='today\'s use did not count it')


async def test_a_question_the_provider_refused_costs_nothing(user: User, room: Room) -> None:
    await open_room(user)
    await ask(user, '@gpt [[status:500]]')
    await eventually(lambda: replies(room) and replies(room)[0].status == Status.ERROR)
    await eventually(lambda: room.limits.recount is None and room.limits.recounting is not None
                     and room.limits.recounting.done(), message='today\'s use was not read again at the end')
    assert replies(room)[0].prompt_tokens is None and room.limits.spent_today == 0


@pytest.fixture
def spent_earlier(db_path: Path) -> int:
    """Replies of today and of yesterday, stored before the app starts (an earlier run, or another instance)."""
    async def write() -> None:
        store = Store(f'sqlite:///{db_path}')
        await store.open()
        now = utc_now()
        for days_ago, tokens in ((0, 300), (0, 200), (1, 5000)):
            await store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot:gpt', prompt_tokens=tokens - 10,
                                    completion_tokens=10, created_at=now - timedelta(days=days_ago)))
        await store.close()
    asyncio.run(write())
    return 500


async def test_the_header_shows_todays_use_from_the_start(spent_earlier: int, user: User, room: Room) -> None:
    await open_room(user)
    await user.should_see(f'Today: {spent_earlier:,} of {BUDGET:,} tokens')


async def test_the_header_follows_what_a_check_reads_from_the_database(spent_earlier: int, user: User,
                                                                      room: Room) -> None:
    await open_room(user)
    await room.store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot:gpt', prompt_tokens=90,
                                 completion_tokens=10))  # another instance's reply, whose news never came here
    await ask(user, '@gpt hello [[tokens:4]] [[delay:0.5]]')
    await user.should_see(f'Today: {spent_earlier + 100:,} of {BUDGET:,} tokens')  # while the new reply is written
    assert replies(room)[-1].status.in_progress


async def test_the_header_starts_afresh_at_midnight_utc(spent_earlier: int, user: User, room: Room,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    await open_room(user)
    await user.should_see(f'Today: {spent_earlier:,} of {BUDGET:,} tokens')
    tomorrow = room.limits.day + timedelta(days=1, minutes=1)
    monkeypatch.setattr(sys.modules[type(room.limits).__module__], 'utc_now', lambda: tomorrow)
    room.limits.midnight.cancel()  # type: ignore[union-attr]
    room.limits.roll_over_at_midnight()  # what the timer does at midnight
    await user.should_see(f'Today: 0 of {BUDGET:,} tokens')
    assert room.limits.midnight is not None and 23 * 3600 < room.limits.midnight.when() - \
        asyncio.get_running_loop().time() <= 24 * 3600


class TestAReplyHoldsItsPromptsEstimate:
    """Until its request is made, a reply holds the longest prompt its bot may be sent (here more than the budget);
    from then on its prompt's estimate, stored for every instance to see: a room is not starved by its holds."""

    @pytest.fixture
    def app_args(self, openai_args: list[str]) -> list[str]:
        return [*openai_args, '--daily-token-budget', '3000', '--max-tokens', str(MAX_TOKENS)]

    async def test_a_second_question_fits_beside_a_reply_in_progress(self, two_tabs: tuple[User, User],
                                                                     room: Room) -> None:
        first, second = two_tabs
        await ask(first, '@gpt a slow one [[tokens:40]] [[delay:0.05]]')
        await eventually(lambda: replies(room) and replies(room)[0].status == Status.STREAMING)
        await ask(second, '@gpt and mine [[tokens:2]]')
        await eventually(lambda: len(replies(room)) == 2, message='the second question was refused')


async def test_a_llama_cpp_server_counts_a_reply_it_sent_no_usage_for(user: User, room: Room,
                                                                      fake_openai: FakeOpenAI) -> None:
    fake_openai.tokenizer = True  # llama.cpp's /apply-template and /tokenize (the fake counts one token a word)
    await open_room(user)
    await ask(user, '@gpt count me [[usage:no]] [[tokens:40]]')
    await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress)
    reply = replies(room)[0]
    asked = next(request['body'] for request in fake_openai.requests if request['path'] == '/v1/chat/completions')
    template = llama_tokenizer('/apply-template', {'messages': asked['messages']})['prompt']
    assert (reply.prompt_tokens, reply.completion_tokens) == (len(template.split()) + 1, 40)  # not chars / 4
    assert reply.usage_estimated and '≈' in status_shown(user, reply.id)  # type: ignore[arg-type]


async def test_a_server_without_a_tokenizer_is_asked_once_then_estimated(user: User, room: Room,
                                                                        fake_openai: FakeOpenAI) -> None:
    await open_room(user)  # (the fake answers 404 to llama.cpp's routes, as Ollama does)
    for number in (1, 2):
        await ask(user, f'@gpt estimate me {number} [[usage:no]] [[tokens:40]]')
        await eventually(lambda number=number: len(replies(room)) == number
                         and not replies(room)[-1].status.in_progress)
        clear_the_box(user)
    assert all(reply.completion_tokens == len(reply.body) // 4 and reply.usage_estimated for reply in replies(room))
    assert [request['path'] for request in fake_openai.requests].count('/apply-template') == 1


class TestTheBudgetHoldsEveryBotAMessageAsks:
    """A message to two bots would start two replies at once: the first may cross the line (it finishes), the
    second must fit beside it at its worst. Here each reply's worst case is more than the whole budget."""

    @pytest.fixture
    def app_args(self, openai_args: list[str], tmp_path: Path) -> list[str]:
        bots = tmp_path / 'bots.toml'
        bots.write_text(''.join(f'[[bots]]\nname = "{name}"\nprovider = "openai"\n' for name in ('critic', 'helper')))
        return [*openai_args, '--bots', str(bots), '--daily-token-budget', str(BUDGET), '--max-tokens', str(MAX_TOKENS)]

    async def test_two_bots_are_refused_where_one_is_admitted(self, user: User, room: Room,
                                                               fake_openai: FakeOpenAI) -> None:
        await open_room(user)
        await ask(user, '@critic and @helper, both of you [[tokens:2]]')
        await eventually(lambda: error_under_the_box(user) or room.recent)  # refused, or (wrongly) taken
        held = room.limits.worst_case(room.bots['helper'].author_id)  # the second bot's, at its worst
        assert f"may be spent by the replies being written: 0 used, and up to {held:,} held" in \
            error_under_the_box(user)
        assert not room.recent and await room.store.count() == 0 and not fake_openai.requests
        clear_the_box(user)
        await ask(user, '@critic alone [[tokens:2]]')
        await eventually(lambda: replies(room) and not replies(room)[0].status.in_progress, 10)
        assert replies(room)[0].status == Status.DONE and not error_under_the_box(user)


def recounted(room: Room) -> bool:
    """No reading of today's use is due or under way (a reply's end starts one, RECOUNT_AFTER later)."""
    recounting = room.limits.recounting
    return room.limits.recount is None and (recounting is None or recounting.done())


async def another_instances_reply(room: Room, tokens: int) -> Message:
    """A reply another instance wrote, ended and stored: its news reaches this one late, or never."""
    return await room.store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot:gpt', prompt_tokens=tokens - 10,
                                        completion_tokens=10))


async def test_todays_use_is_read_again_after_a_reply_ends_and_an_end_told_twice_counts_once(
        user: User, room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room.limits, 'RECOUNT_AFTER', 0.05)  # (0.5 s in the app)
    await open_room(user)
    read_by_the_check = await another_instances_reply(room, 100)
    await ask(user, '@gpt hello [[tokens:4]] [[first_delay:0.3]]')  # the check reads today's use: 100
    await eventually(lambda: replies(room) and replies(room)[0].status.in_progress)
    await another_instances_reply(room, 50)  # ends while this reply is written; its news never comes
    await eventually(lambda: not replies(room)[0].status.in_progress and recounted(room))
    stored = await room.store.get(replies(room)[0].id)  # type: ignore[arg-type]
    assert stored and stored.prompt_tokens and stored.completion_tokens == 4
    in_the_database = 100 + 50 + stored.prompt_tokens + stored.completion_tokens
    assert room.limits.spent_today == in_the_database  # read again, not this reply's tokens added
    room.limits.count_spending(read_by_the_check)  # its news comes now, after the check counted it
    room.limits.count_spending(replies(room)[0])  # and this reply's end is told a second time (the relay)
    await eventually(lambda: recounted(room))
    assert room.limits.spent_today == in_the_database
    await user.should_see(f'Today: {in_the_database:,} of {BUDGET:,} tokens')


def test_a_prompts_bound_is_its_utf8_bytes_whatever_the_language() -> None:
    """A token is at least a byte of UTF-8: a Chinese character (3 bytes) can be near a token by itself, where
    English runs about four characters a token. The bound the budget holds must not be the English estimate."""
    question = [{'role': 'user', 'content': '漢字' * 500}]
    assert prompt_bound_tokens(question) >= 3 * 1000
    assert prompt_bound_tokens(question) >= 3 * estimated_prompt_tokens(question)
    assert longest_prompt_bound('', max_chars=1000, messages=0) >= 4 * 1000  # (up to 4 bytes a character)


async def test_a_chinese_question_holds_its_bytes_while_its_reply_is_written(user: User, room: Room,
                                                                           fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await ask(user, '@gpt ' + '请把这段话翻译成英文。' * 100 + ' [[first_delay:3]]')  # 1,100 CJK characters
    await eventually(lambda: fake_openai.requests, message='the question never reached the provider')
    reply_id = replies(room)[0].id
    assert reply_id is not None
    sent = fake_openai.requests[-1]['body']['messages']
    stored = await room.store.get(reply_id)  # (the bound is written before the request is made)
    assert stored and stored.status.in_progress
    assert stored.prompt_tokens == sum(len(turn['content'].encode()) for turn in sent) + 4 * len(sent)
    assert stored.prompt_tokens >= 3 * 1100  # not 1,100 characters / 4
    room.stop(reply_id)
    await eventually(lambda: not replies(room)[0].status.in_progress)


async def test_a_reply_begun_before_midnight_and_still_written_holds_the_budget(user: User, room: Room,
                                                                               fake_openai: FakeOpenAI) -> None:
    await open_room(user)
    await room.store.add(Message(kind=Kind.BOT, author='GPT', author_id='bot:gpt', status=Status.STREAMING,
                                 prompt_tokens=300, created_at=room.limits.day - timedelta(minutes=1)))  # (another
    # instance writes it: its cost counts in yesterday's use when it ends, but today it may still spend tokens)
    await ask(user, '@gpt hello [[tokens:2]]')
    await eventually(lambda: error_under_the_box(user) or replies(room))  # refused, or (wrongly) taken
    assert f'0 used, and up to {300 + MAX_TOKENS:,} held for them' in error_under_the_box(user)
    assert not replies(room) and not fake_openai.requests
