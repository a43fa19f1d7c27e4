"""Poison isolation: one event or record a database cannot store fails alone, with a reason
free of customer data, and the rest of its batch is ingested (webhook replay and pulls)."""

from __future__ import annotations

import datetime as dt

import flask
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.engine import pipeline as pipeline_module
from hub.engine import raw_events
from hub.engine.poison import clean_text, safe_reason, storable
from hub.engine.pulls import pull, source_status
from hub.engine.raw_events import process_raw_events, replay, store_raw
from hub.sdk import CustomerRef, FakeClock, FeedbackIn, LastRecordPaginator, SourceConnector, Stream, hookimpl
from hub.sdk.schema import RawIn
from hub.storage import models as m

AT = "2026-11-19T10:00:00Z"
SECRET = "Mijn geheime klacht"  # customer text that must never reach an error column


def record(i: int, **fields) -> dict:
    return {"id": f"e{i:03d}", "at": AT, "text": f"{SECRET} {i}", "email": f"u{i}@x.nl", "name": f"Klant {i}",
            **fields}


class Records(Stream):
    name = "records"
    path = "/records"
    cursor_field = "id"
    page_size = 50

    def __init__(self, connector):
        super().__init__(connector)
        self.paginator = LastRecordPaginator("id", self.page_size)

    def request_params(self, cursor, page_token, since):
        return {"after": page_token or cursor or ""}

    def parse_records(self, response):
        return response.json()["items"]


class PoisonFeed(SourceConnector):
    """Items as the payload says, verbatim: whatever text the vendor sent."""

    plugin_name = "poison_feed"
    default_base_url = "http://invalid"

    def streams(self):
        return [Records(self)]

    def normalize(self, raw):
        r = raw.payload
        if r.get("broken"):
            raise ValueError(f"cannot read {r['text']}")  # a plugin error quoting the customer
        return [FeedbackIn(external_id=r["id"], channel="survey", nps=2,
                           occurred_at=dt.datetime.fromisoformat(r["at"].replace("Z", "+00:00")),
                           text=r["text"], customer=CustomerRef(email=r["email"], name=r["name"]))]


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [PoisonFeed]


@pytest.fixture
def vendor(live_server):
    """A vendor API serving ``vendor.records`` after ?after=."""
    app = flask.Flask(__name__)
    state = type("Vendor", (), {"records": []})()

    @app.get("/records")
    def records():
        after = flask.request.args.get("after", "")
        return {"items": [r for r in state.records if r["id"] > after][:50]}

    state.url = live_server(app)
    return state


@pytest.fixture
def hub(make_app, vendor):
    app = make_app(plugins=(Plugin(),), clock=FakeClock(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp()),
                   sources={"feed": {"plugin": "poison_feed", "base_url": vendor.url}})
    return app.extensions["hub"]


def deliver(hub, payloads: list[dict]) -> list[int]:
    """Store webhook deliveries as pending raw events, as /webhooks does."""
    with hub.db.session() as s:
        return store_raw(s, "feed", [RawIn(payload=p, dedupe_key=p["id"]) for p in payloads], hub.clock.utcnow())


def raw_rows(hub) -> dict[str, m.RawEvent]:
    with hub.db.Session() as s:
        return {r.dedupe_key: r for r in s.scalars(select(m.RawEvent))}


def items(hub) -> dict[str, m.FeedbackItem]:
    with hub.db.Session() as s:
        return {i.external_id: i for i in s.scalars(select(m.FeedbackItem))}


def customers(hub) -> list[m.Customer]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.Customer)))


def is_postgres(hub) -> bool:
    return hub.db.dialect == "postgresql"


