"""Full garbage collections wait while replies stream (chat/performance/gc_policy.py)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from chat.performance.gc_policy import PUT_OFF, FullCollectionsWhenQuiet

from .conftest import eventually


@pytest.fixture(autouse=True)
def thresholds_restored() -> None:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


async def test_full_collections_are_put_off_while_streaming_and_allowed_again_after() -> None:
    normal = gc.get_threshold()
    policy = FullCollectionsWhenQuiet()
    policy.streaming_started()
    policy.streaming_started()  # a second reply: nothing more to do
    assert gc.get_threshold() == (normal[0], normal[1], PUT_OFF)
    policy.streaming_ended()
    assert gc.get_threshold() == normal


async def test_a_room_that_never_goes_quiet_still_gets_a_full_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    collections: list[int] = []
    monkeypatch.setattr(gc, 'collect', lambda *_: collections.append(1) or 0)
    policy = FullCollectionsWhenQuiet(max_delay=0.5)
    policy.streaming_started()
    await asyncio.sleep(0.05)
    assert collections == [], 'collected before max_delay'
    await eventually(lambda: collections == [1], 3, 'no collection after max_delay of streaming')  # no new reply
    await eventually(lambda: collections == [1, 1], 3, 'no second collection after another max_delay')
    policy.streaming_ended()
    count = len(collections)
    await asyncio.sleep(1.0)
    assert len(collections) == count, 'a quiet room gets no forced collection'
