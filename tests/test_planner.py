"""The business-hours planner: through the real ingest pipeline on both databases,
with the hub's clock moved to each arrival (never the wall clock).

The acceptance case: 300 detractors arrive on a Monday between 08:00 and
10:00, the call centre's inbound peaks at 9-11 (measured from an imported
call-volume series).  Every callback must be in business hours and before its
business-hours SLA, none in a peak hour while an off-peak slot before its
deadline still had room when it was planned, and no hour above capacity.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.engine import load
from hub.engine.business_time import BusinessCalendar
from hub.engine.pipeline import Entry, Pipeline
from hub.engine.planner import SlotPlanner
from hub.engine.teams import Teams
from hub.sdk import CustomerRef, Escalation, FakeClock, FeedbackIn, hookimpl
from hub.storage import models as m

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.date(2026, 11, 23)
CAPACITY = 25


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), AMS)


class Priorities:
    """Decides like the default rule, but with a known mix: every 10th urgent, every 5th high."""

    @hookimpl
    def hub_decide_escalation(self, item, category, risk, signals, config, now):
        n = int(item.external_id.rsplit("-", 1)[1])
        priority = "urgent" if n % 10 == 0 else "high" if n % 5 == 0 else "normal"
        return Escalation(open_case=True, priority=priority, followup=True, reason="test mix")


def _calls_csv(weeks: int = 4) -> str:
    """Four weeks of an hourly call-volume export: weekdays 8-18, busiest 9-11."""
    rows = ["timestamp,inbound_calls"]
    first = MONDAY - dt.timedelta(weeks=weeks)
    for d in range(weeks * 7):
        day = first + dt.timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for hour in range(8, 18):
            calls = 210 if hour in (9, 10) else 90 if hour in (13,) else 70
            rows.append(f"{local(day, hour).replace(tzinfo=None).isoformat()},{calls}")
    return "\n".join(rows) + "\n"


def _ingest(hub, n: int, when: dt.datetime, **extra) -> None:
    hub.clock.now = when.timestamp()
    item = FeedbackIn(f"nps-{n}", extra.pop("channel", "survey"), when, nps=n % 7, text="Slecht geholpen",
                      customer=CustomerRef(email=f"klant{n}@example.nl"), **extra)
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "survey", [Entry(item)], when)


def _callbacks(hub):
    with hub.db.Session() as s:
        rows = s.execute(select(m.Followup.id, m.Followup.due_at, m.Followup.created_at, m.Followup.team,
                                m.Case.sla_due_at, m.Case.priority, m.Case.opened_at)
                         .join(m.Case, m.Case.id == m.Followup.case_id).order_by(m.Followup.id)).all()
        stored_load = {(t, slot): n for t, slot, n in s.execute(
            select(m.PlannerLoad.team, m.PlannerLoad.slot, m.PlannerLoad.planned)) if n}
    return rows, stored_load


@pytest.fixture
def planner_app(make_app):
    clock = FakeClock(local(MONDAY, 7).timestamp())
    app = make_app(plugins=(Priorities(),), clock=clock,
                   teams={"service": {"default": True, "capacity": CAPACITY}})
    return app.extensions["hub"]


def test_300_detractors_on_a_monday_morning_are_planned_off_peak_within_business_sla(planner_app):
    hub = planner_app
    with hub.db.session() as s:
        load.import_series(s, load.parse_series(_calls_csv(), AMS), source="telephony")
    rng = random.Random(12)
    arrivals = sorted(local(MONDAY, 8) + dt.timedelta(seconds=rng.uniform(0, 7200)) for _ in range(300))
    for n, when in enumerate(arrivals):
        _ingest(hub, n, when)
    rows, stored_load = _callbacks(hub)
    assert len(rows) == 300
    team = Teams(hub.config)["service"]
    calendar = team.calendar
    # The peaks were measured (no peak_hours listed): 9 and 10 o'clock, and not 13.
    with hub.db.Session() as s:
        profile = load.learn_profile(s, calendar, local(MONDAY, 8).astimezone(dt.UTC), 8, 1.25)
    peak_hours = {h for d, h in profile.peaks if d == 0}
    assert peak_hours == {9, 10}
    planner = SlotPlanner(hub.config["planner"], teams=Teams(hub.config), profiles={"service": profile})

    counts: Counter = Counter()
    used_peak = 0
    for fid, due, created, _team, sla_due, priority, opened in rows:
        assert calendar.is_open(due), f"follow-up {fid} at {due.astimezone(AMS)} is outside business hours"
        assert due < sla_due, f"follow-up {fid} ({priority}) at {due.astimezone(AMS)} after its SLA {sla_due}"
        # The SLA counts business hours: 4/8/16 of them from opening.
        hours = {"urgent": 4, "high": 8, "normal": 16}[priority]
        assert calendar.business_hours_between(opened, sla_due) == pytest.approx(hours)
        slot = load.slot_of(due, AMS)
        if planner.is_peak(team, slot):
            used_peak += 1
            # When it was planned, every off-peak slot before its deadline was full.
            for s in calendar.slots(created, until=sla_due):
                at = s + dt.timedelta(minutes=(counts[s] % CAPACITY) * 60 // CAPACITY)
                if at < sla_due and not planner.is_peak(team, s):
                    assert counts[s] >= CAPACITY, f"follow-up {fid} took peak {slot} while {s} had room"
        counts[slot] += 1
        assert counts[slot] <= CAPACITY
    assert max(counts.values()) <= CAPACITY
    # The morning is more than the off-peak hours before some deadlines hold: peaks were needed, and used only then.
    assert 0 < used_peak < 300 and sum(counts.values()) == 300
    # The incrementally kept load equals a recount from the follow-ups.
    assert stored_load == {("service", slot): n for slot, n in counts.items()}
    with hub.db.session() as s:
        assert load.rebuild(s, Teams(hub.config)) == 300
    _, rebuilt = _callbacks(hub)
    assert rebuilt == stored_load


def test_friday_evening_urgent_case_is_due_monday_morning(planner_app):
    hub = planner_app
    friday_18 = local(dt.date(2026, 11, 27), 18)
    _ingest(hub, 10, friday_18)  # n % 10 == 0: urgent
    ((_, due, _, team, sla_due, priority, _),) = _callbacks(hub)[0]
    assert (priority, team) == ("urgent", "service")
    assert sla_due == local(dt.date(2026, 11, 30), 13)  # 4 business hours from Monday 09:00
    assert due.astimezone(AMS).date() == dt.date(2026, 11, 30) and 9 <= due.astimezone(AMS).hour < 13


def test_dutch_public_holidays_are_skipped(planner_app):
    hub = planner_app
    christmas_eve = local(dt.date(2026, 12, 24), 16)  # Thursday; Friday and Saturday are Christmas
    _ingest(hub, 20, christmas_eve)  # urgent
    ((_, due, _, _, sla_due, _, _),) = _callbacks(hub)[0]
    assert sla_due == local(dt.date(2026, 12, 28), 12)  # 1 h on Thursday, 3 h on Monday the 28th
    assert due.astimezone(AMS).date() in (dt.date(2026, 12, 24), dt.date(2026, 12, 28))
    assert due.astimezone(AMS).date() != dt.date(2026, 12, 25)
    cal = BusinessCalendar.from_config({"timezone": "Europe/Amsterdam"})
    assert not cal.is_open(local(dt.date(2027, 4, 27), 11))  # King's Day
    assert cal.is_open(local(dt.date(2027, 4, 28), 11))
    none = BusinessCalendar.from_config({"timezone": "Europe/Amsterdam", "holidays_country": ""})
    assert none.is_open(local(dt.date(2027, 4, 27), 11))


def test_calendar_weekday_hours_and_closed_dates():
    cal = BusinessCalendar.from_config({"timezone": "Europe/Amsterdam", "business_hours": [9, 17],
                                        "weekday_hours": {"fri": [9, 12], "sat": [10, 14]},
                                        "closed_dates": ["2026-11-25"]})
    tuesday_16 = local(dt.date(2026, 11, 24), 16)
    # 1 h Tuesday, Wednesday closed, 8 h Thursday, 3 h Friday morning -> Saturday 10:00 + 1 h
    assert cal.add_business_hours(tuesday_16, 13) == local(dt.date(2026, 11, 28), 11)
    assert not cal.is_open(local(dt.date(2026, 11, 27), 13))
    assert [s.astimezone(AMS).hour for s in cal.slots(local(dt.date(2026, 11, 27), 10, 30))][:5] == [11, 10, 11, 12, 13]
    assert cal.business_hours_between(tuesday_16, local(dt.date(2026, 11, 26), 10)) == 2


def test_cases_go_to_the_team_of_their_themes_or_channel_and_its_capacity(make_app):
    clock = FakeClock(local(MONDAY, 8).timestamp())
    app = make_app(plugins=(Priorities(),), clock=clock, teams={
        "service": {"default": True, "capacity": 5},
        "billing": {"themes": ["billing"], "capacity": 1, "business_days": ["mon", "tue", "wed", "thu"],
                    "peak_hours": [9]},
        "webcare": {"channels": ["social"], "capacity": 2, "business_hours": [8, 22]},
    })
    hub = app.extensions["hub"]
    for n in range(1, 4):
        _ingest(hub, n, local(MONDAY, 8, n), extra={"themes": ["billing"]})
    _ingest(hub, 4, local(MONDAY, 8, 10), channel="social")
    _ingest(hub, 7, local(MONDAY, 8, 20))
    rows, stored = _callbacks(hub)
    teams = [r.team for r in rows]
    assert teams == ["billing", "billing", "billing", "webcare", "service"]
    billing = sorted(r.due_at.astimezone(AMS) for r in rows if r.team == "billing")
    assert [d.hour for d in billing] == [10, 11, 12]  # capacity 1 per hour, 9 is billing's own peak
    (webcare,) = [r for r in rows if r.team == "webcare"]
    assert webcare.due_at.astimezone(AMS).hour == 9
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.Case).where(m.Case.team == "billing")) == 3
    assert sum(stored.values()) == 5


def test_import_load_cli_stores_an_hourly_series_idempotently(database_url, tmp_path, monkeypatch):
    from hub.cli import main

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    good = tmp_path / "calls.csv"
    good.write_text(_calls_csv(weeks=1))
    result = CliRunner().invoke(main, ["import-load", str(good), "--source", "telephony"])
    assert result.exit_code == 0, result.output
    assert "imported 50 hours" in result.output
    again = CliRunner().invoke(main, ["import-load", str(good), "--source", "telephony"])
    assert again.exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,inbound_calls\n2026-11-16T09:00:00,12\n2026-11-16T10:00:00,-3\n")
    result = CliRunner().invoke(main, ["import-load", str(bad)])
    assert result.exit_code != 0 and "line 3" in result.output and "at least 0" in result.output
    headerless = tmp_path / "nohead.csv"
    headerless.write_text("2026-11-16T09:00:00,12\n")
    result = CliRunner().invoke(main, ["import-load", str(headerless)])
    assert result.exit_code != 0 and "timestamp and inbound_calls" in result.output
    from sqlalchemy.orm import Session

    from hub.storage.database import make_engine

    engine = make_engine(database_url)
    with Session(engine) as s:
        rows = s.execute(select(m.InboundLoad.source, func.count(), func.sum(m.InboundLoad.calls))
                         .group_by(m.InboundLoad.source)).all()
        audit = s.scalars(select(m.AuditEvent.action).where(m.AuditEvent.action == "planner.load_imported")).all()
    engine.dispose()
    assert rows == [("telephony", 50, 5000.0)]  # twice imported, stored once; the bad file stored nothing
    assert len(audit) == 2


def test_peak_hours_in_config_override_the_measured_peaks(make_app):
    clock = FakeClock(local(MONDAY, 7).timestamp())
    app = make_app(plugins=(Priorities(),), clock=clock, planner={"peak_hours": [11, 12]},
                   teams={"service": {"default": True, "capacity": 2}})
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        load.import_series(s, load.parse_series(_calls_csv(), AMS))
    for n in range(1, 4):
        _ingest(hub, n, local(MONDAY, 8, n))
    rows, _ = _callbacks(hub)
    assert [r.due_at.astimezone(AMS).strftime("%H:%M") for r in rows] == ["09:00", "09:30", "10:00"]


def test_the_demo_feed_plans_no_callback_outside_business_hours(make_app):
    """What ``make run`` seeds (300 items over three weeks, then a trickle), started on a Saturday night."""
    from hub.demo.mode import feed

    clock = FakeClock(local(dt.date(2026, 11, 28), 23, 30).timestamp())
    hub = make_app(clock=clock).extensions["hub"]
    rng = random.Random(7)
    assert feed(hub, rng, 300, days_back=21, prefix="seed") > 0
    for _ in range(20):  # the demo's trickle, every few minutes into Sunday
        clock.now += 300
        feed(hub, rng, rng.randint(1, 4))
    rows, stored = _callbacks(hub)
    assert len(rows) > 50
    calendar = Teams(hub.config)["service"].calendar
    outside = [r.due_at.astimezone(AMS) for r in rows if not calendar.is_open(r.due_at)]
    assert outside == []
    assert all(r.due_at < r.sla_due_at for r in rows)
    assert max(stored.values()) <= Teams(hub.config)["service"].capacity
