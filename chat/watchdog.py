"""A reply's watchdog: a provider that goes quiet fails the reply, rather than leave it 'thinking' for ever.

reply.py reads the provider's stream through `Watchdog.watch`; on a first read, take it as the stream itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from .providers import ProviderError


class ReplyTimeout(ProviderError):
    """The provider went quiet: no first token, or no new token, within the allowed time."""


class Watchdog:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._timer: asyncio.Timeout | None = None

    async def watch(self, stream: AsyncIterator[str], stopped: Callable[[], bool]) -> AsyncIterator[str]:
        """The provider's stream, failing if it goes quiet for `timeout` seconds (no first token, or no new one).
        `stopped`: whether someone pressed Stop, for a provider that swallows the cancellation."""
        received = False
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a Stop's cancellation
                    # when a token arrives at the same moment.
                    async with asyncio.timeout(self.timeout) as self._timer:
                        text = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = 'The reply stalled: no new text' if received else 'No answer'
                    raise ReplyTimeout(f'{what} within {self.timeout:g} s.') from None
                # A cancel that the provider swallowed (a Stop, or the shutdown): end it here.
                if stopped() or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise asyncio.CancelledError
                received = received or bool(text)
                yield text
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def wait_in_line(self, waiting: bool) -> None:
        """The provider answers one question at a time: waiting in line for it is not going quiet. The watchdog
        waits too, and counts again from the moment this question's turn comes."""
        if self._timer is not None:
            restart = asyncio.get_running_loop().time() + self.timeout
            self._timer.reschedule(None if waiting else restart)
