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
import time
from collections import deque
from dataclasses import dataclass, field

from nicegui import Event

from .bot import Bot, MessageRefused
from .config import Settings
from .models import Message
from .providers import Provider
from .store import Store

log = logging.getLogger(__name__)

# "@gpt" as a mention: any case, at the start or after a space or punctuation, not inside a word,
# an e-mail address (me@gpt.com) or a domain (@gpt.com).
GPT_MENTION = re.compile(r'(?<![\w@.+-])@gpt(?![\w-]|\.\w)', re.IGNORECASE)

# Material colours (Quasar's red-7, pink-7, ...) dark enough for white initials; CSS colours, so the avatar images
# the app draws (chat/ui/avatars.py) and the avatar element in the page's header agree.
AVATAR_COLORS = ['#d32f2f', '#c2185b', '#7b1fa2', '#512da8', '#303f9f', '#1565c0', '#00838f', '#00796b',
                 '#2e7d32', '#33691e', '#e65100', '#e64a19', '#6d4c41', '#455a64']


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


class RateLimit:
    """At most `count` events per `seconds` for each key (a person), over a sliding window."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.times: dict[str, deque[float]] = {}

    def wait_needed(self, key: str) -> float:
        """Seconds until `key` may act again; 0 means it may act now (and that act is counted)."""
        now = time.monotonic()
        if len(self.times) > 1000:  # many people came and went: drop the ones with nothing left to count
            self.forget_idle()
        times = self.times.setdefault(key, deque())
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) >= self.count:
            return times[0] + self.seconds - now
        times.append(now)
        return 0.0

    def forget_idle(self) -> None:
        now = time.monotonic()
        for key in [key for key, times in self.times.items() if not times or times[-1] <= now - self.seconds]:
            del self.times[key]


class Room:
    def __init__(self, settings: Settings, store: Store, provider: Provider) -> None:
        self.settings = settings
        self.store = store
        self.recent: deque[Message] = deque(maxlen=settings.history_size)
        self.people: dict[str, Person] = {}
        self.is_open = False
        self.ready = asyncio.Event()  # set once the recent messages are loaded; pages wait for it
        self.added = Event[Message]()  # a new message: a person's, or a bot reply that starts thinking
        self.grew = Event[int, int, str]()  # a reply's id, where its new text starts, and that text
        self.changed = Event[Message]()  # a reply changed status (streaming, done, stopped, error, ...)
        self.presence_changed = Event[Person]()  # someone arrived, left (no longer in `people`) or was renamed
        self.bot = Bot(self, provider, settings)
        self.message_rate = RateLimit(settings.messages_per_10s, 10)
        self.gpt_rate = RateLimit(settings.gpt_per_minute, 60)

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
            self.bot.check_can_answer(person.id)  # one pending reply per person, and a cap for the room
        if wait := self.message_rate.wait_needed(person.id):
            raise MessageRefused(f'You are sending messages quickly: at most {self.message_rate.count} in 10 seconds. '
                                 f'Try again in {wait:.0f} s; your message is still in the box.')
        if asks_gpt:
            if wait := self.gpt_rate.wait_needed(person.id):
                raise MessageRefused(f'You may ask @gpt {self.gpt_rate.count} times a minute. Try again in '
                                     f'{wait:.0f} s; your message is still in the box.')
            self.bot.claim(person.id)
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
