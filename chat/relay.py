"""Several app instances, one PostgreSQL room: what happens on one instance reaches the tabs of all of them.

Each instance keeps its own tabs and its own room in memory (room.py). PostgreSQL's LISTEN/NOTIFY carries the
room's news between instances: an instance announces what happened on it (a message added, a reply's new text, a
reply's new status, a Stop pressed for a reply another instance streams), and every other instance repeats it to
its own tabs through the same room events, so the page does not know where a message came from. A notification
holds at most 8,000 bytes: messages travel as their id (the others read the row, committed before the notice is
sent), text in pieces of at most PIECE_CHARS characters.

A reply is streamed by the instance that was asked. It keeps the reply's lease in the database LEASE_SECONDS in
the future; every instance looks for replies whose lease ran out (their instance died) and marks them interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import timedelta
from typing import Any
from uuid import uuid4

import psycopg
from sqlalchemy.engine import make_url

from .models import Message, Status, utc_now
from .room import Room

log = logging.getLogger(__name__)

CHANNEL = 'chat_room'
PIECE_CHARS = 1000  # at most 6 bytes a character as JSON (an escaped control character): 6,000 bytes and the rest
LEASE_SECONDS = 10.0
RENEW_EVERY = LEASE_SECONDS / 4
SWEEP_EVERY = LEASE_SECONDS / 2
STATUS_FIELDS = ('status', 'error', 'model', 'prompt_tokens', 'completion_tokens', 'first_token_ms', 'duration_ms')


class PostgresRelay:
    def __init__(self, room: Room, db_url: str) -> None:
        self.room = room
        self.url = make_url(db_url).set(drivername='postgresql').render_as_string(hide_password=False)
        self.instance = uuid4().hex[:12]
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.repeating = False  # while this relay emits another instance's news (not to be announced again)
        self.tasks: list[asyncio.Task] = []
        self.connections: list[psycopg.AsyncConnection] = []
        room.added.subscribe(self.on_added)
        room.grew.subscribe(self.on_grew)
        room.changed.subscribe(self.on_changed)
        room.bot.lease_seconds = LEASE_SECONDS
        room.bot.stop_elsewhere = lambda message_id: self.announce({'e': 'stop', 'id': message_id})

    async def start(self) -> None:
        await self.room.ready.wait()  # NiceGUI runs start-up hooks side by side: the room opens first
        listener = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await listener.execute(f'LISTEN {CHANNEL}')
        sender = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self.connections = [listener, sender]
        for in_progress in self.room.recent:  # replies another instance is streaming: their text so far
            if in_progress.status.in_progress and in_progress.id not in self.room.bot.replies:
                self.room.bot.remote_text[in_progress.id] = in_progress.body  # type: ignore[index]
        self.tasks = [asyncio.create_task(self.listen(listener), name='relay: listen'),
                      asyncio.create_task(self.send(sender), name='relay: send'),
                      asyncio.create_task(self.keep_leases(), name='relay: leases')]
        log.info('several-instance mode: this instance is %s, news travels over PostgreSQL LISTEN/NOTIFY',
                 self.instance)

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):  # what is still to tell the others, unless they cannot be reached
            await asyncio.wait_for(self.outbox.join(), 2)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for connection in self.connections:
            await connection.close()

    # what happens here, told to the others

    def announce(self, news: dict[str, Any]) -> None:
        if not self.repeating:
            self.outbox.put_nowait(json.dumps({'from': self.instance, **news}))

    def on_added(self, message: Message) -> None:
        self.announce({'e': 'added', 'id': message.id})

    def on_grew(self, message_id: int, offset: int, text: str) -> None:
        for start in range(0, len(text), PIECE_CHARS):
            piece = text[start:start + PIECE_CHARS]
            self.announce({'e': 'grew', 'id': message_id, 'at': offset + start, 'text': piece})

    def on_changed(self, message: Message) -> None:
        self.announce({'e': 'changed', 'id': message.id, **{name: getattr(message, name) for name in STATUS_FIELDS}})

    async def send(self, connection: psycopg.AsyncConnection) -> None:
        while True:  # one at a time, in order: a reply's text arrives after the reply, its end after its text
            payload = await self.outbox.get()
            try:
                await connection.execute('SELECT pg_notify(%s, %s)', (CHANNEL, payload))
            except Exception:
                log.exception('could not tell the other instances: %s', payload[:200])
            finally:
                self.outbox.task_done()

    # what happened elsewhere, told to this instance's tabs

    async def listen(self, connection: psycopg.AsyncConnection) -> None:
        async for notice in connection.notifies():
            news = json.loads(notice.payload)
            if news['from'] == self.instance:
                continue
            try:
                await self.repeat(news)  # awaited: the next notice waits, so the order holds
            except Exception:
                log.exception('could not repeat news from instance %s: %s', news['from'], notice.payload[:200])

    @contextlib.contextmanager
    def repeating_news(self):  # type: ignore[no-untyped-def]
        self.repeating = True
        try:
            yield
        finally:
            self.repeating = False

    async def repeat(self, news: dict[str, Any]) -> None:
        bot = self.room.bot
        message_id = news['id']
        if news['e'] == 'stop':
            bot.stop(message_id)
        elif news['e'] == 'added':
            message = await self.room.store.get(message_id)
            if message is None or any(known.id == message_id for known in self.room.recent):
                return
            if message.status.in_progress:
                bot.remote_text[message_id] = message.body
            with self.repeating_news():
                self.room.publish(message)
        elif news['e'] == 'grew':
            text = bot.remote_text.get(message_id)
            if text is None:
                return  # a reply this instance never saw begin (it started later): its end will show it whole
            at, piece = news['at'], news['text']
            if at > len(text):  # this instance started mid-reply: what it missed is in the database, up to a flush
                stored = await self.room.store.get(message_id)
                if stored is None or len(stored.body) < at:
                    return  # not saved yet (at most 250 ms): a later piece fills this one in
                piece, at = stored.body[len(text):at] + piece, len(text)
            new_text = piece[len(text) - at:]
            bot.remote_text[message_id] = text + new_text
            if new_text:
                with self.repeating_news():
                    self.room.grew.emit(message_id, len(text), new_text)
        elif news['e'] == 'changed':
            message = next((known for known in self.room.recent if known.id == message_id), None)
            if message is None:
                return
            for name in STATUS_FIELDS:
                setattr(message, name, news[name])
            message.status = Status(news['status'])
            if not message.status.in_progress:  # its final text was saved before the news was sent
                stored = await self.room.store.get(message_id)
                message.body = stored.body if stored else bot.remote_text.get(message_id, message.body)
                bot.remote_text.pop(message_id, None)
            with self.repeating_news():
                self.room.changed.emit(message)

    # leases

    async def keep_leases(self) -> None:
        """Renew the leases of the replies streamed here; end the replies whose instance stopped renewing."""
        renewed_at = swept_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - renewed_at >= RENEW_EVERY:
                    renewed_at = loop.time()
                    if local := list(self.room.bot.replies):
                        await self.room.store.renew_leases(local, utc_now() + timedelta(seconds=LEASE_SECONDS))
                if loop.time() - swept_at >= SWEEP_EVERY:
                    swept_at = loop.time()
                    for message_id in await self.room.store.interrupt_replies(only_expired_leases=True):
                        await self.end_lost_reply(message_id)
            except Exception:
                log.exception('could not keep the replies\' leases')
            await asyncio.sleep(1.0)

    async def end_lost_reply(self, message_id: int) -> None:
        log.warning('reply %s lost its instance (its lease ran out): marked interrupted', message_id)
        stored = await self.room.store.get(message_id)
        message = next((known for known in self.room.recent if known.id == message_id), None)
        if stored is None or message is None:
            return
        for name in (*STATUS_FIELDS, 'body'):
            setattr(message, name, getattr(stored, name))
        self.room.bot.remote_text.pop(message_id, None)
        self.room.changed.emit(message)  # announced too: the other instances end it in their tabs
