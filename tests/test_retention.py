"""The retention policy: raw payloads after N days, items after N months, per source."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.engine.retention import months_before, policy, run_retention
from hub.engine.scheduler import HubScheduler
from hub.sdk import FakeClock
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.helpers import bearer

DAY = 86400


@pytest.fixture
def env(make_app):
    clock = FakeClock(TEST_NOW.timestamp())
    app = make_app(clock=clock, retention={"raw_payload_days": 90, "item_months": 24, "interval_hours": 24,
                                           "sources": {"shop": {"raw_payload_days": 7}}})
    hub = app.extensions["hub"]
    headers = bearer(hub)
    client = app.test_client()

    def post(ext, source="api", nps=9, text="Prima service", email="a@example.nl"):
        resp = client.post("/api/v1/feedback", headers=headers, json={
            "source": source, "external_id": ext, "channel": "survey", "nps": nps, "text": text,
            "customer": {"email": email}, "occurred_at": dt.datetime.fromtimestamp(clock.time(), dt.UTC).isoformat()})
        assert resp.status_code == 201, resp.json
        return resp.json

    return app, hub, clock, post


def _raw(hub) -> dict[str, dict]:
    with hub.db.Session() as s:
        return {r.dedupe_key: r.payload for r in s.scalars(select(m.RawEvent))}


def _items(hub) -> dict[str, m.FeedbackItem]:
    with hub.db.Session() as s:
        return {i.external_id: i for i in s.scalars(select(m.FeedbackItem))}


def test_months_before_keeps_the_day_or_takes_the_months_last():
    assert months_before(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), 24) == dt.datetime(2024, 11, 20, 12, tzinfo=dt.UTC)
    assert months_before(dt.datetime(2026, 3, 31, tzinfo=dt.UTC), 1) == dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    assert months_before(dt.datetime(2026, 1, 15, tzinfo=dt.UTC), 13) == dt.datetime(2024, 12, 15, tzinfo=dt.UTC)


def test_policy_per_source_falls_back_to_the_defaults(env):
    _, hub, _, _ = env
    assert policy(hub, "shop") == {"raw_payload_days": 7, "item_months": 24}
    assert policy(hub, "api") == {"raw_payload_days": 90, "item_months": 24}


def test_raw_payloads_are_emptied_after_their_days_per_source(env):
    app, hub, clock, post = env
    post("a-1")
    post("s-1", source="shop")
    clock.sleep(8 * DAY)
    post("a-2")
    assert run_retention(hub) == {"shop": {"raw_events": 1, "items": 0}}
    raw = _raw(hub)
    assert raw["s-1"] == {"erased": "retention"} and raw["a-1"]["external_id"] == "a-1"
    clock.sleep(83 * DAY)  # a-1 is 91 days old, a-2 83
    assert run_retention(hub) == {"api": {"raw_events": 1, "items": 0}}
    raw = _raw(hub)
    assert raw["a-1"] == {"erased": "retention"} and raw["a-2"]["external_id"] == "a-2"
    assert _items(hub)["a-1"].text == "Prima service"  # items have their own, longer, term
    assert run_retention(hub) == {}  # nothing twice
    with hub.db.Session() as s:
        runs = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "retention.run")).all()
    assert [r.detail["raw_events"] for r in runs] == [1, 1, 0]


def test_items_are_emptied_after_their_months_but_not_in_an_open_case(env):
    app, hub, clock, post = env
    happy = post("a-1")
    angry = post("a-2", nps=1, text="Al weken storing, ik zeg op!", email="b@example.nl")
    assert angry["case_id"] and not happy["case_id"]
    clock.sleep(25 * 31 * DAY)
    report = run_retention(hub)
    assert report == {"api": {"raw_events": 2, "items": 1}}
    items = _items(hub)
    assert items["a-1"].text is None and items["a-1"].customer_id is None and items["a-1"].nps == 9
    assert items["a-2"].text.startswith("Al weken")  # its case is still open
    # a re-delivery of the emptied answer is still a duplicate
    resp = app.test_client().post("/api/v1/feedback", headers=bearer(hub), json={
        "external_id": "a-1", "channel": "survey", "nps": 9, "text": "Prima service",
        "customer": {"email": "a@example.nl"}, "occurred_at": TEST_NOW.isoformat()})
    assert resp.status_code == 200 and _items(hub)["a-1"].text is None


def test_zero_keeps_forever(make_app):
    clock = FakeClock(TEST_NOW.timestamp())
    app = make_app(clock=clock, retention={"raw_payload_days": 0, "item_months": 0, "interval_hours": 24})
    hub = app.extensions["hub"]
    app.test_client().post("/api/v1/feedback", headers=bearer(hub), json={
        "external_id": "x", "channel": "survey", "nps": 9, "occurred_at": TEST_NOW.isoformat()})
    clock.sleep(3650 * DAY)
    assert run_retention(hub) == {}


def test_bad_retention_config_stops_the_start(make_app):
    from hub.config import ConfigError

    with pytest.raises(ConfigError, match="retention"):
        make_app(retention={"raw_payload_days": -1, "item_months": 24, "interval_hours": 24})


def test_cli_runs_the_policy(database_url, tmp_path, monkeypatch, make_app):
    make_app()  # the database is ready
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    result = CliRunner().invoke(main, ["retention", "run"], catch_exceptions=False)
    assert result.exit_code == 0 and "nothing older than the retention policy" in result.output


def test_scheduler_runs_retention_and_the_privacy_outbox(env):
    _, hub, _, _ = env
    sched = HubScheduler(hub)
    sched.start()
    try:
        jobs = {j.id: j for j in sched.scheduler.get_jobs()}
    finally:
        sched.shutdown()
    assert jobs["retention"].trigger.interval == dt.timedelta(hours=24)
    assert "privacy" in jobs
