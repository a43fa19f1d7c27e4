"""The audit trail: every admin, agent, API and CLI action and every denied
attempt is recorded, and admins read it on a filterable page and as CSV.

Runs on every backend; times come from the hub's FakeClock (TEST_NOW), and the
date filters are checked across midnight in the team's zone (Europe/Amsterdam).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.engine import audit
from hub.engine.accounts import create_token, create_user
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.helpers import DETRACTOR

PASSWORD = "correct-horse-1"


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _signed_in(app, username: str, role: str):
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        create_user(s, username, PASSWORD, role)
    client = app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return client


def _events(hub, action: str | None = None) -> list[m.AuditEvent]:
    with hub.db.Session() as s:
        q = select(m.AuditEvent).order_by(m.AuditEvent.id)
        if action:
            q = q.where(m.AuditEvent.action == action)
        return list(s.scalars(q))


def _shown(page: str) -> list[str]:
    """The actions of the page's rows, top to bottom."""
    return re.findall(r'<tr data-event="\d+" data-action="([^"]+)"', page)


@pytest.fixture
def trail(hub):
    """Events around midnight in Amsterdam (UTC+1 in November) and of each actor kind."""
    with hub.db.session() as s:
        case = m.Case(status="new", opened_at=TEST_NOW)
        s.add(case)
        s.flush()
        rows = [
            ("user:anna", "case.closed", dt.datetime(2026, 11, 18, 22, 30, tzinfo=dt.UTC), case.id),  # 23:30 on the 18th
            ("token:ci", "api.feedback.posted", dt.datetime(2026, 11, 18, 23, 30, tzinfo=dt.UTC), None),  # 00:30, 19th
            ("cli", "token.created", dt.datetime(2026, 11, 19, 10, 0, tzinfo=dt.UTC), None),
            ("cli", "token.revoked", dt.datetime(2026, 11, 19, 11, 0, tzinfo=dt.UTC), None),
            ("anonymous", "api.denied", dt.datetime(2026, 11, 19, 12, 0, tzinfo=dt.UTC), None),
            ("dispatcher", "sink.outage", dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC), None),
            ("=cmd|' /C calc'!A0", "user.login_failed", dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC), None),
        ]
        for actor, action, at, case_id in rows:
            audit.record(s, actor=actor, action=action, at=at, case_id=case_id,
                         denied=True if action in ("api.denied", "user.login_failed") else None)
        case_id = case.id
    return case_id


def test_the_audit_page_filters_by_actor_kind_action_case_and_local_dates(app, hub, trail):
    admin = _signed_in(app, "root", "admin")
    page = admin.get("/admin/audit/").get_data(as_text=True)
    assert "user.login" in _shown(page)  # root's own sign-in is there too
    assert _shown(admin.get("/admin/audit/?kind=cli").get_data(as_text=True)) == ["token.revoked", "token.created"]
    assert _shown(admin.get("/admin/audit/?kind=token").get_data(as_text=True)) == ["api.feedback.posted"]
    # An action family: "token" finds token.created and token.revoked, not api.* rows.
    assert _shown(admin.get("/admin/audit/?action=token").get_data(as_text=True)) == ["token.revoked", "token.created"]
    assert _shown(admin.get(f"/admin/audit/?case={trail}").get_data(as_text=True)) == ["case.closed"]
    # The 19th in Amsterdam starts at 23:00 UTC on the 18th: case.closed (23:30 local on the 18th) is out.
    day = _shown(admin.get("/admin/audit/?from=2026-11-19&to=2026-11-19").get_data(as_text=True))
    assert day == ["api.denied", "token.revoked", "token.created", "api.feedback.posted"]
    assert _shown(admin.get("/admin/audit/?to=2026-11-18").get_data(as_text=True)) == ["case.closed"]
    denied = _shown(admin.get("/admin/audit/?denied=1&to=2026-11-20").get_data(as_text=True))
    assert denied == ["user.login_failed", "api.denied"]
    # Local times on the page: 22:30 UTC is 23:30 in Amsterdam.
    assert "18-11-2026 23:30:00" in page


@pytest.mark.parametrize("query", ["kind=robot", "case=abc", "case=%C2%B2", "from=20-11-2026", "to=0001-01-01",
                                   "action=" + "x" * 101])
def test_a_bad_filter_is_a_400_with_the_reason(app, trail, query):
    admin = _signed_in(app, "root", "admin")
    resp = admin.get(f"/admin/audit/?{query}")
    assert resp.status_code == 400
    assert 'class="flash flash-error"' in resp.get_data(as_text=True)


