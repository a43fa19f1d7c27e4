"""Text search for the inbox's and the API's ``q``, index-backed on both databases.

``q`` means what it always meant: the text contains the term, ignoring case
(``ILIKE '%q%'``), or, in the inbox, the author's name or one of their
identities does.  Migration 0011 indexes those three columns:

* **SQLite**: an FTS5 table per column (``feedback_item_fts`` ...) with the
  ``trigram`` tokenizer, over the rows as external content: new rows go in in
  bulk after each ingest batch (:func:`index_new_items`; rows not yet in are
  found by ``LIKE`` on the short tail above ``search_indexed.upto``), changes
  and deletes by triggers; each such ingest also does a bounded step of the
  index's merge work (:func:`merge_some`, migration 0015).  A trigram phrase
  query finds exactly the rows that contain the term as a substring,
  case-insensitively, so ``MATCH`` answers what ``LIKE`` did without reading
  every row.  Terms under three characters have no
  trigram; they fall back to ``LIKE`` (a scan, as before).
* **PostgreSQL**: ``pg_trgm`` GIN indexes on ``lower(column)``, which serve
  ``lower(column) LIKE lower(term)`` (what ``ILIKE`` finds, :class:`Contains`)
  itself; the planner weighs them with the statistics of that expression, so
  the query stays a ``LIKE``.

The index is only half of it at a million rows: a common word ("storing" is
in one item of twenty) matches tens of thousands of items, and reading them
all from the index to sort them by risk costs more than walking the items in
risk order until a page is full.  So :func:`item_text_match` reads the
matching ids first, up to :data:`FEW` (from the FTS table on SQLite, from the
trigram-indexed ``LIKE`` on PostgreSQL): few, and the query is ``id IN
(<those ids>)`` (read by primary key, a term that matches nothing is no query
at all); many, and it is the plain ``LIKE`` (which the walk in risk order
meets within a page or so).  Both forms find the same rows.

Erasure and retention empty ``text`` with an UPDATE: the trigger deletes the
old trigrams from the index.  FTS5 keeps a deleted row's terms in older index
segments until they merge, so :func:`purge_deleted_text` merges them (FTS
``optimize``) after such a run, with ``secure_delete`` on, and the file's
compaction (``VACUUM``) then drops the freed pages.

Statistics: :func:`refresh_statistics` (``ANALYZE`` and ``PRAGMA optimize``
under an analysis limit on SQLite, ``ANALYZE`` on PostgreSQL) after bulk loads and from the
scheduler (``hub.engine.scheduler.statistics_job``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

from sqlalchemy import Boolean, ColumnElement, any_, case, false, func, literal, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.visitors import InternalTraversal

from hub.storage import models as m

log = logging.getLogger(__name__)

#: table -> the searched column; SQLite's FTS table for it is ``<table>_fts``
#: (created by migration 0011, which keeps its own frozen copy of this map).
TEXT_INDEXES = {"feedback_item": "text", "customer": "name", "identity": "value"}
_MODELS = {"feedback_item": m.FeedbackItem, "customer": m.Customer, "identity": m.Identity}
#: FTS5 keeps a few shadow tables beside each FTS table.
_SHADOWS = ("", "_data", "_idx", "_docsize", "_config", "_content")
#: At most this many matching items: drive the query from the full-text index.
FEW = 2000
#: PostgreSQL: a term the planner expects in more than this many times FEW items
#: is taken as common without reading its first FEW matches (see :func:`_text_ids`).
ESTIMATE_MARGIN = 5
#: SQLite: pages of FTS merge work an ingest does per row it adds to a text
#: index (migration 0015 turned FTS5's own merging off), and at least this many
#: per call: enough to keep the segments as few as FTS5's automerge kept them,
#: each step short (a batch of five rows: at most ~15 ms at 100,000 rows).
MERGE_PAGES_PER_ROW = 10
MERGE_PAGES_MIN = 50
#: A term found common (more than ``few`` matching items) is taken as common for this many
#: seconds, per engine, without asking again: asking reads its first FEW + 1 matches on SQLite
#: (~3.5 ms for "storing" at a million items, in every page and API request that searches it).
#: Only the plan depends on it (both forms find the same rows), and a term rarely stops being common.
COMMON_SECONDS = 60.0
COMMON_TERMS_MAX = 256
_monotonic = time.monotonic  # the tests' clock
#: Rows SQLite's ``PRAGMA optimize`` samples per index (fast on any size).
ANALYSIS_LIMIT = 1000


def is_search_table(name: str) -> bool:
    """Whether ``name`` is one of the FTS tables (or their shadows), which no model declares."""
    return any(name == f"{table}_fts{suffix}" for table in TEXT_INDEXES for suffix in _SHADOWS)


def like_pattern(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Contains(ColumnElement[bool]):
    """``column`` contains ``term``, ignoring case: what ``ILIKE '%term%'`` finds.

    On PostgreSQL it is ``lower(column) LIKE lower(pattern)``: the expression the
    trigram indexes are on (models.trigram_index), and in a multi-byte database
    exactly what ``ILIKE`` does, except that ``ILIKE`` lowers the pattern again
    for every row it tests (a common term's to-do view tests 26,000 case items
    at a million items: 54 ms with ``ILIKE``, 30 ms so).

    On SQLite it is a plain ``LIKE``: SQLite's LIKE already ignores the case of
    ASCII letters, and its ``lower()`` folds only ASCII too, so SQLAlchemy's
    ``lower(x) LIKE lower(y)`` finds the same rows at a function call and a copy
    of every text more (a common term's page reads ~12,000 texts at a million
    items)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no "= 1" after it in a WHERE on SQLite
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("pattern", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Any, term: str):
        self.column, self.pattern = column, literal(like_pattern(term))


