"""``feedback-hub import --workers N`` (hub.engine.parallel_import): worker processes,
by customer, store what one process stores, report bad lines by the file's own
numbers, count progress to the file's total, and refuse SQLite's one writer."""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.app import create_app
from hub.cli import main
from hub.engine.importer import import_file
from hub.engine.parallel_import import partition_key, worker_of
from hub.sdk import FakeClock
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.helpers import bearer

TEXTS = ["Al drie weken storing en niemand belt terug.", "Prima geholpen, dank!",
         "The engineer never came, I will cancel.", "Snel en vriendelijk.", "Weer een storing, belachelijk."]
#: Where the bad lines go (1-based line numbers) and what is wrong with them.
BAD = {5: "{not json", 17: json.dumps({"external_id": "w", "source": "elsewhere", "channel": "survey"}),
       40: json.dumps({"external_id": "n", "channel": "survey", "nps": 11})}
PEOPLE = 30


def _write(path, prefix: str) -> list[dict]:
    """120 items of 30 customers, interleaved, some of them repeat contacts; the BAD lines among them."""
    items = [{"external_id": f"{prefix}-{i}", "channel": "survey", "nps": (i * 7) % 11, "text": TEXTS[i % len(TEXTS)],
              "occurred_at": (TEST_NOW - dt.timedelta(hours=200 - i)).isoformat(),
              "customer": {"email": f"{prefix}{i % PEOPLE}@Example.nl", "name": f"Klant {i % PEOPLE}"}}
             for i in range(120)]
    lines, good = [], iter(items)
    while len(lines) < len(items) + len(BAD):
        number = len(lines) + 1
        lines.append(BAD[number] if number in BAD else json.dumps(next(good)))
    path.write_text("\n".join(lines) + "\n")
    return items


def _stored(hub, source: str) -> list[tuple]:
    """Per item, in file order: what scoring, cases and identity made of it."""
    F, I = m.FeedbackItem, m.Identity  # noqa: E741
    with hub.db.Session() as s:
        rows = s.execute(select(F.external_id, F.risk, F.category, F.language, F.case_id.is_not(None), F.customer_id)
                         .where(F.source == source)).all()
        emails = dict(s.execute(select(I.customer_id, I.value).where(I.kind == "email")).all())
    out = sorted(rows, key=lambda r: int(r[0].split("-")[1]))
    return [(r[1], r[2], r[3], r[4], emails.get(r[5], "").split("@")[0][1:]) for r in out]


@pytest.fixture
def pg_hub(make_app, database_url):
    app = make_app()
    hub = app.extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("several writers at once: PostgreSQL only")
    make = functools.partial(create_app, {"database_url": database_url, "executor": "inline"},
                             clock=FakeClock(TEST_NOW.timestamp()), load_entry_points=True)
    return hub, make


def test_two_workers_store_what_one_process_stores(pg_hub, tmp_path):
    hub, make = pg_hub
    items = _write(tmp_path / "one.jsonl", "o")
    _write(tmp_path / "two.jsonl", "t")
    assert {worker_of(item, 2) for item in items} == {0, 1}  # both workers have customers
    one = import_file(hub, tmp_path / "one.jsonl", "one")
    seen: list[int] = []
    two = import_file(hub, tmp_path / "two.jsonl", "two", workers=2, make_app=make, progress=seen.append)
    assert (two.lines, two.created, two.duplicates) == (one.lines, one.created, one.duplicates) == (123, 120, 0)
    # The file's own line numbers, whichever process found the line bad.
    assert [n for n, _ in two.bad] == [n for n, _ in one.bad] == [5, 17, 40]
    assert "malformed JSON" in two.bad[0][1] and "elsewhere" in two.bad[1][1] and "nps" in two.bad[2][1]
    assert sum(seen) == two.lines
    # Item by item the same risk, category, language, case and customer (by position: o3 and t3 alike).
    assert _stored(hub, "two") == _stored(hub, "one")
    with hub.db.Session() as s:
        customers = s.scalars(select(m.FeedbackItem.customer_id).where(m.FeedbackItem.source == "two")).all()
    assert len(set(customers)) == PEOPLE
    # Again: nothing new, every good line a duplicate.
    again = import_file(hub, tmp_path / "two.jsonl", "two", workers=2, make_app=make)
    assert (again.created, again.duplicates, len(again.bad)) == (0, 120, 3)


