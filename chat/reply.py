"""One reply's life, and the replies in progress.

A `ReplyStream` is the only writer of its reply and, while it is written, the owner of its text (a `LiveMarkdown`:
the text, and its finished blocks rendered once each): a tab that opens or catches up, and the relay, ask it. Tokens
arrive as fast as the provider sends them; the tabs get the new text, and the blocks it finished, on a beat shared
by every reply (`ui_interval`: one `grew` event with every reply's `Growth`, so one socket message per tab), the
database at most every `db_interval` (plus a final write). So a long reply costs about its own size.

`Replies` starts replies, finds them by id, and keeps the beat. (Who may ask for one, and when: limits.py.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .bot import Bot
from .config import Settings
from .markdown import LiveMarkdown
from .models import INTERRUPTED_ERROR, Kind, Message, Status, utc_now
from .providers import ProviderError, Request, explain_error
from .store import Store
from .tokens import prompt_bound_tokens, usage_to_store

log = logging.getLogger(__name__)


class ReplyTimeout(ProviderError):
    """The provider went quiet: no first token, or no new token, within the allowed time."""


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
        self.message = message  # its status is this reply's to change; its body is written once, at the end
        self.asker_keys = asker_keys  # who asked: their identity and browser (one pending question each, per bot)
        self.bot = bot
        self.settings = replies.settings
        self.live = LiveMarkdown()  # everything received so far, and its finished blocks
        self.published = 0  # how much of the text the tabs have been sent
        self.first_token_at: float | None = None
        self.stop_requested = False
        self.stopped_by = ''  # the name of whoever pressed Stop
        self.refused = False  # the provider refused the question before any text: it cost nothing
        self.finishing = False
        self.task: asyncio.Task | None = None
        self.late_ending: asyncio.Task | None = None  # see end_if_cancelled_before_it_began
        self._save_timer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.Timeout | None = None

    @property
    def id(self) -> int:
        assert self.message.id is not None
        return self.message.id

    @property
    def text(self) -> str:
        return self.live.text

    def stop(self, by: str = '') -> None:
        # Once the reply is ending, a second Stop (or the shutdown) must not cancel its final write and its goodbye.
        if self.task and not self.task.done() and not self.stop_requested and not self.finishing:
            self.stop_requested, self.stopped_by = True, by
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
            async for text in self._within_timeout(self.bot.provider.stream(request)):
                self._add(text)
            if not self.text.strip():
                status, error = Status.ERROR, 'The model sent an empty reply.'
        except asyncio.CancelledError:
            status, error = self._cancelled_ending()
            if not self.stop_requested:
                raise
        except Exception as exception:
            status, error = Status.ERROR, explain_error(exception, mid_reply=bool(self.text))
            # (a model that went quiet may have read the prompt: that one is counted)
            self.refused = not self.text and not isinstance(exception, ReplyTimeout)
            log.warning('reply %s failed: %s', self.id, error, exc_info=not isinstance(exception, ReplyTimeout))
        finally:
            await self._finish(status, error, started, request)

    def _cancelled_ending(self) -> tuple[Status, str | None]:
        """How a cancelled reply ends: stopped by someone, or interrupted (the app is shutting down)."""
        if self.stop_requested:
            return Status.STOPPED, f'by {self.stopped_by}' if self.stopped_by else None
        return Status.INTERRUPTED, INTERRUPTED_ERROR

    def end_if_cancelled_before_it_began(self, task: asyncio.Task) -> None:
        """A Stop (or the shutdown) in the same turn of the event loop as the reply's start cancels its task before
        `run` takes its first step, so `run`'s `finally` never runs: the reply ends here instead, as `run` would."""
        if task.cancelled() and not self.finishing:
            self.late_ending = asyncio.create_task(self._finish(*self._cancelled_ending(), time.monotonic(), None),
                                                   name=f'end of reply {self.id}')

    async def _within_timeout(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """The provider's stream, failing if it goes quiet for `reply_timeout` seconds (no first token, or no new
        one). The watchdog: waiting in line for a local model is not going quiet (see `_waiting_in_line`)."""
        try:
            while True:
                timeout = self.settings.reply_timeout
                try:
                    # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a Stop's cancellation
                    # when a token arrives at the same moment.
                    async with asyncio.timeout(timeout) as self._watchdog:
                        text = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = 'The reply stalled: no new text' if self.text else 'No answer'
                    raise ReplyTimeout(f'{what} within {timeout:g} s.') from None
                # A cancel that the provider swallowed (a Stop, or the shutdown): end it here.
                if self.stop_requested or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise asyncio.CancelledError
                yield text
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def _waiting_in_line(self, waiting: bool) -> None:
        """The provider answers one question at a time: this one waits (the watchdog too), or its turn has come."""
        self._set_status(Status.WAITING if waiting else Status.THINKING)
        if self._watchdog is not None:
            restart = asyncio.get_running_loop().time() + self.settings.reply_timeout
            self._watchdog.reschedule(None if waiting else restart)

    def _add(self, text: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            self._set_status(Status.STREAMING)
        self.live.text += text
        self.replies.text_arrived()  # to the tabs on the next beat
        self._save_soon()

    def _set_status(self, status: Status) -> None:
        self.message.status = status
        self.replies.news.changed(self.message)

    def take_growth(self) -> Growth | None:
        """What the tabs have not been sent yet: the new text, and the blocks it finished (all of them once the
        reply is ending), each rendered now, once for every tab. From now on the tabs have it."""
        finished = self.live.take_finished(final=self.finishing)
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

    async def _save_the_end_later(self, ending: dict[str, object]) -> None:
        """The database refused the final write (full, read-only for a moment): left as it is, the stored reply
        would stay 'streaming', and the daily budget would hold its worst case all day. Try again, ever more slowly."""
        for delay in (1, 5, 30, 120):
            await asyncio.sleep(delay)
            try:
                await self.replies.store.save(self.id, body=self.text, **ending)
                return
            except Exception as error:
                log.warning('could not save the end of reply %s, again: %s', self.id, error)

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
        try:
            await asyncio.shield(self.replies.store.save(self.id, body=self.text, **ending))
        except Exception:
            log.exception('could not save the end of reply %s (tried again later)', self.id)
            retry = asyncio.create_task(self._save_the_end_later(ending), name=f'end of reply {self.id}, again')
            self.replies.saving_again.add(retry)
            retry.add_done_callback(self.replies.saving_again.discard)
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
        self.saving_again: set[asyncio.Task] = set()  # ended replies whose final write the database refused
        self._beat: asyncio.TimerHandle | None = None

    async def start(self, bot: Bot, question: Message, asker_keys: tuple[str, ...]) -> ReplyStream:
        """Add a thinking reply at once, then stream it in the background."""
        message = await self.store.add(Message(kind=Kind.BOT, author=bot.author, author_id=bot.author_id,
                                               status=Status.THINKING, reply_to=question.id, model=bot.provider.model))
        reply = ReplyStream(self, message, asker_keys, bot)
        self.in_progress[reply.id] = reply
        self.news.added(message)
        reply.task = asyncio.create_task(reply.run(), name=f'reply {reply.id}')
        reply.task.add_done_callback(reply.end_if_cancelled_before_it_began)
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
        tasks = [reply.task for reply in replies if reply.task]
        for reply in replies:
            if reply.task and not reply.finishing:  # one that is ending already gets to save its end
                reply.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # (a reply whose task had not begun ends in a task of its own, made as its task ended: before this line)
        await asyncio.gather(*(reply.late_ending for reply in replies if reply.late_ending), return_exceptions=True)
        # Last, so the retries of the ends just refused go too. (A reply refused its final write stays 'streaming':
        # the next start ends it.)
        for retry in self.saving_again:
            retry.cancel()
