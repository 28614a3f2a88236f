"""Full garbage collections wait until no reply is streaming.

Python frees most objects the moment they are no longer used; its cyclic garbage collector finds the rest. Its
young collections are quick, but a full one walks every object in the process and stops everything while it does:
with a few hundred tabs open (each tab's page is a few thousand objects) that took up to 0.56 s here, during which
no tab receives any text (see docs/benchmarks.md). So while replies stream, full collections are put off; they run at
the first quiet moment, or at the latest after `max_delay` seconds of uninterrupted streaming. And what exists once
the app has started is set aside for good, so that no full collection walks it again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from ..room import Room

log = logging.getLogger(__name__)

PUT_OFF = 1_000_000  # a threshold for the oldest generation that is never reached


def set_aside_start_up_objects() -> None:
    """The modules, classes and the room made at start-up live as long as the process (about 160,000 objects, 80 ms
    of every full collection here): move them out of the collector's sight, once. Garbage is collected first, so
    none of it is kept."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


class FullCollectionsWhenQuiet:
    """Told when replies start streaming on this instance, and when the last one ends."""

    def __init__(self, max_delay: float = 300.0) -> None:
        self.max_delay = max_delay
        self.threshold = gc.get_threshold()
        self.put_off_since: float | None = None  # when streaming began; None while the room is quiet
        self._deadline: asyncio.TimerHandle | None = None  # collects anyway if the room never goes quiet

    def follow(self, room: Room) -> None:
        """Put full collections off while replies stream in this room."""
        replies = room.replies.in_progress
        room.added.subscribe(lambda message: self.streaming_started() if message.id in replies else None)
        room.changed.subscribe(lambda: None if replies else self.streaming_ended())

    def streaming_started(self) -> None:
        if self.put_off_since is not None:
            return
        if gc.get_threshold()[2] != PUT_OFF:  # another room in this process may have put collections off
            self.threshold = gc.get_threshold()
        young, middle, _ = self.threshold
        gc.set_threshold(young, middle, PUT_OFF)
        self.put_off_since = time.monotonic()
        self._deadline = asyncio.get_running_loop().call_later(self.max_delay, self._collect_overdue)

    def streaming_ended(self) -> None:
        """The last reply ended: the usual thresholds again, so a full collection that is due runs soon."""
        if self.put_off_since is not None:
            gc.set_threshold(*self.threshold)
            self.put_off_since = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _collect_overdue(self) -> None:
        """`max_delay` seconds of streaming without a quiet moment: collect now rather than let garbage pile up."""
        started = time.perf_counter()
        gc.collect()
        log.info('full garbage collection after %.0f s of streaming took %.0f ms', self.max_delay,
                 (time.perf_counter() - started) * 1000)
        self._deadline = asyncio.get_running_loop().call_later(self.max_delay, self._collect_overdue)
