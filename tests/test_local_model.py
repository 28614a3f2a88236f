"""The local provider's contract, with a fake model (no 'local' extra needed): a worker thread that never blocks the
event loop, one generation at a time with the others waiting visibly, Stop at the next token, clear errors."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from nicegui.testing import User

from chat import roster
from chat.config import Settings
from chat.demo_bot import DemoProvider
from chat.local_model.llama import LlamaModel
from chat.local_model.provider import LocalModelProvider
from chat.models import Status
from chat.providers import ChatMessages, ProviderError, Request, Usage
from chat.room import Room
from chat.roster import chosen_provider, make_provider

from .conftest import eventually, open_room, status_shown
from .test_bot import ask, replies

QUESTION: ChatMessages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Ian: @gpt hi'}]


class FakeModel:
    """Blocks like a real model (time.sleep, not await) and records what it did, and on which thread."""

    name = 'FakeLM'

    def __init__(self, pieces: int = 5, seconds_per_piece: float = 0.01, fail_after: int | None = None) -> None:
        self.pieces = pieces
        self.seconds_per_piece = seconds_per_piece
        self.fail_after = fail_after
        self.log: list[tuple[str, int, float]] = []  # ('start' | 'piece' | 'end', generation number, time)
        self.threads: set[int] = set()
        self.saw_cancel_while_reading = False
        self.made_after_stop: dict[int, int] = {}  # generation -> pieces made once its Stop flag was up
        self.generations = 0

    def generate(self, messages: ChatMessages, max_tokens: int, cancelled: Callable[[], bool]) -> Generator[Any]:
        self.generations += 1
        number = self.generations
        self.threads.add(threading.get_ident())
        self.log.append(('start', number, time.monotonic()))
        try:
            for index in range(min(self.pieces, max_tokens)):
                if self.fail_after is not None and index == self.fail_after:
                    raise RuntimeError('the model broke')
                time.sleep(self.seconds_per_piece)
                self.log.append(('piece', number, time.monotonic()))
                if cancelled():
                    self.made_after_stop[number] = self.made_after_stop.get(number, 0) + 1
                yield f'w{number}.{index} '
            yield Usage(prompt_tokens=len(messages), completion_tokens=min(self.pieces, max_tokens))
        finally:
            self.log.append(('end', number, time.monotonic()))

    def spans(self) -> dict[int, tuple[float, float]]:
        starts = {number: at for what, number, at in self.log if what == 'start'}
        return {number: (starts[number], at) for what, number, at in self.log if what == 'end'}


@dataclass(frozen=True)
class WaitingInLine:
    """The provider said this question waits in line (True), or that its turn came (False)."""

    waiting: bool


async def collect(provider: LocalModelProvider, max_tokens: int = 100) -> list[Any]:
    """What a reply hears from the provider, in order: its text pieces and waits in line, then the usage."""
    items: list[Any] = []
    request = Request(QUESTION, max_tokens, waiting_in_line=lambda waiting: items.append(WaitingInLine(waiting)))
    async for text in provider.stream(request):
        items.append(text)
    return [*items, request.usage]


async def test_streams_pieces_then_usage_from_a_worker_thread() -> None:
    model = FakeModel(pieces=4)
    items = await collect(LocalModelProvider(model), max_tokens=3)
    assert items == ['w1.0 ', 'w1.1 ', 'w1.2 ', Usage(prompt_tokens=2, completion_tokens=3)]  # the token cap holds
    assert model.threads and threading.get_ident() not in model.threads


async def test_the_event_loop_keeps_turning_while_the_model_works() -> None:
    model = FakeModel(pieces=3, seconds_per_piece=0.3)  # each piece blocks its thread for 0.3 s
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)
    ticker = asyncio.create_task(tick())
    await collect(LocalModelProvider(model))
    ticker.cancel()
    assert ticks > 30, f'the loop turned only {ticks} times in 0.9 s of generation'


async def test_two_questions_at_once_are_answered_one_after_the_other() -> None:
    model = FakeModel(pieces=5, seconds_per_piece=0.02)
    provider = LocalModelProvider(model)
    first, second = await asyncio.gather(collect(provider), collect(provider))
    assert WaitingInLine(waiting=True) not in first
    # it waited, visibly, then had its turn
    assert second[:2] == [WaitingInLine(waiting=True), WaitingInLine(waiting=False)]
    assert [item for item in second[2:] if isinstance(item, str)] == [f'w2.{index} ' for index in range(5)]
    spans = model.spans()
    assert spans[1][1] <= spans[2][0], 'the second generation started before the first ended'
    assert provider.line == []


async def test_stop_ends_a_generation_at_its_next_piece_and_the_line_moves_on() -> None:
    model = FakeModel(pieces=1000, seconds_per_piece=0.01)
    provider = LocalModelProvider(model)
    received: list[Any] = []

    async def read_first() -> None:
        async for item in provider.stream(Request(QUESTION, 2000)):
            received.append(item)
    first = asyncio.create_task(read_first())
    second = asyncio.create_task(collect(provider, max_tokens=10))
    await eventually(lambda: len(received) >= 5)
    first.cancel()  # what Stop does to the reply's task
    await asyncio.gather(first, return_exceptions=True)
    answer = await asyncio.wait_for(second, 5)

    # Counted from the moment the Stop flag was up, not timed: the piece being made then, at most, and no other.
    assert model.made_after_stop.get(1, 0) <= 1, f'{model.made_after_stop[1]} more pieces were made after the Stop'
    assert 1 in model.spans()  # the first generation ended
    assert [item for item in answer if isinstance(item, str)][-1] == 'w2.9 '  # the next question was answered


async def test_a_question_stopped_while_waiting_leaves_the_line() -> None:
    model = FakeModel(pieces=20, seconds_per_piece=0.01)
    provider = LocalModelProvider(model)
    first = asyncio.create_task(collect(provider))
    second = asyncio.create_task(collect(provider))
    third = asyncio.create_task(collect(provider))
    await eventually(lambda: len(provider.line) == 3)
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert len(provider.line) == 2
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    assert model.generations == 2 and provider.line == []


async def test_a_model_that_fails_gives_a_sentence_and_frees_the_line() -> None:
    provider = LocalModelProvider(FakeModel(pieces=5, fail_after=2))
    received: list[Any] = []
    with pytest.raises(ProviderError, match=r'The local model failed \(RuntimeError\)'):
        async for item in provider.stream(Request(QUESTION, 100)):
            received.append(item)
    assert received == ['w1.0 ', 'w1.1 ']
    await eventually(lambda: provider.line == [])  # once the worker thread is free


@pytest.mark.parametrize(('provider', 'key', 'model_path', 'installed', 'expected'), [
    ('auto', 'sk-x', None, True, 'openai'),  # a key wins
    ('auto', '', None, True, 'local'),  # no key, the extra installed
    ('auto', '', 'my.gguf', False, 'local'),  # a model file given
    ('auto', '', None, False, 'demo'),
    ('demo', 'sk-x', None, True, 'demo'),  # asked for by name
    ('local', 'sk-x', None, False, 'local'),
])
def test_which_provider_answers(monkeypatch: pytest.MonkeyPatch, provider: str, key: str, model_path: str | None,
                                installed: bool, expected: str) -> None:
    monkeypatch.setattr(roster, 'local_model_installed', lambda: installed)
    assert chosen_provider(Settings(provider=provider, api_key=key, model_path=model_path)) == expected


def test_auto_falls_back_to_the_demo_bot_when_the_local_model_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model_path: str | None) -> None:
        raise ProviderError('llama-cpp-python is installed but does not load: libfoo.so missing')
    monkeypatch.setattr(LlamaModel, 'load', broken)
    monkeypatch.setattr(roster, 'local_model_installed', lambda: True)
    assert isinstance(make_provider(Settings(provider='auto'), {}), DemoProvider)
    with pytest.raises(ProviderError, match='does not load'):  # asked for by name: the app says why and stops
        make_provider(Settings(provider='local'), {})


async def test_in_the_room_the_second_question_waits_visibly_then_is_answered(
        create_user: Callable[[], User], room: Room) -> None:
    model = FakeModel(pieces=40, seconds_per_piece=0.025)  # 1 s per answer, longer than the first-token timeout
    room.bots['gpt'].provider = LocalModelProvider(model)
    room.replies.settings = replace(room.replies.settings, reply_timeout=0.5)
    first, second = create_user(), create_user()
    await open_room(first)
    await open_room(second)
    await ask(first, '@gpt one')
    await eventually(lambda: replies(room))
    await ask(second, '@gpt two')
    await eventually(lambda: len(replies(room)) == 2)
    waiting_id = replies(room)[1].id
    assert waiting_id is not None
    for tab in (first, second):  # every tab sees why nothing happens yet
        await eventually(lambda tab=tab: 'waiting for the local model' in status_shown(tab, waiting_id))
    await eventually(lambda: not any(reply.status.in_progress for reply in replies(room)), 10)
    assert [reply.status for reply in replies(room)] == [Status.DONE, Status.DONE]  # no timeout while in line
    assert replies(room)[1].body.startswith('w2.0 ') and replies(room)[1].author == 'FakeLM'
    stored = await room.store.get(waiting_id)
    assert stored is not None and stored.completion_tokens == 40


def test_without_the_extra_the_local_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr('importlib.util.find_spec', lambda name, *args: None)
    with pytest.raises(ProviderError, match=re.escape("pip install -e '.[local]'")):
        LlamaModel.load(None)
