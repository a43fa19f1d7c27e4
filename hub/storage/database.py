"""Database engine and sessions (SQLAlchemy 2.0), as a Flask-style extension.

``with db.session() as s:`` is a unit of work (commit on success, rollback on
error); ``db.Session()`` a plain session, ``db.ReadSession()`` one for reads
that never takes SQLite's write lock, ``db.PageSession()`` such a one for web
pages and API reads (on SQLite it maps the file).  The web UI and the API
keep one session per request and close it at teardown (``db_session()`` in
:mod:`hub.web.common` and :mod:`hub.api.routes`).  Hooks that must only fire
once data is durable are queued with :func:`after_commit` and run by a
session event.  Without a ``database_url`` the hub uses SQLite in
``instance/hub.db``.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def default_database_url(instance_path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(instance_path) / 'hub.db'}"


#: Bytes of the SQLite file a connection serving pages maps into memory (``sqlite_mmap_mb``).
DEFAULT_MMAP_BYTES = 1024 * 2**20


def _sqlite_pragmas(engine: Engine, mmap_bytes: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, issue BEGIN (savepoints work then).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # 32 MB of page cache per connection (SQLite's default is 2 MB), taken as pages are read:
        # with the default, the text index's pages were read again for every batch once a few
        # thousand large items had pushed them out, and a webhook worker's batch grew slower
        # with every 1,000 items (0.6 -> 2 ms for its text index step alone at 10,000).
        cur.execute("PRAGMA cache_size=-32000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front: a deferred transaction that
        # reads, then writes, fails with SQLITE_BUSY when another writer got in
        # between; this way it waits (busy_timeout) instead.  Read-only
        # sessions (db.ReadSession) begin deferred, so pages and API reads
        # never wait for an import to commit (WAL readers see a snapshot).
        options = conn.get_execution_options()
        if options.get("hub_pages") and mmap_bytes and not conn.info.get("hub_mmap"):
            # Pages read rows all over a large file (an inbox page at a million items:
            # ~12,000 index entries and their rows); mapped, SQLite reads them in place
            # instead of copying each 4 kB page through a read() into its cache:
            # that query 27 -> 14 ms.  Only connections that serve pages map the file,
            # once each: a file-backed mapping counts as the process's resident
            # memory, which an import or backfill process should not grow by.
            conn.exec_driver_sql(f"PRAGMA mmap_size={int(mmap_bytes)}")
            conn.info["hub_mmap"] = True
        readonly = options.get("hub_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str, mmap_bytes: int = DEFAULT_MMAP_BYTES, **kwargs) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine, mmap_bytes)
    return engine


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction committed."""
    session.info.setdefault("after_commit", []).append(callback)


