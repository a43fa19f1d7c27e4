"""Outages: follow-ups wait out a CRM outage (429, 5xx, timeouts, an expired token, the daily
limit) instead of dying; Retry-After is honoured, --all spends no retries, the admin is alerted,
and ``outbox requeue`` brings rows back.  FakeClock throughout; HubSpot over real local HTTP."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner
from sqlalchemy import select

from hub.engine.dispatch import dispatch, sink_outages
from hub.sdk import FakeClock, FatalError, PushResult, RateLimitedError, RetriableError
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState
from tests import test_hubspot_sink as hubspot
from tests.helpers import recording_app
from tests.test_hubspot_sink import OWNERS, TOKEN, one_task_each

# The HubSpot sink's end-to-end fixtures: a shared clock, the emulator over HTTP, an env factory.
clock, emulator_server, make_env = hubspot.clock, hubspot.emulator_server, hubspot.make_env

START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _now(clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.time(), dt.UTC)


def _followups(hub) -> list[m.Followup]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.Followup).order_by(m.Followup.id)))


def _audit(hub) -> list[tuple[str, dict]]:
    with hub.db.Session() as s:
        return [(a.action, a.detail) for a in s.scalars(select(m.AuditEvent).order_by(m.AuditEvent.id))
                if a.action.startswith("sink.")]


def _recording(make_app, n: int, **overrides):
    """A hub with ``n`` follow-ups routed to the scripted ``rec`` sink."""
    clock = FakeClock(START.timestamp())
    app, rec = recording_app(make_app, clock=clock, **overrides)
    rec.app = app
    hub = app.extensions["hub"]
    _ingest(hub, [str(i) for i in range(n)])
    assert len(_followups(hub)) == n
    return hub, rec, clock


def _ingest(hub, names: list[str]) -> None:
    """A detractor per name, each a new customer: a follow-up each."""
    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk import CustomerRef, FeedbackIn

    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn(f"o{n}", "survey", START, nps=1,
                                                       customer=CustomerRef(email=f"c{n}@x.nl"))) for n in names])


def _script(rec, push):
    """Replace the recording sink's push for this test (the class is per plugin instance)."""
    rec.cls.push = push


# -- HubSpot, end to end -------------------------------------------------------------------
def test_a_day_of_hubspot_server_errors_kills_nothing_and_then_each_task_is_created_once(make_env):
    env = make_env()
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("error", status=503, count=10**6)  # every request, all day
    for _hour in range(24):
        report = dispatch(env.hub)
        assert report.dead == 0
        env.clock.now += 3600
    rows = env.followups()
    assert [f["status"] for f in rows] == ["failed"] * 3
    assert all(f["attempts"] >= 9 for f in rows)  # more than the old limit of 8, and still alive
    assert [a for a, _ in _audit(env.hub)] == ["sink.outage"]  # the admin is told, once
    assert "hubspot" in sink_outages(env.hub)
    env.portal.faults.clear()  # HubSpot is back
    env.clock.now += 3600
    assert dispatch(env.hub).sent == 3
    one_task_each(env, 3)
    assert [a for a, _ in _audit(env.hub)] == ["sink.outage", "sink.recovered"]
    assert sink_outages(env.hub) == {}