@compiles(Contains)
def _contains_folded(element: Contains, compiler, **kw) -> str:
    like = func.lower(element.column).like(func.lower(element.pattern), escape="\\")
    return compiler.process(like, **kw)


@compiles(Contains, "sqlite")
def _contains_sqlite(element: Contains, compiler, **kw) -> str:
    return compiler.process(element.column.like(element.pattern, escape="\\"), **kw)


def _engine_cache(session: Session, name: str) -> dict:
    """A dict kept on the session's engine (what it learns holds for that database)."""
    bind = session.get_bind()
    return getattr(bind, "engine", bind).__dict__.setdefault(name, {})


def _fts_ready(session: Session, table: str) -> bool:
    """SQLite with migration 0011's FTS table for ``table`` (cached per engine)."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    cache = _engine_cache(session, "_hub_fts_tables")
    if table not in cache:
        cache[table] = session.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"),
                                       {"n": f"{table}_fts"}).first() is not None
    return cache[table]


def _phrase(term: str) -> str:
    """``term`` as one FTS5 string (a trigram phrase: the substring, any case)."""
    return '"' + term.replace('"', '""') + '"'


def _fts_ids(table: str, term: str):
    """``SELECT rowid FROM <table>_fts WHERE <table>_fts MATCH <term>``, and the
    rows newer than the index (filled in bulk, :func:`index_new_items`) found by
    LIKE: the same rows either way."""
    fts = f"{table}_fts"
    matched = select(text("rowid")).select_from(text(fts)).where(text(f"{fts} MATCH :fts_{table}")).params(
        **{f"fts_{table}": _phrase(term)})
    model = _MODELS[table]
    column = getattr(model, TEXT_INDEXES[table])
    newer = select(model.id).where(model.id > _indexed_upto(table), Contains(column, term))
    return matched.union_all(newer)


def _indexed_upto(table: str):
    return select(m.SearchIndexed.upto).where(m.SearchIndexed.name == table).scalar_subquery()


def index_new_items(session: Session) -> int:
    """Take the rows stored since the last call into SQLite's text indexes
    (feedback text, customer names, identity values), one statement per
    table; returns how many.

    Why not a trigger per inserted row: it made imports three times slower,
    while one INSERT ... SELECT per ingest batch costs a few per cent.  Under
    SQLite's single writer no lower id can still be uncommitted when this runs
    (ids are reserved under the write lock), so nothing is skipped; a search
    finds the rows not yet taken in by LIKE meanwhile (:func:`_fts_ids`).
    Rows without text go in too: the delete trigger's FTS 'delete' of a row
    the index never held would corrupt it ("database disk image is malformed")."""
    if not _fts_ready(session, "feedback_item"):
        return 0
    # Per table one INSERT ... SELECT above the mark, and the mark moved only
    # when it took rows: a webhook worker's batch of known customers costs 4
    # statements here, not 6 (with new customers 6, not 10); each one is time
    # the batch holds SQLite's write lock.
    conn = session.connection()
    mark = f"coalesce((SELECT upto FROM {m.SearchIndexed.__tablename__} WHERE name = ?), 0)"
    added = 0
    for table, column in TEXT_INDEXES.items():
        took = conn.exec_driver_sql(
            f"INSERT INTO {table}_fts (rowid, {column}) SELECT id, {column} FROM {table} WHERE id > {mark}",
            (table,)).rowcount
        if took:
            conn.exec_driver_sql(f"UPDATE {m.SearchIndexed.__tablename__} SET upto = (SELECT max(id) FROM {table}) "
                                 f"WHERE name = ?", (table,))
            merge_some(conn, table, took)
            added += took
    return added


def merge_some(conn: Connection, table: str, rows: int) -> None:
    """A bounded step of FTS merge work on ``table``'s text index, for ``rows`` just added.

    Why here and bounded: FTS5's own merging (off since migration 0015) did a
    whole level at once inside the write that filled it, and at 10,000 items
    such a write held SQLite's one write lock for 50-90 ms, while every webhook
    delivery waited.  ``merge`` with a page budget continues an unfinished
    merge where the last one stopped, so the work is spread over the writes."""
    pages = max(MERGE_PAGES_MIN, MERGE_PAGES_PER_ROW * rows)
    conn.exec_driver_sql(f"INSERT INTO {table}_fts({table}_fts, rank) VALUES ('merge', ?)", (pages,))


def _usable(session: Session, table: str, term: str) -> bool:
    # Trigram needs three characters; NUL cannot be in an FTS5 string.
    return len(term) >= 3 and "\x00" not in term and _fts_ready(session, table)


def _count_upto(session: Session, ids, limit: int) -> int:
    return session.scalar(select(text("count(*)")).select_from(ids.limit(limit).subquery())) or 0


def column_match(session: Session, table: str, column: Any, key: Any, term: str,
                 few: int = FEW) -> ColumnElement[bool]:
    """``column`` contains ``term`` (:class:`Contains`) on the rows of ``table`` whose primary key is ``key``,
    from the full-text index when that is cheaper (see the module docstring)."""
    like = Contains(column, term)
    if not _usable(session, table, term):
        return like
    ids = _fts_ids(table, term)
    if _count_upto(session, ids, few + 1) > few:
        return like
    return key.in_(ids)


def _few_ids(session: Session, q, few: int) -> list[int] | None:
    """The ids ``q`` selects when there are at most ``few``, else None."""
    ids = session.scalars(q.limit(few + 1)).all()
    return ids if len(ids) <= few else None


def _text_ids(session: Session, term: str, few: int) -> list[int] | None:
    """Ids of the items whose text contains ``term`` when at most ``few``, else None
    (remembered a while: :data:`COMMON_SECONDS`)."""
    common: dict[tuple[str, int], float] = _engine_cache(session, "_hub_common_terms")
    if common.get((term, few), 0.0) > _monotonic():
        return None
    ids = _read_text_ids(session, term, few)
    if ids is None:
        if len(common) >= COMMON_TERMS_MAX:
            common.clear()
        common[(term, few)] = _monotonic() + COMMON_SECONDS
    return ids


def _read_text_ids(session: Session, term: str, few: int) -> list[int] | None:
    """:func:`_text_ids` asked of the database: from the FTS table on SQLite, from the
    trigram index elsewhere."""
    F = m.FeedbackItem
    if _usable(session, "feedback_item", term):
        return _few_ids(session, _fts_ids("feedback_item", term), few)
    if session.get_bind().dialect.name == "sqlite":
        return None  # a short term: no trigram, and a LIKE count would scan every item
    if session.get_bind().dialect.name == "postgresql" and _estimated_matches(session, term) > few * ESTIMATE_MARGIN:
        # A common word ("storing": 54,000 of a million): reading its first 2,001 matches
        # to learn that is a scan of ~40,000 rows (0.1-0.25 s); the planner's estimate
        # (pg_trgm's statistics) says so in a millisecond.  Only the plan depends on it:
        # both forms find the same rows.
        return None
    return _few_ids(session, select(F.id).where(Contains(F.text, term)), few)


def _estimated_matches(session: Session, term: str) -> float:
    """The planner's estimate of the items whose text contains ``term`` (PostgreSQL)."""
    plan = session.execute(text("EXPLAIN (FORMAT JSON) SELECT id FROM feedback_item "
                                "WHERE lower(text) LIKE lower(:p) ESCAPE '\\'"),
                           {"p": like_pattern(term)}).scalar()
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    try:
        return float(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, LookupError, ValueError):
        return 0.0


