"""GET/PATCH /api/v1/cases/<id> and GET /api/v1/planner/load, through the
real app and the real outbox, with a sink that records what the CRM was told.

The hub's clock is the test clock (Friday 2026-11-20 13:00 in Amsterdam)."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from hub.engine.dispatch import dispatch
from hub.sdk import CrmSink, PushResult, RetriableError, hookimpl
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.helpers import DETRACTOR, bearer

AMS = __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")


class SyncingCrm:
    """A sink that creates tasks and records every update, completion and cancellation."""

    def __init__(self):
        self.tasks: dict[str, dict] = {}
        self.calls: list[tuple[str, int, dt.datetime | None]] = []
        self.down = False
        crm = self

        class Sink(CrmSink):
            plugin_name = "syncing"

            def push(self, followups):
                for f in followups:
                    crm.tasks[f"t{f.id}"] = {"due": f.due_at, "status": "NOT_STARTED"}
                return [PushResult(f.id, ok=True, external_id=f"t{f.id}") for f in followups]

            def _change(self, op, followups, **values):
                if crm.down:
                    raise RetriableError("crm answered 503", status=503)
                for f in followups:
                    crm.calls.append((op, f.id, f.due_at))
                    crm.tasks[f.external_id].update({k: v(f) for k, v in values.items()})
                return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

            def update(self, followups):
                return self._change("update", followups, due=lambda f: f.due_at)

            def complete(self, followups):
                return self._change("complete", followups, status=lambda f: "COMPLETED")

            def cancel(self, followups):
                return self._change("cancel", followups, status=lambda f: "CANCELLED")

        self.cls = Sink

    @hookimpl
    def hub_register_crm_sinks(self):
        return [self.cls]


@pytest.fixture
def env(make_app):
    crm = SyncingCrm()
    app = make_app(plugins=(crm,), sinks={"crm": {"plugin": "syncing"}}, routing={"followups": "crm"})
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        s.add(m.User(username="anna", password_hash="x", role="agent"))
    return app, hub, crm, bearer(hub)


def _case(app, auth, ext="nps-1"):
    r = app.test_client().post("/api/v1/feedback", json={**DETRACTOR, "external_id": ext}, headers=auth)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["case_id"]


def _audit(hub, case_id):
    with hub.db.Session() as s:
        return [(e.actor, e.action) for e in s.scalars(select(m.AuditEvent).where(
            m.AuditEvent.case_id == case_id).order_by(m.AuditEvent.id))]


def _check(client, path, method, status, body):
    doc = client.get("/api/v1/openapi.json").get_json()
    content = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    schema = json.loads(json.dumps(content).replace('"#/components', '"urn:openapi#/components'))
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


def test_get_case_shows_its_callback_crm_task_and_sla(env):
    app, hub, crm, auth = env
    client = app.test_client()
    case_id = _case(app, auth)
    body = client.get(f"/api/v1/cases/{case_id}", headers=auth).get_json()
    _check(client, "/cases/{id}", "get", 200, body)
    assert body["status"] == "new" and body["team"] == "service" and body["sla_state"] == "on_track"
    assert body["followup"]["status"] == "pending" and body["followup"]["crm"]["external_id"] is None
    assert body["callback_at"] == body["followup"]["due_at"]
    assert {"contacted", "resolved", "closed", "assigned"} <= set(body["allowed_status"])
    dispatch(hub)
    body = client.get(f"/api/v1/cases/{case_id}", headers=auth).get_json()
    assert body["status"] == "scheduled"
    crm_state = body["followup"]["crm"]
    assert crm_state["external_id"] == f"t{body['followup']['id']}" and crm_state["status"] == "NOT_STARTED"
    assert crm_state["due_at"] == body["followup"]["due_at"] and crm_state["sync_pending"] is False
    assert client.get("/api/v1/cases/999999", headers=auth).status_code == 404
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 401


def test_patch_callback_at_moves_the_same_crm_task(env):
    app, hub, crm, auth = env
    client = app.test_client()
    case_id = _case(app, auth)
    dispatch(hub)
    (task_id,) = crm.tasks
    when = dt.datetime(2026, 11, 24, 15, 30, tzinfo=AMS)
    r = client.patch(f"/api/v1/cases/{case_id}", json={"callback_at": when.isoformat()}, headers=auth)
    assert r.status_code == 200, r.get_json()
    _check(client, "/cases/{id}", "patch", 200, r.get_json())
    assert r.get_json()["followup"]["crm"]["sync_pending"] is True
    report = dispatch(hub)
    assert report.sent == 0 and report.synced == 1
    assert list(crm.tasks) == [task_id]  # no second task
    assert crm.tasks[task_id]["due"] == when.astimezone(dt.UTC)
    assert crm.calls == [("update", int(task_id[1:]), when.astimezone(dt.UTC))]
    dispatch(hub)
    assert len(crm.calls) == 1  # applied once
    body = client.get(f"/api/v1/cases/{case_id}", headers=auth).get_json()
    assert body["followup"]["crm"]["due_at"] == when.astimezone(dt.UTC).isoformat()
    assert ("token:tests", "case.callback_planned") in _audit(hub, case_id)
    assert ("sink:crm", "followup.crm_update") in _audit(hub, case_id)


def test_patch_contacted_completes_the_task_and_resolved_keeps_it_completed(env):
    app, hub, crm, auth = env
    client = app.test_client()
    case_id = _case(app, auth)
    dispatch(hub)
    r = client.patch(f"/api/v1/cases/{case_id}", json={"status": "contacted", "outcome": "reached"}, headers=auth)
    assert r.status_code == 200 and r.get_json()["status"] == "contacted"
    assert r.get_json()["followup"]["status"] == "done"
    dispatch(hub)
    (task,) = crm.tasks.values()
    assert task["status"] == "COMPLETED" and [c[0] for c in crm.calls] == ["complete"]
    r = client.patch(f"/api/v1/cases/{case_id}", json={
        "status": "resolved", "outcome": "compensated", "root_cause": "network outage", "resolved": True}, headers=auth)
    assert r.status_code == 200 and (r.get_json()["status"], r.get_json()["resolved"]) == ("resolved", True)
    dispatch(hub)
    assert [c[0] for c in crm.calls] == ["complete"]  # nothing more to tell
    actions = [a for _, a in _audit(hub, case_id)]
    assert actions.index("followup.completed") < actions.index("case.contacted") < actions.index("case.resolved")


def test_patch_resolved_completes_an_open_task_and_closed_cancels_one(env):
    app, hub, crm, auth = env
    client = app.test_client()
    first, second = _case(app, auth, "a"), None
    dispatch(hub)
    r = client.patch(f"/api/v1/cases/{first}", json={
        "status": "resolved", "outcome": "solved_remotely", "root_cause": "billing error", "resolved": True},
        headers=auth)
    assert r.status_code == 200
    other = {**DETRACTOR, "external_id": "b", "customer": {"email": "piet@example.nl"}}
    second = client.post("/api/v1/feedback", json=other, headers=auth).get_json()["case_id"]
    dispatch(hub)
    r = client.patch(f"/api/v1/cases/{second}", json={"status": "closed", "note": "duplicate of another case"},
                     headers=auth)
    assert r.status_code == 200 and r.get_json()["status"] == "closed"
    assert r.get_json()["followup"]["cancelled_at"] is not None
    dispatch(hub)
    assert sorted(c[0] for c in crm.calls) == ["cancel", "complete"]
    assert sorted(t["status"] for t in crm.tasks.values()) == ["CANCELLED", "COMPLETED"]


def test_invalid_transition_answers_409_and_changes_nothing(env):
    app, hub, crm, auth = env
    client = app.test_client()
    case_id = _case(app, auth)
    client.patch(f"/api/v1/cases/{case_id}", json={"status": "closed"}, headers=auth)
    before = _audit(hub, case_id)
    r = client.patch(f"/api/v1/cases/{case_id}", json={"status": "contacted", "owner": "anna"}, headers=auth)
    assert r.status_code == 409
    _check(client, "/cases/{id}", "patch", 409, r.get_json())
    assert "cannot go from closed to contacted" in r.get_json()["error"]["message"]
    assert _audit(hub, case_id) == before
    with hub.db.Session() as s:
        assert s.get(m.Case, case_id).owner is None  # the owner part was not applied either
    # Reopening by assigning is a move the lifecycle allows.
    r = client.patch(f"/api/v1/cases/{case_id}", json={"status": "assigned", "owner": "anna"}, headers=auth)
    assert r.status_code == 200 and (r.get_json()["status"], r.get_json()["owner"]) == ("assigned", "anna")


@pytest.mark.parametrize("patch, field", [
    ({}, "body"),
    ({"colour": "red"}, "colour"),
    ({"status": "new"}, "status"),
    ({"owner": "nobody"}, "owner"),
    ({"callback_at": "2001-01-01T10:00:00+01:00"}, "callback_at"),
    ({"callback_at": "2026-11-24T10:00:00"}, "callback_at"),
    ({"status": "resolved", "root_cause": "x", "resolved": True}, "outcome"),
    ({"status": "resolved", "outcome": "compensated", "root_cause": "x"}, "resolved"),
    ({"outcome": "compensated"}, "status"),
    ({"note": ""}, "note"),
])
def test_bad_patches_answer_400_naming_the_field(env, patch, field):
    app, hub, crm, auth = env
    case_id = _case(app, auth)
    before = _audit(hub, case_id)
    r = app.test_client().patch(f"/api/v1/cases/{case_id}", json=patch, headers=auth)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["field"] == field
    assert _audit(hub, case_id) == before


def test_owner_and_note_are_audited_like_the_ui(env):
    app, hub, crm, auth = env
    case_id = _case(app, auth)
    r = app.test_client().patch(f"/api/v1/cases/{case_id}", json={"owner": "anna", "note": "Klant belt terug."},
                                headers=auth)
    assert r.status_code == 200 and (r.get_json()["owner"], r.get_json()["status"]) == ("anna", "assigned")
    assert _audit(hub, case_id)[-2:] == [("token:tests", "case.assigned"), ("token:tests", "case.note")]


def test_an_outage_during_an_update_delays_it_and_applies_it_once(env):
    app, hub, crm, auth = env
    client = app.test_client()
    case_id = _case(app, auth)
    dispatch(hub)
    crm.down = True
    when = dt.datetime(2026, 11, 25, 14, 0, tzinfo=AMS)
    client.patch(f"/api/v1/cases/{case_id}", json={"callback_at": when.isoformat()}, headers=auth)
    report = dispatch(hub)
    assert report.synced == 0 and crm.calls == []
    with hub.db.Session() as s:
        row = s.scalars(select(m.Followup)).one()
        assert row.sync_pending and "503" in row.sync_error and row.crm_due_at != row.due_at
        retry_at = row.sync_next_at
    crm.down = False
    hub.clock.now = retry_at.timestamp() + 1
    dispatch(hub)
    dispatch(hub)
    assert crm.calls == [("update", row.id, when.astimezone(dt.UTC))]


def test_planner_load_answers_planned_capacity_inbound_and_peaks(env):
    app, hub, crm, auth = env
    client = app.test_client()
    for i in range(3):
        client.post("/api/v1/feedback", json={**DETRACTOR, "external_id": f"l{i}",
                                              "customer": {"email": f"l{i}@example.nl"}}, headers=auth)
    with hub.db.Session() as s:
        due = sorted(s.scalars(select(m.Followup.due_at)))
    start, end = "2026-11-20T12:00:00Z", "2026-11-23T12:00:00Z"
    r = client.get(f"/api/v1/planner/load?from={start}&to={end}", headers=auth)
    assert r.status_code == 200, r.get_json()
    _check(client, "/planner/load", "get", 200, r.get_json())
    items = r.get_json()["items"]
    assert len(items) == 72
    by_hour = {dt.datetime.fromisoformat(i["hour"]): i for i in items}
    for t in due:
        assert by_hour[t.replace(minute=0)]["planned"] >= 1
    assert sum(i["planned"] for i in items) == 3
    saturday_noon = by_hour[dt.datetime(2026, 11, 21, 11, tzinfo=dt.UTC)]
    assert saturday_noon["capacity"] == 0 and not saturday_noon["peak"]
    assert by_hour[dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)]["capacity"] == 20  # Monday 10:00 local
    # The three items of this afternoon are the inbound the hub has seen: nothing learned before now.
    assert all(i["inbound_expected"] == 0 for i in items)
    assert client.get(f"/api/v1/planner/load?from={start}&to={end}&team=service", headers=auth).status_code == 200
    for query, field in [(f"from={start}", "to"), (f"from={end}&to={start}", "to"),
                         (f"from={start}&to=2027-01-01T00:00:00Z", "to"), (f"from=yesterday&to={end}", "from"),
                         (f"from={start}&to={end}&team=nobody", "team")]:
        r = client.get(f"/api/v1/planner/load?{query}", headers=auth)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, query
    assert TEST_NOW.weekday() == 4
