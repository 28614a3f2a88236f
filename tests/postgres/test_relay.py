"""The several-instance relay (chat/instances/relay.py) on a real PostgreSQL, with two instances in this process.

Two rooms, each with its own store, relay and bot, share one database as two app processes would (see conftest.py
for the server). Running them in the test's own event loop lets a test shorten the lease, watch what a relay does
(its sweeps, the notices it gets) and cut one relay's LISTEN connection at a chosen moment; the subprocess tests in
test_two_instances.py cover the app as a whole. The bot is a scripted provider: the test says when each reply gets
which text and when it ends, so no test waits on a timer for the model.

What is checked here:
- a reply that streams for longer than the lease is kept alive by its instance: the other never marks it interrupted;
- a beat's text bigger than one NOTIFY is cut into notices under the limit, and reaches the other instance whole;
- an instance whose LISTEN connection dropped reconnects and catches up on what it missed meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nicegui import Event

from chat.bot import Bot
from chat.config import Settings
from chat.instances import relay as relay_module
from chat.instances.leases import LeasedStore
from chat.instances.relay import PostgresRelay
from chat.models import Message, Status
from chat.presence import Person
from chat.providers import Request
from chat.reply import Growth
from chat.room import Room

NOTIFY_LIMIT = 8000  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more ("payload string too long")
CONTROL = ''.join(map(chr, range(1, 32)))  # JSON writes most of these as \u00XX: 6 bytes for one character
WIDE = 'é€😀"\\'  # 2, 3 and 4 bytes in UTF-8; 2 bytes each as JSON escapes them
# Generous bounds for what takes well under a second: a loaded 2-core CI machine must not fail them by chance.
SOON = 10.0


class ScriptedModel:
    """A provider the test writes: its n-th reply reads its text from `feeds[n]` (None ends the reply). A feed can
    be written before its reply starts."""

    name = 'GPT'
    model = description = 'scripted'

    def __init__(self) -> None:
        self.feeds: defaultdict[int, asyncio.Queue[str | None]] = defaultdict(asyncio.Queue)
        self.asked = 0

    async def stream(self, request: Request) -> AsyncIterator[str]:
        feed = self.feeds[self.asked]
        self.asked += 1
        while (text := await feed.get()) is not None:
            yield text


@dataclass
class Seen:
    """What a room told its tabs, through the events they listen to."""

    added: dict[int, Message] = field(default_factory=dict)
    text: dict[int, str] = field(default_factory=dict)  # each message's text: as added, then as its `grew` continued it
    statuses: defaultdict[int, list[Status]] = field(default_factory=lambda: defaultdict(list))
    ends: dict[int, tuple[Status, str]] = field(default_factory=dict)  # a reply's end: its status and final text
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (reply, its length so far, a growth's offset)

    def follow(self, room: Room) -> Seen:
        room.added.subscribe(self.on_added)
        room.grew.subscribe(self.on_grew)
        room.changed.subscribe(self.on_changed)
        return self

    def on_added(self, message: Message) -> None:
        assert message.id is not None
        self.added[message.id] = message
        self.text[message.id] = message.body
        self.on_changed(message)

    def on_grew(self, growth: dict[int, Growth]) -> None:
        for message_id, grown in growth.items():
            so_far = self.text.get(message_id, '')
            if grown.offset != len(so_far):  # a tab would see a gap, or the same text twice
                self.gaps.append((message_id, len(so_far), grown.offset))
            self.text[message_id] = so_far[:grown.offset] + grown.text

    def on_changed(self, message: Message) -> None:
        assert message.id is not None
        self.statuses[message.id].append(message.status)
        if not message.status.in_progress:
            self.ends[message.id] = (message.status, message.body)


@dataclass
class Instance:
    room: Room
    relay: PostgresRelay
    model: ScriptedModel
    seen: Seen  # what its room told its tabs
    listener: int = 0  # the process id of the PostgreSQL backend of its LISTEN connection


async def until(check: Callable[[], Any], timeout: float, message: str) -> Any:
    """Wait until `check()` (a function, or a coroutine function) returns something true, and return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.05)


async def listeners(url: str) -> set[int]:
    """The backends listening for the relay's news on this test's database (their last query was the LISTEN)."""
    async with await psycopg.AsyncConnection.connect(url.replace('+psycopg', ''), autocommit=True) as connection:
        cursor = await connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND query LIKE 'LISTEN%'")
        return {pid for (pid,) in await cursor.fetchall()}


async def new_listener(url: str, known: set[int]) -> int:
    """The first LISTEN backend not in `known`, once there is one."""
    async def appeared() -> int | None:
        return next(iter(await listeners(url) - known), None)
    return await until(appeared, SOON, 'the relay did not LISTEN')


