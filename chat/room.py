"""The room: posting a message, the observer every tab listens to, and who is here.

Tabs never talk to each other. A tab calls `room.post()`; the room stores the message and fires an
event; every tab (including the writer's) reacts by appending one bubble. The room also keeps the newest
messages in memory, so a tab that opens reads them without a database round trip, and a reply in
progress shows exactly the text that its later deltas continue.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import deque
from dataclasses import dataclass, field

from nicegui import Event

from .bot import Bot
from .config import Settings
from .models import Message
from .providers import Provider
from .store import Store

log = logging.getLogger(__name__)

# "@gpt" as a mention: any case, at the start or after a space or punctuation, not inside a word,
# an e-mail address (me@gpt.com) or a domain (@gpt.com).
GPT_MENTION = re.compile(r'(?<![\w@.+-])@gpt(?![\w-]|\.\w)', re.IGNORECASE)

AVATAR_COLORS = ['red-7', 'pink-7', 'purple-7', 'deep-purple-7', 'indigo-7', 'blue-8', 'cyan-8', 'teal-7',
                 'green-8', 'light-green-9', 'orange-9', 'deep-orange-7', 'brown-6', 'blue-grey-7']


def mentions_gpt(text: str) -> bool:
    return GPT_MENTION.search(text) is not None


def avatar_color(person_id: str) -> str:
    """A colour that stays with a person's id (not their name, which they may change)."""
    return AVATAR_COLORS[hashlib.sha256(person_id.encode()).digest()[0] % len(AVATAR_COLORS)]


def initials(name: str) -> str:
    return ''.join(word[0] for word in name.split()[:2]).upper() or '?'


@dataclass
class Person:
    id: str
    name: str
    tabs: set[str] = field(default_factory=set)  # ids of the clients (page loads) this person has open


class MessageRefused(Exception):
    """A message the room will not take. Its text is the notice shown to the writer, whose text stays put."""


class Room:
    def __init__(self, settings: Settings, store: Store, provider: Provider) -> None:
        self.settings = settings
        self.store = store
        self.recent: deque[Message] = deque(maxlen=settings.history_size)
        self.people: dict[str, Person] = {}
        self.is_open = False
        self.ready = asyncio.Event()  # set once the recent messages are loaded; pages wait for it
        self.added = Event[Message]()  # a new message: a person's, or a bot reply that starts thinking
        self.grew = Event[int, str]()  # a reply's id and its new text since the last event
        self.changed = Event[Message]()  # a reply changed status (streaming, done, stopped, error, ...)
        self.presence_changed = Event[Person]()  # someone arrived, left (no longer in `people`) or was renamed
        self.bot = Bot(self, provider, settings)

    async def open(self, *, reset: bool = False) -> None:
        self.is_open = True
        await self.store.open()
        if reset:
            log.warning('--reset: deleted %d message(s)', await self.store.delete_all())
        self.recent.extend(await self.store.recent(self.settings.history_size))
        self.ready.set()

    async def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self.ready = asyncio.Event()  # set once the recent messages are loaded; pages wait for it
        await self.bot.interrupt_all()
        await self.store.close()

    async def post(self, person: Person, text: str) -> Message | None:
        """Store a person's message and tell every tab. Returns None for an empty one (refused quietly)."""
        if not text.strip():
            return None
        if len(text) > self.settings.max_message_chars:
            raise MessageRefused(f'That message is {len(text):,} characters long; the limit is '
                                 f'{self.settings.max_message_chars:,}. Nothing was sent.')
        asks_gpt = mentions_gpt(text)
        if asks_gpt:
            self.bot.claim(person.id)  # raises MessageRefused while this person already has a reply pending
        try:
            message = await self.store.add(Message(author=person.name, author_id=person.id, body=text))
        except Exception as error:
            if asks_gpt:
                self.bot.release(person.id)
            log.exception('could not store a message')
            raise MessageRefused('Your message could not be saved (the database refused it). '
                                 'It is still in the box; try again in a moment.') from error
        self.publish(message)
        if asks_gpt:
            await self.bot.answer(message)
        return message

    def publish(self, message: Message) -> None:
        self.recent.append(message)
        self.added.emit(message)

    def join(self, person_id: str, name: str, client_id: str) -> Person:
        person = self.people.setdefault(person_id, Person(person_id, name))
        is_news = not person.tabs or person.name != name  # a second tab of the same person changes nothing
        person.name = name
        person.tabs.add(client_id)
        if is_news:
            self.presence_changed.emit(person)
        return person

    def leave(self, person_id: str, client_id: str) -> None:
        person = self.people.get(person_id)
        if person is None:
            return
        person.tabs.discard(client_id)
        if not person.tabs:
            del self.people[person_id]
            self.presence_changed.emit(person)

    def rename(self, person: Person, name: str) -> None:
        person.name = name
        self.presence_changed.emit(person)
