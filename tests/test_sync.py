"""The core's pull loop with a small declarative test connector over real HTTP."""

from __future__ import annotations

import datetime as dt

import flask
import pytest
from sqlalchemy import func, select

from hub.engine.pulls import pull, source_status
from hub.sdk import (
    CustomerRef,
    FakeClock,
    FatalError,
    FeedbackIn,
    LastRecordPaginator,
    SourceConnector,
    Stream,
    hookimpl,
)
from hub.storage import models as m

RECORDS = [{"id": f"r{i:03d}", "at": f"2026-11-{1 + i // 10:02d}T10:{i % 60:02d}:00Z", "score": i % 11,
            "email": f"u{i % 7}@x.nl"} for i in range(45)]


class Feed:
    """Vendor stand-in: ascending records after ?after=, page size ?limit=."""

    def __init__(self):
        self.fail_after_calls: int | None = None
        self.calls = 0
        self.app = flask.Flask(__name__)
        self.app.add_url_rule("/records", "records", self.records)

    def records(self):
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            return {"error": "gone"}, 404
        after = flask.request.args.get("after", "")
        since = flask.request.args.get("since", "")
        limit = int(flask.request.args.get("limit", 10))
        rows = [r for r in RECORDS if r["id"] > after and r["at"] >= since]
        return {"items": rows[:limit]}


class AscendingStream(Stream):
    name = "records"
    path = "/records"
    cursor_field = "id"
    page_size = 10

    def __init__(self, connector):
        super().__init__(connector)
        self.paginator = LastRecordPaginator("id", self.page_size)

    def request_params(self, cursor, page_token, since):
        params = {"limit": self.page_size}
        if page_token or cursor:
            params["after"] = page_token or cursor
        if since:
            params["since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        return params

    def parse_records(self, response):
        return response.json()["items"]


class FeedConnector(SourceConnector):
    plugin_name = "test_feed"
    default_base_url = "http://invalid"

    def streams(self):
        return [AscendingStream(self)]

    def normalize(self, raw):
        r = raw.payload
        if r["id"] == "r013":
            raise ValueError("unreadable record")
        return [FeedbackIn(external_id=r["id"], channel="survey",
                           occurred_at=dt.datetime.fromisoformat(r["at"].replace("Z", "+00:00")),
                           nps=r["score"], customer=CustomerRef(email=r["email"]))]


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [FeedConnector]


@pytest.fixture
def feed(live_server):
    f = Feed()
    f.url = live_server(f.app)
    return f


@pytest.fixture
def hub(make_app, feed):
    app = make_app(plugins=(Plugin(),), clock=FakeClock(),
                   sources={"feed": {"plugin": "test_feed", "base_url": feed.url}})
    return app.extensions["hub"]


def _count(hub, model=m.FeedbackItem):
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(model))


def _cursor(hub):
    with hub.db.Session() as s:
        return s.scalars(select(m.ConnectorState.cursor)).one()


def test_pull_walks_pages_keeps_bad_records_and_saves_cursor(hub, feed):
    seen = []
    report = pull(hub, "feed", progress=lambda n, new: seen.append((n, new)))
    assert report.pages == 5 and report.records == 45
    assert report.new_items == 44 and report.failed == 1
    assert seen[0] == (10, 10) and sum(n for n, _ in seen) == 45
    assert _count(hub) == 44 and _cursor(hub) == "r044"
    with hub.db.Session() as s:
        bad = s.scalars(select(m.RawEvent).where(m.RawEvent.status == "failed")).one()
        assert bad.dedupe_key == "r013" and "ValueError" in bad.error  # the type, never the message
    again = pull(hub, "feed")
    assert again.records == 0 and again.new_items == 0 and feed.calls == 6


def test_cursor_moves_only_with_committed_pages(hub, feed):
    feed.fail_after_calls = 2
    with pytest.raises(FatalError):
        pull(hub, "feed")
    assert _count(hub) == 19 and _cursor(hub) == "r019"
    status = source_status(hub)[0]
    assert status["name"] == "feed" and "404" in status["last_error"]
    feed.fail_after_calls = None
    report = pull(hub, "feed")
    assert report.records == 25 and _count(hub) == 44
    assert source_status(hub)[0]["last_error"] is None


def test_backfill_does_not_move_cursor_backwards(hub, feed):
    pull(hub, "feed")
    with hub.db.session() as s:
        s.execute(m.FeedbackItem.__table__.delete().where(m.FeedbackItem.external_id > "r040"))
    report = pull(hub, "feed", since=dt.datetime(2026, 11, 5, tzinfo=dt.UTC))
    assert report.records == 5  # only the window asked for
    assert report.duplicates == 5  # raw events were already there
    assert _cursor(hub) == "r044"