async def start_instance(url: str, lease: float) -> Instance:
    settings = Settings(db=url)
    model = ScriptedModel()
    room = Room(settings, LeasedStore(settings.db_url, lease), [Bot('gpt', model, 'Answer.', 1000)])
    instance = Instance(room, PostgresRelay(room, settings.db_url), model, Seen().follow(room))
    known = await listeners(url)
    await room.open()
    await instance.relay.start()
    instance.listener = await new_listener(url, known)  # started one at a time: the new LISTEN is this one's
    return instance


@asynccontextmanager
async def two_instances(url: str,
                        lease: float = relay_module.LEASE_SECONDS) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two instances on one database, both listening; closed as the app closes them (chat/ui/__init__.py)."""
    started: list[Instance] = []
    try:
        for _ in range(2):
            started.append(await start_instance(url, lease))
        yield started[0], started[1]
    finally:
        for instance in started:
            await instance.relay.stop_listening()
        for instance in started:
            await instance.room.close()
            await instance.relay.stop()


async def ask(instance: Instance, who: str, question: str) -> int:
    """`who` asks @gpt on this instance: the id of the reply it starts."""
    posted = await instance.room.post(Person(who, who.title()), f'@gpt {question}')
    assert posted is not None
    return next(reply.id for reply in instance.room.replies.in_progress.values() if reply.message.reply_to == posted.id)


async def saved_text(instance: Instance, message_id: int) -> str:
    stored = await instance.room.store.get(message_id)
    assert stored is not None
    return stored.body


async def saved(instance: Instance, message_id: int, text: str) -> bool:
    return await saved_text(instance, message_id) == text


# 1. The lease of a reply that outlasts it


def spy_on_sweeps(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, list[int]]]:
    """Each sweep of the instance's relay for replies whose lease ran out: when it began (loop time), what it marked."""
    sweeps: list[tuple[float, list[int]]] = []
    original = instance.room.store.interrupt_abandoned_replies

    async def sweep(sparing: Any = ()) -> list[int]:
        began = asyncio.get_running_loop().time()
        found = await original(sparing)
        sweeps.append((began, found))
        return found
    monkeypatch.setattr(instance.room.store, 'interrupt_abandoned_replies', sweep)
    return sweeps


async def type_until(feed: asyncio.Queue[str | None], enough: asyncio.Event) -> str:
    """A token every 0.1 s until `enough`, then the end: the reply keeps streaming (and being saved) all along."""
    typed = ''
    while not enough.is_set():
        token = f' w{len(typed)}'
        feed.put_nowait(token)
        typed += token
        await asyncio.sleep(0.1)
    feed.put_nowait(None)
    return typed