class Database:
    def __init__(self, url: str, sqlite_mmap_bytes: int = DEFAULT_MMAP_BYTES):
        self.url = url
        self.engine = make_engine(url, sqlite_mmap_bytes, pool_pre_ping=True)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        #: For work that only reads (GET requests, reports): never takes the
        #: SQLite write lock.  Writing through it is a bug (and fails on SQLite
        #: with "database is locked" under load rather than silently).
        self.ReadSession = sessionmaker(self.engine.execution_options(hub_readonly=True), expire_on_commit=False)
        #: A ReadSession for web pages and API reads: on SQLite its connection maps
        #: the file into memory (``sqlite_mmap_mb``), see ``_sqlite_pragmas``.
        self.PageSession = sessionmaker(self.engine.execution_options(hub_readonly=True, hub_pages=True),
                                        expire_on_commit=False)

        @event.listens_for(self.Session, "after_commit")
        def _run_after_commit(session):
            if session.in_nested_transaction():
                return  # SQLAlchemy fires this on releasing a SAVEPOINT too: nothing is committed yet
            callbacks = session.info.pop("after_commit", [])
            for cb in callbacks:
                try:
                    cb()
                except Exception:  # an event handler must never undo the commit
                    log.exception("after-commit callback failed")

        @event.listens_for(self.Session, "after_rollback")
        def _drop_after_commit(session):
            session.info.pop("after_commit", None)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A job's session: commits on success, rolls back on error."""
        with self.Session() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def insert_ignore(session: Session, table):
    """INSERT ... ON CONFLICT DO NOTHING for the session's dialect."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return insert(table)


# -- bulk writes below the ORM ------------------------------------------------------
# Why: SQLAlchemy's executemany of dicts pays per row and per parameter (key
# look-ups, type processing through the compiled statement, "insertmanyvalues"
# re-batching with RETURNING), about a fifth of an import on SQLite; on
# PostgreSQL its 1,000-row multi-VALUES statements of ~19k parameters are parsed
# anew by psycopg for every batch.  These helpers convert each column once with
# the very bind processor SQLAlchemy would use (so stored values are identical:
# JSON text, UTC timestamps), take ids from the table's own sequence up front
# (no RETURNING needed) and hand plain tuples to the driver: SQLite
# ``executemany``, PostgreSQL ``COPY`` for pure appends or a pipelined
# ``executemany`` where a conflict must be ignored.


def _quoted(dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def reserve_ids(session: Session, table, n: int) -> list[int]:
    """``n`` new primary keys of ``table`` (an ``id`` column), in ascending order.

    PostgreSQL: drawn from the column's sequence (safe beside concurrent writers).
    SQLite: the next ones after the largest id; exact because every write
    transaction of the hub holds SQLite's write lock from BEGIN IMMEDIATE on.
    """
    if n <= 0:
        return []
    conn = session.connection()
    dialect = conn.dialect
    name = _quoted(dialect, table.name)
    if dialect.name == "postgresql":
        seq = f"pg_get_serial_sequence('{name}', 'id')"
        return [v for (v,) in conn.exec_driver_sql(
            f"SELECT nextval({seq}) FROM generate_series(1, %(n)s)", {"n": n})]
    if dialect.name == "sqlite":
        start = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {name}").scalar_one()
        return list(range(start + 1, start + 1 + n))
    raise NotImplementedError(f"reserve_ids on {dialect.name}")


def _plain_rows(dialect, table, columns: list[str], rows) -> list[tuple]:
    """Rows as tuples of driver values, each column through its bind processor once."""
    procs = [table.c[c].type._cached_bind_processor(dialect) for c in columns]
    if not any(procs):
        return [tuple(r[c] for c in columns) for r in rows]
    out_columns = []
    for c, p in zip(columns, procs, strict=True):
        if p is None:
            out_columns.append([r[c] for r in rows])
            continue
        # A value repeated from the row before (the batch's one ``now``, a
        # source's status) is converted once.
        values, last, done = [], object(), None
        for r in rows:
            v = r[c]
            if v is not last:
                last, done = v, p(v)
            values.append(done)
        out_columns.append(values)
    return list(zip(*out_columns, strict=True))


def bulk_insert(session: Session, table, rows, *, ignore_conflicts: bool = False) -> list[int | None]:
    """Insert ``rows`` (mappings with the same keys) and return each one's id.

    Rows without an ``id`` get one from :func:`reserve_ids`.  With
    ``ignore_conflicts`` a row that meets a unique constraint is skipped
    (``ON CONFLICT DO NOTHING``) and its id comes back None.  A constraint
    violation otherwise raises SQLAlchemy's ``IntegrityError``, as a Core
    insert would, so the pipeline's retry of a conflicting batch still works.
    """
    rows = list(rows)
    if not rows:
        return []
    if "id" not in rows[0]:
        rows = [{**r, "id": i} for r, i in zip(rows, reserve_ids(session, table, len(rows)), strict=True)]
    ids: list[int | None] = [r["id"] for r in rows]
    conn = session.connection()
    dialect = conn.dialect
    columns = list(rows[0])
    data = _plain_rows(dialect, table, columns, rows)
    name = _quoted(dialect, table.name)
    cols = ", ".join(_quoted(dialect, c) for c in columns)
    if dialect.name == "postgresql":
        _replan_key_checks(conn)
        if ignore_conflicts:  # COPY into a scratch table, then one INSERT ... SELECT
            return _insert_staged(conn, table, columns, data, ids)
        _copy(conn, f"COPY {name} ({cols}) FROM STDIN", data)
        return ids
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {name} ({cols}) VALUES ({', '.join([mark] * len(columns))})"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    conn.exec_driver_sql(sql, data)
    if ignore_conflicts:
        landed = _present_ids(conn, name, [i for i in ids if i is not None])
        ids = [i if i in landed else None for i in ids]
    return ids


def _replan_key_checks(conn) -> None:
    """PostgreSQL: the foreign-key checks of the rows written next are planned for the tables as they are now.

    Why: the server checks each new row's foreign keys with a plan it makes
    once per connection and keeps (a generic plan).  Made while a bulk
    load's first batches ran, when the referenced ``case`` table held a few
    dozen rows, that plan was a sequential scan, and it stayed one as the
    table grew: a 100,000-item import read 121 million ``case`` rows for
    27,000 checks, each batch's follow-up COPY took longer than the last
    (10 ms up to 110 ms) and the item COPY 7.2 s in all.  ``DISCARD PLANS``
    (this connection's cached plans only; prepared statements stay) makes
    the server plan them again at their next use, on the current sizes:
    index look-ups, the follow-up COPYs flat at 5-8 ms, the item COPYs 4.8 s.
    Cheaper than ``plan_cache_mode = force_custom_plan`` (a plan per row
    checked: 6.6 s).
    """
    conn.exec_driver_sql("DISCARD PLANS")


def _insert_staged(conn, table, columns: list[str], data: list[tuple], ids: list[int | None]) -> list[int | None]:
    """PostgreSQL: COPY the rows into a temporary table of the same columns (one
    per connection, emptied at commit and after each use), then ``INSERT ...
    SELECT ... ON CONFLICT DO NOTHING RETURNING id`` from it.  Why: one
    ``INSERT ... SELECT * FROM unnest(:col1, :col2, ...)`` of one array per
    column cost the server about three times as much (1,000 raw events:
    ~0.17 s against ~0.05 s), a sixth of a 100k import.  The scratch table has
    just these columns and no constraints (named by them, so another set of
    columns gets its own)."""
    dialect = conn.dialect
    name = _quoted(dialect, table.name)
    cols = ", ".join(_quoted(dialect, c) for c in columns)
    stage = _quoted(dialect, f"hub_stage_{table.name}_{zlib.crc32(cols.encode()):08x}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                         f"SELECT {cols} FROM {name} WITH NO DATA")
    _copy(conn, f"COPY {stage} ({cols}) FROM STDIN", data)
    landed = {v for (v,) in conn.exec_driver_sql(
        f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING RETURNING id")}
    conn.exec_driver_sql(f"DELETE FROM {stage}")
    return [i if i in landed else None for i in ids]


def _present_ids(conn, name: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are in the table: the rows an ignoring insert really wrote."""
    if conn.dialect.name == "postgresql":
        return {v for (v,) in conn.exec_driver_sql(f"SELECT id FROM {name} WHERE id = ANY(%(ids)s)", {"ids": ids})}
    lo, hi = min(ids), max(ids)  # reserved ids are one ascending range here
    return {v for (v,) in conn.exec_driver_sql(f"SELECT id FROM {name} WHERE id BETWEEN ? AND ?", (lo, hi))}


def _copy(conn, sql: str, data: list[tuple]) -> None:
    """PostgreSQL COPY ... FROM STDIN of ``data`` in the connection's transaction;
    driver errors become SQLAlchemy's (IntegrityError for a unique violation)."""
    from sqlalchemy import exc

    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row in data:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as e:
        raise exc.DBAPIError.instance(sql, None, e, conn.dialect.loaded_dbapi.Error) from e


#: PostgreSQL's sample while a bulk load is still running (``default_statistics_target``;
#: the server's default is 100, a sample of 30,000 rows per table).
LOADING_STATISTICS_TARGET = 10


def analyze(session: Session, tables, *, loading: bool = False) -> None:
    """Bring the planner's statistics up to date for ``tables`` (after a bulk load).

    Without them PostgreSQL plans ``source = ? AND key IN (...)`` on a table it
    believes empty as a scan of the whole source, which makes an import slower
    with every page; SQLite's planner likewise picks indexes blind.

    ``loading``: a refresh in the middle of a load, which needs the tables'
    sizes and the look-up columns' spread, not fine histograms: PostgreSQL
    samples 3,000 rows per table instead of 30,000 (the refreshes at 32k and
    64k rows of a 100k import took 0.4-0.6 s each); the one at the end is full.
    """
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name == "postgresql":
        if loading:
            conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {LOADING_STATISTICS_TARGET}")
        conn.exec_driver_sql("ANALYZE " + ", ".join(_quoted(dialect, t.name) for t in tables))
    elif dialect.name == "sqlite":
        # A sampled ANALYZE (rows per index): as good for choosing an index, and
        # its cost stays flat however large the table grows.
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        for t in tables:
            conn.exec_driver_sql(f"ANALYZE {_quoted(dialect, t.name)}")


class Statistics:
    """When a bulk load refreshes the planner's statistics (:func:`analyze`).

    Once the load wrote ``first`` rows (a table that was empty or small has
    grown a lot relative to what the planner believes), then each time the
    count doubled, and at the end when anything over ``first`` was written: a
    handful of ANALYZEs per import of any size, and the look-ups of every later
    page are planned on current figures (index look-ups, not scans).
    """

    def __init__(self, db: Database, tables, first: int = 1000):
        self.db, self.tables, self.first = db, list(tables), first
        self.written = 0
        self._next = first
        self._analyzed_at = 0

    def wrote(self, n: int) -> None:
        """``n`` more rows were committed."""
        self.written += n
        if self.written >= self._next:
            self._run(loading=True)
            while self._next <= self.written:
                self._next *= 2

    def finish(self) -> None:
        if self.written >= self.first and self._analyzed_at != self.written:
            self._run()

    def _run(self, loading: bool = False) -> None:
        with self.db.session() as s:
            analyze(s, self.tables, loading=loading)
        self._analyzed_at = self.written


def among(session: Session, column, values):
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``: one parameter
    whatever the count (one statement shape for psycopg to prepare, not a
    thousand), and with the other equality columns of a unique index, an index
    look-up of every key."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def pairs_query(session: Session, columns, pairs, select_columns):
    """``SELECT select_columns WHERE (col1, col2) IN pairs``, served by a unique
    btree index on exactly those columns.

    PostgreSQL: a join with ``unnest(:firsts, :seconds)`` (two array
    parameters, one look-up of the unique index per pair).  Why: with
    ``value IN (...)`` the planner, once it has statistics, prefers a trigram
    GIN index on the same column (which also serves ``=``) and each 1,000-key
    look-up then costs seconds, more with every page.  Elsewhere: the first
    column's distinct values and ``IN`` lists of the second, filtered to the
    exact pairs by the caller.
    """
    from sqlalchemy import String, and_, bindparam, func, select
    from sqlalchemy.dialects.postgresql import ARRAY

    a, b = columns
    pairs = list(pairs)
    if session.get_bind().dialect.name == "postgresql":
        wanted = func.unnest(bindparam(None, [p[0] for p in pairs], type_=ARRAY(String)),
                             bindparam(None, [p[1] for p in pairs], type_=ARRAY(String))
                             ).table_valued("first", "second").render_derived(name="wanted")
        return select(*select_columns).join(wanted, and_(a == wanted.c.first, b == wanted.c.second))
    return select(*select_columns).where(a.in_(sorted({p[0] for p in pairs})), b.in_([p[1] for p in pairs]))


def count_in_windows(session: Session, key, time, windows) -> list[int]:
    """For each ``(key value, start, end)``, how many rows of the columns' table
    have that ``key`` and a ``time`` in ``[start, end)``; an index on (key, time)
    makes each window one index range.

    One statement whatever the number of windows, its text always the same (a
    JSON array through ``json_each`` on SQLite, arrays through ``unnest`` on
    PostgreSQL): each window is counted by the database, not rows fetched and
    counted in Python.
    """
    import json

    from sqlalchemy import bindparam, text
    from sqlalchemy.dialects.postgresql import ARRAY

    windows = list(windows)
    if not windows:
        return []
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    t, k, c = quote(key.table.name), quote(key.name), quote(time.name)
    if dialect.name == "postgresql":
        sql = text(f"SELECT (SELECT count(*) FROM {t} WHERE {k} = w.k AND {c} >= w.t0 AND {c} < w.t1) "
                   "FROM unnest(:ks, :t0s, :t1s) WITH ORDINALITY AS w(k, t0, t1, n) ORDER BY w.n").bindparams(
            bindparam("ks", [w[0] for w in windows], type_=ARRAY(key.type)),
            bindparam("t0s", [w[1] for w in windows], type_=ARRAY(time.type)),
            bindparam("t1s", [w[2] for w in windows], type_=ARRAY(time.type)))
        return list(session.scalars(sql))
    # SQLite: the times as the column stores them (its bind processor), so text compares as stored.
    proc = time.type._cached_bind_processor(dialect)
    as_stored = (lambda v: str(proc(v))) if proc else str
    probes = json.dumps([[w[0], as_stored(w[1]), as_stored(w[2])] for w in windows])
    sql = text(f"SELECT (SELECT count(*) FROM {t} WHERE {k} = json_extract(w.value, '$[0]') "
               f"AND {c} >= json_extract(w.value, '$[1]') AND {c} < json_extract(w.value, '$[2]')) "
               "FROM json_each(:probes) AS w ORDER BY w.key")
    return list(session.scalars(sql, {"probes": probes}))


def keys_query(session: Session, column, values, select_columns, where=None):
    """``SELECT select_columns WHERE column IN values [AND where]``, one index
    look-up per key however large the table.

    PostgreSQL: a join with ``unnest(:keys)``.  Why: with ``column = ANY(:array)``
    beside another condition (an open case's ``status IN (...)``) the planner
    walked every row of the table for each batch, testing each against the
    whole array (once prepared, a generic plan does not hash the array), and an
    import slowed with every case it opened.  ``where`` should then be literal
    SQL (a partial index's own predicate), which a generic plan can prove.
    Elsewhere: ``IN``.
    """
    from sqlalchemy import and_, bindparam, func, select
    from sqlalchemy.dialects.postgresql import ARRAY

    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        wanted = func.unnest(bindparam(None, values, type_=ARRAY(column.type))).table_valued(
            "key").render_derived(name="wanted")
        on = column == wanted.c.key
        return select(*select_columns).join(wanted, on if where is None else and_(on, where))
    query = select(*select_columns).where(column.in_(values))
    return query if where is None else query.where(where)