def _as_condition(ids: list[int]) -> ColumnElement[bool]:
    # A short explicit list: every planner reads it by primary key and sorts the
    # few rows; a subquery or an OR lets it walk the whole risk index instead,
    # which for a term that matches nothing is every item (seconds at a million).
    return m.FeedbackItem.id.in_(sorted(set(ids))) if ids else false()


def item_text_match(session: Session, term: str, few: int = FEW) -> ColumnElement[bool]:
    """Items whose text contains ``term`` (any case)."""
    F = m.FeedbackItem
    ids = _text_ids(session, term, few)
    return _as_condition(ids) if ids is not None else Contains(F.text, term)


def matching_customer_ids(session: Session, term: str, few: int = FEW):
    """Ids of customers whose name, or one of whose identities, contains ``term``
    (the "@" in front of a handle optional): the same people as
    :func:`hub.engine.identity_search.customer_matches`, from the indexes."""
    term = term.strip()
    bare = term.lstrip("@") or term
    C, I = m.Customer, m.Identity  # noqa: E741
    by_name = select(C.id).where(column_match(session, "customer", C.name, C.id, term, few))
    by_identity = select(I.customer_id).where(column_match(session, "identity", I.value, I.id, bare, few))
    return by_name.union(by_identity)


def item_or_author_match(session: Session, term: str, few: int = FEW) -> ColumnElement[bool]:
    """The inbox's ``q``: the text, or who wrote it (a name, an e-mail address or a handle)."""
    return item_or_author_condition(session, term, few)[0]


