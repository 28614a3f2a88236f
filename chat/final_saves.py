"""A reply's final write, tried again while the database refuses it.

Left as it was, a reply whose end the database refused (full, or read-only for a moment) would stay 'streaming' in
the database, and the daily budget would hold its worst case all day. On a first read, take `FinalSaves.save` as
the store's `save`.
"""

from __future__ import annotations

import asyncio
import logging

from .store import Store

log = logging.getLogger(__name__)
DELAYS = (1, 5, 30, 120)  # seconds before each new try: ever more slowly, then it is left to the next start


class FinalSaves:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.tasks: set[asyncio.Task] = set()  # the ends the database refused, to be tried again

    async def save(self, message_id: int, fields: dict[str, object]) -> None:
        """Write a reply's end (a second Stop, or the shutdown, does not cancel the write). If the database refuses
        it, that is logged and it is tried again later, in a task of its own."""
        try:
            await asyncio.shield(self.store.save(message_id, **fields))
        except Exception:
            log.exception('could not save the end of reply %s (tried again later)', message_id)
            retry = asyncio.create_task(self._again(message_id, fields), name=f'end of reply {message_id}, again')
            self.tasks.add(retry)
            retry.add_done_callback(self.tasks.discard)

    async def _again(self, message_id: int, fields: dict[str, object]) -> None:
        for delay in DELAYS:
            await asyncio.sleep(delay)
            try:
                await self.store.save(message_id, **fields)
                return
            except Exception as error:
                log.warning('could not save the end of reply %s, again: %s', message_id, error)

    def cancel_all(self) -> None:
        """At the shutdown: the store closes next. (A reply refused its final write stays 'streaming': the next
        start ends it.)"""
        for retry in self.tasks:
            retry.cancel()
