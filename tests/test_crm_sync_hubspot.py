"""Two-way sync against the HubSpot emulator over real HTTP: re-plan moves the
one task, a contact in the hub completes it, a close archives it, an outage
delays an update that is then applied once, and changes made in HubSpot
(rescheduled, reassigned) show in the hub after the next sync."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.storage import models as m
from tests.test_hubspot_sink import clock, emulator_server, make_env  # noqa: F401 - the emulator fixtures

AMS = __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")


def _at(env, days: int, hour: int, minute: int = 0) -> dt.datetime:
    """A local time ``days`` after the test clock's day (the emulator tests' clock is in 2027)."""
    day = dt.datetime.fromtimestamp(env.clock.time(), AMS).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, minute), AMS)


def _ts(task) -> dt.datetime:
    return dt.datetime.fromisoformat(task["properties"]["hs_timestamp"].replace("Z", "+00:00"))


def _patch(env, case_id, body):
    r = env.app.test_client().patch(f"/api/v1/cases/{case_id}", json=body, headers=env.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _pushed(env, email="sanne@example.nl"):
    case_id = env.feedback(1, email=email)["case_id"]
    assert dispatch(env.hub).sent == 1
    (task,) = env.portal.all_tasks()
    return case_id, task


def test_replan_keeps_one_task_with_the_new_hs_timestamp(make_env):  # noqa: F811
    env = make_env()
    case_id, task = _pushed(env)
    when = _at(env, 4, 14, 30)
    assert _ts(task) != when
    _patch(env, case_id, {"callback_at": when.isoformat()})
    report = dispatch(env.hub)
    assert (report.sent, report.synced) == (0, 1)
    (after,) = env.portal.all_tasks()
    assert after["id"] == task["id"] and _ts(after) == when
    assert len(env.portal.requests_to("tasks/batch/create")) == 1
    assert [r.status for r in env.portal.requests_to("tasks/batch/update")] == [200]
    # Re-planned twice before the next dispatch: only the last time is sent, still to the one task.
    later = when + dt.timedelta(days=1)
    _patch(env, case_id, {"callback_at": (when + dt.timedelta(hours=1)).isoformat()})
    _patch(env, case_id, {"callback_at": later.isoformat()})
    dispatch(env.hub)
    (after,) = env.portal.all_tasks()
    assert _ts(after) == later and len(env.portal.requests_to("tasks/batch/update")) == 2
    assert len(env.portal.tasks) == 1


def test_contacted_in_the_hub_completes_the_task(make_env):  # noqa: F811
    env = make_env()
    case_id, task = _pushed(env)
    body = _patch(env, case_id, {"status": "contacted", "outcome": "reached"})
    assert body["followup"]["status"] == "done" and body["followup"]["crm"]["sync_pending"] is True
    dispatch(env.hub)
    assert env.portal.task(task["id"])["properties"]["hs_task_status"] == "COMPLETED"
    assert env.portal.task(task["id"])["properties"]["hs_task_completion_date"]
    body = env.app.test_client().get(f"/api/v1/cases/{case_id}", headers=env.headers).get_json()
    assert body["followup"]["crm"]["status"] == "COMPLETED" and body["followup"]["crm"]["sync_pending"] is False
    # The completion sync sees a completed task, but the follow-up was done already: no second completion.
    assert sync_completions(env.hub) == 0
    assert len(env.recorder.completed) == 1


def test_closing_without_callback_archives_the_task(make_env):  # noqa: F811
    env = make_env()
    case_id, task = _pushed(env)
    _patch(env, case_id, {"status": "closed", "note": "spam"})
    dispatch(env.hub)
    assert env.portal.tasks == {} and task["id"] in env.portal.archived
    dispatch(env.hub)
    assert len(env.portal.requests_to("tasks/batch/archive")) == 1


def test_an_outage_during_an_update_is_applied_once_after_recovery(make_env):  # noqa: F811
    env = make_env()
    case_id, task = _pushed(env)
    env.portal.inject("error", count=50, status=503, path="tasks/batch/update")
    when = _at(env, 5, 10, 15)
    _patch(env, case_id, {"callback_at": when.isoformat()})
    report = dispatch(env.hub)
    assert report.synced == 0
    assert _ts(env.portal.task(task["id"])) != when  # not applied during the outage
    with env.hub.db.Session() as s:
        row = s.scalars(select(m.Followup)).one()
        assert row.sync_pending and row.sync_error and row.status == "sent"
    for _ in range(6):  # the outage goes on for a while: retried with backoff, never given up
        env.clock.now += 3600
        dispatch(env.hub)
    with env.hub.db.Session() as s:
        assert s.scalars(select(m.Followup)).one().sync_pending
    env.portal.faults.clear()  # HubSpot is back
    env.clock.now += 3600
    dispatch(env.hub)
    dispatch(env.hub)
    assert [r.status for r in env.portal.requests_to("tasks/batch/update") if r.status == 200] == [200]
    (after,) = env.portal.all_tasks()
    assert after["id"] == task["id"] and _ts(after) == when
    with env.hub.db.Session() as s:
        row = s.scalars(select(m.Followup)).one()
        assert not row.sync_pending and row.crm_due_at == when.astimezone(dt.UTC) and row.sync_error is None


def test_a_timeout_during_an_update_resends_the_same_wish(make_env):  # noqa: F811
    env = make_env(timeout=[1.0, 0.3])
    case_id, task = _pushed(env)
    env.portal.inject("timeout", count=1, delay=1.0, path="tasks/batch/update")
    when = _at(env, 6, 11)
    _patch(env, case_id, {"callback_at": when.isoformat()})
    dispatch(env.hub)
    env.clock.now += 3600
    dispatch(env.hub)
    (after,) = env.portal.all_tasks()
    assert after["id"] == task["id"] and _ts(after) == when and len(env.portal.tasks) == 1


def test_changes_made_in_hubspot_show_in_the_hub_after_the_next_sync(make_env):  # noqa: F811
    env = make_env()
    case_id, task = _pushed(env)
    moved = _at(env, 7, 15)
    env.portal.reschedule_task(task["id"], moved)
    env.portal.reassign_task(task["id"], "333")
    sync_completions(env.hub)
    body = env.app.test_client().get(f"/api/v1/cases/{case_id}", headers=env.headers).get_json()
    assert body["callback_at"] == moved.astimezone(dt.UTC).isoformat()
    assert body["followup"]["crm"]["owner"] == "333" and body["followup"]["crm"]["sync_pending"] is False
    with env.hub.db.Session() as s:
        actions = [e.action for e in s.scalars(select(m.AuditEvent).where(m.AuditEvent.case_id == case_id))]
        load = dict(s.execute(select(m.PlannerLoad.slot, m.PlannerLoad.planned)).all())
    assert "followup.rescheduled_in_crm" in actions and "followup.reassigned_in_crm" in actions
    assert load.get(moved.astimezone(dt.UTC)) == 1  # the planner's load follows the task
    dispatch(env.hub)
    assert env.portal.requests_to("tasks/batch/update") == []  # the hub does not send HubSpot's change back
    env.portal.complete_task(task["id"])
    assert sync_completions(env.hub) == 1
    body = env.app.test_client().get(f"/api/v1/cases/{case_id}", headers=env.headers).get_json()
    assert body["status"] == "contacted" and body["followup"]["crm"]["status"] == "COMPLETED"


def test_case_facts_are_written_to_the_contact_and_the_team_owns_the_task(make_env):  # noqa: F811
    env = make_env(nps_property="feedback_nps", risk_property="feedback_risk", case_link_property="feedback_case")
    case_id, task = _pushed(env)
    (contact,) = env.portal.contacts.values()
    props = contact.obj["properties"]
    assert props["feedback_nps"] == "2" and int(props["feedback_risk"]) > 0
    assert props["feedback_case"].endswith(f"/cases/{case_id}")


def test_the_calling_teams_crm_owner_gets_the_task(make_env):  # noqa: F811
    env = make_env()
    env.hub.config["teams"]["service"]["crm_owner"] = "222"  # [teams.service] crm_owner = "222"
    env.portal.add_contact("sanne@example.nl", properties={"hubspot_owner_id": "9001"})
    _pushed(env)
    (task,) = env.portal.all_tasks()
    assert task["properties"]["hubspot_owner_id"] == "222"  # the team's owner beats the contact's
