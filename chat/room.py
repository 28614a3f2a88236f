"""The room: posting a message, the events every tab listens to, and the newest messages.

Tabs never talk to each other. A tab calls `room.post()`; the room stores the message and fires an event; every tab
(the writer's too) reacts by appending one bubble. A message that mentions bots also starts a reply from each
(reply.py), whose news reaches the tabs through the same events. The room keeps the newest messages in memory, so a
tab that opens reads them without a database round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from nicegui import Event

from .bot import Bot
from .config import Settings
from .limits import Limits, MessageRefused
from .markdown import LiveMarkdown
from .models import Message
from .presence import Person, Presence
from .reply import Growth, Replies, RoomNews
from .store import Store

log = logging.getLogger(__name__)


class OtherInstances(Protocol):
    """Several instances on one database (chat/instances/relay.py): the replies that other instances write."""

    def reply_so_far(self, message_id: int) -> LiveMarkdown | None: ...
    def stop_reply(self, message_id: int, by: str) -> None: ...


class Room:
    def __init__(self, settings: Settings, store: Store, bots: list[Bot]) -> None:
        self.settings = settings
        self.store = store
        self.bots = {bot.name: bot for bot in bots}  # in the order they were listed
        self.recent: deque[Message] = deque(maxlen=settings.history_size)
        self.presence = Presence()  # who is here
        self.is_open = False
        self.ready = asyncio.Event()  # set once the recent messages are loaded; pages wait for it
        self.added = Event[Message]()  # a new message: a person's, or a bot reply that starts thinking
        self.grew = Event[dict[int, Growth]]()  # one beat's new text and finished blocks, by reply id
        self.changed = Event[Message]()  # a reply changed status (streaming, done, stopped, error, ...)
        self.spending_changed = Event[int]()  # today's tokens, with a daily budget: the header shows them
        self.replies = Replies(store, settings, RoomNews(added=self.publish, grew=self.grew.emit,
                                                         changed=self.changed.emit))
        self.other_instances: OtherInstances | None = None  # set by the relay when several instances share the room
        self.limits = Limits(settings, store, self.replies, bots, spending_changed=self.spending_changed.emit)
        self.changed.subscribe(self.limits.count_spending)  # a reply's end counts against today's budget

    async def open(self, *, reset: bool = False) -> None:
        self.is_open = True
        await self.store.open()
        if reset:
            log.warning('--reset: deleted %d message(s)', await self.store.delete_all())
        self.recent.extend(await self.store.recent(self.settings.history_size))
        await self.limits.load_spending()
        self.ready.set()

    async def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self.ready = asyncio.Event()
        self.limits.close()
        await self.replies.interrupt_all()
        await self.store.close()

    async def post(self, person: Person, text: str) -> Message | None:
        """Store a person's message, tell every tab, and start a reply from each bot it mentions (they stream at
        once). Returns None for an empty message (refused quietly); raises MessageRefused for one the room will not
        take."""
        if not text.strip():
            return None
        asked = [bot for bot in self.bots.values() if bot.is_mentioned_in(text)]
        await self.limits.admit(person.keys, text, asked)  # holds the writer's place with each bot asked
        try:
            message = await self.store_message(person, text)
            self.publish(message)
            failed = []
            for bot in asked:  # one after the other; each streams as soon as it has started
                if not await self.start_reply(bot, message, person.keys):
                    failed.append(f'@{bot.name}')
        finally:  # stored, refused or cancelled (the tab went away): no place stays held; a reply holds its own.
            # start_reply released the places of those it reached already: releasing one again does nothing.
            for bot in asked:
                self.limits.release(person.keys, bot)
        if failed:
            raise MessageRefused(f'Your message was sent, but {" and ".join(failed)} could not start a reply (the '
                                 'database refused it). Ask again in a moment.')
        return message

    async def store_message(self, person: Person, text: str) -> Message:
        try:
            return await self.store.add(Message(author=person.name, author_id=person.id, body=text))
        except Exception as error:
            log.exception('could not store a message')
            raise MessageRefused('Your message could not be saved (the database refused it). '
                                 'It is still in the box; try again in a moment.') from error

    async def start_reply(self, bot: Bot, message: Message, asker_keys: tuple[str, ...]) -> bool:
        """Whether the reply started. The writer's place is released as soon as it has (no await since it joined
        the replies in progress, which hold the place from then on), so it is not counted twice meanwhile."""
        try:
            await self.replies.start(bot, message, asker_keys)
            return True
        except Exception:
            log.exception('could not start the reply of @%s', bot.name)
            return False
        finally:
            self.limits.release(asker_keys, bot)

    def publish(self, message: Message) -> None:
        self.recent.append(message)
        self.added.emit(message)

    def message_in_memory(self, message_id: int) -> Message | None:
        """One of the newest messages, as the tabs know it (None if it is older, or new to this instance)."""
        return next((message for message in self.recent if message.id == message_id), None)

    def reply_so_far(self, message_id: int) -> LiveMarkdown | None:
        """A reply in progress as far as it got (its text and finished blocks), from its owner: the reply itself if it
        streams here, else the relay (another instance writes it). None once it has ended."""
        if reply := self.replies.in_progress.get(message_id):
            return reply.so_far
        return self.other_instances.reply_so_far(message_id) if self.other_instances else None

    def stop(self, message_id: int, by: Person | None = None) -> None:
        """Someone pressed Stop: the reply ends, in every tab, saying who stopped it."""
        name = by.name if by else ''
        if not self.replies.stop(message_id, name) and self.other_instances:
            self.other_instances.stop_reply(message_id, name)
