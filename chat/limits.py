"""The room's limits: what one person, one browser and the whole room may send, and what the bots may cost in a day.

The room checks every message here before it stores it (room.py `post`), and a refusal's text is the notice the
writer sees, with their text left in the box. A person is counted under their tab's identity and their browser's
(NiceGUI's browser storage), so opening a new tab does not start the count afresh. Skim this on a first read.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from .bot import Bot
from .config import Settings
from .models import Message, utc_now
from .reply import Replies
from .store import Store
from .tokens import longest_prompt_bound

log = logging.getLogger(__name__)

T = TypeVar('T')
Place = tuple[tuple[str, ...], str]  # a question held for a bot: the asker's keys and the bot's name


class MessageRefused(Exception):
    """A message the room will not take. Its text is the notice shown to the writer, whose text stays put."""


class RateLimit:
    """At most `count` acts per `seconds` for each key (a person), over a sliding window."""

    KEYS_BEFORE_SWEEP = 1000  # past this many keys, those with nothing left to count go, once a window at most
    KEYS_AT_MOST = 20_000  # a flood of new keys (addresses, tabs): the first seen go first, so memory stays bounded

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.times: dict[str, deque[float]] = {}
        self.swept_at = 0.0

    def wait(self, key: str, acts: int = 1) -> float:
        """Seconds until `key` may act `acts` times more; 0 means now. It only asks: `record` counts an act."""
        times = self.times.get(key, ())
        must_expire = len(times) + min(acts, self.count) - self.count  # the oldest of the last `count` acts
        if must_expire <= 0:
            return 0.0
        return max(0.0, times[must_expire - 1] + self.seconds - time.monotonic())

    def wait_any(self, keys: Iterable[str], acts: int = 1) -> float:
        return max(self.wait(key, acts) for key in keys)

    def record(self, key: str) -> None:
        now = time.monotonic()
        if len(self.times) > self.KEYS_BEFORE_SWEEP and now - self.swept_at >= self.seconds:
            self.forget_idle(now)  # (at most once a window: a sweep per act would cost the square of the keys)
        while len(self.times) >= self.KEYS_AT_MOST and key not in self.times:
            del self.times[next(iter(self.times))]
        self.times.setdefault(key, deque(maxlen=self.count)).append(now)  # the last `count` acts

    def take(self, key: str) -> bool:
        """If `key` may act now, count the act and say so."""
        if self.wait(key):
            return False
        self.record(key)
        return True

    def forget_idle(self, now: float) -> None:
        self.swept_at = now
        for key in [key for key, times in self.times.items() if not times or times[-1] <= now - self.seconds]:
            del self.times[key]


class TabAllowance:
    """What one tab may ask of the server, however its page is driven (a script on its socket too): a few presses
    of Stop a second, and the reply so far (each answer is the whole reply) ten times a minute, once a second for
    one reply."""

    def __init__(self) -> None:
        self.stops = RateLimit(1, 0.5)
        self.resyncs = RateLimit(10, 60)
        self.resyncs_of_a_reply = RateLimit(1, 1.0)

    def may_stop(self) -> bool:
        return self.stops.take('tab')

    def may_resync(self, message_id: int) -> bool:
        if self.resyncs.wait('tab') or self.resyncs_of_a_reply.wait(str(message_id)):
            return False
        return self.resyncs.take('tab') and self.resyncs_of_a_reply.take(str(message_id))


def counted(count: int, thing: str) -> str:
    """'1 message', '3 messages'; 'once', '5 times'."""
    if thing == 'time':
        return 'once' if count == 1 else f'{count} times'
    return f'{count} {thing}' if count == 1 else f'{count} {thing}s'


def start_of_day(moment: datetime) -> datetime:
    """The budget's day: midnight UTC."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