POISONS = {
    "lone surrogate": {"text": "broken \ud800 text"},
    "NUL": {"text": "nul\x00byte"},
    "long email": {"email": "a" * 330 + "@x.nl"},
    "long name": {"name": "N" * 250},
    "NUL in the id": {"id": "e005\x00x"},
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_delivery_no_longer_blocks_its_batch(hub, poison):
    payloads = [record(i) for i in range(10)]
    payloads[5] = record(5, **POISONS[poison])
    ids = deliver(hub, payloads)
    counts = process_raw_events(hub, "feed", ids)
    assert counts["processed"] == 10 and counts["failed"] == 0 and counts["items"] == 10
    assert all(r.status == "processed" for r in raw_rows(hub).values())
    stored = items(hub)
    assert len(stored) == 10
    for it in stored.values():  # what was stored is clean, on SQLite and PostgreSQL alike
        assert "\x00" not in it.text and "\x00" not in it.external_id
        it.text.encode("utf-8")
    names = {c.name for c in customers(hub)}
    assert all(n is None or len(n) <= 200 for n in names)


def test_clean_values_are_the_same_item_and_dirty_ones_fit_their_columns():
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    fine = FeedbackIn("x1", "survey", now, text="goed 😀", customer=CustomerRef(email="a@x.nl"))
    assert storable(fine) is fine
    dirty = FeedbackIn("y" * 300, "survey", now, text="a\x00b\ud800c", language="nl-NL-x-very-long",
                       customer=CustomerRef(email="e" * 400, name="n" * 300, handles=(("handle", "h\x00"),)),
                       extra={"k\x00": ["v\udfff"]})
    clean = storable(dirty)
    assert clean.text == "ab\ufffdc" and len(clean.external_id) == 200 and clean.language is None
    assert clean.customer.email is None and len(clean.customer.name) == 200
    assert clean.customer.handles == (("handle", "h"),) and clean.extra == {"k": ["v\ufffd"]}
    # Different long ids stay different once shortened.
    assert storable(dataclass_replace(dirty, external_id="y" * 299 + "z")).external_id != clean.external_id
    assert clean_text("pair \ud83d\ude00") == "pair 😀"


def dataclass_replace(item, **kw):
    import dataclasses

    return dataclasses.replace(item, **kw)


def _unclean(monkeypatch):
    """Switch the edge cleaning off: what the safety net must catch when a value slips through."""
    monkeypatch.setattr(pipeline_module, "storable", lambda item: item)
    monkeypatch.setattr(raw_events, "storable_raw", lambda raw: raw)


def _db_poison(hub) -> dict:
    # What the database itself refuses: NUL on PostgreSQL, a lone surrogate everywhere.
    return {"text": f"{SECRET} \x00"} if is_postgres(hub) else {"text": f"{SECRET} \ud800"}


def test_a_record_the_database_refuses_fails_alone_with_a_safe_reason(hub, monkeypatch):
    _unclean(monkeypatch)
    payloads = [record(i) for i in range(40)]
    payloads[17] = record(17, **_db_poison(hub))
    ids = deliver(hub, payloads)
    counts = process_raw_events(hub, "feed", ids)
    assert counts == {"processed": 39, "skipped": 0, "failed": 1, "items": 39}
    rows = raw_rows(hub)
    bad = rows["e017"]
    assert bad.status == "failed" and bad.error.startswith("ingest: ")
    assert SECRET not in bad.error and "INSERT" not in bad.error and "parameters" not in bad.error
    assert sorted(items(hub)) == sorted(r["id"] for r in payloads if r["id"] != "e017")


def test_plugin_errors_are_stored_without_the_customers_text(hub):
    ids = deliver(hub, [record(1), record(2, broken=True)])
    counts = process_raw_events(hub, "feed", ids)
    assert counts["failed"] == 1 and counts["items"] == 1
    bad = raw_rows(hub)["e002"]
    assert bad.status == "failed" and "ValueError" in bad.error and SECRET not in bad.error


def test_a_poisoned_pull_record_fails_alone_and_the_pull_goes_on(hub, vendor, monkeypatch):
    _unclean(monkeypatch)
    vendor.records = [record(i) for i in range(60)]
    vendor.records[7] = record(7, **_db_poison(hub))
    report = pull(hub, "feed")
    assert report.records == 60 and report.new_items == 59 and report.failed == 1
    assert raw_rows(hub)["e007"].status == "failed"
    status = source_status(hub)[0]
    assert status["last_error"] is None and status["cursor"] == {"records": "e059"}


def test_pull_with_nul_is_stored_cleanly(hub, vendor):
    vendor.records = [record(i) for i in range(5)]
    vendor.records[2] = record(2, text="a\x00b", name="x\x00y")
    report = pull(hub, "feed")
    assert report.new_items == 5 and report.failed == 0
    assert items(hub)["e002"].text == "ab"


def test_a_failed_pull_stores_no_sql_parameters_or_customer_text(hub, vendor, monkeypatch):
    """A database error outside the pipeline fails the pull; last_error says why, safely."""
    monkeypatch.setattr(raw_events, "storable_raw", lambda raw: raw)
    vendor.records = [record(1, id=f"{SECRET}\x00" if is_postgres(hub) else f"{SECRET}\ud800")]
    with pytest.raises(Exception):  # noqa: B017 - whichever the driver raises
        pull(hub, "feed")
    error = source_status(hub)[0]["last_error"]
    assert error and SECRET not in error and "INSERT" not in error and "parameters" not in error


def test_safe_reason_names_the_type_and_sqlstate_only():
    class Diag:
        sqlstate = "22021"

    class Orig(Exception):
        diag = Diag()

    class DataError(Exception):
        orig = Orig("secret value in the statement")

    assert safe_reason(DataError("INSERT ... parameters: secret")) == (
        "DataError: the database refused the record (Orig, SQLSTATE 22021)")
    assert safe_reason(KeyError("secret")) == "KeyError"


def test_replay_reruns_pending_and_failed_events(hub, monkeypatch):
    ids = deliver(hub, [record(i) for i in range(5)] + [record(9, broken=True)])
    assert len(ids) == 6  # nothing processed yet: all pending
    seen = []
    totals = replay(hub, progress=lambda source, counts: seen.append((source, counts["processed"])))
    assert totals == {"processed": 5, "skipped": 0, "failed": 1, "items": 5} and seen == [("feed", 5)]
    assert replay(hub)["processed"] == 0  # nothing pending any more; failed ones only with --failed
    monkeypatch.setattr(PoisonFeed, "normalize", lambda self, raw: [FeedbackIn(
        external_id=raw.payload["id"], channel="survey", occurred_at=dt.datetime(2026, 11, 19, tzinfo=dt.UTC))])
    again = replay(hub, source="feed", include_failed=True)
    assert again == {"processed": 1, "skipped": 0, "failed": 0, "items": 1}
    row = raw_rows(hub)["e009"]
    assert row.status == "processed" and row.error is None and "e009" in items(hub)


def test_replay_command(hub, monkeypatch):
    from hub.cli import main

    deliver(hub, [record(1), record(2, broken=True)])
    monkeypatch.setattr("hub.cli.commands.Ctx.hub", lambda self, **kw: hub)
    result = CliRunner().invoke(main, ["replay", "--source", "feed"])
    assert result.exit_code == 0, result.output
    assert "feed: processed 1, skipped 0, failed 1, items 1" in result.output
    assert "total: processed 1, skipped 0, failed 1, items 1" in result.output
    result = CliRunner().invoke(main, ["replay", "--source", "nope"])
    assert result.exit_code != 0 and "nope" in result.output


def test_import_lines_marked_clean_are_the_plain_ascii_ones_and_dirty_lines_never_land(hub, tmp_path):
    """Import lines that are plain ASCII skip the cleaning walk of their raw event
    (read_records marks them); a line with an escaped NUL or lone surrogate is a
    bad line with its reason, and nothing of it reaches the database."""
    from hub.engine.importer import import_file, read_records

    head = '"channel": "survey", "occurred_at": "2026-11-19T10:00:00Z"'
    lines = [line.replace("HEAD", head) for line in (
        '{"external_id": "plain", HEAD, "text": "fine", "customer": {"name": "Jo Ann"}}',
        '{"external_id": "surrogate", HEAD, "text": "ok", "customer": {"name": "Jo\\udfffe"}}',
        '{"external_id": "nul", HEAD, "text": "x\\u0000y"}',
        '{"external_id": "escaped", HEAD, "text": "caf\\u00e9"}',
        '{"external_id": "accent", HEAD, "text": "caf\u00e9", "customer": {"name": "No\u00ebl"}}',
    )]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [clean for _n, _obj, clean in read_records(path)] == [True, False, False, False, False]
    report = import_file(hub, path, "feed")
    assert report.created == 3
    assert [(n, why.split(":")[0]) for n, why in report.bad] == [(2, "customer.name"), (3, "text")]
    with hub.db.Session() as s:
        payloads = {r.dedupe_key: r.payload for r in s.scalars(select(m.RawEvent))}
        texts = {i.external_id: i.text for i in s.scalars(select(m.FeedbackItem))}
    assert set(payloads) == {"plain", "escaped", "accent"}
    assert payloads["plain"]["customer"] == {"name": "Jo Ann"} and payloads["plain"]["text"] == "fine"
    assert payloads["escaped"]["text"] == payloads["accent"]["text"] == "caf\u00e9"
    assert payloads["accent"]["customer"] == {"name": "No\u00ebl"}
    assert texts == {"plain": "fine", "escaped": "caf\u00e9", "accent": "caf\u00e9"}
