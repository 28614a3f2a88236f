"""The local provider: streams from a model in this process, one generation at a time, on a worker thread.

What any in-process model needs: generation on a worker thread (the event loop must never wait for the model),
tokens handed back to the loop as they come, one generation at a time with the others waiting in line (and saying
so), and a Stop that ends a generation at its next token. The model itself is a `TextGenerator`: `LlamaModel` in
llama.py, or the tests' fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..providers import ChatMessages, ProviderError, Request, Usage

log = logging.getLogger(__name__)

END = object()  # the worker's last word on a generation


class TextGenerator(Protocol):
    name: str  # the model's name, shown as the author of its replies

    def generate(self, messages: ChatMessages, max_tokens: int,
                 cancelled: Callable[[], bool]) -> Generator[str | Usage]:
        """Blocking, on the worker thread: text pieces as the model makes them, then the usage.
        `cancelled()` turns true on a Stop; a long prompt should check it while the model reads."""
        ...


class LocalModelProvider:
    def __init__(self, generator: TextGenerator) -> None:
        self.generator = generator
        self.name = generator.name
        self.model = generator.name  # stored with each reply, as OpenAI's model name is
        self.description = f'{generator.name}, a small model running on this computer (no key)'
        # One thread: the model is one object with one context, and two generations would only share the cores.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix='local-model')
        self.line: list[object] = []  # a ticket per question; the first one is being answered
        self._line_moved = asyncio.Event()

    async def stream(self, request: Request) -> AsyncIterator[str]:
        ticket = object()
        self.line.append(ticket)
        handed_to_worker = False
        try:
            await self._wait_for_turn(ticket, request)
            loop = asyncio.get_running_loop()
            pieces: asyncio.Queue[Any] = asyncio.Queue()
            cancelled = threading.Event()

            def hand_over(item: object) -> None:  # on the worker thread
                try:
                    loop.call_soon_threadsafe(pieces.put_nowait, item)
                except RuntimeError:  # the loop has closed: nobody is listening any more
                    cancelled.set()

            work = loop.run_in_executor(self.worker, self._generate, request, cancelled, hand_over)
            handed_to_worker = True
            work.add_done_callback(lambda _: self._leave(ticket))  # the next in line starts once the thread is free
            try:
                while (item := await pieces.get()) is not END:
                    if isinstance(item, Exception):
                        raise item
                    if isinstance(item, Usage):
                        request.usage = item
                    else:
                        yield item
                self._leave(ticket)  # END is the worker's last act: the next question need not wait for its return
            finally:
                cancelled.set()  # a Stop (or anything else ending this stream) ends the generation at its next token
        finally:
            if not handed_to_worker:
                self._leave(ticket)

    async def _wait_for_turn(self, ticket: object, request: Request) -> None:
        if self.line[0] is ticket:
            return
        request.waiting_in_line(True)
        while self.line[0] is not ticket:
            moved = self._line_moved
            await moved.wait()
        request.waiting_in_line(False)

    def _leave(self, ticket: object) -> None:
        if ticket not in self.line:
            return
        self.line.remove(ticket)
        # Wake everyone waiting (each checks whether it is first now); the next move gets a fresh Event.
        self._line_moved.set()
        self._line_moved = asyncio.Event()

    def _generate(self, request: Request, cancelled: threading.Event, hand_over: Callable[[object], None]) -> None:
        """The worker thread's part: run the model and hand each piece to the event loop."""
        try:
            generation = self.generator.generate(request.messages, request.max_tokens, cancelled.is_set)
            with contextlib.closing(generation) as pieces:
                for piece in pieces:
                    if cancelled.is_set():
                        break
                    hand_over(piece)
        except Exception as error:
            if not isinstance(error, ProviderError):
                log.exception('the local model failed')
                error = ProviderError(f'The local model failed ({type(error).__name__}). The server log has more.')
            hand_over(error)
        finally:
            hand_over(END)