class Limits:
    RECOUNT_AFTER = 0.5  # seconds from a reply's end to reading today's use again (replies that end together: once)

    def __init__(self, settings: Settings, store: Store, replies: Replies, bots: Iterable[Bot],
                 spending_changed: Callable[[int], None] = lambda spent: None) -> None:
        self.settings = settings
        self.store = store
        self.replies = replies
        self.bots = {bot.author_id: bot for bot in bots}  # what each may cost: the authors of replies in progress
        self.spending_changed = spending_changed  # today's use changed: the tabs' headers show it
        self.message_rate = RateLimit(settings.messages_per_10s, 10)  # per person and per browser
        self.question_rate = RateLimit(settings.gpt_per_minute, 60)  # per person and per browser, each bot asked
        self.room_message_rate = RateLimit(settings.room_messages_per_minute, 60)  # the whole room, this instance
        self.rename_rate = RateLimit(5, 60)  # per person: a name is not a chat
        self.spent_today = 0  # tokens of today's replies, as last counted (the header shows it with a budget)
        self.recount: asyncio.TimerHandle | None = None  # a reply ended: today's use is read again soon
        self.recounting: asyncio.Task | None = None
        self.day = start_of_day(utc_now())
        self.midnight: asyncio.TimerHandle | None = None  # when today's use starts again from 0
        self.reserved: dict[Place, int] = {}  # the questions being admitted or stored, each with its message's turn
        self.turns = itertools.count()  # messages are admitted in the order they came, though checked together

    async def admit(self, keys: tuple[str, ...], text: str, asked: list[Bot]) -> None:
        """Raise MessageRefused, saying why, if this message may not be taken now; else count it, and hold the
        writer's place with each bot asked until its reply has started (`release`). `keys`: the writer's identity
        and browser."""
        self.check_the_length(text)
        if asked:
            self.check_the_bots_are_free(keys, asked)
        self.check_the_rates(keys, asked)  # before any wait: a refused flood costs no database query
        if asked:
            # Held before the database's count, not after: each message that counts meanwhile sees these questions
            # (if it came later), so messages sent together are checked together, none waiting for another's query.
            turn = next(self.turns)
            places = [(keys, bot.name) for bot in asked]
            self.reserved.update(dict.fromkeys(places, turn))
            try:
                await self.check_the_room_may_ask(turn, asked)
                self.check_the_rates(keys, asked)  # again: others may have been counted during the wait
            except BaseException:  # refused, or the tab went away: the places are free again
                for place in places:
                    self.reserved.pop(place, None)
                raise
        self.count(keys, asked)  # no await since the last check: nothing else was counted in between

    def check_the_length(self, text: str) -> None:
        if len(text) > self.settings.max_message_chars:
            raise MessageRefused(f'That message is {len(text):,} characters long; the limit is '
                                 f'{self.settings.max_message_chars:,}. Nothing was sent.')

    def count(self, keys: tuple[str, ...], asked: list[Bot]) -> None:
        for key in keys:
            self.message_rate.record(key)
            for _ in asked:
                self.question_rate.record(key)
        self.room_message_rate.record('room')

    def release(self, keys: tuple[str, ...], bot: Bot) -> None:
        """The question to `bot` was stored and its reply started (it counts in the writer's place now), or failed."""
        self.reserved.pop((keys, bot.name), None)

    def check_the_rates(self, keys: tuple[str, ...], asked: list[Bot]) -> None:
        if wait := self.message_rate.wait_any(keys):
            raise MessageRefused(f'You are sending messages quickly: at most {self.message_rate.count} in 10 seconds. '
                                 f'Try again in {wait:.0f} s; your message is still in the box.')
        if asked and (wait := self.question_rate.wait_any(keys, len(asked))):
            raise MessageRefused(f'You may ask {" and ".join(f"@{bot.name}" for bot in asked)} '
                                 f'{counted(self.question_rate.count, "time")} a minute. Try again in {wait:.0f} s; '
                                 'your message is still in the box.')
        if wait := self.room_message_rate.wait('room'):
            raise MessageRefused(f'This room takes at most {counted(self.room_message_rate.count, "message")} a '
                                 f'minute, everyone together. Try again in {wait:.0f} s; your message is still in the '
                                 'box.')

    def check_the_bots_are_free(self, keys: tuple[str, ...], asked: list[Bot]) -> None:
        """One pending question for each bot per person (`keys`: their identity and browser), and a cap on the
        replies the room writes at once, all bots together."""
        askers = [*self.reserved, *((reply.asker_keys, reply.bot.name) for reply in self.replies.in_progress.values())]
        pending = {(key, bot_name) for asker_keys, bot_name in askers for key in asker_keys}
        for bot in asked:
            if any((key, bot.name) in pending for key in keys):
                raise MessageRefused(f'@{bot.name} is still answering your last question. Wait for it, or press its '
                                     'Stop button, then ask again. Your message is still in the box.')
        cap = self.settings.max_replies_at_once
        count = len(self.reserved) + len(self.replies.in_progress)
        replies = {number: f'{number} {"reply" if number == 1 else "replies"}' for number in (cap, count)}
        at_once = min(cap, self.question_rate.count, self.settings.room_gpt_per_minute)
        if len(asked) > at_once:  # waiting would not help: ask fewer at once
            raise MessageRefused(f'This room takes {at_once} {"question" if at_once == 1 else "questions"} to the bots '
                                 'in one message at most: ask fewer bots. Your message is still in the box.')
        if count + len(asked) > cap:
            raise MessageRefused(f'The bots are already writing {replies[count]}, and this room allows {cap} at once. '
                                 'Try again in a moment; your message is still in the box.')

    async def check_the_room_may_ask(self, turn: int, asked: list[Bot]) -> None:
        """The room's questions a minute and its daily budget, counted on every instance, with the questions of the
        messages that came before this one (`turn`) and are being admitted or stored."""
        now = utc_now()
        replies, ahead = await self.with_reserved_ahead(turn, self.store.replies_since(now - timedelta(minutes=1)))
        if replies + len(ahead) + len(asked) > self.settings.room_gpt_per_minute:
            raise MessageRefused(f'The bots take at most {counted(self.settings.room_gpt_per_minute, "question")} a '
                                 'minute from the whole room. Try again in a moment; your message is still in the box.')
        if self.settings.daily_token_budget:
            await self.check_the_budget(now, turn, asked)

    async def with_reserved_ahead(self, turn: int, count: Awaitable[T]) -> tuple[T, set[Place]]:
        """A database count, and the questions of earlier turns reserved before or during it: one whose reply was
        stored meanwhile may be counted twice (in the database and as reserved), never not at all."""
        def ahead() -> set[Place]:
            return {place for place, their_turn in self.reserved.items() if their_turn < turn}
        before = ahead()
        result = await count
        return result, before | ahead()

    async def check_the_budget(self, now: datetime, turn: int, asked: list[Bot]) -> None:
        """Today's tokens, with every reply in progress (on any instance) and every question being stored counted at
        the most it may cost: so a burst of questions cannot spend the budget many times over. One reply admitted
        while some is left may cross the line (it finishes); the others a message asks for must fit."""
        (spent, in_progress), ahead = await self.with_reserved_ahead(turn, self.store.spending_since(start_of_day(now)))
        self.set_spending(start_of_day(now), spent)
        held = sum(self.worst_case(author_id, prompt_tokens) for author_id, prompt_tokens in in_progress) + \
            sum(self.worst_case(f'bot:{bot_name}') for _, bot_name in ahead) + \
            sum(self.worst_case(bot.author_id) for bot in asked[1:])
        budget = self.settings.daily_token_budget
        if spent >= budget:
            opens_in = self.day + timedelta(days=1) - now
            hours, minutes = divmod(round(opens_in.total_seconds() / 60), 60)
            raise MessageRefused(f"Today's budget for the bots, {budget:,} tokens, is spent ({spent:,} used). They "
                                 f'take questions again at midnight UTC, in {hours} h {minutes} min. Your message is '
                                 'still in the box.')
        if spent + held >= budget:
            raise MessageRefused(f"Today's budget for the bots, {budget:,} tokens, may be spent by the replies being "
                                 f'written: {spent:,} used, and up to {held:,} held for them. Ask again once they have '
                                 'finished; your message is still in the box.')

    def worst_case(self, author_id: str, prompt_tokens: int | None = None) -> int:
        """The most a reply by this bot may cost: its prompt (the bound stored when its request was made, or that of
        the longest prompt it may be sent) and its bot's max_tokens. A bot of another instance's list: the defaults'."""
        bot = self.bots.get(author_id)
        if prompt_tokens is None:
            longest_question = self.settings.max_message_chars + 42  # with its writer's name (40) and ': '
            prompt_tokens = longest_prompt_bound(bot.system_prompt if bot else self.settings.system_prompt,
                                                  max(self.settings.max_context_chars, longest_question),
                                                  self.settings.context_messages)
        return prompt_tokens + (bot.max_tokens if bot else self.settings.max_tokens)

    async def load_spending(self) -> None:
        """When the room opens: today's use so far (the header shows it), and a new day at each midnight UTC."""
        if self.settings.daily_token_budget:
            await self.load_todays_use()
            self.roll_over_at_midnight()

    def roll_over_at_midnight(self) -> None:
        if start_of_day(utc_now()) != self.day:
            self.set_spending(start_of_day(utc_now()), 0)
        until_midnight = (self.day + timedelta(days=1) - utc_now()).total_seconds()
        self.midnight = asyncio.get_running_loop().call_later(until_midnight + 0.5, self.roll_over_at_midnight)

    def close(self) -> None:
        for timer in (self.midnight, self.recount):
            if timer is not None:
                timer.cancel()

    def set_spending(self, day: datetime, spent: int) -> None:
        """Today's use, as the database just told it: the tabs' headers follow."""
        if (day, spent) != (self.day, self.spent_today):
            self.day, self.spent_today = day, spent
            self.spending_changed(spent)

    def count_spending(self, message: Message) -> None:
        """A reply ended (here or on another instance): today's use is read again from the database, soon (once for
        the replies that end together). Adding its tokens here could count it twice: a check may have read the
        database between its final save and this news."""
        if self.settings.daily_token_budget and not message.status.in_progress and self.recount is None:
            self.recount = asyncio.get_running_loop().call_later(self.RECOUNT_AFTER, self.start_recount)

    def start_recount(self) -> None:
        self.recounting = asyncio.create_task(self.load_todays_use(), name="today's use")
        self.recount = None

    async def load_todays_use(self) -> None:
        try:
            now = utc_now()
            self.set_spending(start_of_day(now), (await self.store.spending_since(start_of_day(now)))[0])
        except Exception as error:  # the database is away, or closing: the next reply's end tries again
            log.warning("could not count today's use of the bots: %s", error)
