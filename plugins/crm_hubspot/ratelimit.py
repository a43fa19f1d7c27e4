"""HubSpot's rate limits, as the sink keeps to them.

HubSpot counts private-app requests in a *rolling* ten-second window
(``policyName: TEN_SECONDLY_ROLLING``) plus a daily quota; search has its own,
lower per-second limit.  The sink uses the core's
:class:`hub.sdk.http.RollingWindowBudget` (never more than ``N`` requests in any
window, unlike a token bucket right after a burst) and adds the daily quota.
"""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

from hub.sdk import Clock, FatalError


class DailyLimitReached(FatalError):
    """The account's daily quota is spent.

    A :class:`FatalError` on purpose: the core client must not retry it (a
    ``Retry-After`` of hours would park the dispatcher thread).  The sink turns
    it into a retriable failure of the whole chunk, so the outbox backs off.
    """

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class DailyQuota:
    """Counts requests per day in the account's time zone and remembers when
    HubSpot said the day is spent (``X-HubSpot-RateLimit-Daily-Remaining: 0``
    or a 429 with ``policyName: DAILY``).

    The count is per process, so it is a guard, not the truth: HubSpot's
    headers are.  Both make :meth:`check` refuse until the next midnight.
    """

    def __init__(self, limit: int, clock: Clock, timezone: str = "UTC"):
        self.limit = int(limit)
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._day: dt.date | None = None
        self.used = 0
        self._exhausted_day: dt.date | None = None

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock.time(), self.tz).date()

    def seconds_to_reset(self) -> float:
        now = dt.datetime.fromtimestamp(self.clock.time(), self.tz)
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), self.tz)
        return max(1.0, (midnight - now).total_seconds())

    def _roll(self) -> dt.date:
        today = self._today()
        if today != self._day:
            self._day, self.used = today, 0
        return today

    def count(self) -> None:
        with self._lock:
            self._roll()
            self.used += 1

    def exhaust(self) -> None:
        with self._lock:
            self._exhausted_day = self._roll()

    def check(self) -> None:
        """Raise :class:`DailyLimitReached` when today's quota is spent."""
        with self._lock:
            today = self._roll()
            spent = self._exhausted_day == today or self.used >= self.limit
        if spent:
            raise DailyLimitReached(f"HubSpot daily API limit reached ({self.used} requests today)",
                                    retry_after=self.seconds_to_reset())


def header_int(headers, name: str) -> int | None:
    """An integer rate-limit header, or None when absent or garbled."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None