class TextCondition(NamedTuple):
    """The inbox's ``q`` as an item condition (:func:`item_or_author_condition`)."""

    #: Items whose text contains the term, or whose author matches it.
    condition: ColumnElement[bool]
    #: The form for many matches (a LIKE that a query meets while walking rows in order).
    many: bool
    term: str
    #: The author half of ``condition`` alone (None when nobody matches).
    by_author: ColumnElement[bool] | None


def item_or_author_condition(session: Session, term: str, few: int = FEW) -> TextCondition:
    """:func:`item_or_author_match` and whether it is the form for many matches (the
    LIKE, which a query must meet while walking rows in order: the inbox's case
    views then take the page and its capped count from one query)."""
    if not term.strip():
        return TextCondition(false(), False, term, None)
    F = m.FeedbackItem
    authors = matching_customer_ids(session, term, few)
    ids = _text_ids(session, term, few)
    people = _few_ids(session, authors, few)
    if ids is not None:
        their_items = _few_ids(session, select(F.id).where(F.customer_id.in_(people)), few) if people else []
        if people is not None and their_items is not None and len(ids) + len(their_items) <= few:
            return TextCondition(_as_condition(ids + their_items), False, term, None)
    # Many matches: the walk in risk order meets a page of them soon.  The authors
    # go in as a list when few: as a subquery, PostgreSQL ran its two trigram
    # look-ups again in every query of a page (~9 ms each at a million items).
    by_author = F.customer_id.in_(authors if people is None else people) if people != [] else None
    by_text = Contains(F.text, term)
    return TextCondition(by_text if by_author is None else or_(by_text, by_author), True, term, by_author)


