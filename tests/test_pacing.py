"""A burst of work for every tab is spread over turns of the event loop (chat/performance/pacing.py)."""

from __future__ import annotations

import asyncio
import time

from chat.performance.pacing import Pacer


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def test_in_a_quiet_room_a_job_runs_at_once() -> None:
    pacer = Pacer(slice_seconds=0.02)
    done: list[int] = []
    pacer.run(lambda: done.append(1))
    assert done == [1]


async def test_a_burst_runs_in_order_a_slice_per_turn_and_the_loop_is_served_in_between() -> None:
    pacer = Pacer(slice_seconds=0.02)
    done: list[int] = []
    loop = asyncio.get_running_loop()
    served_after: list[int] = []  # how many jobs had run when the event loop got to other work
    ticks = 0

    def tick() -> None:  # another callback on the loop, as a socket's would be
        nonlocal ticks
        ticks += 1
        served_after.append(len(done))
        if ticks < 100 and len(done) < 100:
            loop.call_soon(tick)

    loop.call_soon(tick)
    for number in range(100):  # 100 jobs of 2 ms: 0.2 s of work, asked for in one go
        pacer.run(lambda number=number: (busy(0.002), done.append(number)))
    assert 0 < len(done) <= 11  # the first slice ran at once, the rest waits
    while len(done) < 100:
        await asyncio.sleep(0.01)
    assert done == list(range(100))  # in the order asked for
    assert len(set(served_after)) >= 8  # the loop ran other work between slices, not only before or after


async def test_a_failing_job_is_logged_and_the_others_still_run(caplog) -> None:
    pacer = Pacer(slice_seconds=0.0)  # every job waits for a later turn, one job per turn
    done: list[int] = []
    pacer.run(lambda: done.append(1))
    pacer.run(lambda: 1 / 0)
    pacer.run(lambda: done.append(3))
    while len(done) < 2:
        await asyncio.sleep(0.01)
    assert done == [1, 3]
    assert 'updating a tab failed' in caplog.text


def test_a_pacer_left_mid_burst_by_a_closed_event_loop_works_in_the_next_one() -> None:
    pacer = Pacer(slice_seconds=0.001)

    async def burst() -> None:
        for _ in range(50):
            pacer.run(lambda: busy(0.001))

    asyncio.run(burst())  # the loop closes with jobs still waiting, its worker cancelled
    done: list[int] = []

    async def later() -> None:
        pacer.run(lambda: done.append(1))

    asyncio.run(later())
    assert done == [1]
