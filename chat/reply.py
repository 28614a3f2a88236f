"""One reply's life, and the replies in progress.

A `ReplyStream` is the only writer of its reply and, while it is written, the owner of its text (a `LiveMarkdown`:
the text, and its finished blocks rendered once each): a tab that opens or catches up asks it (`Room.reply_so_far`).
Tokens arrive as fast as the provider sends them; the tabs get the new text, and the blocks it finished, on a beat
shared by every reply (`ui_interval`: one `grew` event with every reply's `Growth`, so one socket message per tab;
the relay forwards the same event to other instances), the database at most every `db_interval` (plus a final
write). So a long reply costs about its own size.

`Replies` starts replies, finds them by id, and keeps the beat. (Who may ask for one, and when: limits.py.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .bot import Bot
from .config import Settings
from .final_saves import FinalSaves
from .markdown import LiveMarkdown
from .models import INTERRUPTED_ERROR, Kind, Message, Status, utc_now
from .provider_errors import explain_error
from .providers import Request
from .store import Store
from .tokens import prompt_bound_tokens, usage_to_store
from .watchdog import ReplyTimeout, Watchdog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Growth:
    """What a reply gained in one beat: its new text, from `offset` on, and the blocks it finished, if any:
    (where they start, where they end, their HTML)."""

    offset: int
    text: str
    finished: tuple[int, int, str] | None = None

    def wire(self) -> list:
        """As the tabs get it: [offset, text] or [offset, text, blocks from, blocks to, their HTML]."""
        return [self.offset, self.text, *(self.finished or ())]


@dataclass(frozen=True)
class RoomNews:
    """How replies tell the room what happens (the room passes its events' `emit`)."""

    added: Callable[[Message], None]  # a reply begins: a thinking bubble
    grew: Callable[[dict[int, Growth]], None]  # one beat's growth of every reply that grew, by reply id
    changed: Callable[[Message], None]  # a reply's status changed (streaming, done, stopped, error, ...)


def next_beat(now: float, interval: float) -> float:
    """The next multiple of `interval`: everything due in the same beat happens together."""
    return (now // interval + 1) * interval


class ReplyStream:
    def __init__(self, replies: Replies, message: Message, asker_keys: tuple[str, ...], bot: Bot) -> None:
        self.replies = replies  # the registry it belongs to: it keeps the beat, and forgets this reply at its end
        # The shared copy every tab's bubble holds: its status is this reply's to change, and its body is filled in
        # once, at the end (until then the text is `self.so_far`'s, and the database gets it at most every
        # `db_interval`: `_save`).
        self.message = message
        self.asker_keys = asker_keys  # who asked: their identity and browser (one pending question each, per bot)
        self.bot = bot
        self.settings = replies.settings
        self.so_far = LiveMarkdown()  # the reply so far: everything received, and its finished blocks
        self.published = 0  # how much of the text the tabs have been sent
        self.first_token_at: float | None = None
        self.stop_requested = False
        self.stopped_by = ''  # the name of whoever pressed Stop
        self.refused = False  # the provider refused the question before any text: it cost nothing
        self.finishing = False
        self.task: asyncio.Task | None = None
        self.watchdog = Watchdog(self.settings.reply_timeout)  # a provider that goes quiet fails the reply
        self._save_timer: asyncio.TimerHandle | None = None

    @property
    def id(self) -> int:
        assert self.message.id is not None
        return self.message.id

    @property
    def text(self) -> str:
        return self.so_far.text

    def stop(self, by: str = '') -> None:
        if self.task and not self.task.done() and not self.stop_requested and not self.finishing:
            self.stop_requested, self.stopped_by = True, by
            self.cancel()

    def cancel(self) -> None:
        """Cancel the task, unless the reply is ending: a second Stop (or the shutdown) must not cancel its final
        write and its goodbye. A task started in this turn of the event loop has not taken its first step: cancelled
        now, `run` would never run, nor its `finally`; so it is cancelled after that step (it is queued first)."""
        if self.task is None or self.task.done() or self.finishing:
            return
        if inspect.getcoroutinestate(self.task.get_coro()) == inspect.CORO_CREATED:
            self.task.get_loop().call_soon(self.cancel)
        else:
            self.task.cancel()  # the provider's stream closes its HTTP connection as the cancellation unwinds it

    async def run(self) -> None:
        started = time.monotonic()
        status, error, request = Status.DONE, None, None
        try:
            assert self.message.reply_to is not None
            context = await self.replies.store.context_for(self.message.reply_to, self.settings.context_messages)
            request = Request(self.bot.prompt(context, self.settings.max_context_chars), self.bot.max_tokens,
                              waiting_in_line=self._waiting_in_line)
            # Until the reply ends, the daily budget holds this prompt and max_tokens for it, on every instance.
            self._write('the prompt bound', prompt_tokens=prompt_bound_tokens(request.messages))
            async for text in self.watchdog.watch(self.bot.provider.stream(request), lambda: self.stop_requested):
                self._add(text)
            if not self.text.strip():
                status, error = Status.ERROR, 'The model sent an empty reply.'
        except asyncio.CancelledError:
            status, error = self._cancelled_ending()
            if not self.stop_requested:
                raise
        except Exception as exception:
            status, error = Status.ERROR, explain_error(exception, mid_reply=bool(self.text))
            # Refused before any text, it cost nothing; a model that went quiet may have read the prompt: it counts.
            self.refused = not self.text and not isinstance(exception, ReplyTimeout)
            log.warning('reply %s failed: %s', self.id, error, exc_info=not isinstance(exception, ReplyTimeout))
        finally:
            await self._finish(status, error, started, request)

    def _cancelled_ending(self) -> tuple[Status, str | None]:
        """How a cancelled reply ends: stopped by someone, or interrupted (the app is shutting down)."""
        if self.stop_requested:
            return Status.STOPPED, f'by {self.stopped_by}' if self.stopped_by else None
        return Status.INTERRUPTED, INTERRUPTED_ERROR

    def _waiting_in_line(self, waiting: bool) -> None:
        """The provider answers one question at a time: this one waits (the watchdog too), or its turn has come."""
        self._set_status(Status.WAITING if waiting else Status.THINKING)
        self.watchdog.wait_in_line(waiting)

    def _add(self, text: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            self._set_status(Status.STREAMING)
        self.so_far.text += text
        self.replies.text_arrived()  # to the tabs on the next beat
        self._save_soon()

    def _set_status(self, status: Status) -> None:
        self.message.status = status
        self.replies.news.changed(self.message)

    def take_growth(self) -> Growth | None:
        """What the tabs have not been sent yet: the new text, and the blocks it finished (all of them once the
        reply is ending), each rendered now, once for every tab. From now on the tabs have it."""
        finished = self.so_far.take_finished(final=self.finishing)
        if self.published == len(self.text) and not finished:
            return None
        growth = Growth(self.published, self.text[self.published:], finished)
        self.published = len(self.text)
        return growth

    def _save_soon(self) -> None:
        """The text so far goes to the database at most every `db_interval`."""
        if self._save_timer is not None:
            return
        if self.settings.db_interval <= 0:
            self._save()
            return
        loop = asyncio.get_running_loop()
        self._save_timer = loop.call_at(next_beat(loop.time(), self.settings.db_interval), self._save)

    def _save(self) -> None:
        self._save_timer = None
        self._write('the text so far', body=self.text, status=Status.STREAMING)

    def _write(self, what: str, **fields: object) -> None:
        """Hand a write to the database thread now, so it comes before any later one (the final write). If the
        database refuses it, that is logged and the reply goes on."""
        saving = self.replies.store.save(self.id, **fields)
        saving.add_done_callback(lambda done: done.exception() and log.warning(
            'could not save %s of reply %s: %s', what, self.id, done.exception()))

    async def _finish(self, status: Status, error: str | None, started: float, request: Request | None) -> None:
        self.finishing = True
        if self._save_timer is not None:
            self._save_timer.cancel()
        try:
            self.replies.publish_new_text()  # the tabs get the last text and blocks before they hear of the end
        except Exception:  # whatever happens, the reply ends (a tab that missed the last blocks asks for them)
            log.exception('could not send the end of reply %s to the tabs', self.id)
        usage = usage_to_store(request, self.text, refused=self.refused)  # the daily budget counts it
        ending = {
            'status': status,
            'error': error,
            'duration_ms': round((time.monotonic() - started) * 1000),
            'first_token_ms': round((self.first_token_at - started) * 1000) if self.first_token_at else None,
            'prompt_tokens': usage.prompt_tokens if usage else None,
            'completion_tokens': usage.completion_tokens if usage else None,
            'usage_estimated': bool(usage and usage.estimated),
        }
        await self.replies.final_saves.save(self.id, {'body': self.text, **ending})
        # Only now, all at once: the reply ends in memory, the asker may ask again, and every tab hears of it.
        for name, value in ending.items():
            setattr(self.message, name, value)
        self.message.body = self.text
        self.message.updated_at = utc_now()
        self.replies.forget(self)
        self.replies.news.changed(self.message)


class Replies:
    def __init__(self, store: Store, settings: Settings, news: RoomNews) -> None:
        self.store = store
        self.settings = settings
        self.news = news
        self.in_progress: dict[int, ReplyStream] = {}  # by the reply's message id
        self.final_saves = FinalSaves(store)  # the ends of replies, tried again if the database refuses them
        self._beat: asyncio.TimerHandle | None = None

    async def start(self, bot: Bot, question: Message, asker_keys: tuple[str, ...]) -> ReplyStream:
        """Add a thinking reply at once, then stream it in the background."""
        message = await self.store.add(Message(kind=Kind.BOT, author=bot.author, author_id=bot.author_id,
                                               status=Status.THINKING, reply_to=question.id, model=bot.provider.model))
        reply = ReplyStream(self, message, asker_keys, bot)
        self.in_progress[reply.id] = reply
        self.news.added(message)
        reply.task = asyncio.create_task(reply.run(), name=f'reply {reply.id}')
        return reply

    def stop(self, message_id: int, by: str = '') -> bool:
        """Stop a reply streaming here (`by`: who pressed Stop); False if there is none by that id."""
        if reply := self.in_progress.get(message_id):
            reply.stop(by)
        return reply is not None

    def text_arrived(self) -> None:
        """A reply has new text. It goes to the tabs on the next beat, with every other reply's new text."""
        if self.settings.ui_interval <= 0:
            self.publish_new_text()
        elif self._beat is None:
            loop = asyncio.get_running_loop()
            self._beat = loop.call_at(next_beat(loop.time(), self.settings.ui_interval), self.publish_new_text)

    def publish_new_text(self) -> None:
        """One `grew` for all replies, so every tab gets one socket message per beat however many replies stream."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        growth = {reply.id: grown for reply in self.in_progress.values() if (grown := reply.take_growth())}
        if growth:
            self.news.grew(growth)

    def is_written_here(self, message_id: int) -> bool:
        """Whether this reply is being written here (in this process)."""
        return message_id in self.in_progress

    def streaming_here(self) -> list[int]:
        return list(self.in_progress)

    def forget(self, reply: ReplyStream) -> None:
        self.in_progress.pop(reply.id, None)

    async def interrupt_all(self) -> None:
        """On shutdown: end every reply in progress as interrupted, with its text so far saved."""
        replies = list(self.in_progress.values())
        for reply in replies:
            reply.cancel()  # (not one that is ending already: it gets to save its end)
        await asyncio.gather(*(reply.task for reply in replies if reply.task), return_exceptions=True)
        self.final_saves.cancel_all()  # last, so the retries of the ends just refused go too