def case_item_text() -> ColumnElement[Any]:
    """An item's text when it belongs to a case, else NULL: the expression migration
    0020's ``ix_feedback_item_case_text_trgm`` indexes (PostgreSQL) under ``lower()``,
    which :class:`Contains` puts around it (models.CASE_ITEM_TEXT is the index's text of it)."""
    F = m.FeedbackItem
    return case((F.case_id.is_not(None), F.text))


def cases_matching(session: Session, match: TextCondition, item_conditions: list[Any]) -> ColumnElement[bool] | None:
    """PostgreSQL, a common term and no other item filter: the cases that hold an
    item whose text contains the term or whose author matches, as
    ``case.id = ANY(ARRAY(<their ids>))``; None where the case views' ``EXISTS``
    per case is the better form.

    Why: ``EXISTS`` per case read every case item's text from the heap (26,540 at a
    million items, ~38 ms for "storing", which 4,240 of 20,680 to-do cases hold),
    because the planner joins through the items' case index in case order.  The
    array's subquery is planned on its own (an init plan), where only the trigram
    index on the case items' text (migration 0020) serves the term: a bitmap of the
    4,280 matching case items, then their cases by primary key (~17 ms).  With a
    channel, category or language filter as well, ``EXISTS`` reads only the case
    items that pass it (those columns are in ix_feedback_item_case_filters; 12-19
    ms), while the planner would AND the trigram bitmap with the channel's 200,000
    items (~35 ms).  SQLite keeps ``EXISTS``: ix_feedback_item_case_text answers
    it from the index.
    """
    if not match.many or item_conditions or session.get_bind().dialect.name != "postgresql":
        return None
    F, C = m.FeedbackItem, m.Case
    case_ids = select(F.case_id).where(Contains(case_item_text(), match.term))
    if match.by_author is not None:
        case_ids = case_ids.union_all(select(F.case_id).where(F.case_id.is_not(None), match.by_author))
    return C.id == any_(func.array(case_ids.scalar_subquery()))


# -- keeping the index clean and the statistics current -----------------------------------
def purge_deleted_text(conn: Connection | Session) -> None:
    """SQLite: merge every FTS index into one segment, which drops the trigrams of
    deleted and emptied rows for good (FTS5 otherwise keeps them in older
    segments until a merge).  Run after erasures and retention, with
    ``secure_delete`` on, so the freed pages are zeroed; no-op elsewhere."""
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name != "sqlite":
        return
    run = conn.execute
    run(text("PRAGMA secure_delete=ON"))
    for table in TEXT_INDEXES:
        fts = f"{table}_fts"
        if run(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": fts}).first():
            run(text(f"INSERT INTO {fts}({fts}) VALUES ('optimize')"))


def refresh_statistics(engine: Engine) -> None:
    """Give the query planner current statistics.

    SQLite: ``ANALYZE`` under ``PRAGMA analysis_limit`` (at most
    :data:`ANALYSIS_LIMIT` rows sampled per index, so it is quick at any
    size), then ``PRAGMA optimize``.  ``optimize`` alone is not enough before
    SQLite 3.46: it only looks at tables the connection has queried, which a
    fresh job connection has not.  PostgreSQL: ``ANALYZE`` (autovacuum does it
    too, but late after a bulk load).
    """
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA optimize")
    elif engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
