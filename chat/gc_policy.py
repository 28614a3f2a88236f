"""Full garbage collections wait until no reply is streaming.

Python frees most objects the moment they are no longer used; its cyclic garbage collector finds the rest. Its
young collections are quick, but a full one walks every object in the process and stops everything while it does:
with a few hundred tabs open (each tab's page is a few thousand objects) that took up to 0.56 s here, during which
no tab receives any text (see docs/benchmarks.md). So while replies stream, full collections are put off; they run at
the first quiet moment, or at the latest after `max_delay` seconds of uninterrupted streaming. And what exists once
the app has started is set aside for good, so that no full collection walks it again.
"""

from __future__ import annotations

import gc
import logging
import time

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
    def __init__(self, max_delay: float = 300.0) -> None:
        self.max_delay = max_delay
        self.put_off_since: float | None = None  # when streaming began; None while the room is quiet
        self.threshold = gc.get_threshold()

    def streaming_started(self) -> None:
        now = time.monotonic()
        if self.put_off_since is None:
            if gc.get_threshold()[2] != PUT_OFF:  # another room in this process may have put collections off
                self.threshold = gc.get_threshold()
            young, middle, _ = self.threshold
            gc.set_threshold(young, middle, PUT_OFF)
            self.put_off_since = now
        elif now - self.put_off_since > self.max_delay:
            started = time.perf_counter()
            gc.collect()  # the room never went quiet: collect now rather than let garbage pile up for ever
            log.info('full garbage collection after %.0f s of streaming took %.0f ms',
                     now - self.put_off_since, (time.perf_counter() - started) * 1000)
            self.put_off_since = now

    def streaming_ended(self) -> None:
        """The last reply ended: the usual thresholds again, so a full collection that is due runs soon."""
        if self.put_off_since is not None:
            gc.set_threshold(*self.threshold)
            self.put_off_since = None
