"""Waits that end under any clock.

A timed ``Event.wait``, ``Condition.wait_for``, ``Lock.acquire(timeout=...)``
or ``Thread.join(timeout)`` that runs out never returns under libfaketime
(the test suite's run a year ahead: its deadline lies a year on), while
``time.sleep`` does. Every wait in the hub that may run its full length goes
through here; a few milliseconds of polling cost nothing beside the work
they wait for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

STEP_SECONDS = 0.05


def wait_until(ready: Callable[[], bool], seconds: float, step: float = STEP_SECONDS) -> bool:
    """Sleep in steps until ``ready()`` or ``seconds`` passed; returns ``ready()``."""
    deadline = time.monotonic() + seconds
    while not ready() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(step, left))
    return ready()


def wait_unless(event: threading.Event, seconds: float, step: float = STEP_SECONDS) -> bool:
    """Sleep ``seconds`` or until ``event`` is set; returns whether it is."""
    return wait_until(event.is_set, seconds, step)


def join_within(thread: threading.Thread, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``thread`` to end; returns whether it did."""
    return wait_until(lambda: not thread.is_alive(), seconds)
