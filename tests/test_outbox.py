"""Dispatcher: retries with backoff, dead letters, crash recovery, --all."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner
from sqlalchemy import select

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.sdk import FakeClock
from hub.storage import models as m
from tests.helpers import DETRACTOR, bearer, recording_app


def _setup(make_app, **overrides):
    clock = FakeClock(start=dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC).timestamp())
    app, rec = recording_app(make_app, clock=clock, **overrides)
    hub = app.extensions["hub"]
    r = app.test_client().post("/api/v1/feedback", json=DETRACTOR, headers=bearer(hub))
    assert r.status_code == 201
    return hub, rec, clock


def _followup(hub) -> m.Followup:
    with hub.db.Session() as s:
        return s.scalars(select(m.Followup)).one()


def test_retriable_failure_is_retried_later_with_backoff(make_app):
    hub, rec, clock = _setup(make_app)
    rec.mode = "retriable"
    report = dispatch(hub)
    assert (report.sent, report.retried, report.dead) == (0, 1, 0)
    fu = _followup(hub)
    assert fu.status == "failed" and fu.attempts == 1 and "503" in fu.last_error
    wait = (fu.next_attempt_at - dt.datetime.fromtimestamp(clock.time(), dt.UTC)).total_seconds()
    assert 15 <= wait <= 30  # jittered first backoff (base 30 s)

    rec.mode = "ok"
    assert dispatch(hub).claimed == 0  # not due yet
    clock.sleep(wait + 1)
    assert dispatch(hub).sent == 1
    fu = _followup(hub)
    assert fu.status == "sent" and fu.attempts == 2 and fu.last_error is None
    assert len(rec.pushed) == 1


def test_permanent_failure_ends_dead_with_its_error(make_app):
    hub, rec, _ = _setup(make_app)
    rec.mode = "fatal"
    report = dispatch(hub)
    assert report.dead == 1 and "403" in report.errors[0]
    fu = _followup(hub)
    assert fu.status == "dead" and "missing scope" in fu.last_error
    rec.mode = "ok"
    assert dispatch(hub, ignore_schedule=True).claimed == 0  # dead stays dead


def test_per_item_rejection_is_dead_too(make_app):
    hub, rec, _ = _setup(make_app)
    rec.mode = "reject"
    dispatch(hub)
    assert (_followup(hub).status, _followup(hub).last_error) == ("dead", "invalid contact")


def test_an_outage_outlasting_max_attempts_alerts_but_never_kills(make_app):
    hub, rec, clock = _setup(make_app, dispatch={"max_attempts": 3, "backoff_base_seconds": 1})
    rec.mode = "retriable"
    for _ in range(5):
        dispatch(hub, ignore_schedule=True)
    fu = _followup(hub)
    assert fu.status == "failed" and fu.attempts == 5 and "maintenance" in fu.last_error
    with hub.db.Session() as s:  # the admin is told once, not five times (after the API post that made the item)
        assert s.scalars(select(m.AuditEvent.action).order_by(m.AuditEvent.id)).all() == [
            "api.feedback.posted", "sink.outage"]


def test_all_flag_ignores_retry_time(make_app):
    hub, rec, _ = _setup(make_app)
    rec.mode = "retriable"
    dispatch(hub)
    rec.mode = "ok"
    assert dispatch(hub).claimed == 0
    assert dispatch(hub, ignore_schedule=True).sent == 1


def test_row_orphaned_by_a_crash_is_claimed_again(make_app):
    hub, rec, clock = _setup(make_app)
    from hub.engine.dispatch import _claim

    ids = _claim(hub, dt.datetime.fromtimestamp(clock.time(), dt.UTC), False, 10, None)  # ...then the process dies
    assert _followup(hub).status == "sending"
    assert dispatch(hub).claimed == 0  # a live claim is respected
    clock.sleep(301)
    assert dispatch(hub).sent == 1
    assert [f.id for f in rec.pushed] == ids and rec.pushed[0].attempts == 2


def test_completion_sync_moves_case_to_contacted_and_fires_hook(make_app):
    hub, rec, _ = _setup(make_app)
    dispatch(hub)
    assert sync_completions(hub) == 0
    rec.completed.add(_followup(hub).id)
    assert sync_completions(hub) == 1
    with hub.db.Session() as s:
        fu = s.scalars(select(m.Followup)).one()
        case = s.get(m.Case, fu.case_id)
        assert fu.status == "done" and case.status == "contacted" and case.contacted_at is not None
        # the API post, then the push scheduled the case, the CRM's completion contacted it: all audited
        assert s.scalars(select(m.AuditEvent.action).order_by(m.AuditEvent.id)).all() == [
            "api.feedback.posted", "case.scheduled", "followup.completed"]
    assert sync_completions(hub) == 0


def test_dispatch_cli(make_app, monkeypatch):
    hub, rec, _ = _setup(make_app)
    from hub.cli import commands as cli

    monkeypatch.setattr(cli.Ctx, "hub", lambda self, **kw: hub)
    result = CliRunner().invoke(cli.main, ["dispatch", "--all"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output and len(rec.pushed) == 1


def test_concurrent_dispatchers_never_push_the_same_followup(make_app):
    import threading

    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk import CustomerRef, FeedbackIn

    app, rec = recording_app(make_app, dispatch={"batch_size": 3})
    hub = app.extensions["hub"]
    now = dt.datetime.now(dt.UTC)
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn(f"d{i}", "survey", now, nps=1,
                                                       customer=CustomerRef(email=f"c{i}@x.nl"))) for i in range(40)])
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(dispatch(hub))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pushed = [f.id for f in rec.pushed]
    assert len(pushed) == 40 and len(set(pushed)) == 40
    assert sum(r.sent for r in reports) == 40


def test_sink_learned_customer_facts_are_recorded(make_app):
    hub, rec, _ = _setup(make_app)
    from hub.sdk import PushResult

    original = rec.cls.push

    def push_with_facts(self, followups):
        return [PushResult(r.followup_id, ok=True, external_id=r.external_id, identities=(("crm_id", "377"),),
                           customer_value=12000.0, customer_attributes={"crm": {"stage": "customer"}})
                for r in original(self, followups)]

    rec.cls.push = push_with_facts
    dispatch(hub)
    with hub.db.Session() as s:
        ident = s.scalars(select(m.Identity).where(m.Identity.kind == "crm_id")).one()
        customer = s.get(m.Customer, ident.customer_id)
        assert ident.value == "377" and ident.evidence == "sink rec"
        assert customer.value == 12000.0 and customer.attributes == {"crm": {"stage": "customer"}}


def test_an_address_a_sink_learned_gets_its_match_key_as_every_identity_does(make_app):
    """So a social handle meets it in the one indexed look-up (identity_rules.match_key)."""
    hub, rec, _ = _setup(make_app)
    from hub.sdk import PushResult

    original = rec.cls.push
    rec.cls.push = lambda self, followups: [
        PushResult(r.followup_id, ok=True, external_id=r.external_id, identities=(("email", "Noor.K@example.nl"),))
        for r in original(self, followups)]
    dispatch(hub)
    with hub.db.Session() as s:
        ident = s.scalars(select(m.Identity).where(m.Identity.value == "Noor.K@example.nl")).one()
    assert (ident.match_key, ident.confidence, ident.evidence) == ("noork", 1.0, "sink rec")
    assert ident.created_at.replace(tzinfo=None) == hub.clock.utcnow().replace(tzinfo=None)


def test_two_answers_about_one_customer_in_a_batch_both_land(make_app):
    """What sinks learned goes back by primary key: attributes merged over each other, the last value kept."""
    from hub.engine.dispatch import _learn_customers
    from hub.sdk import PushResult

    hub, _, _ = _setup(make_app)
    with hub.db.session() as s:
        row = s.scalars(select(m.Followup)).one()
        case = s.get(m.Case, row.case_id)
        before = dict(s.get(m.Customer, case.customer_id).attributes or {})
        s.expunge_all()  # the write-back needs no customer object of the session
        _learn_customers(s, [(row, PushResult(row.id, ok=True, customer_value=10.0,
                                              customer_attributes={"crm": {"stage": "lead"}})),
                             (row, PushResult(row.id, ok=True, customer_value=20.0,
                                              customer_attributes={"owner": "ann"}))],
                         {case.id: case}, hub.clock.utcnow())
    with hub.db.Session() as s:
        customer = s.get(m.Customer, case.customer_id)
        assert customer.value == 20.0
        assert customer.attributes == {**before, "crm": {"stage": "lead"}, "owner": "ann"}


def test_sink_webhook_completion_closes_followup(make_app):
    from hub.sdk import WebhookResult

    app, rec = recording_app(make_app)
    hub = app.extensions["hub"]
    rec.cls.handle_webhook = lambda self, request: WebhookResult(completed_external_ids=[request.args["task"]])
    client = app.test_client()
    client.post("/api/v1/feedback", json=DETRACTOR, headers=bearer(hub))
    dispatch(hub)
    fu = _followup(hub)
    assert client.post("/webhooks/rec?task=unknown").status_code == 200
    assert _followup(hub).status == "sent"
    assert client.post(f"/webhooks/rec?task={fu.external_id}").status_code == 200
    with hub.db.Session() as s:
        assert s.get(m.Followup, fu.id).status == "done"
        assert s.get(m.Case, fu.case_id).status == "contacted"
