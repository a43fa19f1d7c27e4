"""``q`` from the full-text index (migration 0011, hub.storage.search): the same rows
as ``ILIKE '%q%'``, the index in step with every write, no erased text left in it,
and the planner's statistics refreshed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text, update

from hub.engine.privacy import erase
from hub.engine.retention import run_retention
from hub.engine.scheduler import HubScheduler
from hub.sdk import FakeClock
from hub.storage import models as m
from hub.storage.search import (
    index_new_items,
    item_or_author_match,
    item_text_match,
    matching_customer_ids,
    refresh_statistics,
)
from tests.conftest import TEST_NOW
from tests.helpers import bearer

TEXTS = [
    "Al drie weken storing en niemand belt terug.",
    "Weer STORING in Utrecht?? #fail",
    "De verstoring is voorbij, dank!",
    "Prima service, 100% tevreden",
    "Geen_underscore hier; a \"quoted\" word",
    "Snel geholpen",
    None,
]
TERMS = ["storing", "STORING", "Storing in", "verst", "100%", "_under", '"quoted"', "snel geh", "zz", "qzxwvk",
         "in", "g"]


def _post_all(client, headers, texts, *, email_of=lambda i: f"p{i}@example.nl", when=TEST_NOW):
    for i, body in enumerate(texts):
        payload = {"external_id": f"s-{i}", "channel": "survey", "nps": 3, "occurred_at": when.isoformat(),
                   "customer": {"email": email_of(i), "name": f"Klant {i}"}}
        if body is not None:
            payload["text"] = body
        resp = client.post("/api/v1/feedback", headers=headers, json=payload)
        assert resp.status_code == 201, resp.json


def _expected(texts: list[str | None], term: str) -> set[str]:
    return {f"s-{i}" for i, body in enumerate(texts) if body is not None and term.lower() in body.lower()}


@pytest.fixture
def searchable(app, hub):
    headers = bearer(hub)
    _post_all(app.test_client(), headers, TEXTS)
    return app, hub, headers


def _found(hub, term: str, few: int) -> set[str]:
    F = m.FeedbackItem
    with hub.db.Session() as s:
        return set(s.scalars(select(F.external_id).where(item_text_match(s, term, few=few))))


@pytest.mark.parametrize("term", TERMS)
def test_the_index_finds_what_ilike_finds(searchable, term):
    _, hub, _ = searchable
    expected = _expected(TEXTS, term)
    # few=1000: driven from the full-text index; few=0: the LIKE form (a common term).
    assert _found(hub, term, few=1000) == expected
    assert _found(hub, term, few=0) == expected


def test_a_rare_term_becomes_a_list_of_ids_and_a_common_one_the_like(searchable):
    _, hub, _ = searchable
    with hub.db.Session() as s:
        bind = s.get_bind()
        rare = str(item_text_match(s, "storing", few=1000).compile(bind))
        common = str(item_text_match(s, "storing", few=1).compile(bind))  # three matches are more than one
        miss = str(item_text_match(s, "qzxwvk", few=1000).compile(bind))
    assert "feedback_item.id IN" in rare and "LIKE" not in rare.upper()
    assert "LIKE" in common.upper() and "feedback_item.id IN" not in common
    assert "LIKE" not in miss.upper() and "feedback_item" not in miss  # no query at all


def test_a_common_term_is_remembered_a_while_and_then_asked_again(searchable, monkeypatch):
    """Learning that a term is common reads its first ``few`` + 1 matches; the verdict is kept
    search.COMMON_SECONDS per engine, so the pages and API requests searching it meanwhile ask nothing."""
    from sqlalchemy import event

    from hub.storage import search

    _, hub, _ = searchable
    now = [1000.0]
    monkeypatch.setattr(search, "_monotonic", lambda: now[0])
    statements: list[str] = []
    event.listen(hub.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def asked(term: str, few: int) -> int:
        statements.clear()
        with hub.db.Session() as s:
            condition = str(item_text_match(s, term, few=few).compile(s.get_bind()))
        assert "LIKE" in condition.upper() and "feedback_item.id IN" not in condition  # the common form
        return len(statements)

    assert asked("storing", 1) >= 1  # three matches are more than one
    assert asked("storing", 1) == 0
    now[0] += search.COMMON_SECONDS - 1
    assert asked("storing", 1) == 0
    now[0] += 2
    assert asked("storing", 1) >= 1
    assert _found(hub, "storing", few=1) == _expected(TEXTS, "storing")
    with hub.db.Session() as s:  # a rare term is never remembered: its ids are the query
        assert "feedback_item.id IN" in str(item_text_match(s, "storing", few=1000).compile(s.get_bind()))


def test_api_and_inbox_search_give_the_same_items_and_escape_text(app, hub):
    headers = bearer(hub)
    client = app.test_client()
    texts = ["<script>alert('storing')</script> storing", "geen storing", "alles goed"]
    _post_all(client, headers, texts)
    resp = client.get("/api/v1/feedback?q=Storing", headers=headers)
    assert resp.status_code == 200
    assert {i["external_id"] for i in resp.json["items"]} == {"s-0", "s-1"}
    with hub.db.Session() as s:
        F = m.FeedbackItem
        assert set(s.scalars(select(F.external_id).where(item_or_author_match(s, "storing")))) == {"s-0", "s-1"}
        # Who wrote it: the name or an identity (the "@" of a handle optional).
        assert set(s.scalars(select(F.external_id).where(item_or_author_match(s, "Klant 2")))) == {"s-2"}
        assert set(s.scalars(select(F.external_id).where(item_or_author_match(s, "@p1@example")))) == {"s-1"}
        assert len(list(s.scalars(matching_customer_ids(s, "example.nl")))) == 3


def test_inbox_page_lists_matches_escaped(app, hub):
    headers = bearer(hub)
    client = app.test_client()
    _post_all(client, headers, ["<b>storing</b> qq", "niets"])
    _login(client, hub)
    page = client.get("/?view=feedback&status=all&q=storing").get_data(as_text=True)
    assert "&lt;b&gt;storing&lt;/b&gt;" in page and "<b>storing</b>" not in page
    assert "niets" not in page


def _login(client, hub):
    import re

    from hub.engine.accounts import create_user

    with hub.db.session() as s:
        create_user(s, "zoeker", "zoeker-password-1", "agent")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": "zoeker", "password": "zoeker-password-1", "csrf_token": token})
    assert resp.status_code == 302


def test_the_index_follows_updates_and_deletes(searchable):
    _, hub, _ = searchable
    F = m.FeedbackItem
    with hub.db.session() as s:
        s.execute(update(F).where(F.external_id == "s-5").values(text="nu ook storing"))
        s.execute(update(F).where(F.external_id == "s-0").values(text="opgelost"))
    assert _found(hub, "storing", few=1000) == {"s-1", "s-2", "s-5"}
    assert _found(hub, "opgelost", few=1000) == {"s-0"}
    with hub.db.session() as s:
        s.execute(update(F).where(F.external_id == "s-1").values(text=None))
    assert _found(hub, "storing", few=1000) == {"s-2", "s-5"}


def _fts_blocks(hub) -> bytes:
    with hub.db.engine.connect() as conn:
        return b"".join(bytes(r[0]) for r in conn.exec_driver_sql("SELECT block FROM feedback_item_fts_data"))


UNIQUE = "Zwyqxb"  # its trigrams appear in no other text


def test_erasure_leaves_no_trigram_in_the_full_text_index(make_app):
    app = make_app()
    hub = app.extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("PostgreSQL's trigram index lives in the table's own pages (VACUUM after an erase)")
    _post_all(app.test_client(), bearer(hub), [f"Mijn naam is {UNIQUE} en ik heb storing", "ook storing"],
              email_of=lambda i: "wie@example.nl" if i == 0 else "ander@example.nl")
    assert b"yqx" in _fts_blocks(hub)
    with hub.db.Session() as s:
        cid = s.scalar(select(m.FeedbackItem.customer_id).where(m.FeedbackItem.external_id == "s-0"))
    erase(hub, actor="test", customer_id=cid)
    assert _found(hub, UNIQUE, few=1000) == set()
    assert _found(hub, "storing", few=1000) == {"s-1"}
    blocks = _fts_blocks(hub)
    assert not any(UNIQUE.lower()[i:i + 3].encode() in blocks for i in range(len(UNIQUE) - 2))
    path = hub.db.engine.url.database
    assert UNIQUE.encode() not in open(path, "rb").read()


def test_retention_leaves_no_trigram_in_the_full_text_index(make_app):
    clock = FakeClock(TEST_NOW.timestamp())
    app = make_app(clock=clock, retention={"raw_payload_days": 90, "item_months": 1})
    hub = app.extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("SQLite's FTS segments only")
    old = TEST_NOW - dt.timedelta(days=90)
    _post_all(app.test_client(), bearer(hub), [f"oud bericht {UNIQUE}"], when=old)
    with hub.db.session() as s:  # received long ago, as if stored then
        s.execute(update(m.FeedbackItem).values(received_at=old))
    assert _found(hub, UNIQUE, few=1000) == {"s-0"}
    run_retention(hub)
    assert _found(hub, UNIQUE, few=1000) == set()
    blocks = _fts_blocks(hub)
    assert not any(UNIQUE.lower()[i:i + 3].encode() in blocks for i in range(len(UNIQUE) - 2))


def test_statistics_are_refreshed_and_scheduled(app, hub):
    _post_all(app.test_client(), bearer(hub), TEXTS)
    refresh_statistics(hub.db.engine)
    with hub.db.engine.connect() as conn:
        if hub.db.dialect == "sqlite":
            tables = {r[0] for r in conn.execute(text("SELECT tbl FROM sqlite_stat1"))}
            assert {"feedback_item", "case", "identity"} <= tables
        else:
            analyzed = conn.execute(text("SELECT last_analyze FROM pg_stat_user_tables "
                                         "WHERE relname = 'feedback_item'")).scalar()
            assert analyzed is not None
    sched = HubScheduler(hub)
    sched.start()
    try:
        jobs = {j.id: j for j in sched.scheduler.get_jobs()}
    finally:
        sched.shutdown()
    assert jobs["statistics"].trigger.interval == dt.timedelta(hours=1)


def test_new_items_enter_the_text_index_with_their_batch_and_are_found_before_it(searchable):
    """SQLite indexes feedback text in bulk after each ingest batch
    (search.index_new_items), not by a trigger per row: the index holds every
    stored item, and an item not yet in it is still found (by LIKE)."""
    _, hub, _ = searchable
    if hub.db.dialect != "sqlite":
        pytest.skip("PostgreSQL's trigram index is kept by the table itself")
    with hub.db.session() as s:
        newest = s.scalar(select(func.max(m.FeedbackItem.id)))
        assert s.scalar(select(m.SearchIndexed.upto).where(m.SearchIndexed.name == "feedback_item")) == newest
        # As if the last two items had not been taken in yet.
        s.execute(update(m.SearchIndexed).where(m.SearchIndexed.name == "feedback_item").values(upto=newest - 2))
        s.execute(text("INSERT INTO feedback_item_fts(feedback_item_fts, rowid, text) "
                       "SELECT 'delete', id, text FROM feedback_item WHERE id > :w"),
                  {"w": newest - 2})
    for term in TERMS:
        assert _found(hub, term, few=1000) == _expected(TEXTS, term), term
    with hub.db.session() as s:
        assert index_new_items(s) == 2  # the one without text too (its delete trigger needs it there)
        assert index_new_items(s) == 0
    for term in TERMS:
        assert _found(hub, term, few=1000) == _expected(TEXTS, term), term


def test_deleting_the_newest_indexed_item_lowers_the_mark_so_its_id_reused_is_indexed(searchable):
    """SQLite reuses the largest id after that row is deleted; the reused id must
    not count as already indexed, and the deleted text must leave the index."""
    app, hub, headers = searchable
    if hub.db.dialect != "sqlite":
        pytest.skip("SQLite's bulk-filled FTS only")
    F = m.FeedbackItem
    with hub.db.session() as s:
        newest = s.scalar(select(func.max(F.id)))
        s.execute(update(F).where(F.id == newest).values(text="Vertrouwelijk qzxwvk geheim"))
        s.execute(text("DELETE FROM feedback_item WHERE id = :i"), {"i": newest})
        assert s.scalar(select(m.SearchIndexed.upto).where(m.SearchIndexed.name == "feedback_item")) == newest - 1
    resp = app.test_client().post("/api/v1/feedback", headers=headers, json={
        "external_id": "late", "channel": "survey", "nps": 3, "occurred_at": TEST_NOW.isoformat(),
        "text": "Nieuwe klacht over de monteur", "customer": {"email": "new@example.nl"}})
    assert resp.status_code == 201, resp.json
    with hub.db.Session() as s:
        assert s.scalar(select(F.id).where(F.external_id == "late")) == newest  # the id came back
        hits = s.execute(text("SELECT rowid FROM feedback_item_fts WHERE feedback_item_fts MATCH '\"monteur\"'")).all()
        assert len(hits) == 1
        assert s.execute(text("SELECT rowid FROM feedback_item_fts WHERE feedback_item_fts MATCH '\"qzxwvk\"'")).all() == []


def test_people_stored_outside_a_batch_are_found_and_the_job_takes_them_in(searchable):
    """A customer and an identity written by a merge or a CRM look-up (not an
    ingest batch) are found at once; the scheduler's statistics job indexes them."""
    from hub.engine.scheduler import statistics_job

    _, hub, _ = searchable
    with hub.db.session() as s:
        c = m.Customer(name="Wilhelmina Qwerty")
        s.add(c)
        s.flush()
        s.add(m.Identity(customer_id=c.id, kind="handle", value="@wqwerty_nl"))
        cid = c.id
    for term in ("qwerty", "@wqwerty", "Wilhelmina"):
        with hub.db.Session() as s:
            assert cid in set(s.scalars(matching_customer_ids(s, term))), term
    statistics_job(hub)
    with hub.db.Session() as s:
        for term in ("qwerty", "@wqwerty"):
            assert cid in set(s.scalars(matching_customer_ids(s, term))), term
        if hub.db.dialect == "sqlite":
            hits = s.execute(text("SELECT rowid FROM customer_fts WHERE customer_fts MATCH '\"qwerty\"'")).all()
            assert [h[0] for h in hits] == [cid]