def test_the_daily_limit_waits_for_its_reset_and_dispatch_all_leaves_it_alone(make_env, clock):
    # 1 request left today: the contacts' upsert spends it, the task create meets the daily 429.
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS, daily_limit=1)
    env = make_env(portal)
    for i in range(2):
        env.feedback(i, email=f"k{i}@example.nl")
    report = dispatch(env.hub)
    assert (report.sent, report.dead, report.retried) == (0, 0, 2)
    midnight = dt.datetime.combine(_now(clock).date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert all(f["status"] == "failed" for f in env.followups())
    assert all(f.next_attempt_at >= midnight - dt.timedelta(seconds=1) for f in _followups(env.hub))
    sent_before = len(portal.log)
    assert dispatch(env.hub, ignore_schedule=True).claimed == 0  # --all respects the reset time
    assert len(portal.log) == sent_before and all(f["attempts"] == 1 for f in env.followups())
    clock.now = midnight.timestamp() + 60
    portal.daily_limit = 1000
    assert dispatch(env.hub).sent == 2
    one_task_each(env, 2)


def test_an_expired_hubspot_token_waits_for_the_fix(make_env):
    env = make_env(token="pat-expired")
    env.feedback(1, email="k@example.nl")
    for _ in range(12):
        assert dispatch(env.hub, ignore_schedule=True).dead == 0
        env.clock.now += 3600
    (f,) = env.followups()
    assert f["status"] == "failed" and f["attempts"] == 12 and "HTTP 401" in f["last_error"]


# -- the dispatcher's rules, with a scripted sink ------------------------------------------------
def test_dispatch_all_during_an_outage_spends_one_attempt_not_all(make_app):
    hub, rec, _ = _recording(make_app, 20, dispatch={"batch_size": 5})
    calls = []

    def down(self, followups):
        calls.append(len(followups))
        raise RetriableError("crm answered 503: maintenance", status=503)

    _script(rec, down)
    for _ in range(3):  # an impatient admin
        report = dispatch(hub, ignore_schedule=True)
        assert report.dead == 0 and report.retried == 5 and report.deferred == 0
    rows = _followups(hub)
    assert len(calls) == 3  # one push per run, not one per row and round
    assert all(r.status in ("pending", "failed") for r in rows)
    assert max(r.attempts for r in rows) == 3 and sum(r.attempts for r in rows) == 15


def test_a_sink_down_in_one_chunk_is_not_pushed_again_in_that_run(make_app):
    hub, rec, _ = _recording(make_app, 25)  # one claim of 25, sink chunks of 10
    calls = []

    def down(self, followups):
        calls.append(len(followups))
        raise RetriableError("crm answered 503", status=503)

    _script(rec, down)
    report = dispatch(hub, ignore_schedule=True)
    assert calls == [10] and report.retried == 10 and report.deferred == 15
    rows = _followups(hub)
    assert sorted(r.attempts for r in rows) == [0] * 15 + [1] * 10  # not pushed: no attempt spent
    assert {r.status for r in rows if r.attempts == 0} == {"pending"}


def test_retry_after_of_the_sink_is_honoured_and_all_does_not_take_those_rows(make_app):
    hub, rec, clock = _recording(make_app, 4)
    calls = []

    def limited(self, followups):
        calls.append(len(followups))
        raise RateLimitedError("crm answered 429", status=429, retry_after=7200)

    _script(rec, limited)
    assert dispatch(hub).retried == 4
    assert all(r.next_attempt_at >= _now(clock) + dt.timedelta(seconds=7200) for r in _followups(hub))
    assert dispatch(hub, ignore_schedule=True).claimed == 0 and calls == [4]
    _ingest(hub, ["late"])  # a new follow-up meanwhile: it waits for the same time
    assert dispatch(hub).claimed == 0 and calls == [4]
    clock.sleep(7201)
    _script(rec, lambda self, fs: [PushResult(f.id, ok=True, external_id=f"t{f.id}") for f in fs])
    assert dispatch(hub).sent == 5


def test_a_per_followup_retry_after_is_honoured(make_app):
    hub, rec, clock = _recording(make_app, 1)
    _script(rec, lambda self, fs: [PushResult(f.id, ok=False, error="busy", retry_after=5000) for f in fs])
    dispatch(hub)
    (row,) = _followups(hub)
    assert row.status == "failed" and row.next_attempt_at >= _now(clock) + dt.timedelta(seconds=5000)


def test_an_expired_token_is_an_outage_but_a_refused_task_is_dead(make_app):
    hub, rec, clock = _recording(make_app, 1, dispatch={"max_attempts": 2})

    def expired(self, followups):
        raise FatalError("crm answered 401: token expired", status=401)

    _script(rec, expired)
    for _ in range(6):
        assert dispatch(hub, ignore_schedule=True).dead == 0
    (row,) = _followups(hub)
    assert row.status == "failed" and row.attempts == 6
    _script(rec, lambda self, fs: [PushResult(f.id, ok=False, error="no such owner", retriable=False) for f in fs])
    assert dispatch(hub, ignore_schedule=True).dead == 1


def test_the_admin_is_alerted_once_the_sink_has_failed_for_a_while_and_told_when_it_is_back(make_app):
    hub, rec, clock = _recording(make_app, 2, dispatch={"alert_after_seconds": 900, "max_attempts": 100})
    app = rec.app
    rec.mode = "retriable"
    dispatch(hub)
    assert _audit(hub) == []  # a blip is no alert
    clock.sleep(600)
    dispatch(hub, ignore_schedule=True)
    assert _audit(hub) == []
    clock.sleep(400)
    dispatch(hub, ignore_schedule=True)
    ((action, detail),) = _audit(hub)
    assert action == "sink.outage" and detail["sink"] == "rec" and "503" in detail["reason"]
    assert detail["since"] == START.isoformat()
    assert "failing since 2026-11-23 09:00" in _admin_page(app)
    rec.mode = "ok"
    assert dispatch(hub, ignore_schedule=True).sent == 2
    assert [a for a, _ in _audit(hub)] == ["sink.outage", "sink.recovered"]
    assert "failing since" not in _admin_page(app)


def _admin_page(app) -> str:
    from tests.test_web_ui import add_user, login

    hub = app.extensions["hub"]
    with hub.db.Session() as s:
        known = s.scalar(select(m.User).where(m.User.username == "boss"))
    if known is None:
        add_user(hub, "boss", "admin")
    client = app.test_client()
    login(client, "boss")
    page = client.get("/admin/")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_outbox_requeue_command(make_app, monkeypatch):
    from hub.cli import commands as cli

    hub, rec, _ = _recording(make_app, 2)
    monkeypatch.setattr(cli.Ctx, "hub", lambda self, **kw: hub)
    rec.mode = "reject"
    dispatch(hub)
    assert [r.status for r in _followups(hub)] == ["dead", "dead"]
    runner = CliRunner()
    result = runner.invoke(cli.main, ["outbox", "requeue"])
    assert result.exit_code == 0 and "requeued 0 follow-ups" in result.output
    result = runner.invoke(cli.main, ["outbox", "requeue", "--dead", "--sink", "nope"])
    assert result.exit_code != 0 and "unknown sink 'nope'" in result.output
    result = runner.invoke(cli.main, ["outbox", "requeue", "--dead", "--sink", "rec"])
    assert result.exit_code == 0, result.output
    assert "requeued 2 follow-ups" in result.output
    rows = _followups(hub)
    assert [r.status for r in rows] == ["pending", "pending"] and all(r.attempts == 1 for r in rows)
    rec.mode = "ok"
    assert dispatch(hub).sent == 2
    status = runner.invoke(cli.main, ["outbox", "status"])
    assert status.exit_code == 0 and "rec\tsent\t2" in status.output