async def test_a_reply_longer_than_its_lease_is_not_interrupted_while_its_instance_lives(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lease = 3.0
    # keep_leases wakes once a second; with 0 it renews and sweeps on every pass. A renewal every second or so keeps a
    # 3 s lease with 2 s to spare (a slow pass on a loaded machine); a lease of 10 s would make this test a minute.
    monkeypatch.setattr(relay_module, 'LEASE_SECONDS', lease)
    monkeypatch.setattr(relay_module, 'RENEW_EVERY', 0.0)
    monkeypatch.setattr(relay_module, 'SWEEP_EVERY', 0.0)
    async with two_instances(postgres_url, lease) as (a, b):
        sweeps = spy_on_sweeps(b, monkeypatch)
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        reply_id = await ask(a, 'ann', 'a long one')
        enough = asyncio.Event()
        typing = asyncio.create_task(type_until(a.model.feeds[0], enough))
        # B's sweeps begun a lease after the reply was stored (plus 1 s: it was stored a moment after `asked_at`):
        # had A not renewed the lease, each of them would have found it run out, and marked the reply interrupted.
        late = await until(lambda: len([s for s in sweeps if s[0] > asked_at + lease + 1]) >= 2, lease + 2 * SOON,
                           'the other instance did not look for abandoned replies')
        enough.set()
        typed = await typing
        ended = await until(lambda: b.seen.ends.get(reply_id), SOON, 'the other instance did not see the reply end')

        assert late and loop.time() - asked_at > lease  # it did stream for longer than its lease
        assert not [found for _, found in sweeps if reply_id in found], 'the other instance interrupted a live reply'
        assert Status.INTERRUPTED not in b.seen.statuses[reply_id]
        assert ended == (Status.DONE, typed)
        assert b.seen.text[reply_id] == typed and not b.seen.gaps  # followed live to the end, every piece
        assert await saved_text(a, reply_id) == typed
        assert (await a.room.store.get(reply_id)).status == Status.DONE  # type: ignore[union-attr]


# 2. A beat's text bigger than a notice


def relay_on_its_own() -> PostgresRelay:
    """A relay that is never started: its notices stay in its outbox, where a test reads them."""
    room = SimpleNamespace(added=Event(), grew=Event(), changed=Event(), other_instances=None)
    return PostgresRelay(room, 'postgresql://nobody@127.0.0.1/nowhere')  # type: ignore[arg-type]


def assert_cut_to_fit(growth: dict[int, Growth]) -> list[str]:
    """The beat's notices: each under NOTIFY's limit, and their pieces, read in order, give each reply's new text
    from its offset on, with no gap and no repeat. Returns them."""
    relay = relay_on_its_own()
    relay.on_grew(growth)
    notices = [relay.outbox.get_nowait() for _ in range(relay.outbox.qsize())]
    assert max((len(notice.encode()) for notice in notices), default=0) < NOTIFY_LIMIT
    rebuilt: dict[int, str] = {}
    for notice in notices:
        news = json.loads(notice)
        assert (news['from'], news['event']) == (relay.instance, 'grew')
        for message_id, at, piece in news['pieces']:
            so_far = rebuilt.setdefault(message_id, '')
            assert at == growth[message_id].offset + len(so_far)
            rebuilt[message_id] = so_far + piece
    assert rebuilt == {message_id: grown.text for message_id, grown in growth.items() if grown.text}
    return notices


BEATS = {
    'one big chunk': {7: Growth(0, ''.join(f' w{i}' for i in range(20_000)))},
    'control characters': {7: Growth(120, (CONTROL + '\x00') * 400)},
    'non-ASCII': {7: Growth(0, WIDE * 3000)},
    'several replies': {message_id: Growth(1000 * message_id, (CONTROL + WIDE) * 30) for message_id in range(1, 40)},
    # 1,400 escaped characters: 8,480 bytes by the relay's count, which must cut them (a count of 8,500 or more
    # would send them as one notice of about 8,450 bytes, which PostgreSQL refuses)
    'just past one notice': {7: Growth(0, '\x01' * 1400)},
    'many small pieces, long ids': {2**31 - message_id: Growth(2**31 - 1, '\x01') for message_id in range(1, 900)},
}


@pytest.mark.parametrize('growth', BEATS.values(), ids=BEATS.keys())
def test_a_beat_is_cut_into_notices_under_the_limit(growth: dict[int, Growth]) -> None:
    notices = assert_cut_to_fit(growth)
    assert len(notices) > 1  # each of these beats is too big for one


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.integers(1, 2**31 - 1),
                       st.tuples(st.integers(0, 10**7),
                                 st.lists(st.tuples(st.characters(codec='utf-8'), st.integers(1, 2500)), max_size=5)),
                       max_size=8))
def test_any_beat_is_cut_into_notices_under_the_limit(beat: dict[int, tuple[int, list[tuple[str, int]]]]) -> None:
    # Runs of one character (a run of 2500 escaped characters is 15 kB as JSON): big beats, of every kind of character.
    assert_cut_to_fit({message_id: Growth(offset, ''.join(character * count for character, count in runs))
                       for message_id, (offset, runs) in beat.items()})


