"""The planner in the UI and the SLA operations: the dashboard's load chart, the
case page's SLA state with its one-click re-plan, and the breach escalation."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from hub.engine import sla
from hub.engine.teams import Teams
from hub.storage import models as m
from tests.helpers import DETRACTOR, bearer
from tests.test_web_ui import add_user, login, post

AMS = __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")


def _app(make_app, **overrides):
    app = make_app(**overrides)
    hub = app.extensions["hub"]
    add_user(hub, "alice", "agent")
    client = app.test_client()
    assert login(client, "alice").status_code == 302
    return app, hub, client


def _case(app, hub, ext="nps-1"):
    r = app.test_client().post("/api/v1/feedback", json={**DETRACTOR, "external_id": ext}, headers=bearer(hub))
    assert r.status_code == 201
    return r.get_json()["case_id"]


def test_dashboard_charts_planned_callbacks_against_the_inbound_curve(make_app):
    app, hub, client = _app(make_app)
    case_id = _case(app, hub)
    with hub.db.Session() as s:
        due = s.scalars(select(m.Followup.due_at).where(m.Followup.case_id == case_id)).one()
    page = client.get("/dashboard").get_data(as_text=True)
    chart = page[page.index('id="chart-load"'):]
    chart = chart[:chart.index("</section>")]
    local = due.astimezone(AMS)
    titles = re.findall(r"<title>([^<]+)</title>", chart)
    assert titles, "the load chart has no bars"
    # Business hours only, capacity 20 each; the one planned callback sits in its hour.
    assert all(t.endswith(" / 20") for t in titles)
    assert sum(int(t.split(": ")[1].split(" / ")[0]) for t in titles) == 1
    assert any(t.startswith(f"{local:%H}") or t.startswith(f"{local:%d-%m} {local:%H}h") for t in titles
               if ": 1 /" in t)
    assert 'class="line"' in chart  # the inbound curve
    assert "Planned callbacks against expected inbound" in page


def test_an_at_risk_case_is_replanned_in_one_click(make_app):
    app, hub, client = _app(make_app)
    case_id = _case(app, hub)
    with hub.db.session() as s:
        case = s.get(m.Case, case_id)
        followup = s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)).one()
        followup.due_at = case.sla_due_at + dt.timedelta(days=2)  # planned after its deadline
        deadline = case.sla_due_at
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="sla-state"' in page and "at risk" in page and 'id="replan"' in page
    assert post(client, f"/cases/{case_id}/replan", token_from=f"/cases/{case_id}").status_code == 302
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        (row,) = s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)).all()
        event = s.scalars(select(m.AuditEvent).where(m.AuditEvent.case_id == case_id,
                                                     m.AuditEvent.action == "case.callback_planned")).one()
        assert row.due_at < deadline and Teams(hub.config)[case.team].calendar.is_open(row.due_at)
        assert sla.case_state(hub, s, case) == "on_track"
    assert event.actor == "user:alice" and event.detail["replanned"] is True and event.detail["moved"] is True
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="replan"' not in page and "on track" in page


def test_a_breached_case_is_escalated_once_to_the_team_lead(make_app):
    app, hub, client = _app(make_app, teams={"service": {"default": True, "lead": "bea"}})
    case_id = _case(app, hub)
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        due, opened = case.sla_due_at, case.opened_at
        calendar = Teams(hub.config)[case.team].calendar
        assert sla.case_state(hub, s, case) == "on_track"
    # Half an hour before the deadline, its callback cancelled: nothing planned before the deadline.
    hub.clock.now = (due - dt.timedelta(minutes=30)).timestamp()
    with hub.db.session() as s:
        for f in s.scalars(select(m.Followup)):
            f.status, f.cancelled_at = "dead", hub.clock.utcnow()
    with hub.db.Session() as s:
        # Half an hour of at least four business hours left: less than a quarter, at risk.
        assert calendar.business_hours_between(opened, due) >= 4
        assert sla.case_state(hub, s, s.get(m.Case, case_id)) == "at_risk"
    hub.clock.now = (due + dt.timedelta(minutes=1)).timestamp()
    assert sla.sweep(hub) == 1 and sla.sweep(hub) == 0
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        assert (case.owner, case.escalated_at is not None) == ("bea", True)
        assert sla.case_state(hub, s, case) == "breached"
        (event,) = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "case.sla_breached")).all()
    assert event.actor == "scheduler" and event.detail["owner"] == "bea" and event.detail["team"] == "service"
    body = app.test_client().get(f"/api/v1/cases/{case_id}", headers=bearer(hub)).get_json()
    assert body["sla_state"] == "breached" and body["escalated_at"] is not None


def test_the_case_page_shows_the_crm_tasks_owner_and_a_change_on_its_way(make_app):
    app, hub, client = _app(make_app)
    case_id = _case(app, hub)
    with hub.db.session() as s:
        f = s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)).one()
        f.status, f.external_id, f.crm_owner = "sent", "88000000001", "64492917"
        f.sync_pending, f.sync_error = True, "HubSpot answered 503"
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "64492917" in page and "waiting to reach the CRM" in page and "HubSpot answered 503" in page
