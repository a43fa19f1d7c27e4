"""Load: callbacks planned per hour (ours) and inbound contacts expected (theirs).

*Planned load* is kept incrementally in ``planner_load`` (team, hour slot,
count): planning a callback adds one to its slot, moving it moves the one,
cancelling it takes it away.  The planner of a batch then reads only the
horizon's slot rows of the teams it plans for, however many follow-ups exist.
:func:`rebuild` recounts it from the follow-ups (repair, and the test that
the counts agree).

*Inbound load* is learned, not listed: the hub's own feedback per weekday
and local hour over the last ``planner.load_weeks`` weeks, plus an imported
call-volume series (``feedback-hub import-load FILE.csv``, columns
``timestamp`` and ``inbound_calls``) averaged the same way.  An hour is a
peak when its expected inbound is at least ``planner.peak_factor`` times the
mean of the business hours; ``planner.peak_hours`` (or a team's own) is an
override that replaces the measurement.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hub.engine.business_time import HOUR, BusinessCalendar
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

#: Follow-up states that hold a slot: planned and not cancelled.
HOLDING = ("pending", "sending", "sent", "failed", "done")
#: How long a learned inbound profile is reused (hub clock) before it is learned again.
PROFILE_TTL = dt.timedelta(hours=1)
MAX_IMPORT_ROWS = 500_000


def slot_of(t: dt.datetime, tz) -> dt.datetime:
    """The UTC start of the local hour ``t`` falls in."""
    return t.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(dt.UTC)


# -- planned load -----------------------------------------------------------------------
def _upsert(session: Session, team: str, slot: dt.datetime, delta: int) -> None:
    dialect = session.get_bind().dialect.name
    table = m.PlannerLoad.__table__
    if delta < 0:
        # Never below zero (the check constraint): a follow-up planned before the
        # counts existed takes nothing away.
        session.execute(table.update().where(table.c.team == team, table.c.slot == slot)
                        .values(planned=_greatest(dialect, table.c.planned + delta)))
        return
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(table).values(team=team, slot=slot, planned=delta)
    session.execute(stmt.on_conflict_do_update(index_elements=["team", "slot"],
                                               set_={"planned": table.c.planned + delta}))


def _greatest(dialect: str, expr):
    from sqlalchemy import func

    return func.greatest(expr, 0) if dialect == "postgresql" else func.max(expr, 0)


def add(session: Session, team: str, due: dt.datetime, tz, count: int = 1) -> None:
    _upsert(session, team, slot_of(due, tz), count)


def remove(session: Session, team: str, due: dt.datetime, tz) -> None:
    _upsert(session, team, slot_of(due, tz), -1)


def move(session: Session, team: str, old: dt.datetime | None, new: dt.datetime, tz) -> None:
    if old is not None and slot_of(old, tz) == slot_of(new, tz):
        return
    if old is not None:
        remove(session, team, old, tz)
    add(session, team, new, tz)


def add_many(session: Session, planned: Iterable[tuple[str, dt.datetime]]) -> None:
    """Add planned callbacks given as (team, slot) pairs, one statement per slot."""
    for (team, slot), n in Counter(planned).items():
        _upsert(session, team, slot, n)


def planned(session: Session, teams: Iterable[str], start: dt.datetime, end: dt.datetime
            ) -> dict[tuple[str, dt.datetime], int]:
    """(team, slot) -> planned callbacks for the slots in ``[start, end)``."""
    L = m.PlannerLoad
    rows = session.execute(select(L.team, L.slot, L.planned).where(
        L.team.in_(sorted(set(teams))), L.slot >= start, L.slot < end, L.planned > 0))
    return {(team, slot): n for team, slot, n in rows}


def rebuild(session: Session, teams) -> int:
    """Recount every slot from the follow-ups (those without a team count for the default team)."""
    session.execute(m.PlannerLoad.__table__.delete())
    F = m.Followup
    pairs = []
    for team_name, due in session.execute(select(F.team, F.due_at).where(F.status.in_(HOLDING),
                                                                          F.cancelled_at.is_(None))):
        team = teams[team_name]
        pairs.append((team.name, slot_of(due, team.calendar.tz)))
    add_many(session, pairs)
    return len(pairs)


# -- inbound load -------------------------------------------------------------------------
@dataclass(frozen=True)
class InboundProfile:
    """Expected inbound contacts per (weekday, local hour), and which of them are peaks."""

    expected: Mapping[tuple[int, int], float]
    peaks: frozenset[tuple[int, int]]
    measured_from: int  # weeks of data behind it

    def at(self, slot: dt.datetime, calendar: BusinessCalendar) -> float:
        return self.expected.get((calendar.weekday(slot), calendar.local_hour(slot)), 0.0)

    def is_peak(self, slot: dt.datetime, calendar: BusinessCalendar, override: Iterable[int] | None = None) -> bool:
        if override:
            return calendar.local_hour(slot) in set(override)
        return (calendar.weekday(slot), calendar.local_hour(slot)) in self.peaks


def _weekly_average(times: Iterable[tuple[dt.datetime, float]], tz, weeks: int) -> dict[tuple[int, int], float]:
    sums: dict[tuple[int, int], float] = defaultdict(float)
    for t, n in times:
        local = t.astimezone(tz)
        sums[(local.weekday(), local.hour)] += n
    return {k: v / max(1, weeks) for k, v in sums.items()}


def learn_profile(session: Session, calendar: BusinessCalendar, now: dt.datetime, weeks: int,
                  factor: float) -> InboundProfile:
    """The inbound profile from the last ``weeks`` weeks of feedback and imported calls."""
    since = now - dt.timedelta(weeks=weeks)
    feedback = session.scalars(select(m.FeedbackItem.occurred_at).where(
        m.FeedbackItem.occurred_at >= since, m.FeedbackItem.occurred_at < now))
    expected = Counter(_weekly_average(((t, 1.0) for t in feedback), calendar.tz, weeks))
    calls = session.execute(select(m.InboundLoad.hour, m.InboundLoad.calls)).all()
    if calls:
        # An imported series is averaged over its own span (it may be older or shorter than the window).
        first, last = min(h for h, _ in calls), max(h for h, _ in calls)
        span_weeks = max(1, math.ceil(((last - first) + HOUR) / dt.timedelta(weeks=1)))
        expected.update(_weekly_average(calls, calendar.tz, span_weeks))
    business = [v for (day, hour), v in expected.items() if day in calendar.hours
                and calendar.hours[day][0] <= hour < calendar.hours[day][1]]
    open_hours = sum(end - start for start, end in calendar.hours.values())
    mean = sum(business) / open_hours if open_hours else 0.0
    peaks = frozenset(k for k, v in expected.items() if mean > 0 and v >= factor * mean)
    return InboundProfile(dict(expected), peaks, weeks)


#: id(hub) -> (a weak reference to that hub, team -> (learned at, profile)); the Hub is not hashable.
_profiles: dict[int, tuple[weakref.ref, dict[str, tuple[dt.datetime, InboundProfile]]]] = {}
_lock = threading.Lock()


def _cache(hub: Hub) -> dict[str, tuple[dt.datetime, InboundProfile]]:
    entry = _profiles.get(id(hub))
    if entry is None or entry[0]() is not hub:
        for key in [k for k, (ref, _) in _profiles.items() if ref() is None]:
            del _profiles[key]
        entry = _profiles[id(hub)] = (weakref.ref(hub), {})
    return entry[1]


def profile(hub: Hub, session: Session, team) -> InboundProfile:
    """The team's learned profile, reused for :data:`PROFILE_TTL` of hub time."""
    cfg = hub.config.get("planner", {})
    now = hub.clock.utcnow()
    with _lock:
        cached = _cache(hub).get(team.name)
    if cached and cached[0] <= now < cached[0] + PROFILE_TTL:
        return cached[1]
    learned = learn_profile(session, team.calendar, now, int(cfg.get("load_weeks", 8)),
                            float(cfg.get("peak_factor", 1.25)))
    with _lock:
        _cache(hub)[team.name] = (now, learned)
    return learned