def test_an_item_without_text_can_be_deleted_after_it_was_indexed(searchable):
    """The bulk fill takes rows without text in too: the delete trigger's FTS
    'delete' of a row the index never held corrupts SQLite's FTS table."""
    _, hub, _ = searchable
    F = m.FeedbackItem
    with hub.db.session() as s:
        s.execute(F.__table__.delete().where(F.text.is_(None)))
        s.execute(F.__table__.delete().where(F.external_id == "s-0"))
    assert _found(hub, "storing", few=1000) == _expected(TEXTS, "storing") - {"s-0"}
    if hub.db.dialect == "sqlite":
        with hub.db.Session() as s:
            assert s.execute(text("INSERT INTO feedback_item_fts(feedback_item_fts, rank) VALUES ('integrity-check', 1)")
                             ).rowcount is not None


def _segments(session, fts: str = "feedback_item_fts") -> int:
    """The b-tree segments of an FTS5 index (each has its rows in the ``_idx`` table)."""
    return session.scalar(text(f"SELECT count(DISTINCT segid) FROM {fts}_idx"))


def test_small_batches_keep_the_text_index_merged_in_bounded_steps(make_app, monkeypatch):
    """FTS5's own merging is off (migration 0015: it merged a whole level inside
    one write, 50-90 ms of SQLite's write lock at 10,000 items); each ingest
    does a bounded step of merge work instead.  Without those steps every
    batch would leave a segment of its own; with them they stay few, the
    index stays intact and finds every item."""
    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk import CustomerRef, FeedbackIn
    from hub.storage import search

    hub = make_app().extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("SQLite's FTS5 only")
    with hub.db.Session() as s:
        options = dict(s.execute(text("SELECT k, v FROM feedback_item_fts_config WHERE k IN "
                                      "('automerge', 'crisismerge')")).all())
    assert options == {"automerge": 0, "crisismerge": 64}

    def ingest(first: int, batches: int) -> None:
        for b in range(first, first + batches):
            with hub.db.session() as s:
                Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn(
                    f"m{b}", "survey", TEST_NOW, nps=8, text=f"storing nummer {b} in Utrecht",
                    customer=CustomerRef(email="m@x.nl")))], TEST_NOW)

    ingest(0, 60)
    with hub.db.Session() as s:
        merged = _segments(s)
    monkeypatch.setattr(search, "merge_some", lambda *a, **k: None)  # as if no step were taken
    ingest(60, 60)
    with hub.db.Session() as s:
        unmerged = _segments(s) - merged
    assert merged <= 8 and unmerged >= 50, (merged, unmerged)
    with hub.db.session() as s:
        s.execute(text("INSERT INTO feedback_item_fts(feedback_item_fts, rank) VALUES ('integrity-check', 1)"))
    assert len(_found(hub, "storing nummer", few=1000)) == 120
    assert _found(hub, "nummer 7 in", few=1000) == {"m7"}


