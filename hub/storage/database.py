"""Database engine and sessions (SQLAlchemy 2.0), as a Flask-style extension.

``with db.session() as s:`` is a unit of work (commit on success, rollback on
error); ``db.Session()`` a plain session, ``db.ReadSession()`` one for reads
that never takes SQLite's write lock.  The web UI and the API
keep one session per request and close it at teardown (``db_session()`` in
:mod:`hub.web.common` and :mod:`hub.api.routes`).  Hooks that must only fire
once data is durable are queued with :func:`after_commit` and run by a
session event.  Without a ``database_url`` the hub uses SQLite in
``instance/hub.db``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def default_database_url(instance_path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(instance_path) / 'hub.db'}"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, issue BEGIN (savepoints work then).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front: a deferred transaction that
        # reads, then writes, fails with SQLITE_BUSY when another writer got in
        # between; this way it waits (busy_timeout) instead.  Read-only
        # sessions (db.ReadSession) begin deferred, so pages and API reads
        # never wait for an import to commit (WAL readers see a snapshot).
        readonly = conn.get_execution_options().get("hub_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    return engine


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction committed."""
    session.info.setdefault("after_commit", []).append(callback)


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url, pool_pre_ping=True)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        #: For work that only reads (GET requests, reports): never takes the
        #: SQLite write lock.  Writing through it is a bug (and fails on SQLite
        #: with "database is locked" under load rather than silently).
        self.ReadSession = sessionmaker(self.engine.execution_options(hub_readonly=True), expire_on_commit=False)

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
