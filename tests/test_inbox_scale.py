"""The inbox's large-table paths on every backend: a case view searching a common
term takes its page and capped count from one query (the same cases,
in the same order, as the page and count queries find), its count stays capped and honest, a page's
control badges cost one query, and a common term's PostgreSQL estimate changes
only the plan, never the rows."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select, update

from hub.storage import models as m
from hub.storage import search
from hub.web import inbox
from tests.test_web_workspace import case_rows, feedback, signed_in

TEXTS = ["Weer storing in Utrecht", "Prima service", "STORING al drie dagen", "Snel geholpen", "verstoring voorbij",
         "Belachelijk", "storing storing", "Geen internet", "De storing is terug", "Niets aan de hand",
         "Storing bij de buren", "Dank"]


@pytest.fixture
def many_cases(app, auth):
    client = app.test_client()
    for i, body in enumerate(TEXTS):
        # A detractor each, a customer each: a case each.
        feedback(client, auth, external_id=f"scale-{i}", channel="survey", nps=i % 3, text=body,
                 customer={"email": f"scale{i}@example.nl", "name": f"Klant {i}"})
    return app


def _common(monkeypatch) -> list[int]:
    """Make every term "common" (the many-matches form, whose case views take
    page and count from one query), and count those queries."""
    monkeypatch.setattr(inbox, "item_or_author_condition",
                        lambda session, term: search.item_or_author_condition(session, term, few=0))
    walks: list[int] = []
    walk = inbox._first_cases

    def counted(*args, **kwargs):
        walks.append(1)
        return walk(*args, **kwargs)

    monkeypatch.setattr(inbox, "_first_cases", counted)
    return walks


def _expected(hub, term: str) -> list[int]:
    """The to-do view's cases holding an item with ``term``, in its order, worked out here."""
    C, F = m.Case, m.FeedbackItem
    with hub.db.Session() as s:
        cases = s.execute(select(C.id, C.sla_due_at, C.risk).where(C.status.in_(inbox.VIEW_STATUSES["todo"]))).all()
        texts = s.execute(select(F.case_id, F.text).where(F.case_id.is_not(None))).all()
    hit = {cid for cid, body in texts if body and term.lower() in body.lower()}
    ordered = sorted(cases, key=lambda c: (c.sla_due_at is None, c.sla_due_at, -c.risk, c.id))
    return [c.id for c in ordered if c.id in hit]


def test_a_case_view_with_a_search_finds_its_cases_in_order(many_cases, monkeypatch):
    hub = many_cases.extensions["hub"]
    expected = _expected(hub, "storing")
    assert len(expected) >= 5
    walks = _common(monkeypatch)
    client = signed_in(many_cases, "walker")
    page = client.get("/?q=storing").get_data(as_text=True)
    assert [r["case"] for r in case_rows(page)] == expected
    n = len(expected)
    assert re.search(rf'<span id="total">{n} cases</span>', page), re.search(r'<span id="total">.*?</span>', page)
    assert walks
    # A rare term (the id-list form) stays one query, with the same answer.
    monkeypatch.undo()
    page = client.get("/?q=storing").get_data(as_text=True)
    assert [r["case"] for r in case_rows(page)] == expected


def test_the_search_stops_at_the_cap_and_says_more_than(many_cases, monkeypatch):
    hub = many_cases.extensions["hub"]
    expected = _expected(hub, "storing")
    monkeypatch.setattr(inbox, "COUNT_CAP", 3)
    monkeypatch.setattr(inbox, "PAGE_SIZE", 2)
    walks = _common(monkeypatch)
    client = signed_in(many_cases, "capped")
    first = client.get("/?q=storing").get_data(as_text=True)
    assert [r["case"] for r in case_rows(first)] == expected[:2]
    assert "more than 3 cases" in first
    # Page 3 lies past the cap: the query reads as far as that page needs.
    third = client.get("/?q=storing&page=3").get_data(as_text=True)
    assert [r["case"] for r in case_rows(third)] == expected[4:6]
    assert len(walks) == 2


def test_other_item_filters_stay_one_query(many_cases, monkeypatch):
    walks = _common(monkeypatch)
    client = signed_in(many_cases, "filterer")
    assert case_rows(client.get("/?channel=survey").get_data(as_text=True))
    assert case_rows(client.get("/?channel=social").get_data(as_text=True)) == []
    assert "0 cases" in client.get("/?channel=social").get_data(as_text=True)
    assert walks == []


