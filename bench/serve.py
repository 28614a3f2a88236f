"""The app as the benchmark runs it: `python -m bench.serve FLAGS` is `python main.py FLAGS` plus two routes.

The app runs in its own process, so the benchmark can't read the Store's `commits` counter directly. This entry
point adds a read-only `GET /_bench/stats` (the counter, the replies in progress, whether the room is open, the
garbage collector's longer pauses, the event loop's late wake-ups, the errors logged, and what is still held:
clients, subscribers, tabs, people, tasks), `POST /_bench/collect` (a full garbage collection, then what is alive),
and then runs main.py's own `main()`, unchanged. bench/naive.py builds on it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import Counter, deque
from typing import Any

from nicegui import Client, app

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


class ErrorLog(logging.Handler):
    """Keeps every record logged at ERROR or above, by any logger: the soak test requires there are none."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: deque[str] = deque(maxlen=100)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.messages.append(f'{record.name}: {record.getMessage()}'[:500])


def add_stats_route(pause_log: PauseLog, error_log: ErrorLog, loop_lag: LoopLag) -> None:
    @app.get('/_bench/stats', include_in_schema=False)
    async def stats() -> dict[str, Any]:  # async: it runs on the event loop, where the tasks are
        room = getattr(app.state, 'room', None)  # set by build_app(), which main() calls
        if room is None:
            return {'ready': False}
        return {'ready': room.ready.is_set(), 'commits': room.store.commits, 'replies': len(room.replies.in_progress),
                'gc_pauses': list(pause_log.pauses), 'loop_lags': list(loop_lag.lags),
                'errors': error_log.count, 'error_messages': list(error_log.messages),
                'held': {
                    'clients': len(Client.instances),
                    'subscribers': sum(len(event.callbacks) for event in
                                       (room.added, room.changed, room.presence.changed)),
                    'broadcast_tabs': len(app.state.reply_text_broadcast.client_ids),
                    'people': len(room.presence.people),
                    'pending_replies': len(room.replies.in_progress) + len(room.limits.reserved),
                    'tasks': len(asyncio.all_tasks()),
                }}

    @app.post('/_bench/collect', include_in_schema=False)
    def collect() -> dict[str, Any]:
        """A full collection; then what is alive: the memory blocks Python's allocator has handed out and not had
        back (unlike the resident set, this does not include freed memory the allocator keeps), and the kinds of
        objects, to see what a leak is made of."""
        collected = gc.collect()
        kinds = Counter(type(thing).__qualname__ for thing in gc.get_objects())
        return {'collected': collected, 'objects': {kind: count for kind, count in kinds.items() if count >= 10},
                'allocated_blocks': sys.getallocatedblocks()}


class LoopLag:
    """Notes when the event loop woke up late: a tab whose pong waits more than about 2 s is dropped."""

    INTERVAL = 0.1

    def __init__(self) -> None:
        self.lags: deque[tuple[float, float]] = deque(maxlen=10_000)  # (wall-clock time, milliseconds late) >= 100

    async def watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.INTERVAL)
            if (late_ms := (time.perf_counter() - started - self.INTERVAL) * 1000) >= 100:
                self.lags.append((time.time(), late_ms))


def serve(argv: list[str] | None = None) -> None:
    pause_log = PauseLog()
    gc.callbacks.append(pause_log)
    error_log = ErrorLog()
    logging.getLogger().addHandler(error_log)
    # uvicorn's own loggers do not pass records up to the root, and its logging set-up (in ui.run) replaces their
    # handlers, so this one is added once the server runs.
    app.on_startup(lambda: logging.getLogger('uvicorn').addHandler(error_log))
    loop_lag = LoopLag()
    app.on_startup(lambda: asyncio.create_task(loop_lag.watch()))
    add_stats_route(pause_log, error_log, loop_lag)
    chat_main.main(argv)


if __name__ == '__main__':
    serve()