ACCENTED = ["ÉÉN STORING IN ZÜRICH", "één storing in zürich", "Ĳsselmeer: geen ĳs", "Straße gesperrt", "plain text"]


def test_postgresql_finds_what_ilike_finds_for_any_letter(make_app):
    """PostgreSQL tests a term as ``lower(text) LIKE lower(term)`` (search.Contains),
    the expression its trigram index is on: the very rows ``ILIKE`` finds, also
    where the case of a letter outside ASCII differs."""
    app = make_app()
    hub = app.extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("SQLite's LIKE folds ASCII only, and so does its lower()")
    _post_all(app.test_client(), bearer(hub), ACCENTED)
    F = m.FeedbackItem
    with hub.db.Session() as s:
        for term in ("één storing", "ZÜRICH", "ĳs", "ĲSSELMEER", "STRASSE", "straße", "%", "_"):
            if term in ("%", "_"):  # ILIKE would take them as wildcards: the texts that hold them
                ilike = {f"s-{i}" for i, body in enumerate(ACCENTED) if term in body}
            else:
                ilike = set(s.scalars(select(F.external_id).where(F.text.ilike(f"%{term}%"))))
            for few in (1000, 0):  # the ids from the index, and the walk's LIKE
                assert _found(hub, term, few=few) == ilike, (term, few)


def test_postgresql_trigram_indexes_serve_the_folded_test(make_app):
    """Each trigram index is on ``lower(column)`` (migrations 0011 and 0018), the
    expression the search names: otherwise the planner estimates a term by
    default (on ``text``: a hundred rows for a word in one item of twenty) and
    no index can serve it.  The case items' index (migration 0020) likewise serves
    the expression search.cases_matching names."""
    from hub.storage.search import Contains, case_item_text

    app = make_app()
    hub = app.extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("PostgreSQL's pg_trgm indexes only")
    C, I, F = m.Customer, m.Identity, m.FeedbackItem  # noqa: E741
    with hub.db.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: show what could serve it
        for table, column, index in ((F, F.text, "ix_feedback_item_text_trgm"), (C, C.name, "ix_customer_name_trgm"),
                                     (I, I.value, "ix_identity_value_trgm"),
                                     (F, case_item_text(), "ix_feedback_item_case_text_trgm")):
            query = select(table.id).where(Contains(column, "qzxwvk")).compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
            assert f"Bitmap Index Scan on {index}" in plan, plan
