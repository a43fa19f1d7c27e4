"""Due slots for callbacks: inside the SLA, outside call-centre peaks, spread.

A callback planned "as soon as possible" lands every detractor of a Monday
morning in the busiest hour.  The planner instead picks the earliest hour slot
that is (1) within business hours, (2) not a peak hour, (3) not yet full
(``slot_capacity`` callbacks), and (4) still before the SLA due time.  Within a
slot, callbacks are spread over the hour.  If no such slot exists before the
SLA, the SLA wins: the least-loaded business slot before it, else the SLA due
time itself.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

HOUR = dt.timedelta(hours=1)


class SlotPlanner:
    def __init__(self, config: dict[str, Any], existing_due: Iterable[dt.datetime] = ()):
        self.tz = ZoneInfo(config.get("timezone", "UTC"))
        start, end = config.get("business_hours", [9, 17])
        self.open_hour, self.close_hour = int(start), int(end)
        self.peaks = {int(h) for h in config.get("peak_hours", [])}
        self.capacity = max(1, int(config.get("slot_capacity", 20)))
        self.sla_hours = {k: float(v) for k, v in config.get("sla_hours", {}).items()}
        self.load: Counter[dt.datetime] = Counter(self._slot(t) for t in existing_due)

    def sla_due(self, priority: str, now: dt.datetime, override_hours: float | None = None) -> dt.datetime:
        hours = override_hours if override_hours is not None else self.sla_hours.get(priority, 48.0)
        return now + dt.timedelta(hours=hours)

    @staticmethod
    def _slot(t: dt.datetime) -> dt.datetime:
        return t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)

    def _business(self, slot_utc: dt.datetime) -> bool:
        local = slot_utc.astimezone(self.tz)
        return local.weekday() < 5 and self.open_hour <= local.hour < self.close_hour

    def plan(self, now: dt.datetime, sla_due: dt.datetime) -> dt.datetime:
        """Choose the due time for one callback and count it in the load."""
        first = self._slot(now) + HOUR  # whole slots only: the next hour at the earliest
        candidates: list[dt.datetime] = []
        slot = first
        while slot + HOUR <= sla_due:
            if self._business(slot):
                candidates.append(slot)
                local_hour = slot.astimezone(self.tz).hour
                if local_hour not in self.peaks and self.load[slot] < self.capacity:
                    return self._take(slot)
            slot += HOUR
        if candidates:
            return self._take(min(candidates, key=lambda s: (self.load[s], s)))
        return sla_due

    def _take(self, slot: dt.datetime) -> dt.datetime:
        n = self.load[slot]
        self.load[slot] += 1
        # Spread callbacks of one slot over its hour (call spreading).
        minutes = (n % self.capacity) * 60 // self.capacity
        return slot + dt.timedelta(minutes=minutes)
