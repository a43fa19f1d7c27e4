"""The database side of plugins' per-instance state (:mod:`hub.sdk.state`).

One ``connector_state`` row per instance, under the reserved stream name
:data:`INSTANCE_STREAM`, holds the instance's document in its ``state`` JSON
column.  (The rows of real streams keep cursors; their ``state`` column is
the core's own bookkeeping, e.g. child-stream progress.)

Concurrency: ``modify`` is a read-modify-write inside one transaction that
first makes sure the row exists (``INSERT ... ON CONFLICT DO NOTHING``, so two
workers creating it at once do not collide) and then locks it: ``SELECT ...
FOR UPDATE`` on PostgreSQL; on SQLite every write transaction begins
``IMMEDIATE`` (see :mod:`hub.storage.database`) and so holds the database
write lock from the start.  Either way a second writer waits for the first to
commit and then reads its result: no update is lost, across threads and
processes.  Reads take no lock and see the last commit.

While the core has a page transaction open in this thread (around
``normalize``), state calls join it (:func:`joined`) instead of opening a
second connection - on SQLite that second writer would wait for the first,
which waits for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.storage import models as m
from hub.storage.database import Database, insert_ignore

#: ``connector_state.stream`` of the per-instance document (no real stream
#: is named so: stream names are identifiers, never bracketed).
INSTANCE_STREAM = "[instance]"
STATE = m.ConnectorState.__table__

_joined: contextvars.ContextVar[Session | None] = contextvars.ContextVar("hub_state_session", default=None)


@contextlib.contextmanager
def joined(session: Session) -> Iterator[None]:
    """State calls made inside the block use ``session`` (and its transaction)."""
    token = _joined.set(session)
    try:
        yield
    finally:
        _joined.reset(token)


class DatabaseStateBackend:
    """:class:`hub.sdk.state.StateBackend` on the hub's database, for one instance."""

    def __init__(self, db: Database, instance: str):
        self.db = db
        self.instance = instance

    def _where(self):
        return (STATE.c.instance == self.instance) & (STATE.c.stream == INSTANCE_STREAM)

    @contextlib.contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        outer = _joined.get()
        if outer is not None and outer.get_bind() is not None and outer.get_bind().engine is self.db.engine:
            yield outer
            return
        if write:
            with self.db.session() as s:
                yield s
        else:
            with self.db.ReadSession() as s:
                yield s

    def load(self) -> dict[str, Any]:
        with self._session(write=False) as s:
            doc = s.execute(select(STATE.c.state).where(self._where())).scalar()
        return copy.deepcopy(doc) if isinstance(doc, dict) else {}

    def modify(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with self._session(write=True) as s:
            s.execute(insert_ignore(s, STATE).values(instance=self.instance, stream=INSTANCE_STREAM, state={},
                                                     items_total=0))
            current = s.execute(select(STATE.c.state).where(self._where()).with_for_update()).scalar()
            doc = copy.deepcopy(current) if isinstance(current, dict) else {}
            change(doc)
            s.execute(update(STATE).where(self._where()).values(state=doc))
        return copy.deepcopy(doc)


__all__ = ["INSTANCE_STREAM", "DatabaseStateBackend", "joined"]
