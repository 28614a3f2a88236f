"""One reply's life: context, stream, publish, flush, stop, errors and the watchdog.

A `ReplyStream` is the only writer of its reply. Tokens arrive as fast as the provider sends them;
tabs get the new text at most every `ui_interval` (a delta, never the whole text again) and the
database at most every `db_interval` (plus a final write), so a long reply costs about its own size.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import openai
from nicegui import background_tasks

from .config import Settings
from .gc_policy import FullCollectionsWhenQuiet
from .models import Kind, Message, Status, utc_now
from .providers import ChatMessages, InLine, Provider, Usage, explain_error

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)


class MessageRefused(Exception):
    """A message the room will not take. Its text is the notice shown to the writer, whose text stays put."""


class ReplyTimeout(Exception):
    """The provider went quiet: no first token, or no new token, within the allowed time."""


def build_prompt(system_prompt: str, context: list[Message], max_chars: int | None = None) -> ChatMessages:
    """People speak as `user` with their name in front, so the model can tell them apart; the bot as `assistant`.
    Past `max_chars` of conversation, the oldest messages are left out (the newest, the question, always stays)."""
    turns = []
    for message in context:
        if message.kind == Kind.BOT:
            turns.append({'role': 'assistant', 'content': message.body})
        else:
            turns.append({'role': 'user', 'content': f'{message.author}: {message.body}'})
    if max_chars is not None:
        while len(turns) > 1 and sum(len(turn['content']) for turn in turns) > max_chars:
            turns.pop(0)
    return [{'role': 'system', 'content': system_prompt}, *turns]


class Throttle:
    """Runs `action` at most once per `interval`, on a beat shared by every Throttle of that interval.

    A call waits for the next beat instead of running at once, so all replies streaming at the same time
    publish together, and the tabs get their new text in one socket message, not one per reply.
    """

    def __init__(self, interval: float, action: Callable[[], Awaitable[Any] | None]) -> None:
        self.interval = interval
        self.action = action
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task] = set()

    def __call__(self) -> None:
        if self._timer is not None:
            return  # already due; the run at the beat will see the newest state
        if self.interval <= 0:
            self._run()
            return
        loop = asyncio.get_running_loop()
        beat = (math.floor(loop.time() / self.interval) + 1) * self.interval
        self._timer = loop.call_at(beat, self._run)

    def _run(self) -> None:
        self._timer = None
        result = self.action()
        if asyncio.iscoroutine(result):
            task = background_tasks.create(result, name='throttled action')
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def flush(self) -> None:
        """Cancel the deferred run and wait for the running ones, so a final write comes after every earlier one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


class ReplyStream:
    def __init__(self, room: Room, message: Message, asker_id: str, provider: Provider, settings: Settings) -> None:
        self.room = room
        self.message = message
        self.asker_id = asker_id
        self.provider = provider
        self.settings = settings
        self.text = ''  # everything received so far; `message.body` is what the tabs have been sent
        self.stop_requested = False
        self.finishing = False
        self.usage: Usage | None = None
        self.send_to_tabs = Throttle(settings.ui_interval, self._send_new_text)
        self.save_to_db = Throttle(settings.db_interval, self._save_text)
        self.task: asyncio.Task | None = None

    @property
    def id(self) -> int:
        assert self.message.id is not None
        return self.message.id

    def stop(self) -> None:
        # Once the reply is ending, a second Stop (or the shutdown) must not cancel its final write and its goodbye.
        if self.task and not self.task.done() and not self.stop_requested and not self.finishing:
            self.stop_requested = True
            self.task.cancel()  # the provider's stream closes its HTTP connection as the cancellation unwinds it

    async def run(self) -> None:
        started = time.monotonic()
        first_token_at: float | None = None
        status, error = Status.DONE, None
        try:
            assert self.message.reply_to is not None
            context = await self.room.store.context_for(self.message.reply_to, self.settings.context_messages)
            prompt = build_prompt(self.settings.system_prompt, context, self.settings.max_context_chars)
            async for item in self._watched(self.provider.stream(prompt, self.settings.max_tokens)):
                if isinstance(item, Usage):
                    self.usage = item
                    continue
                if isinstance(item, InLine):  # a provider that answers one question at a time
                    self._set_status(Status.WAITING if item.waiting else Status.THINKING)
                    continue
                if first_token_at is None:
                    first_token_at = time.monotonic()
                    self._set_status(Status.STREAMING)
                self.text += item
                self.send_to_tabs()
                self.save_to_db()
            if not self.text.strip():
                status, error = Status.ERROR, 'The model sent an empty reply.'
        except asyncio.CancelledError:
            status = Status.STOPPED if self.stop_requested else Status.INTERRUPTED
            error = None if self.stop_requested else 'Interrupted: the server stopped while this reply was written.'
            if not self.stop_requested:
                raise
        except Exception as exception:
            status, error = Status.ERROR, self._explain(exception)
            log.warning('reply %s failed: %s', self.id, error, exc_info=not isinstance(exception, ReplyTimeout))
        finally:
            await self._finish(status, error, started, first_token_at)

    async def _watched(self, stream: AsyncIterator[str | Usage | InLine]) -> AsyncIterator[str | Usage | InLine]:
        """Yield from the provider's stream, but fail if it goes quiet for too long (the watchdog). Waiting in line
        for a local model is not going quiet: the first-token clock starts when the turn comes."""
        try:
            while True:
                waiting_for_first = not self.text
                timeout = self.settings.first_token_timeout if waiting_for_first else self.settings.stall_timeout
                if self.message.status == Status.WAITING:
                    timeout = None
                try:
                    # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a Stop's cancellation
                    # when a token arrives at the same moment.
                    async with asyncio.timeout(timeout):
                        item = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = 'No answer' if waiting_for_first else 'The reply stalled: no new text'
                    raise ReplyTimeout(f'{what} within {timeout:g} s.') from None
                if self.stop_requested:  # belt and braces: a Stop always ends the reply at the next token
                    raise asyncio.CancelledError
                yield item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def _explain(self, exception: Exception) -> str:
        if isinstance(exception, ReplyTimeout):
            return str(exception)
        if self.text and isinstance(exception, openai.APIConnectionError):
            return 'The connection to the provider dropped mid-reply. The text so far is kept.'
        explanation = explain_error(exception)
        return f'{explanation} The text so far is kept.' if self.text else explanation

    def _set_status(self, status: Status) -> None:
        self.message.status = status
        self.room.changed.emit(self.message)

    def _send_new_text(self) -> None:
        offset = len(self.message.body)
        new_text = self.text[offset:]
        if new_text:
            self.message.body = self.text
            self.room.grew.emit(self.id, offset, new_text)

    async def _save_text(self) -> None:
        await self.room.store.save(self.id, body=self.text, status=Status.STREAMING)

    async def _finish(self, status: Status, error: str | None, started: float, first_token_at: float | None) -> None:
        self.finishing = True
        await self.send_to_tabs.flush()
        await self.save_to_db.flush()
        self._send_new_text()
        ending = {
            'status': status,
            'error': error,
            'duration_ms': round((time.monotonic() - started) * 1000),
            'first_token_ms': round((first_token_at - started) * 1000) if first_token_at else None,
            'prompt_tokens': self.usage.prompt_tokens if self.usage else None,
            'completion_tokens': self.usage.completion_tokens if self.usage else None,
        }
        try:
            await asyncio.shield(self.room.store.save(self.id, body=self.text, **ending))
        except Exception:
            log.exception('could not save the end of reply %s', self.id)
        # Only now, all at once: the reply ends in memory, the asker may ask again, and every tab hears of it.
        for field_name, value in ending.items():
            setattr(self.message, field_name, value)
        self.message.updated_at = utc_now()
        self.room.bot.forget(self)
        self.room.changed.emit(self.message)