def test_a_page_of_cases_asks_for_its_control_badges_once(many_cases):
    hub = many_cases.extensions["hub"]
    with hub.db.session() as s:
        control_id = s.scalars(select(m.Case.id).order_by(m.Case.id)).first()
        s.execute(update(m.Case).where(m.Case.id == control_id).values(control=True))
    client = signed_in(many_cases, "badger")
    client.get("/")
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(hub.db.engine, "before_cursor_execute", seen)
    try:
        for url in ("/", "/?view=feedback&status=all"):
            page = client.get(url).get_data(as_text=True)
            rows = re.findall(r"<tr .*?</tr>", page, re.S)
            marked = [row for row in rows if "badge-control" in row]
            # The control case's row only (the case itself, or its one item).
            assert len(marked) == 1, url
            if url == "/":
                assert f'data-case="{control_id}"' in marked[0]
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", seen)
    per_case = [s for s in statements if re.search(r'SELECT "case".control\s+FROM "case"\s+WHERE "case".id =', s)]
    assert per_case == []
    # Nor a look-up of every open control case: the page's rows were learned.
    every_open = [s for s in statements if re.search(r'WHERE "case".control IS (1|true) AND "case".status IN', s)]
    assert every_open == []


def test_a_common_term_found_without_its_first_matches_finds_the_same_rows(many_cases, monkeypatch):
    hub = many_cases.extensions["hub"]
    F = m.FeedbackItem
    with hub.db.Session() as s:
        want = set(s.scalars(select(F.external_id).where(F.text.ilike("%storing%"))))
        monkeypatch.setattr(search, "ESTIMATE_MARGIN", 0)  # every term "common" by the estimate
        got = set(s.scalars(select(F.external_id).where(search.item_text_match(s, "storing"))))
        both = set(s.scalars(select(F.external_id).where(search.item_or_author_match(s, "storing"))))
    assert got == want == both and len(want) == 6


def test_the_to_do_page_reads_its_cases_in_order_from_the_index(many_cases):
    """SQLite, with the statistics the hub keeps (the scheduler's statistics job): the
    to-do view's page (with an item filter too) walks ix_case_todo_order and stops
    at a page, with no sort of every open case (migration 0016)."""
    hub = many_cases.extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("the plan of SQLite's planner; PostgreSQL's depends on the table's size")
    search.refresh_statistics(hub.db.engine)
    statements: list[tuple[str, tuple]] = []

    def seen(conn, cursor, statement, parameters, *args):
        if statement.startswith('SELECT "case".id \nFROM "case"') and "ORDER BY" in statement:
            statements.append((statement, parameters))

    client = signed_in(many_cases, "planner")
    event.listen(hub.db.engine, "before_cursor_execute", seen)
    try:
        for url in ("/", "/?channel=survey"):
            assert case_rows(client.get(url).get_data(as_text=True))
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", seen)
    assert len(statements) == 2
    with hub.db.engine.connect() as conn:
        for statement, parameters in statements:
            plan = " | ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "ix_case_todo_order" in plan and "TEMP B-TREE" not in plan, (plan, statement)


def _to_do_cases(client, url: str) -> list[int]:
    return [r["case"] for r in case_rows(client.get(url).get_data(as_text=True))]


@pytest.mark.parametrize("term", ["storing", "Klant 1", "scale1@", "qzxwvk"])
def test_a_common_term_alone_finds_the_cases_exists_finds(many_cases, monkeypatch, term):
    """A common term with no other item filter: PostgreSQL takes the matching cases'
    ids first (search.cases_matching, from the case items' trigram index, migration
    0020). It lists the very cases, in the same order, that ``EXISTS`` per case
    finds: by the text, or by the author's name or address ("Klant 1" is also in
    "Klant 10" and "Klant 11")."""
    hub = many_cases.extensions["hub"]
    _common(monkeypatch)
    client = signed_in(many_cases, "arrayer")
    taken: list[bool] = []
    real = search.cases_matching

    def seen(*args):
        found = real(*args)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(inbox, "cases_matching", seen)
    by_array = _to_do_cases(client, f"/?q={term}")
    assert taken and all(taken) == (hub.db.dialect == "postgresql")
    monkeypatch.setattr(inbox, "cases_matching", lambda *args: None)
    assert by_array == _to_do_cases(client, f"/?q={term}")
    if term == "storing":
        assert by_array == _expected(hub, term)
    elif term == "qzxwvk":
        assert by_array == []
    else:
        assert len(by_array) >= 1


def test_a_common_term_with_another_item_filter_keeps_exists(many_cases, monkeypatch):
    """With a channel as well, ``EXISTS`` reads only the case items of that channel
    (ix_feedback_item_case_filters); the array would AND the term with every item of it."""
    _common(monkeypatch)
    client = signed_in(many_cases, "channeler")
    taken: list[object] = []
    real = search.cases_matching
    monkeypatch.setattr(inbox, "cases_matching", lambda *args: taken.append(real(*args)) or taken[-1])
    assert _to_do_cases(client, "/?q=storing&channel=survey") == _expected(many_cases.extensions["hub"], "storing")
    assert _to_do_cases(client, "/?q=storing&channel=social") == []
    assert taken and all(found is None for found in taken)
