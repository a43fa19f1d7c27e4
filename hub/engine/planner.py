"""Due slots for callbacks: in the team's business hours, before the SLA, off-peak, spread.

A callback planned "as soon as possible" lands every detractor of a Monday
morning in the busiest hour, and one planned "at the SLA deadline" lands at
night.  The planner instead works in the calling team's business time
(:mod:`hub.engine.business_time`):

* the SLA deadline counts **business hours** (``planner.sla_hours``, per
  priority: a Friday-evening urgent case is due Monday morning);
* a callback is placed only in a working hour slot of the team, and a slot
  holds at most the team's ``capacity`` callbacks (spread over the hour);
* among the slots before the deadline it takes the earliest **off-peak** slot
  with room; peaks are measured from the inbound load
  (:mod:`hub.engine.load`), or listed in ``peak_hours`` as an override;
* when only peak slots have room before the deadline, the least-loaded of them;
* when capacity before the deadline is exhausted, the first business slot
  after it with room, and the plan is flagged ``sla_at_risk``.

The load it plans against comes from ``planner_load`` (kept incrementally)
and grows with every callback it plans; :attr:`SlotPlanner.taken` lists the
slots this planner filled, for the caller to add to ``planner_load``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from hub.engine.business_time import HOUR
from hub.engine.load import InboundProfile, slot_of
from hub.engine.teams import Team, Teams

#: SLA hours (business hours) for a priority the configuration does not list.
DEFAULT_SLA_HOURS = 16.0


@dataclass(frozen=True)
class Plan:
    at: dt.datetime
    slot: dt.datetime
    team: str
    #: No room before the deadline: the callback is after it.
    sla_at_risk: bool = False


class SlotPlanner:
    def __init__(self, config: Mapping[str, Any], existing_due: Iterable[dt.datetime] = (), *,
                 teams: Teams | None = None, load: Mapping[tuple[str, dt.datetime], int] | None = None,
                 profiles: Mapping[str, InboundProfile] | None = None):
        """``config`` is the ``[planner]`` table; ``teams`` defaults to one team with its calendar.

        ``existing_due`` (due times of callbacks planned earlier) count for the
        default team, for callers that have times rather than slot counts.
        """
        self.config = dict(config)
        self.teams = teams or Teams({"planner": self.config})
        self.sla_hours = {k: float(v) for k, v in self.config.get("sla_hours", {}).items()}
        self.peak_override = {int(h) for h in self.config.get("peak_hours", [])} or None
        self.horizon_hours = int(float(self.config.get("horizon_days", 14)) * 24)
        self.profiles = dict(profiles or {})
        self.load: Counter[tuple[str, dt.datetime]] = Counter(load or {})
        default = self.teams[None]
        for t in existing_due:
            self.load[(default.name, slot_of(t, default.calendar.tz))] += 1
        #: (team, slot) of every callback this planner placed, in order.
        self.taken: list[tuple[str, dt.datetime]] = []
        self.last: Plan | None = None
        self._slots: dict[tuple[str, dt.datetime], list[dt.datetime]] = {}

    # -- teams and deadlines ----------------------------------------------------------
    def team(self, name: str | None = None) -> Team:
        return self.teams[name]

    def team_for(self, themes: Iterable[str], channel: str | None) -> Team:
        return self.teams.route(themes, channel)

    def sla_due(self, priority: str, now: dt.datetime, override_hours: float | None = None,
                team: str | None = None) -> dt.datetime:
        """The deadline: this many business hours of the team after ``now``."""
        hours = override_hours if override_hours is not None else self.sla_hours.get(priority, DEFAULT_SLA_HOURS)
        return self.team(team).calendar.add_business_hours(now, hours)

    def is_peak(self, team: Team, slot: dt.datetime) -> bool:
        override = team.peak_hours or self.peak_override
        if override:
            return team.calendar.local_hour(slot) in override
        profile = self.profiles.get(team.name)
        return profile is not None and profile.is_peak(slot, team.calendar)

    # -- planning -------------------------------------------------------------------------
    def plan(self, now: dt.datetime, sla_due: dt.datetime | None, team: str | None = None) -> dt.datetime:
        """Choose the due time of one callback and count it in the load (see :meth:`plan_slot`)."""
        return self.plan_slot(now, sla_due, team).at

    def plan_slot(self, now: dt.datetime, sla_due: dt.datetime | None, team: str | None = None,
                  ignore: tuple[str, dt.datetime] | None = None) -> Plan:
        """The callback's slot; ``ignore`` is a slot the callback being re-planned holds now."""
        chosen = self.teams[team]
        cap = chosen.capacity
        key = (chosen.name, now)
        if key not in self._slots:  # a batch plans many callbacks at one "now": list the slots once
            self._slots[key] = list(chosen.calendar.slots(now, limit=self.horizon_hours))
        slots = self._slots[key]
        if not slots:
            raise RuntimeError(f"team {chosen.name}: no business hour within the planning horizon")
        deadline = sla_due or slots[-1] + HOUR

        def used(slot: dt.datetime) -> int:
            return self.load[(chosen.name, slot)] - (1 if ignore == (chosen.name, slot) else 0)

        def before_deadline(slot: dt.datetime) -> bool:
            return self._at(slot, used(slot), cap) < deadline

        open_peaks = []
        for slot in slots:
            if slot >= deadline:
                break  # sorted: no later slot is before the deadline either
            n = used(slot)
            if n >= cap or not before_deadline(slot):
                continue
            if not self.is_peak(chosen, slot):
                return self._take(chosen, slot, n, ignore)  # the earliest off-peak slot with room
            open_peaks.append((n, slot))
        if open_peaks:  # only peak hours have room before the deadline: the least loaded of them
            n, slot = min(open_peaks)
            return self._take(chosen, slot, n, ignore)
        slot = next((s for s in slots if used(s) < cap and not before_deadline(s)), None)
        if slot is None:  # every slot of the horizon is full: the least overbooked one after the deadline
            later = [s for s in slots if not before_deadline(s)]
            slot = min(later or slots, key=lambda s: (used(s), s))
        return self._take(chosen, slot, used(slot), ignore, at_risk=True)

    @staticmethod
    def _at(slot: dt.datetime, n: int, cap: int) -> dt.datetime:
        # Callbacks of one slot are spread over its hour (call spreading).
        return slot + dt.timedelta(minutes=(n % cap) * 60 // cap)

    def _take(self, team: Team, slot: dt.datetime, n: int, ignore, at_risk: bool = False) -> Plan:
        if ignore is not None:
            self.load[ignore] -= 1
        self.load[(team.name, slot)] += 1
        self.taken.append((team.name, slot))
        self.last = Plan(self._at(slot, n, team.capacity), slot, team.name, at_risk)
        return self.last


def planner_for(hub: Any, session: Any, now: dt.datetime) -> SlotPlanner:
    """The planner of one batch: the teams of the config, the planned load of the
    horizon's slots (``planner_load``, not every follow-up) and each team's inbound profile."""
    from hub.engine import load as inbound

    cfg = hub.config.get("planner", {})
    teams = Teams(hub.config)
    horizon = now + dt.timedelta(days=float(cfg.get("horizon_days", 14)) + 1)
    planned = inbound.planned(session, [t.name for t in teams], now - HOUR, horizon)
    overridden = bool(cfg.get("peak_hours"))
    profiles = {t.name: inbound.profile(hub, session, t) for t in teams if not (overridden or t.peak_hours)}
    return SlotPlanner(cfg, teams=teams, load=planned, profiles=profiles)


@dataclass(frozen=True)
class HourLoad:
    hour: dt.datetime
    planned: int
    capacity: int
    inbound_expected: float
    peak: bool


def hourly_load(hub: Any, session: Any, start: dt.datetime, end: dt.datetime, team: str | None = None
                ) -> list[HourLoad]:
    """Per hour of ``[start, end)``: callbacks planned, capacity (0 when closed), expected inbound, peak.

    For one team, or summed over all teams (inbound and peaks then as the default team sees them).
    """
    from hub.storage import models as m

    planner = planner_for(hub, session, start)
    teams = [planner.teams[team]] if team else list(planner.teams)
    lead = teams[0] if team else planner.teams[None]
    L = m.PlannerLoad
    counts: Counter[dt.datetime] = Counter()
    for slot, n in session.execute(select(L.slot, L.planned).where(
            L.team.in_([t.name for t in teams]), L.slot >= start, L.slot < end)):
        counts[slot] += n
    profile = planner.profiles.get(lead.name)
    out = []
    slot = slot_of(start, lead.calendar.tz)
    while slot < end:
        is_open = lead.calendar.is_open(slot)
        out.append(HourLoad(slot, counts.get(slot, 0), sum(t.capacity for t in teams if t.calendar.is_open(slot)),
                            round(profile.at(slot, lead.calendar), 3) if profile else 0.0,
                            is_open and planner.is_peak(lead, slot)))
        slot += HOUR
    return out
