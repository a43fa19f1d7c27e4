"""A page's side query: a read that runs on a connection of its own while the
request runs its main query, for pages that need both before they render.

Why: at a million items the all-feedback search spends ~15 ms in its page
query and ~7 ms in its capped count, one after the other, each waiting for
the database while this process has nothing to do.  Started first, on a
helper thread and its own read session, the count and the view tabs' counts
are done by the time the page's rows are (PostgreSQL answers both at once;
SQLite's reader connections too, ``sqlite3`` lets go of the GIL while a
statement runs).  Nothing is written there: both reads see committed rows,
possibly a moment apart, which a capped count shown as "1,000+" tolerates.

An engine that cannot give a second thread a connection of its own (an
in-memory SQLite database shares one) runs the query when its result is
asked for, in the request's session, as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.orm import Session
from sqlalchemy.pool import SingletonThreadPool, StaticPool

#: Helper threads per process: one side query per request, and a web node runs
#: a few requests at once (gunicorn.conf.py: 4 threads a worker).  While all are
#: busy a page runs its side query itself: queued behind other pages' counts, it
#: could wait longer than it would have taken.
THREADS = 4
#: Its threads start on the first side queries (ThreadPoolExecutor starts them as work comes).
_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="hub-side-query")
_free = threading.BoundedSemaphore(THREADS)


def _forget_helpers() -> None:
    """In a forked child: the parent's helper threads do not exist there, and an executor that
    counts them would never start new ones (a page would wait for ever)."""
    global _executor, _free
    _executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="hub-side-query")
    _free = threading.BoundedSemaphore(THREADS)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def parallel_capable(engine: Any) -> bool:
    """Whether ``engine`` gives each thread a connection of its own."""
    return not isinstance(engine.pool, SingletonThreadPool | StaticPool)


def _one_row(make_session: Callable[[], Session], statement: Select, free: threading.BoundedSemaphore) -> Row:
    try:
        with make_session() as session:
            return session.connection().execute(statement).one()
    finally:
        free.release()


def side_row(db: Any, session: Session, statement: Select) -> Callable[[], Row]:
    """Start ``statement`` (one row) beside the request; call the result to wait for its row.

    ``db`` is the hub's database (its read sessions); ``session`` the request's,
    used instead when the engine cannot serve a second thread or every helper is busy.  An error is
    raised where the row is asked for, as if the query had run there."""
    free = _free
    if not parallel_capable(db.engine) or not free.acquire(blocking=False):
        return lambda: session.connection().execute(statement).one()
    try:
        future = _executor.submit(_one_row, db.PageSession, statement, free)
    except BaseException:
        free.release()
        raise
    return future.result
