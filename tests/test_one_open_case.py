"""At most one open case per customer, enforced by the database (issue 15).

Concurrent detractor answers of one customer, each its own webhook delivery
processed in its own transaction (the path webhooks and workers take:
:func:`~hub.engine.raw_events.store_pending`, then
:func:`~hub.engine.raw_events.process_raw_events`), converge on one open case
with every item on it and one callback.  On PostgreSQL the race is real (100
threads, then 16 processes); SQLite serializes writers, a few threads check the
same path there.  Migration 0010 repairs a database that already holds several
open cases of one customer before it creates the index.
"""

from __future__ import annotations

import datetime as dt
import importlib
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from hub.engine import cases as lifecycle
from hub.engine.raw_events import process_raw_events, store_pending
from hub.sdk import CustomerRef, FeedbackIn, SourceConnector, hookimpl
from hub.sdk.schema import CASE_STATUSES, OPEN_CASE_STATUSES, RawIn
from hub.storage import models as m
from hub.storage.database import make_engine
from hub.storage.migrate import upgrade
from tests.conftest import TEST_NOW

EMAIL = "dezelfde.klant@example.nl"


class AnswerFeed(SourceConnector):
    """One NPS 2 answer per raw event, always from the same customer."""

    plugin_name = "onecase_feed"
    default_base_url = "http://invalid"

    def streams(self):
        return []

    def normalize(self, raw):
        p = raw.payload
        nps = p.get("nps", 2)
        said = "Slechte service" if nps <= 6 else "Prima, dank je"
        return [FeedbackIn(external_id=p["id"], channel="survey", nps=nps, occurred_at=TEST_NOW - dt.timedelta(hours=1),
                           text=f"{said} ({p['id']})", customer=CustomerRef(email=EMAIL, name="Klant"))]


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [AnswerFeed]


@pytest.fixture
def app(make_app):
    return make_app(plugins=(Plugin(),), sources={"feed": {"plugin": "onecase_feed"}})


def deliver(hub, n: int, nps: int = 2) -> None:
    """The webhook's write (store pending, committed), then the worker's processing."""
    ids = store_pending(hub.db, "feed", [RawIn(payload={"id": f"a{n:03d}", "nps": nps}, dedupe_key=f"a{n:03d}")],
                        hub.clock.utcnow())
    counts = process_raw_events(hub, "feed", ids)
    assert counts == {"processed": 1, "skipped": 0, "failed": 0, "items": 1}, counts


def known_customer(hub) -> None:
    """A promoter's answer makes the customer, no case: then nothing serializes the detractors (no identity
    insert to collide on), the race the index must arbitrate."""
    deliver(hub, 999, nps=9)
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.Customer)) == 1
        assert s.scalar(select(func.count()).select_from(m.Case)) == 0


def concurrently(hub, n: int) -> None:
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait(timeout=30)  # all at once: every one looks up "no open case" before any commits
        deliver(hub, i, nps=i % 7)  # 0-6: detractors all, of different risks

    with ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(one, i) for i in range(n)]:
            f.result()


def assert_one_case(hub, items: int) -> None:
    with hub.db.Session() as s:
        cases = s.execute(select(m.Case.id, m.Case.status)).all()
        assert len(cases) == 1, cases
        case_id, status = cases[0]
        assert status in OPEN_CASE_STATUSES
        assert s.scalar(select(func.count()).select_from(m.Customer)) == 1
        on_case = s.scalars(select(m.FeedbackItem.case_id)).all()
        assert len(on_case) == items and set(on_case) == {case_id}  # no item lost, none case-less
        followups = s.execute(select(m.Followup.case_id, m.Followup.idempotency_key)).all()
        assert followups == [(case_id, f"hub-case-{case_id}-callback")]
        assert s.scalar(select(func.count()).select_from(m.RawEvent).where(m.RawEvent.status != "processed")) == 0
        # Whoever won the race, the batches that joined raised the case to their items' highest risk.
        assert len(set(s.scalars(select(m.FeedbackItem.risk)))) > 1  # (they do differ)
        risk = s.scalar(select(m.Case.risk))
        assert risk == s.scalar(select(func.max(m.FeedbackItem.risk))), risk


@pytest.mark.parametrize("customer", ["known", "new"])
def test_concurrent_detractors_of_one_customer_give_one_case_and_one_callback(hub, customer):
    n = 100 if hub.db.dialect == "postgresql" else 4
    if customer == "known":
        known_customer(hub)
    concurrently(hub, n)
    assert_one_case(hub, n + (customer == "known"))