def test_a_customer_goes_to_one_worker_whatever_the_case_of_the_address():
    same = [{"customer": {"email": "Anna@Example.NL"}}, {"customer": {"email": " anna@example.nl", "name": "A"}}]
    assert partition_key(same[0]) == partition_key(same[1]) == "email:anna@example.nl"
    assert partition_key({"external_id": "x-1"}) == "item:x-1"
    assert len({worker_of(obj, 4) for obj in same}) == 1


def test_sqlite_refuses_workers(make_app, tmp_path, database_url):
    hub = make_app().extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("SQLite's refusal")
    _write(tmp_path / "items.jsonl", "s")
    make = functools.partial(create_app, {"database_url": database_url})
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        import_file(hub, tmp_path / "items.jsonl", "feed", workers=2, make_app=make)
    result = CliRunner().invoke(main, ["import", str(tmp_path / "items.jsonl"), "--source", "feed", "--workers", "2"],
                                env={"HUB_DATABASE_URL": database_url})
    assert result.exit_code != 0 and "needs PostgreSQL" in result.output
    with hub.db.Session() as s:
        assert s.scalars(select(m.FeedbackItem.id)).first() is None  # nothing half-written


class _ServerStopped(Exception):
    """A driver error as psycopg raises it when the server stopped the transaction."""

    def __init__(self, sqlstate: str):
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "retried"), [("40P01", True), ("40001", True), ("57014", False)])
def test_a_batch_the_server_stopped_for_a_deadlock_runs_again(app, monkeypatch, sqlstate, retried):
    """Two writers bringing the same new identities can deadlock (the server stops
    one): that batch runs again, as after a unique violation.  Another operational
    error (here a cancelled statement) is raised."""
    from sqlalchemy.exc import OperationalError

    from hub.engine import pipeline

    stops = [sqlstate]

    def stopped_once(b):
        if stops:
            raise OperationalError("COPY identity ...", {}, _ServerStopped(stops.pop()))

    monkeypatch.setattr(pipeline, "STEPS", (stopped_once, *pipeline.STEPS))
    client = app.test_client()
    hub = app.extensions["hub"]
    body = {"external_id": "d-1", "channel": "survey", "nps": 2, "occurred_at": TEST_NOW.isoformat(),
            "customer": {"email": "d1@example.nl"}}
    if retried:
        assert client.post("/api/v1/feedback", json=body, headers=bearer(hub)).status_code == 201
        with hub.db.Session() as s:
            assert s.scalars(select(m.FeedbackItem.external_id)).all() == ["d-1"]
    else:
        with pytest.raises(OperationalError):
            client.post("/api/v1/feedback", json=body, headers=bearer(hub))
        with hub.db.Session() as s:
            assert s.scalars(select(m.FeedbackItem.id)).first() is None


def test_a_worker_that_cannot_start_fails_the_import_and_says_so(pg_hub, tmp_path):
    """A worker that dies without a report (here: its hub cannot be built) fails the
    import with a clear error, and the parent does not hang on the lines queued for it."""
    hub, _make = pg_hub
    _write(tmp_path / "items.jsonl", "x")
    broken = functools.partial(create_app, {"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                                            "executor": "inline"}, load_entry_points=False)
    with pytest.raises(RuntimeError, match="ended without a report|failed"):
        import_file(hub, tmp_path / "items.jsonl", "feed", workers=2, make_app=broken)