def spy_on_notices(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size in bytes of each `grew` notice the instance's relay receives."""
    sizes: list[int] = []
    original = instance.relay.on_notice

    async def on_notice(payload: str) -> None:
        if json.loads(payload)['event'] == 'grew':
            sizes.append(len(payload.encode()))
        await original(payload)
    monkeypatch.setattr(instance.relay, 'on_notice', on_notice)
    return sizes


async def test_a_beat_bigger_than_a_notice_reaches_the_other_instance_whole(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No NUL: PostgreSQL's text cannot hold one. About 70 kB of JSON for each of the two replies.
    texts = [(CONTROL + WIDE + 'plain words ') * 300, (WIDE + CONTROL) * 400]
    async with two_instances(postgres_url) as (a, b):
        sizes = spy_on_notices(b, monkeypatch)
        replies = [await ask(a, who, 'say a lot') for who in ('ann', 'bob')]
        for number, text in enumerate(texts):  # each at once, in one token; both most likely in the same beat
            a.model.feeds[number].put_nowait(text)
        await until(lambda: [b.seen.text.get(reply) for reply in replies] == texts, SOON,
                    'the big text did not reach the other instance')
        # Live, from the notices: the replies are still being written, so no end has brought their stored text.
        assert all(reply in a.room.replies.in_progress for reply in replies)
        assert len(sizes) > 2 and max(sizes) < NOTIFY_LIMIT
        for number in range(len(texts)):
            a.model.feeds[number].put_nowait(' The end.')
            a.model.feeds[number].put_nowait(None)
        await until(lambda: all(reply in b.seen.ends for reply in replies), SOON, 'the replies did not end there')
        assert [b.seen.ends[reply] for reply in replies] == [(Status.DONE, text + ' The end.') for text in texts]
        assert not b.seen.gaps


# 3. Catching up after the LISTEN connection dropped


async def cut_off(instance: Instance, url: str, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """End the instance's LISTEN connection from the server's side (as a restart of PostgreSQL or a cut network
    would), and hold its reconnection until the returned event is set. Returns once the relay tries to reconnect."""
    back, trying = asyncio.Event(), asyncio.Event()
    connect = instance.relay.connect

    async def held_connect() -> psycopg.AsyncConnection:
        trying.set()
        await back.wait()
        return await connect()
    monkeypatch.setattr(instance.relay, 'connect', held_connect)
    async with await psycopg.AsyncConnection.connect(url.replace('+psycopg', ''), autocommit=True) as connection:
        await connection.execute('SELECT pg_terminate_backend(%s)', (instance.listener,))
    await asyncio.wait_for(trying.wait(), SOON)  # it waits a second before it tries
    return back


async def let_back(instance: Instance, url: str, back: asyncio.Event) -> None:
    """Let the instance reconnect, and wait until it listens again."""
    gone = instance.listener
    back.set()
    instance.listener = await new_listener(url, {gone})


async def test_an_instance_that_lost_its_listen_connection_catches_up_when_it_is_back(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the reconnection may catch up: B's periodic comparison with the database would hide a broken one.
    monkeypatch.setattr(relay_module, 'SWEEP_EVERY', math.inf)
    async with two_instances(postgres_url) as (a, b):
        reply_id = await ask(a, 'ann', 'a long one')
        feed = a.model.feeds[0]
        feed.put_nowait('Before the cut.')
        await until(lambda: b.seen.text.get(reply_id) == 'Before the cut.', SOON, 'B did not follow the reply')

        back = await cut_off(b, postgres_url, monkeypatch)
        note = await a.room.post(Person('cy', 'Cy'), 'Posted while B was away')
        assert note is not None and note.id is not None
        feed.put_nowait(' Written while B was away.')
        meanwhile = 'Before the cut. Written while B was away.'
        await until(lambda: saved(a, reply_id, meanwhile), SOON, 'A did not save the text written meanwhile')
        await a.relay.outbox.join()  # A has told the others: nobody on B's side heard it
        assert note.id not in b.seen.added and b.seen.text[reply_id] == 'Before the cut.'

        await let_back(b, postgres_url, back)
        await until(lambda: note.id in b.seen.added, SOON, 'the message posted meanwhile did not reach B\'s room')
        feed.put_nowait(' After.')  # its notice starts past what B has: B fills the gap in from the database
        await until(lambda: b.seen.text.get(reply_id) == meanwhile + ' After.', SOON,
                    'B did not follow the reply again, with the text written meanwhile')
        assert reply_id in a.room.replies.in_progress  # live, not from the stored text at its end
        feed.put_nowait(None)
        await until(lambda: reply_id in b.seen.ends, SOON, 'the reply did not end on B')
        assert b.seen.ends[reply_id] == (Status.DONE, meanwhile + ' After.')
        assert b.seen.added[note.id].body == 'Posted while B was away' and not b.seen.gaps


async def test_replies_that_ended_while_an_instance_was_cut_off_end_there_when_it_is_back(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, 'SWEEP_EVERY', math.inf)  # as above: only the reconnection may catch up
    async with two_instances(postgres_url) as (a, b):
        first = await ask(a, 'ann', 'one')
        a.model.feeds[0].put_nowait('Begun before the cut.')
        await until(lambda: b.seen.text.get(first) == 'Begun before the cut.', SOON, 'B did not follow the reply')

        back = await cut_off(b, postgres_url, monkeypatch)
        for text in (' Ended while B was away.', None):
            a.model.feeds[0].put_nowait(text)
        second = await ask(a, 'bob', 'two')  # begun and ended while B was away
        for text in ('Asked and answered while B was away.', None):
            a.model.feeds[1].put_nowait(text)
        await until(lambda: not a.room.replies.in_progress, SOON, 'the replies did not end on A')
        await a.relay.outbox.join()  # A has told the others: nobody on B's side heard it
        assert first not in b.seen.ends and second not in b.seen.added

        await let_back(b, postgres_url, back)
        await until(lambda: first in b.seen.ends and second in b.seen.ends, SOON, 'B did not catch up with the ends')
        assert b.seen.ends[first] == (Status.DONE, 'Begun before the cut. Ended while B was away.')
        assert b.seen.ends[second] == (Status.DONE, 'Asked and answered while B was away.')
        assert b.relay.followed == {}  # B no longer waits for text of either
