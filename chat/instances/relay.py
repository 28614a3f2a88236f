"""Several app instances, one PostgreSQL room: what happens on one instance reaches the tabs of all of them.

Each instance keeps its own tabs and its own room in memory (room.py). PostgreSQL's LISTEN/NOTIFY carries the
room's news between instances: an instance announces what happened on it (a message added, a reply's new text, a
reply's new status, a Stop pressed for a reply another instance streams), and every other instance repeats it to
its own tabs through the same room events, so the page does not know where a message came from. A notification
holds less than 8,000 bytes: messages travel as their id (the others read the row, committed before the notice is
sent), a beat's new text in as few notices as fit.

A reply is streamed by the instance that was asked. It keeps the reply's lease in the database LEASE_SECONDS in
the future (by the database's clock, so the machines' clocks do not matter); every instance looks for replies whose
lease ran out (their instance died) and marks them interrupted. A notice can be missed (an instance starting, a
lost connection): every SWEEP_EVERY seconds each instance also compares its room with the database and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from uuid import uuid4

import psycopg
from sqlalchemy.engine import make_url

from ..markdown import LiveMarkdown
from ..models import Message, Status
from ..reply import Growth
from ..room import Room
from .leases import LeasedStore

log = logging.getLogger(__name__)

CHANNEL = 'chat_room'
NOTICE_BYTES = 7500  # NOTIFY takes a payload under 8,000 bytes
PIECE_CHARS = 1000  # sent as UTF-8 JSON: at most 6 bytes a character (an escaped control character)
LEASE_SECONDS = 10.0
RENEW_EVERY = LEASE_SECONDS / 4
SWEEP_EVERY = LEASE_SECONDS / 2
STATUS_FIELDS = ('status', 'error', 'model', 'prompt_tokens', 'completion_tokens', 'usage_estimated', 'first_token_ms',
                 'duration_ms')


class PostgresRelay:
    def __init__(self, room: Room, db_url: str) -> None:
        self.room = room
        self.url = make_url(db_url).set(drivername='postgresql').render_as_string(hide_password=False)
        self.instance = uuid4().hex[:12]
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.repeating = False  # while this relay emits another instance's news (not to be announced again)
        self.listening: list[asyncio.Task] = []
        self.sending: asyncio.Task | None = None
        self.followed: dict[int, LiveMarkdown] = {}  # replies another instance writes, by id: their text so far
        room.added.subscribe(self.on_added)
        room.grew.subscribe(self.on_grew)
        room.changed.subscribe(self.on_changed)
        room.other_instances = self  # the room asks this relay for the followed replies so far, and passes their Stop

    async def start(self) -> None:
        await self.room.ready.wait()  # NiceGUI runs start-up hooks side by side: the room opens first
        self.listening = [asyncio.create_task(self.listen(), name='relay: listen'),
                          asyncio.create_task(self.keep_leases(), name='relay: leases and catching up')]
        self.sending = asyncio.create_task(self.send(), name='relay: send')
        log.info('several-instance mode: this instance is %s, news travels over PostgreSQL LISTEN/NOTIFY',
                 self.instance)

    async def stop_listening(self) -> None:
        """Before the room closes: no more news from the others, no more database work."""
        for task in self.listening:
            task.cancel()
        await asyncio.gather(*self.listening, return_exceptions=True)

    async def stop(self) -> None:
        """After the room closed: tell the others what is left (its replies ended as interrupted), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.join(), 2)
        if self.sending:
            self.sending.cancel()
            await asyncio.gather(self.sending, return_exceptions=True)

    async def connect(self) -> psycopg.AsyncConnection:
        # Keepalives: a connection that died without a word (a network cut) is noticed within a minute.
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True, keepalives=1, keepalives_idle=20,
                                                     keepalives_interval=5, keepalives_count=4)

    # what happens here, told to the others

    def announce(self, news: dict[str, Any]) -> None:
        if not self.repeating:
            self.outbox.put_nowait(json.dumps({'from': self.instance, **news}, ensure_ascii=False))

    def on_added(self, message: Message) -> None:
        self.announce({'event': 'added', 'id': message.id})

    def on_grew(self, growth: dict[int, Growth]) -> None:
        """One beat's new text of every reply, in as few notices as fit NOTIFY's size: [[id, offset, text], ...].
        Only the text: each instance renders the finished blocks for its own tabs."""
        notice: list[tuple[int, int, str]] = []
        notice_bytes = 0  # at most: 6 bytes a character as JSON escapes it, 40 for the brackets, id and offset
        for message_id, grown in growth.items():
            offset, text = grown.offset, grown.text
            for start in range(0, len(text), PIECE_CHARS):
                chunk = text[start:start + PIECE_CHARS]
                if notice and notice_bytes + 6 * len(chunk) + 40 > NOTICE_BYTES:
                    self.announce({'event': 'grew', 'pieces': notice})
                    notice, notice_bytes = [], 0
                notice.append((message_id, offset + start, chunk))
                notice_bytes += 6 * len(chunk) + 40
        if notice:
            self.announce({'event': 'grew', 'pieces': notice})

    def on_changed(self, message: Message) -> None:
        self.announce({'event': 'changed', 'id': message.id,
                       **{name: getattr(message, name) for name in STATUS_FIELDS}})

    # what the room asks of the replies other instances write

    def reply_so_far(self, message_id: int) -> LiveMarkdown | None:
        return self.followed.get(message_id)

    def stop_reply(self, message_id: int, by: str) -> None:
        if message_id in self.followed:
            self.announce({'event': 'stop', 'id': message_id, 'by': by})

    async def send(self) -> None:
        connection: psycopg.AsyncConnection | None = None
        while True:  # one at a time, in order: a reply's text arrives after the reply, its end after its text
            payload = await self.outbox.get()
            try:
                connection = connection if connection and not connection.closed else await self.connect()
                await connection.execute('SELECT pg_notify(%s, %s)', (CHANNEL, payload))
            except Exception:
                log.exception('could not tell the other instances (they catch up within %g s): %s', SWEEP_EVERY,
                              payload[:200])
                connection = None
            finally:
                self.outbox.task_done()

    # what happened elsewhere, told to this instance's tabs

    async def listen(self) -> None:
        delay = 1.0
        while True:
            try:
                async with await self.connect() as connection:
                    await connection.execute(f'LISTEN {CHANNEL}')
                    await self.catch_up()  # what happened before this instance listened
                    delay = 1.0
                    async for notice in connection.notifies():
                        await self.on_notice(notice.payload)  # awaited: the next notice waits, so the order holds
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception('lost the PostgreSQL connection for news from the other instances; retrying in %g s',
                              delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def on_notice(self, payload: str) -> None:
        try:
            news = json.loads(payload)
            if news['from'] != self.instance:
                await self.show(news)
        except Exception:
            log.exception('could not repeat news from another instance: %s', payload[:200])

    @contextlib.contextmanager
    def repeating_news(self):  # type: ignore[no-untyped-def]
        self.repeating = True
        try:
            yield
        finally:
            self.repeating = False

    async def show(self, news: dict[str, Any]) -> None:
        """Another instance's news, told to this instance's tabs through the room's own events."""
        event = news['event']
        if event == 'stop':  # only the instance writing the reply acts on it: never passed on again
            self.room.replies.stop(news['id'], str(news.get('by', '')))
        elif event == 'added':
            message = await self.room.store.get(news['id'])
            if message is not None and self.room.message_in_memory(news['id']) is None:
                self.show_added(message)
        elif event == 'grew':
            await self.show_grew(news['pieces'])
        elif event == 'changed' and not self.room.replies.is_written_here(news['id']):  # a reply written here: no
            await self.show_changed(news)

    def show_added(self, message: Message) -> None:
        if message.status.in_progress and not self.room.replies.is_written_here(message.id):  # type: ignore[arg-type]
            self.followed[message.id] = LiveMarkdown(message.body)  # type: ignore[index]
        with self.repeating_news():
            self.room.publish(message)

    async def show_grew(self, pieces: list[tuple[int, int, str]]) -> None:
        grown_from = {message_id: len(self.followed[message_id].text)
                      for message_id, _, _ in pieces if message_id in self.followed}
        for message_id, at, piece in pieces:
            await self.follow(message_id, at, piece)
        self.show_growth(grown_from, final=False)

    def show_growth(self, grown_from: dict[int, int], *, final: bool) -> None:
        """Tell this instance's tabs what the followed replies gained since `grown_from`: text and finished blocks."""
        growth = {}
        for message_id, before in grown_from.items():
            if (live := self.followed.get(message_id)) is None:
                continue  # it ended meanwhile (catching up)
            finished = live.take_finished(final=final)
            if len(live.text) > before or finished:
                growth[message_id] = Growth(before, live.text[before:], finished)
        if growth:
            with self.repeating_news():
                self.room.grew.emit(growth)

    async def follow(self, message_id: int, at: int, piece: str) -> None:
        """Add a piece to a followed reply's text."""
        live = self.followed.get(message_id)
        if live is None:
            return  # a reply this instance does not show as in progress
        if at > len(live.text):  # a piece was missed (this instance started mid-reply): the database has it, to a save
            stored = await self.room.store.get(message_id)
            if stored is None or len(stored.body) < at:
                return  # not saved yet (at most 250 ms): a later piece fills this one in
            piece, at = stored.body[len(live.text):at] + piece, len(live.text)
        live.text += piece[len(live.text) - at:]

    async def show_changed(self, news: dict[str, Any]) -> None:
        message = self.room.message_in_memory(news['id']) or await self.room.store.get(news['id'])
        if message is None:
            return
        for name in STATUS_FIELDS:
            setattr(message, name, news[name])
        message.status = Status(news['status'])
        if not message.status.in_progress:  # its final text was saved before the news was sent
            stored = await self.room.store.get(news['id'])
            message.body = await self.end_followed(news['id'], stored.body if stored else None) or message.body
        with self.repeating_news():
            self.room.changed.emit(message)

    async def end_followed(self, message_id: int, final_text: str | None) -> str | None:
        """A followed reply ended: its tabs get the last text and blocks, then no longer follow it. Its final text."""
        live = self.followed.get(message_id)
        if live is None:
            return final_text
        before = len(live.text)
        if final_text is not None and final_text.startswith(live.text):
            live.text = final_text
        self.show_growth({message_id: before}, final=True)
        del self.followed[message_id]
        return live.text

    async def catch_up(self) -> None:
        """Compare this instance's room with the database: messages it never heard of, replies that ended."""
        for stored in await self.room.store.recent(self.room.settings.history_size):
            assert stored.id is not None
            message = self.room.message_in_memory(stored.id)
            if message is None:
                self.show_added(stored)
            elif (message.status.in_progress and not self.room.replies.is_written_here(stored.id)
                  and stored.id not in self.followed):
                self.followed[stored.id] = LiveMarkdown(message.body)  # loaded as the room opened
            if message is not None and stored.id in self.followed and not stored.status.in_progress:
                await self.end_followed(stored.id, stored.body)
                for name in (*STATUS_FIELDS, 'body'):
                    setattr(message, name, getattr(stored, name))
                with self.repeating_news():
                    self.room.changed.emit(message)

    # leases

    async def keep_leases(self) -> None:
        """Renew the leases of the replies streamed here; end the replies whose instance stopped renewing; catch up
        with anything a missed notice did not tell."""
        renewed_at = swept_at = 0.0
        loop = asyncio.get_running_loop()
        store = self.room.store
        assert isinstance(store, LeasedStore), 'several instances need a store that keeps leases (leases.py)'
        while True:
            try:
                if loop.time() - renewed_at >= RENEW_EVERY:
                    if here := self.room.replies.streaming_here():
                        await store.renew_leases(here)
                    renewed_at = loop.time()
                if loop.time() - swept_at >= SWEEP_EVERY:
                    swept_at = loop.time()
                    for message_id in await store.interrupt_abandoned_replies(
                            sparing=self.room.replies.streaming_here()):
                        log.warning('reply %s lost its instance (its lease ran out): marked interrupted', message_id)
                    await self.catch_up()  # shows those ends here; the other instances' catching up, there
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception('could not keep the replies\' leases')
            await asyncio.sleep(1.0)
