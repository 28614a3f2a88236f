"""Rate limits: at most so many acts per person in a sliding window (messages, questions to the bot).

The room checks a message against its limits before storing it (room.py `check_limits`); skim this on a first read.
"""

from __future__ import annotations

import time
from collections import deque


class RateLimit:
    """At most `count` acts per `seconds` for each key (a person), over a sliding window."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.times: dict[str, deque[float]] = {}

    def wait(self, key: str, acts: int = 1) -> float:
        """Seconds until `key` may act `acts` times more; 0 means now. It only asks: `record` counts an act."""
        times = self.times.get(key, ())
        must_expire = len(times) + min(acts, self.count) - self.count  # the oldest of the last `count` acts
        if must_expire <= 0:
            return 0.0
        return max(0.0, times[must_expire - 1] + self.seconds - time.monotonic())

    def record(self, key: str) -> None:
        if len(self.times) > 1000:  # many people came and went: drop the ones with nothing left to count
            self.forget_idle()
        self.times.setdefault(key, deque(maxlen=self.count)).append(time.monotonic())  # the last `count` acts

    def forget_idle(self) -> None:
        now = time.monotonic()
        for key in [key for key, times in self.times.items() if not times or times[-1] <= now - self.seconds]:
            del self.times[key]
