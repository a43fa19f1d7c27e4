"""The planner's slot load is kept, not rescanned: a batch that plans callbacks
reads the horizon's ``planner_load`` rows once, never the follow-ups, so the
statements per batch stay the same however many callbacks were planned before."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from sqlalchemy import event, select

from hub.engine import load
from hub.engine.pipeline import Entry, Pipeline
from hub.engine.teams import Teams
from hub.sdk import CustomerRef, Escalation, FakeClock, FeedbackIn, hookimpl
from hub.storage import models as m

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.date(2026, 11, 23)
BATCH = 8
BATCHES = 4


class Callbacks:
    @hookimpl
    def hub_decide_escalation(self, item, category, risk, signals, config, now):
        return Escalation(open_case=True, priority="normal", followup=True, reason="every item a callback")


def _batch(hub, start: int, when: dt.datetime) -> list[str]:
    """Ingest BATCH detractors of new customers; the statements it ran."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_a):
        statements.append(statement)

    items = [FeedbackIn(f"nps-{n}", "survey", when, nps=n % 7, text="Slecht geholpen",
                        customer=CustomerRef(email=f"klant{n}@example.nl")) for n in range(start, start + BATCH)]
    event.listen(hub.db.engine, "before_cursor_execute", record)
    try:
        with hub.db.session() as s:
            results = Pipeline(hub).ingest(s, "survey", [Entry(i) for i in items], when)
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", record)
    assert sum(r.followup_id is not None for r in results) == BATCH  # each one planned a callback
    return statements


def _reads(statements: list[str], table: str) -> int:
    """SELECTs from ``table``, not counting ``MAX(id)``: reserving ids for a bulk insert reads the
    primary key's last entry (one index step), never the rows."""
    return sum(bool(re.match(r"\s*SELECT\b", s, re.I) and re.search(rf'\bFROM\s+"?{table}"?\b', s, re.I)
                    and not re.match(r"\s*SELECT COALESCE\(MAX\(id\), 0\) FROM", s, re.I))
               for s in statements)


def test_planning_n_batches_issues_the_same_statements_per_batch(make_app):
    when = dt.datetime.combine(MONDAY, dt.time(8), AMS).astimezone(dt.UTC)
    app = make_app(plugins=(Callbacks(),), clock=FakeClock(when.timestamp()),
                   teams={"service": {"default": True, "capacity": 4}})
    hub = app.extensions["hub"]
    per_batch = [_batch(hub, k * BATCH, when) for k in range(BATCHES)]
    counts = [len(s) for s in per_batch]
    # The first batch learns the inbound profile (reused for an hour of hub time); after it, every batch
    # runs exactly as many statements, whether 8 or 24 callbacks were planned before it.
    assert len(set(counts[1:])) == 1, counts
    assert counts[0] >= counts[1]
    for statements in per_batch:
        assert _reads(statements, "planner_load") == 1  # the horizon's slot counts, one read
        assert _reads(statements, "followup") == 0  # never the planned follow-ups themselves
    with hub.db.Session() as s:
        kept = {(t, slot): n for t, slot, n in s.execute(
            select(m.PlannerLoad.team, m.PlannerLoad.slot, m.PlannerLoad.planned)) if n}
        # The counts kept incrementally are the ones a full recount gives.
        assert load.rebuild(s, Teams(hub.config)) == BATCHES * BATCH
        rebuilt = {(t, slot): n for t, slot, n in s.execute(
            select(m.PlannerLoad.team, m.PlannerLoad.slot, m.PlannerLoad.planned)) if n}
        s.rollback()
    assert kept == rebuilt and sum(kept.values()) == BATCHES * BATCH