def test_the_csv_export_has_the_filtered_rows_in_local_time_and_no_formulas(app, hub, trail):
    admin = _signed_in(app, "root", "admin")
    resp = admin.get("/admin/audit/audit.csv?from=2026-11-18&to=2026-11-20")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    # root's own sign-in (at TEST_NOW) is the newest row.
    assert [r["action"] for r in rows] == ["user.login", "user.login_failed", "sink.outage", "api.denied",
                                           "token.revoked", "token.created", "api.feedback.posted", "case.closed"]
    closed = rows[-1]
    assert closed["time"] == "2026-11-18T23:30:00+01:00" and closed["case_id"] == str(trail)
    assert rows[1]["actor"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert rows[3]["detail"] == "denied=true"
    only_cli = admin.get("/admin/audit/audit.csv?kind=cli").get_data(as_text=True)
    assert [r["action"] for r in csv.DictReader(io.StringIO(only_cli))] == ["token.revoked", "token.created"]


def test_the_admin_tabs_link_the_audit_page(app):
    admin = _signed_in(app, "root", "admin")
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert 'href="/admin/audit/"' in page and 'id="tab-audit"' in page


def test_agents_are_refused_the_audit_page_and_the_refusal_is_recorded(app, hub):
    agent = _signed_in(app, "bob", "agent")
    assert agent.get("/admin/audit/").status_code == 403
    assert agent.get("/admin/audit/audit.csv").status_code == 403
    token = _csrf(agent.get("/").get_data(as_text=True))
    assert agent.post("/admin/tokens", data={"name": "mine", "scope": "admin", "csrf_token": token}).status_code == 403
    with hub.db.Session() as s:
        assert s.scalar(select(m.ApiToken.id)) is None
    denied = _events(hub, "web.denied")
    assert [(e.actor, e.detail["method"], e.detail["path"]) for e in denied] == [
        ("user:bob", "GET", "/admin/audit/"), ("user:bob", "GET", "/admin/audit/audit.csv"),
        ("user:bob", "POST", "/admin/tokens")]
    assert all(e.detail["denied"] is True and e.detail["reason"] == "role" for e in denied)


def test_failed_and_rate_limited_logins_are_recorded_as_denied(make_app):
    app = make_app(web={"login_failures_per_user": "2 per minute", "login_limit_per_ip": "100 per minute"})
    hub = app.extensions["hub"]
    client = app.test_client()
    statuses = []
    for _ in range(3):
        token = _csrf(client.get("/login").get_data(as_text=True))
        statuses.append(client.post("/login", data={"username": "mallory", "password": "guess-guess",
                                                    "csrf_token": token}).status_code)
    assert statuses == [401, 401, 429]
    failed = _events(hub, "user.login_failed")
    assert len(failed) == 2 and all(e.detail["denied"] is True for e in failed)
    (limited,) = _events(hub, "user.login_limited")
    assert limited.actor == "anonymous" and limited.detail["username"] == "mallory"
    assert limited.detail["denied"] is True and limited.detail["retry_after"] >= 1


def test_api_writes_are_recorded_with_the_token_as_actor(hub, client):
    with hub.db.session() as s:
        headers = {"Authorization": f"Bearer {create_token(s, 'crm-bridge')}"}
    body = client.post("/api/v1/feedback", json=DETRACTOR, headers=headers).get_json()
    client.post("/api/v1/feedback", json=DETRACTOR, headers=headers)  # the same item again
    posted = _events(hub, "api.feedback.posted")
    assert [(e.actor, e.detail["item_id"], e.detail["created"]) for e in posted] == [
        ("token:crm-bridge", body["id"], True), ("token:crm-bridge", body["id"], False)]
    assert "jan@example.nl" not in str([e.detail for e in posted])  # ids, never the customer's data


def test_cli_actions_are_recorded_with_the_cli_as_actor(database_url, tmp_path, monkeypatch, make_app):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    monkeypatch.setenv("HUB_NEW_USER_PASSWORD", PASSWORD)
    runner = CliRunner()
    for args in (["token", "create", "nightly", "--scope", "read"], ["token", "revoke", "nightly"],
                 ["user", "create", "carla", "--role", "agent"], ["dispatch"], ["replay"]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    hub = make_app().extensions["hub"]
    events = [(e.actor, e.action) for e in _events(hub)]
    assert events == [("cli", "token.created"), ("cli", "token.revoked"), ("cli", "user.created"),
                      ("cli", "outbox.dispatch"), ("cli", "raw_events.replay")]
    created = _events(hub, "token.created")[0]
    assert created.detail["scope"] == "read" and created.detail["name"] == "nightly"
