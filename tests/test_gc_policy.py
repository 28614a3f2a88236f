"""Full garbage collections wait while replies stream (chat/gc_policy.py)."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from chat.gc_policy import PUT_OFF, FullCollectionsWhenQuiet


@pytest.fixture(autouse=True)
def thresholds_restored() -> None:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_full_collections_are_put_off_while_streaming_and_allowed_again_after() -> None:
    normal = gc.get_threshold()
    policy = FullCollectionsWhenQuiet()
    policy.streaming_started()
    policy.streaming_started()  # a second reply: nothing more to do
    assert gc.get_threshold() == (normal[0], normal[1], PUT_OFF)
    policy.streaming_ended()
    assert gc.get_threshold() == normal


def test_a_room_that_never_goes_quiet_still_gets_a_full_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    collections: list[int] = []
    monkeypatch.setitem(FullCollectionsWhenQuiet.streaming_started.__globals__, 'time',
                        SimpleNamespace(monotonic=lambda: clock[0], perf_counter=lambda: 0.0))
    monkeypatch.setattr(gc, 'collect', lambda *_: collections.append(1) or 0)
    policy = FullCollectionsWhenQuiet(max_delay=300)
    policy.streaming_started()
    clock[0] += 200
    policy.streaming_started()
    assert collections == []
    clock[0] += 101
    policy.streaming_started()
    assert collections == [1]
