"""Work for every open tab, done a slice at a time so the event loop keeps serving sockets.

When ten people ask @gpt at once, each question and each reply gets a new bubble in every open tab: with 200 tabs,
4,000 bubbles, over a second of work for one core. Done in one go, that would stall the event loop for that long:
no token would reach any tab meanwhile, and past NiceGUI's ping timeout (2 s) tabs lose their connection. The pacer
runs such work in the order it was asked for, about SLICE_SECONDS of it per turn of the event loop (the job that
crosses the line still finishes), and leaves the rest for the next turns, between which sockets are read and
written. In a quiet room nothing waits: a job runs at once.

Why not a smaller slice: each turn of the loop has costs of its own, and with 25 ms slices the tokens of 10 replies
reached 100 tabs later than without any pacing (p99 0.47 s against 0.10 s); with 100 ms slices, 0.13 s
(`python -m bench.run --scenarios concurrent`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

SLICE_SECONDS = 0.1  # tab work per turn of the event loop


class Pacer:
    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self.slice_seconds = slice_seconds
        self.waiting: deque[Callable[[], None]] = deque()
        self.spent = 0.0  # seconds of tab work done in this turn of the event loop
        self.turn_marked = False  # a callback will start the next turn's count from zero
        self.worker: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, job: Callable[[], None]) -> None:
        """Run `job` now if this turn still has time for it, else after the jobs already waiting, in a later turn."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # a new event loop (the tests make one per test): nothing of the old one counts
            self.loop, self.waiting, self.worker = loop, deque(), None
            self.new_turn()
        if self.waiting or self.spent >= self.slice_seconds:
            self.waiting.append(job)
            if self.worker is None or self.worker.done():  # kept here: asyncio holds only a weak reference to a task
                self.worker = loop.create_task(self.work_through_waiting(), name='paced tab updates')
            return
        self.timed(job)

    def timed(self, job: Callable[[], None]) -> None:
        if not self.turn_marked:  # the first job of this turn: the count starts again in the next one
            asyncio.get_running_loop().call_soon(self.new_turn)
            self.turn_marked = True
        started = time.perf_counter()
        try:
            job()
        except Exception:
            log.exception('updating a tab failed')
        finally:
            self.spent += time.perf_counter() - started

    def new_turn(self) -> None:
        self.spent = 0.0
        self.turn_marked = False

    async def work_through_waiting(self) -> None:
        while self.waiting:
            await asyncio.sleep(0)  # a turn of the event loop: sockets are served
            self.new_turn()
            self.timed(self.waiting.popleft())  # at least one job per turn, however long jobs take
            while self.waiting and self.spent < self.slice_seconds:
                self.timed(self.waiting.popleft())