def forget_profiles(hub: Hub) -> None:
    """Learn again at the next use (after an import)."""
    with _lock:
        _cache(hub).clear()


# -- importing a call-volume series -----------------------------------------------------------
class ImportError_(ValueError):  # noqa: N801 - not the builtin ImportError
    """A call-volume file that cannot be read; names the line."""


TIMESTAMP_COLUMNS = ("timestamp", "time", "hour", "datetime")
CALL_COLUMNS = ("inbound_calls", "calls", "inbound", "volume")


def parse_series(text: str, tz) -> dict[dt.datetime, float]:
    """UTC hour -> calls from CSV text; naive timestamps are local time (``tz``)."""
    reader = csv.DictReader(io.StringIO(text))
    fields = {name.strip().lower(): name for name in reader.fieldnames or []}
    ts_col = next((fields[c] for c in TIMESTAMP_COLUMNS if c in fields), None)
    calls_col = next((fields[c] for c in CALL_COLUMNS if c in fields), None)
    if ts_col is None or calls_col is None:
        raise ImportError_("line 1: expected a header with timestamp and inbound_calls columns")
    out: dict[dt.datetime, float] = defaultdict(float)
    for line, row in enumerate(reader, start=2):
        if line > MAX_IMPORT_ROWS + 1:
            raise ImportError_(f"more than {MAX_IMPORT_ROWS} rows; split the file")
        raw_ts, raw_calls = (row.get(ts_col) or "").strip(), (row.get(calls_col) or "").strip()
        if not raw_ts and not raw_calls:
            continue
        try:
            when = dt.datetime.fromisoformat(raw_ts.replace("Z", "+00:00"))
        except ValueError:
            raise ImportError_(f"line {line}: {raw_ts!r} is not an ISO timestamp") from None
        try:
            calls = float(raw_calls)
        except ValueError:
            raise ImportError_(f"line {line}: {raw_calls!r} is not a number of calls") from None
        if not math.isfinite(calls) or calls < 0:
            raise ImportError_(f"line {line}: calls must be a number of at least 0 (got {raw_calls})")
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        if not 1970 <= when.year <= 2100:
            raise ImportError_(f"line {line}: {raw_ts!r} is outside 1970-2100")
        out[slot_of(when, tz)] += calls
    return dict(out)


def import_series(session: Session, series: Mapping[dt.datetime, float], source: str = "import") -> int:
    """Store the series; an hour imported before is replaced (a re-import changes nothing)."""
    L = m.InboundLoad
    hours = sorted(series)
    for start in range(0, len(hours), 500):  # IN lists within every driver's parameter limit
        chunk = hours[start : start + 500]
        existing = {row.hour: row for row in session.scalars(select(L).where(L.source == source, L.hour.in_(chunk)))}
        for hour in chunk:
            row = existing.get(hour)
            if row is None:
                session.add(L(source=source, hour=hour, calls=series[hour]))
            else:
                row.calls = series[hour]
    return len(hours)