def _child(hub, first: int, start) -> None:
    hub.db.engine.dispose(close=False)  # the parent's pooled connections are not this process's
    start.wait(timeout=30)
    for i in range(first, first + 2):
        deliver(hub, i)
    os._exit(0)  # no atexit handlers of the parent (its pytest, its servers)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_processes_give_one_case_and_one_callback(hub):
    if hub.db.dialect != "postgresql":
        pytest.skip("processes race for real only on PostgreSQL")
    known_customer(hub)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(16)
    hub.db.engine.dispose()
    procs = [ctx.Process(target=_child, args=(hub, 2 * i, start)) for i in range(16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 16
    assert_one_case(hub, 33)


def test_a_closed_case_does_not_count_and_a_new_one_opens(hub):
    deliver(hub, 1)
    with hub.db.session() as s:
        case = s.scalars(select(m.Case)).one()
        lifecycle.transition(case, "closed", actor="test", now=TEST_NOW)
    deliver(hub, 2)
    with hub.db.Session() as s:
        assert sorted(s.scalars(select(m.Case.status))) == ["closed", "new"]


def test_reopening_while_another_case_is_open_is_refused(hub):
    deliver(hub, 1)
    with hub.db.session() as s:
        lifecycle.transition(s.scalars(select(m.Case)).one(), "closed", actor="test", now=TEST_NOW)
    deliver(hub, 2)
    with hub.db.Session() as s:
        closed = s.scalars(select(m.Case).where(m.Case.status == "closed")).one()
        with pytest.raises(lifecycle.InvalidTransition, match="already has open case"):
            lifecycle.reopen(closed, actor="test", now=TEST_NOW)
        s.rollback()


def _closed_and_open(hub) -> tuple[int, int]:
    deliver(hub, 1)
    with hub.db.session() as s:
        lifecycle.transition(s.scalars(select(m.Case)).one(), "closed", actor="test", now=TEST_NOW)
    deliver(hub, 2)
    with hub.db.Session() as s:
        return (s.scalar(select(m.Case.id).where(m.Case.status == "closed")),
                s.scalar(select(m.Case.id).where(m.Case.status == "new")))


def test_the_api_and_the_ui_refuse_a_reopen_beside_an_open_case(hub, client, auth):
    from tests.test_web_ui import add_user, login, post

    closed, open_ = _closed_and_open(hub)
    r = client.patch(f"/api/v1/cases/{closed}", json={"status": "assigned"}, headers=auth)
    assert r.status_code == 409 and f"open case {open_}" in r.get_data(as_text=True)
    add_user(hub, "alice", "agent")
    assert login(client, "alice").status_code == 302
    assert post(client, f"/cases/{closed}/reopen").status_code == 302
    page = client.get(f"/cases/{closed}").get_data(as_text=True)
    assert f"This customer already has open case {open_}" in page
    with hub.db.Session() as s:
        assert s.get(m.Case, closed).status == "closed"


def test_the_database_refuses_a_second_open_case(hub):
    deliver(hub, 1)
    with hub.db.Session() as s:
        customer_id = s.scalar(select(m.Customer.id))
        with pytest.raises(IntegrityError):
            s.execute(insert(m.Case.__table__).values(customer_id=customer_id, status="assigned", priority="normal",
                                                      risk=1, opened_at=TEST_NOW, updated_at=TEST_NOW))
        s.rollback()
        # A closed one is history, not a second open case.
        s.execute(insert(m.Case.__table__).values(customer_id=customer_id, status="closed", priority="normal",
                                                  risk=1, opened_at=TEST_NOW, updated_at=TEST_NOW))
        s.commit()


# -- migration 0010's repair ------------------------------------------------------------
def _seed_duplicates(conn) -> dict[str, int]:
    """Before 0010: one customer with three open cases (items and callbacks on two), one with a single case."""
    sqlite = conn.dialect.name == "sqlite"

    def t(hours: int) -> dt.datetime:
        at = TEST_NOW + dt.timedelta(hours=hours)
        return at.replace(tzinfo=None) if sqlite else at

    def row(table: str, **values) -> int:
        cols = ", ".join(f'"{k}"' for k in values)
        params = ", ".join(f":{k}" for k in values)
        return conn.execute(text(f'INSERT INTO "{table}" ({cols}) VALUES ({params}) RETURNING id'), values).scalar_one()

    ids: dict[str, int] = {}
    for name in ("dup", "single"):
        ids[name] = row("customer", ref=name, attributes="{}", created_at=t(0))
    case = {"priority": "normal", "risk": 10, "updated_at": t(0), "control": False, "version": 0}
    ids["first"] = row("case", customer_id=ids["dup"], status="assigned", opened_at=t(1), owner=None,
                       sla_due_at=t(30), **case)
    ids["second"] = row("case", customer_id=ids["dup"], status="new", opened_at=t(2), sla_due_at=t(20),
                        **{**case, "risk": 80, "priority": "urgent"})
    ids["third"] = row("case", customer_id=ids["dup"], status="scheduled", opened_at=t(3), owner="agent1", **case)
    ids["closed"] = row("case", customer_id=ids["dup"], status="closed", opened_at=t(0), closed_at=t(0), **case)
    ids["only"] = row("case", customer_id=ids["single"], status="new", opened_at=t(1), **case)
    for i, key in enumerate(("first", "second", "second", "third", "closed")):
        row("feedback_item", source="s", external_id=f"x{i}", channel="survey", occurred_at=t(0),
            received_at=t(0), risk=0, risk_reasons="[]", extra="{}", customer_id=ids["dup"], case_id=ids[key])
    fu = {"sink": "local", "due_at": t(40), "attempts": 0, "next_attempt_at": t(0), "created_at": t(0),
          "sync_pending": False, "sync_attempts": 0}
    ids["fu_second"] = row("followup", case_id=ids["second"], idempotency_key="k2", status="pending", **fu)
    ids["fu_third"] = row("followup", case_id=ids["third"], idempotency_key="k3", status="sent",
                          external_id="crm-3", crm_status="NOT_STARTED", **fu)
    ids["fu_done"] = row("followup", case_id=ids["closed"], idempotency_key="k0", status="done", **fu)
    return ids


def _check_repair(conn, ids: dict[str, int]) -> None:
    cases = dict(conn.execute(text('SELECT id, status FROM "case"')).all())
    assert cases == {ids["first"]: "assigned", ids["second"]: "closed", ids["third"]: "closed",
                     ids["closed"]: "closed", ids["only"]: "new"}
    kept = conn.execute(text('SELECT risk, priority, sla_due_at, owner FROM "case" WHERE id = :i'),
                        {"i": ids["first"]}).one()
    # The highest risk and priority, the first owner, the earliest SLA (the second case's, 20 hours on).
    assert (kept.risk, kept.priority, kept.owner) == (80, "urgent", "agent1")
    assert str(kept.sla_due_at)[:13] == (TEST_NOW + dt.timedelta(hours=20)).isoformat(" ")[:13]
    outcomes = conn.execute(text('SELECT outcome FROM "case" WHERE id IN (:a, :b)'),
                            {"a": ids["second"], "b": ids["third"]}).scalars().all()
    assert outcomes == ["merged", "merged"]
    items = dict(conn.execute(text("SELECT external_id, case_id FROM feedback_item")).all())
    assert items == {"x0": ids["first"], "x1": ids["first"], "x2": ids["first"], "x3": ids["first"],
                     "x4": ids["closed"]}  # a closed case keeps its history
    fus = {r.id: r for r in conn.execute(text("SELECT id, case_id, status, cancelled_at, sync_pending FROM followup"))}
    # One live callback, the earliest live one, now on the kept case; the other cancelled, its CRM task withdrawn.
    assert (fus[ids["fu_second"]].case_id, fus[ids["fu_second"]].status) == (ids["first"], "pending")
    third = fus[ids["fu_third"]]
    assert (third.case_id, third.status, bool(third.sync_pending)) == (ids["third"], "dead", True)
    assert third.cancelled_at is not None
    assert fus[ids["fu_done"]].status == "done"
    audit = conn.execute(text("SELECT case_id, action, actor FROM audit_event ORDER BY id")).all()
    assert sorted((a.case_id, a.action) for a in audit) == sorted(
        [(ids["second"], "case.merged"), (ids["third"], "case.merged"),
         (ids["first"], "case.merged_in"), (ids["first"], "case.merged_in")])
    assert {a.actor for a in audit} == {"migration 0010"}


def _check_index(conn, ids: dict[str, int]) -> None:
    if conn.dialect.name == "sqlite":
        ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": m.ONE_OPEN_CASE_INDEX})
    else:
        ddl = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": m.ONE_OPEN_CASE_INDEX})
    head, where = ddl.scalar_one().split("WHERE", 1)
    # Exactly the statuses the pipeline treats as open (Alembic's drift check does not compare predicates).
    assert "UNIQUE" in head.upper()
    assert [s for s in CASE_STATUSES if f"'{s}'" in where] == list(OPEN_CASE_STATUSES)
    with pytest.raises(IntegrityError), conn.begin_nested():  # and it holds
        conn.execute(text('UPDATE "case" SET status = \'new\' WHERE id = :i'), {"i": ids["second"]})


def test_migration_repairs_duplicate_open_cases(tmp_path):
    """The real chain on SQLite: 0009, duplicates, then 0010."""
    engine = make_engine(f"sqlite:///{tmp_path / 'repair.db'}")
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            ids = _seed_duplicates(conn)
        upgrade(engine, "0010")
        with engine.begin() as conn:
            _check_repair(conn, ids)
            _check_index(conn, ids)
    finally:
        engine.dispose()


def test_migration_repair_on_each_backend(database_url):
    """0010's upgrade on each backend's migrated test database, in one transaction rolled back after
    (DDL is transactional on both): without the index, duplicates seeded, the revision's upgrade run."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    revision = importlib.import_module("hub.storage.migrations.versions.0010_one_open_case")
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            outer = conn.begin()
            conn.execute(text(f'DROP INDEX "{m.ONE_OPEN_CASE_INDEX}"'))
            ids = _seed_duplicates(conn)
            with Operations.context(MigrationContext.configure(conn)):
                revision.upgrade()
            _check_repair(conn, ids)
            _check_index(conn, ids)
            outer.rollback()
    finally:
        engine.dispose()
