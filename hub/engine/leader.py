"""Leader election: exactly one scheduler runs the jobs per database.

Two electors behind one small interface (``acquire``, ``keep``, ``release``):

* :class:`AdvisoryLockElector` (PostgreSQL): a session-level
  ``pg_try_advisory_lock`` taken on a connection of its own, held for the
  leader's whole life.  The lock belongs to the server session, so a leader
  that dies (even ``kill -9``) frees it the moment its connection closes, and
  a standby's next attempt wins.  No expiry to wait out.
* :class:`LeaseElector` (SQLite, anything else): the ``scheduler_lease`` row,
  renewed well before it expires; a crashed holder's lease frees after
  ``lease_seconds``.  A clean stop deletes the row at once.

``keep()`` is called every few seconds by the leader: False means leadership
is gone (connection lost, lease taken) and the caller must stop its jobs now.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the same on every node and release)."""
    return int.from_bytes(hashlib.sha256(f"feedback-hub:{name}".encode()).digest()[:8], "big", signed=True)


class Elector(Protocol):
    holder: str

    def acquire(self) -> bool: ...
    def keep(self) -> bool: ...
    def release(self) -> None: ...
    def busy_reason(self) -> str: ...


class AdvisoryLockElector:
    """PostgreSQL session advisory lock on a dedicated connection."""

    #: A partitioned leader's session is closed by the server after this much
    #: silence (the leader pings every few seconds), so its lock frees and a
    #: standby takes over; without it the server may hold the dead session for
    #: hours (default TCP keepalive).
    IDLE_SESSION_MS = 15_000

    def __init__(self, url: str, holder: str, name: str = "scheduler", timeout_seconds: float = 5.0):
        self.holder = holder
        self.key = lock_key(name)
        self.timeout = timeout_seconds
        # NullPool: the connection holding the lock must never go back to a
        # pool (another checkout would then "hold" the lock) nor be recycled.
        self.engine = create_engine(make_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                    connect_args=self._connect_args(timeout_seconds))
        self.conn: Connection | None = None

    @staticmethod
    def _connect_args(timeout: float) -> dict:
        # libpq settings: give up on a dead network within seconds, not minutes.
        ms = int(timeout * 1000)
        return {"connect_timeout": max(1, int(timeout)), "keepalives": 1, "keepalives_idle": 5,
                "keepalives_interval": 2, "keepalives_count": 2, "tcp_user_timeout": ms,
                "application_name": "feedback-hub scheduler", "options": f"-c statement_timeout={ms}"}

    def acquire(self) -> bool:
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
                self._limit_silence(self.conn)
            got = bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except Exception as exc:
            log.warning("leader election: database unreachable (%s)", exc.__class__.__name__)
            self._close()
            return False
        if not got:
            self._close()  # a standby holds no connection between attempts
        return got

    def _limit_silence(self, conn: Connection) -> None:
        # PostgreSQL 14+; an older server refuses the setting, and then a
        # partitioned leader's lock frees when the server's TCP keepalive gives up.
        try:
            conn.execute(text(f"SET idle_session_timeout = {self.IDLE_SESSION_MS}"))
        except Exception:
            log.debug("leader election: this server has no idle_session_timeout")

    def keep(self) -> bool:
        """The lock lives as long as the session: a working round trip proves both."""
        if self.conn is None:
            return False
        try:
            self.conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            log.error("leader election: lost the database connection that holds the lock (%s)",
                      exc.__class__.__name__)
            self._close()
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception:  # closing the session below frees it anyway
                pass
        self._close()
        self.engine.dispose()

    def backend_pid(self) -> int | None:
        """The server process of the lock's session (tests terminate it)."""
        return None if self.conn is None else self.conn.execute(text("SELECT pg_backend_pid()")).scalar()

    def busy_reason(self) -> str:
        return "another scheduler holds this database's leader lock"

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                conn.invalidate()


class LeaseElector:
    """The ``scheduler_lease`` row (SQLite): renewed every third of its life."""

    def __init__(self, hub: Hub, holder: str, seconds: float):
        self.hub, self.holder, self.seconds = hub, holder, seconds
        self._renewed = 0.0  # monotonic time of the last successful renewal
        self._reason = ""

    def acquire(self) -> bool:
        from hub.engine.scheduler import SchedulerBusy, acquire_lease

        try:
            acquire_lease(self.hub, self.holder, self.seconds)
        except SchedulerBusy as exc:
            self._reason = str(exc)
            return False
        except Exception as exc:  # a standby rides out a database outage and asks again
            log.warning("leader election: database unreachable (%s)", exc.__class__.__name__)
            self._reason = "the database is unreachable"
            return False
        self._renewed = time.monotonic()
        return True

    def keep(self) -> bool:
        if time.monotonic() - self._renewed < self.seconds / 3:
            return True
        from hub.engine.scheduler import SchedulerBusy, acquire_lease

        try:
            acquire_lease(self.hub, self.holder, self.seconds)
        except SchedulerBusy:
            log.error("leader election: another scheduler took the lease")
            return False
        except Exception as exc:
            # A locked or briefly unreachable database: the lease still holds
            # until it expires; give up only once it may have.
            alive = time.monotonic() - self._renewed < self.seconds * 2 / 3
            log.warning("leader election: could not renew the lease (%s)%s", exc.__class__.__name__,
                        "" if alive else "; it may have expired")
            return alive
        self._renewed = time.monotonic()
        return True

    def release(self) -> None:
        from hub.engine.scheduler import release_lease

        try:
            release_lease(self.hub, self.holder)
        except Exception:  # the lease then expires on its own
            log.warning("leader election: could not release the lease", exc_info=True)

    def busy_reason(self) -> str:
        return self._reason or "another scheduler holds this database's lease"


def make_elector(hub: Hub, holder: str, lease_seconds: float) -> Elector:
    if hub.db.dialect == "postgresql":
        return AdvisoryLockElector(hub.db.url, holder)
    return LeaseElector(hub, holder, lease_seconds)
