"""Bulk writes below the ORM (hub.storage.database): the values read back are
the ones an ORM/Core insert stores, conflicts are skipped or raised as SQLAlchemy's,
and statistics are refreshed on the documented schedule."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hub.storage import models as m
from hub.storage.database import Statistics, analyze, bulk_insert, reserve_ids

RAW = m.RawEvent.__table__
NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)


def _raw(key, payload=None):
    return {"source": "s", "kind": "record", "dedupe_key": key, "payload": payload or {"k": key, "n": [1, 2]},
            "headers": None, "received_at": NOW, "status": "processed"}


def test_rows_read_back_as_an_orm_insert_stores_them(make_app):
    hub = make_app().extensions["hub"]
    with hub.db.session() as s:
        ids = bulk_insert(s, RAW, [_raw("a"), _raw("b", {"text": "café ☕", "nested": {"x": None}})])
        s.add(m.RawEvent(**_raw("c")))
    assert ids[1] == ids[0] + 1 or hub.db.dialect == "postgresql"
    with hub.db.Session() as s:
        rows = {r.dedupe_key: r for r in s.scalars(select(m.RawEvent))}
    assert rows["a"].id == ids[0] and rows["b"].id == ids[1]
    assert rows["b"].payload == {"text": "café ☕", "nested": {"x": None}}
    assert rows["a"].received_at == NOW and rows["a"].received_at.tzinfo is not None
    assert rows["a"].headers == rows["c"].headers  # None stored the way the ORM stores it
    assert rows["c"].id > ids[1]  # the table's own ids continue after the reserved ones


def test_ignored_conflicts_come_back_none_and_others_are_raised(make_app):
    hub = make_app().extensions["hub"]
    with hub.db.session() as s:
        first = bulk_insert(s, RAW, [_raw("a"), _raw("b")], ignore_conflicts=True)
    with hub.db.session() as s:
        again = bulk_insert(s, RAW, [_raw("b"), _raw("c"), _raw(None), _raw(None)], ignore_conflicts=True)
    assert None not in first and again[0] is None and None not in again[1:]
    with hub.db.session() as s:
        with pytest.raises(IntegrityError), s.begin_nested():
            bulk_insert(s, RAW, [_raw("d"), _raw("a")])  # a plain bulk insert meets the unique key
        assert len(reserve_ids(s, RAW, 3)) == 3  # the transaction goes on after the savepoint
    with hub.db.Session() as s:
        keys = sorted(k or "-" for k in s.scalars(select(m.RawEvent.dedupe_key)))
    assert keys == ["-", "-", "a", "b", "c"]  # nothing of the failed insert, every ignored one once


def test_statistics_refresh_after_the_first_rows_then_at_each_doubling(make_app, monkeypatch):
    hub = make_app().extensions["hub"]
    runs = []
    import hub.storage.database as database

    real = database.analyze
    monkeypatch.setattr(database, "analyze", lambda s, tables, loading=False: (
        runs.append((keeper.written, loading)), real(s, tables, loading=loading)))
    keeper = Statistics(hub.db, [RAW], first=1000)
    for _ in range(9):
        keeper.wrote(500)
    keeper.finish()
    # Quick samples while loading, a full one at the end.
    assert runs == [(1000, True), (2000, True), (4000, True), (4500, False)]


def test_a_refresh_while_loading_samples_less_and_leaves_the_setting_as_it_was(make_app):
    hub = make_app().extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("PostgreSQL's statistics target")
    from sqlalchemy import text

    with hub.db.session() as s:
        bulk_insert(s, RAW, [_raw(f"k{i}") for i in range(50)])
    with hub.db.session() as s:
        before = s.scalar(text("SHOW default_statistics_target"))
        analyze(s, [RAW], loading=True)
        during = s.scalar(text("SHOW default_statistics_target"))
    with hub.db.session() as s:
        after = s.scalar(text("SHOW default_statistics_target"))
        analyzed = s.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'raw_event'"))
    assert during == "10" and after == before != "10"
    assert analyzed == 50  # the sample still counts the table


def test_ignoring_insert_twice_in_one_transaction_keeps_only_its_own_rows(make_app):
    """The scratch table of an ignoring insert on PostgreSQL is emptied after each use:
    a second batch in the same transaction returns only its own ids."""
    hub = make_app().extensions["hub"]
    with hub.db.session() as s:
        first = bulk_insert(s, RAW, [_raw("a"), _raw("b")], ignore_conflicts=True)
        s.execute(RAW.delete().where(RAW.c.dedupe_key == "a"))
        second = bulk_insert(s, RAW, [_raw("b"), _raw("c")], ignore_conflicts=True)
    assert None not in first and second[0] is None and second[1] not in first
    with hub.db.Session() as s:  # "a" stays deleted: the first batch's rows were not inserted again
        assert sorted(s.scalars(select(m.RawEvent.dedupe_key))) == ["b", "c"]


def test_keys_query_finds_the_rows_of_the_keys_that_meet_the_condition(make_app):
    from sqlalchemy import text

    from hub.storage.database import keys_query

    hub = make_app().extensions["hub"]
    R = m.RawEvent
    with hub.db.session() as s:
        ids = bulk_insert(s, RAW, [_raw("a"), _raw("b"), {**_raw("c"), "status": "pending"}])
    with hub.db.Session() as s:
        got = s.execute(keys_query(s, R.id, [ids[0], ids[2], ids[2] + 100], (R.id, R.dedupe_key),
                                   text("status = 'processed'"))).all()
        every = s.execute(keys_query(s, R.id, ids[1:], (R.dedupe_key,))).scalars().all()
    assert [tuple(r) for r in got] == [(ids[0], "a")]  # c is pending, the third key matches nothing
    assert sorted(every) == ["b", "c"]


def _identities(customer_ids):
    return [{"customer_id": c, "kind": "email", "value": f"c{c}@example.org", "confidence": 1.0,
             "evidence": None, "created_at": NOW, "match_key": None} for c in customer_ids]


def _new_customers(s, n):
    first = s.scalar(select(m.Customer.id).order_by(m.Customer.id.desc()).limit(1)) or 0
    return bulk_insert(s, m.Customer.__table__, [
        {"ref": f"{first + i:032d}", "name": None, "attributes": {}, "created_at": NOW, "name_key": None}
        for i in range(n)])


def test_key_checks_of_a_bulk_insert_use_the_index_after_the_referenced_table_grew(make_app):
    """PostgreSQL plans each connection's foreign-key checks once: made while the
    referenced table was tiny, that plan is a sequential scan, and without a
    re-plan every later row checked read the whole (grown) table."""
    hub = make_app().extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("PostgreSQL's cached foreign-key check plans")
    from sqlalchemy import text

    def customer_rows_scanned(s) -> int:
        return s.scalar(text("SELECT coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables "
                             "WHERE relname = 'customer'")) or 0

    with hub.db.session() as s:  # one transaction: one connection, its cached plans
        few = _new_customers(s, 20)
        analyze(s, [m.Customer.__table__])  # as an import does after its first rows: "20 rows, 1 page"
        bulk_insert(s, m.Identity.__table__, _identities(few))  # checks planned on a 20-row table
        many = _new_customers(s, 3000)
        before = customer_rows_scanned(s)
        bulk_insert(s, m.Identity.__table__, _identities(many[-300:]))
        scanned = customer_rows_scanned(s) - before
    assert scanned < 3000, f"300 key checks read {scanned:,} customer rows (a scan per check)"