class Bot:
    """Starts replies, remembers the ones in progress, and keeps each person to one pending reply."""

    def __init__(self, room: Room, provider: Provider, settings: Settings) -> None:
        self.room = room
        self.provider = provider
        self.settings = settings
        self.replies: dict[int, ReplyStream] = {}  # in progress, by the bot message's id
        self.claimed: set[str] = set()  # people with a question being answered
        self.collections = FullCollectionsWhenQuiet()  # no stop-the-world pause while text streams to the tabs
        # Several instances on one PostgreSQL room (chat/relay.py sets these): replies other instances stream
        # (their text so far), how to ask them for a Stop, and the lease a reply streamed here starts with.
        self.remote_text: dict[int, str] = {}
        self.stop_elsewhere: Callable[[int], None] | None = None
        self.lease_seconds: float | None = None

    def check_can_answer(self, person_id: str) -> None:
        """Raise MessageRefused if this person already has a reply pending, or the room is at its limit."""
        if person_id in self.claimed:
            raise MessageRefused('@gpt is still answering your last question. Wait for it, or press its Stop button, '
                                 'then ask again. Your message is still in the box.')
        if len(self.claimed) >= self.settings.max_replies_at_once:
            raise MessageRefused(f'@gpt is already writing {len(self.claimed)} replies, as many as this room allows '
                                 'at once. Try again in a moment; your message is still in the box.')

    def claim(self, person_id: str) -> None:
        self.check_can_answer(person_id)
        self.claimed.add(person_id)

    def release(self, person_id: str) -> None:
        self.claimed.discard(person_id)

    async def answer(self, question: Message) -> ReplyStream:
        """Add a thinking bot message at once, then stream the reply into it in the background."""
        try:
            message = await self.room.store.add(Message(
                kind=Kind.BOT, author=self.provider.name, author_id='bot', status=Status.THINKING,
                reply_to=question.id, model=getattr(self.provider, 'model', None),
                lease_until=utc_now() + timedelta(seconds=self.lease_seconds) if self.lease_seconds else None,
            ))
        except Exception:
            self.release(question.author_id)
            raise
        if self.lease_seconds:  # the lease by the database's clock from now on (chat/relay.py renews it)
            await self.room.store.renew_leases([message.id], self.lease_seconds)  # type: ignore[list-item]
        reply = ReplyStream(self.room, message, question.author_id, self.provider, self.settings)
        self.replies[reply.id] = reply
        self.collections.streaming_started()
        self.room.publish(message)
        reply.task = background_tasks.create(reply.run(), name=f'reply {reply.id}')
        return reply

    def stop(self, message_id: int) -> None:
        if reply := self.replies.get(message_id):
            reply.stop()
        elif message_id in self.remote_text and self.stop_elsewhere:  # another instance streams it
            self.stop_elsewhere(message_id)

    def text_so_far(self, message_id: int) -> str | None:
        """The text tabs have been sent of a reply in progress (None once it has ended)."""
        reply = self.replies.get(message_id)
        return reply.message.body if reply else self.remote_text.get(message_id)

    def forget(self, reply: ReplyStream) -> None:
        self.replies.pop(reply.id, None)
        self.release(reply.asker_id)
        if not self.replies:
            self.collections.streaming_ended()

    async def interrupt_all(self) -> None:
        """On shutdown: end every reply in progress as interrupted, with its text so far saved."""
        tasks = [reply.task for reply in self.replies.values() if reply.task]
        for reply in list(self.replies.values()):
            if reply.task and not reply.finishing:  # one that is ending already gets to save its end
                reply.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
