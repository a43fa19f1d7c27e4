"""Business time: when a team works, and SLA hours that count only those hours.

A :class:`BusinessCalendar` knows a team's time zone, its opening hours per
weekday, the public holidays of its country (the ``holidays`` package, which
ships its tables: no network needed) and extra closed dates.  It answers three
questions the planner and the SLA need:

* is the hour slot starting at ``t`` a working hour? (:meth:`is_open`)
* when do ``n`` business hours after ``t`` end? (:meth:`add_business_hours`)
* which working hour slots lie between two times? (:meth:`slots`)

Hour slots are identified by the UTC instant of the *local* hour's start, so a
zone with a half-hour offset still gets slots that start at its local hours.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

HOUR = dt.timedelta(hours=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A calendar with no working hour for this long is a configuration mistake, not a long weekend.
MAX_CLOSED_DAYS = 366


class CalendarError(ValueError):
    """A calendar that can never open (every day closed)."""


@functools.cache
def _holiday_table(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    import holidays  # imported here: the table is only needed when a calendar is asked

    return frozenset(holidays.country_holidays(country, subdiv=subdivision or None, years=year))


@dataclass(frozen=True)
class BusinessCalendar:
    tz: ZoneInfo
    #: weekday index (0 = Monday) -> (open hour, close hour), local time; absent = closed.
    hours: Mapping[int, tuple[int, int]]
    country: str | None = "NL"
    subdivision: str | None = None
    closed: frozenset[dt.date] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> BusinessCalendar:
        """From a ``[planner]`` table; ``base`` supplies what a team's own table leaves out."""
        merged = {**(base or {}), **{k: v for k, v in cfg.items() if v is not None}}
        start, end = merged.get("business_hours", [9, 17])
        days = merged.get("business_days", list(WEEKDAYS[:5]))
        hours = {WEEKDAYS.index(d): (int(start), int(end)) for d in days}
        for day, span in (merged.get("weekday_hours") or {}).items():
            index = WEEKDAYS.index(day)
            if span:
                hours[index] = (int(span[0]), int(span[1]))
            else:
                hours.pop(index, None)  # [] closes that weekday
        if not hours:
            raise CalendarError("no business day configured")
        country = merged.get("holidays_country", "NL") or None
        closed = frozenset(dt.date.fromisoformat(str(d)) for d in merged.get("closed_dates", []))
        return cls(ZoneInfo(merged.get("timezone", "UTC")), hours, country,
                   merged.get("holidays_subdivision") or None, closed)

    # -- days ---------------------------------------------------------------------
    def is_holiday(self, day: dt.date) -> bool:
        if day in self.closed:
            return True
        return bool(self.country) and day in _holiday_table(self.country, self.subdivision, day.year)

    def opening(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """The day's working interval as UTC instants, or None when closed."""
        span = self.hours.get(day.weekday())
        if span is None or self.is_holiday(day):
            return None
        start = dt.datetime.combine(day, dt.time(span[0]), self.tz)
        end = (dt.datetime.combine(day, dt.time(span[1]), self.tz) if span[1] < 24
               else dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz))
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)

    def _days_from(self, t: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Working intervals from the local day of ``t`` on (clipped to start at ``t``)."""
        day = t.astimezone(self.tz).date()
        closed_run = 0
        while True:
            span = self.opening(day)
            day += dt.timedelta(days=1)
            if span is None:
                closed_run += 1
                if closed_run > MAX_CLOSED_DAYS:
                    raise CalendarError("no working hour within a year (check business_days and closed_dates)")
                continue
            closed_run = 0
            start, end = span
            if end <= t:
                continue
            yield max(start, t), end

    # -- hours ----------------------------------------------------------------------
    def is_open(self, t: dt.datetime) -> bool:
        """Whether the instant ``t`` lies within working hours."""
        span = self.opening(t.astimezone(self.tz).date())
        return span is not None and span[0] <= t < span[1]

    def add_business_hours(self, start: dt.datetime, hours: float) -> dt.datetime:
        """The instant ``hours`` working hours after ``start`` (a case opened at night starts counting at opening)."""
        left = dt.timedelta(hours=max(0.0, float(hours)))
        for begin, end in self._days_from(start):
            if begin + left <= end:
                return begin + left
            left -= end - begin
        raise AssertionError("unreachable")  # _days_from never ends

    def business_hours_between(self, start: dt.datetime, end: dt.datetime) -> float:
        """Working hours in ``[start, end)`` (negative when ``end`` is before ``start``)."""
        if end < start:
            return -self.business_hours_between(end, start)
        total = dt.timedelta()
        for begin, close in self._days_from(start):
            if begin >= end:
                break
            total += min(close, end) - begin
        return total / HOUR

    def next_open(self, t: dt.datetime) -> dt.datetime:
        """``t`` itself when open, else the next opening."""
        return next(self._days_from(t))[0]

    def slots(self, after: dt.datetime, until: dt.datetime | None = None, limit: int = 24 * 60) -> Iterator[dt.datetime]:
        """Starts of working hour slots that begin after ``after`` (and before ``until``), in order."""
        count = 0
        for begin, end in self._days_from(after):
            local = begin.astimezone(self.tz)
            slot = local.replace(minute=0, second=0, microsecond=0).astimezone(dt.UTC)
            if slot <= after:
                slot += HOUR
            while slot < end:
                if until is not None and slot >= until:
                    return
                yield slot
                count += 1
                if count >= limit:
                    return
                slot += HOUR

    def local_hour(self, slot: dt.datetime) -> int:
        return slot.astimezone(self.tz).hour

    def weekday(self, slot: dt.datetime) -> int:
        return slot.astimezone(self.tz).weekday()
