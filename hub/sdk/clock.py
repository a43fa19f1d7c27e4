"""Time, injected: every part of the hub and every plugin asks a :class:`Clock`.

Tests hand the app a :class:`FakeClock`, so nothing depends on the wall clock
and nothing really sleeps: ``sleep`` advances the fake time and records it.
"""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    """Wall clock; ``time()`` is Unix seconds so vendor reset headers compare directly."""

    def time(self) -> float:
        return time.time()

    def utcnow(self) -> dt.datetime:
        """The clock's now as a timezone-aware UTC datetime (what the hub stores)."""
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock(Clock):
    """A clock for tests: ``sleep`` advances time instantly and is recorded."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.now += seconds
