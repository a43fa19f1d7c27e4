"""Teams: who calls a customer back, in whose hours and capacity.

A customer should never wander between departments, so a case goes to the
team that owns what it is about: the first team (in config order) one of
whose ``themes`` the case's feedback carries, else the first whose
``channels`` include its channel, else the default team.  Each team has its
own calendar (the ``[planner]`` calendar with the team's overrides), a
callback capacity per hour, the CRM owner its tasks get and a team lead who
takes over cases that breach their SLA::

    [teams.billing]
    themes = ["billing", "price"]
    capacity = 6
    crm_owner = "41488296"
    lead = "bea"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.engine.business_time import BusinessCalendar

#: The team used when the configuration names none.
DEFAULT_TEAM = "service"
#: Keys of a team table that override the [planner] calendar.
CALENDAR_KEYS = ("timezone", "business_hours", "business_days", "weekday_hours", "holidays_country",
                 "holidays_subdivision", "closed_dates")


@dataclass(frozen=True)
class Team:
    name: str
    calendar: BusinessCalendar
    capacity: int
    crm_owner: str | None = None
    lead: str | None = None
    lead_crm_owner: str | None = None
    themes: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    #: Hours of the local day that are peaks for this team regardless of the measured load.
    peak_hours: frozenset[int] | None = None


class Teams:
    """The configured teams and the routing rule between them."""

    def __init__(self, config: Mapping[str, Any]):
        planner = dict(config.get("planner", {}))
        tables = dict(config.get("teams") or {}) or {DEFAULT_TEAM: {"default": True}}
        default_capacity = int(planner.get("slot_capacity", 20))
        self.by_name: dict[str, Team] = {}
        self.default = next((n for n, t in tables.items() if (t or {}).get("default")), next(iter(tables)))
        for name, table in tables.items():
            table = dict(table or {})
            calendar = BusinessCalendar.from_config({k: table[k] for k in CALENDAR_KEYS if k in table}, planner)
            peaks = table.get("peak_hours")
            self.by_name[name] = Team(
                name, calendar, max(1, int(table.get("capacity", default_capacity))),
                crm_owner=str(table["crm_owner"]) if table.get("crm_owner") else None,
                lead=table.get("lead") or None,
                lead_crm_owner=str(table["lead_crm_owner"]) if table.get("lead_crm_owner") else None,
                themes=frozenset(table.get("themes") or ()), channels=frozenset(table.get("channels") or ()),
                peak_hours=frozenset(int(h) for h in peaks) if peaks else None)

    def __iter__(self):
        return iter(self.by_name.values())

    def __getitem__(self, name: str | None) -> Team:
        return self.by_name.get(name or "") or self.by_name[self.default]

    def route(self, themes: Iterable[str], channel: str | None) -> Team:
        """The team that owns these themes, else this channel, else the default team."""
        wanted = set(themes)
        for team in self.by_name.values():
            if team.themes & wanted:
                return team
        for team in self.by_name.values():
            if channel and channel in team.channels:
                return team
        return self.by_name[self.default]
