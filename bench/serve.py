"""The app as the benchmark runs it: `python -m bench.serve FLAGS` is `python main.py FLAGS` plus one route.

The app runs in its own process, so the benchmark can't read the Store's `commits` counter directly. This entry
point adds a read-only `GET /_bench/stats` (the counter, the replies in progress, whether the room is open, and
the garbage collector's longer pauses) and then runs main.py's own `main()`, unchanged. bench/naive.py builds
on it.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

from nicegui import app

import main as chat_main  # the repository's main.py: the benchmark runs from the repository's root

GC_PAUSE_MS = 20  # a full collection stops the event loop, so every tab waits; shorter ones are not worth noting


class PauseLog:
    """Remembers when Python's cyclic garbage collector stopped the process for GC_PAUSE_MS or more."""

    def __init__(self) -> None:
        self.pauses: deque[tuple[float, float]] = deque(maxlen=10_000)  # (wall-clock end, milliseconds)
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == 'start':
            self._started = time.perf_counter()
        elif (milliseconds := (time.perf_counter() - self._started) * 1000) >= GC_PAUSE_MS:
            self.pauses.append((time.time(), milliseconds))


def add_stats_route(pause_log: PauseLog) -> None:
    @app.get('/_bench/stats', include_in_schema=False)
    def stats() -> dict[str, Any]:
        room = getattr(app.state, 'room', None)  # set by build_app(), which main() calls
        if room is None:
            return {'ready': False}
        return {'ready': room.ready.is_set(), 'commits': room.store.commits, 'replies': len(room.bot.replies),
                'gc_pauses': list(pause_log.pauses)}


def serve(argv: list[str] | None = None) -> None:
    pause_log = PauseLog()
    gc.callbacks.append(pause_log)
    add_stats_route(pause_log)
    chat_main.main(argv)


if __name__ == '__main__':
    serve()
