"""Raw events: what arrived from a source, verbatim, stored before anything
interprets it (for replay and audit), and their processing into items.

A webhook delivery is stored as a ``pending`` raw event and acknowledged; the
executor then normalizes it through the source's connector and ingests the
items.  Each raw event ends ``processed``, ``skipped`` (nothing to store, e.g.
a retweet) or ``failed`` with the reason, never silently lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session

from hub.engine.pipeline import Entry, IngestResult, Pipeline, warm_up
from hub.engine.poison import safe_reason, storable_raw
from hub.engine.privacy import honour_erase_request
from hub.engine.state_store import joined
from hub.engine.waiting import wait_until
from hub.sdk.connectors import ERASE_REQUEST, SourceConnector
from hub.sdk.schema import FeedbackIn, RawIn
from hub.sdk.webhooks import parsed_text
from hub.storage import models as m
from hub.storage.database import bulk_insert

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
RAW = m.RawEvent.__table__


def store_raw(session: Session, source: str, raws: Sequence[RawIn], now: dt.datetime, status: str = "pending",
              clean: Sequence[bool] | None = None) -> list[int | None]:
    """Store raw events; returns each one's id, or None for a duplicate delivery.

    ``status`` is "pending" for events processed later (webhooks), or
    "processed" when the caller ingests them in the same transaction.
    ``clean[i]``: the caller knows payload ``i`` holds no NUL and no lone
    surrogate (it decoded it from ASCII JSON text without ``\\u`` escapes), so
    it is stored without a walk through it; the small fields are cleaned as always.
    """
    out: list[int | None] = [None] * len(raws)
    keyed: dict[str, int] = {}
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(raws):
        raw = _storable_but_payload(raw) if clean is not None and clean[i] else storable_raw(raw)
        if raw.dedupe_key is not None:
            if raw.dedupe_key in keyed:
                continue
            keyed[raw.dedupe_key] = i
        rows.append(
            (i, {"source": source, "kind": raw.kind, "dedupe_key": raw.dedupe_key, "payload": raw.payload,
                 "headers": raw.headers or None, "received_at": now, "status": status})
        )
    if not rows:
        return out
    # No look-up first: ON CONFLICT DO NOTHING makes a key stored before (or
    # committed meanwhile by a concurrent delivery) a duplicate (None), and the
    # rows go below the ORM with their ids reserved (hub.storage.database).
    ids = bulk_insert(session, RAW, [r for _, r in rows], ignore_conflicts=True)
    for (i, _), new_id in zip(rows, ids, strict=True):
        out[i] = new_id
    return out


def _storable_but_payload(raw: RawIn) -> RawIn:
    """:func:`storable_raw` of everything but the payload, which is known clean."""
    small = storable_raw(RawIn(payload=None, dedupe_key=raw.dedupe_key, kind=raw.kind, headers=raw.headers))
    return RawIn(payload=raw.payload, dedupe_key=small.dedupe_key, kind=small.kind, headers=small.headers)


def _pending_row(source: str, raw: RawIn, now: dt.datetime) -> dict[str, Any]:
    return {"source": source, "kind": raw.kind, "dedupe_key": raw.dedupe_key, "payload": raw.payload,
            "headers": raw.headers or None, "received_at": now, "status": "pending"}


_PENDING_COLUMNS = ("source", "kind", "dedupe_key", "payload", "headers", "received_at", "status")


class JsonText(str):
    """A payload that is JSON text already (a delivery's own body): bound as that text."""


#: Connections one PendingInserts opens at most (a process's concurrent deliveries beyond wait
#: their turn: an insert takes a fraction of a millisecond; gunicorn.conf.py runs 4 threads).
MAX_CONNECTIONS = 8


class PendingInserts:
    """The webhook path's one write, below SQLAlchemy: a driver statement on connections of its own.

    Why: through ``engine.begin()`` a delivery paid a pool checkout with its
    ping, the ``BEGIN IMMEDIATE`` event, the compiled statement's execution
    context and the reset on return (about 1 ms of CPU per delivery on SQLite,
    two more round trips on PostgreSQL).  Here each value goes through the
    bind processor SQLAlchemy would use (so stored values are identical), and
    the statement text is the same every time, so the driver prepares it once
    per connection (sqlite3's statement cache, psycopg's prepare threshold).

    Connections: taken from the engine once (its connect events ran: SQLite's
    pragmas) and detached from its pool, kept on a stack here and reused by
    whichever thread comes next; at most :data:`MAX_CONNECTIONS`.
    They are in autocommit mode: one event is one statement that commits as
    it returns (one round trip on PostgreSQL); several go in one transaction.
    """

    def __init__(self, db: Any):
        engine = db.engine
        dialect = engine.dialect
        self.engine = engine
        self.sqlite = dialect.name == "sqlite"
        self.procs = [RAW.c[c].type._cached_bind_processor(dialect) for c in _PENDING_COLUMNS]
        # JSON text goes in as the text SQLAlchemy's processor would have made of its parse: a
        # string on SQLite, psycopg's Json (sent with the json type) on PostgreSQL.
        self.as_json = str if self.sqlite else _psycopg_json_text
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        # ON CONFLICT DO NOTHING: a key stored before (or committed meanwhile by a
        # concurrent delivery) is a duplicate, no row and no id, without a look-up first;
        # a NULL key never conflicts.
        self.sql = (f"INSERT INTO {quote(RAW.name)} ({', '.join(quote(c) for c in _PENDING_COLUMNS)}) "
                    f"VALUES ({', '.join([mark] * len(_PENDING_COLUMNS))}) ON CONFLICT DO NOTHING RETURNING id")
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        from sqlalchemy import event

        event.listen(engine, "engine_disposed", lambda _e: self.close())

    def _take(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            pass
        fairy = self.engine.raw_connection()
        conn = fairy.dbapi_connection
        fairy.detach()
        if self.sqlite:
            # The connect event set isolation_level = None (autocommit: BEGIN only when sent); a busy
            # write lock is waited for by _sqlite_run's short polls, not SQLite's growing sleeps.
            conn.execute("PRAGMA busy_timeout=0")
        else:
            conn.autocommit = True  # psycopg: each statement its own transaction unless one is opened
        with self._lock:
            self._all.append(conn)
        return conn

    def _give_back(self, conn: Any) -> None:
        self._idle.append(conn)

    def _drop(self, conn: Any) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close too
            pass

    def close(self) -> None:
        with self._lock:
            conns, self._all, self._idle = list(self._all), [], []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def params(self, row: dict[str, Any]) -> tuple:
        return tuple(self.as_json(v) if type(v) is JsonText else v if p is None else p(v) for v, p in
                     zip((row[c] for c in _PENDING_COLUMNS), self.procs, strict=True))

    def insert(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """Insert ``rows`` (committed when this returns); each one's new id, None for a duplicate."""
        params = [self.params(r) for r in rows]
        # A connection the server dropped meanwhile (restart, idle timeout) is found by its error
        # instead of a ping per delivery; with every event keyed the insert is run again on a new
        # one (a row that did land is then a duplicate, never a second row).
        retries = 1 if all(r["dedupe_key"] is not None for r in rows) else 0
        with self._slots:  # at most MAX_CONNECTIONS of them in use, so at most as many open
            while True:
                conn = self._take()
                try:
                    out = self._run(conn, params)
                except BaseException as exc:
                    broken = not isinstance(exc, Exception) or _broken(self.engine, exc, conn)
                    if broken:
                        self._drop(conn)
                    else:
                        self._give_back(conn)
                    if broken and retries and isinstance(exc, Exception):
                        retries -= 1
                        log.info("webhook insert: connection lost (%s), again on a new one", type(exc).__name__)
                        continue
                    raise _wrapped(self.engine, self.sql, exc) from exc
                self._give_back(conn)
                return out

    def _run(self, conn: Any, params: list[tuple]) -> list[int | None]:
        if self.sqlite:
            return _sqlite_run(conn, self.sql, params)
        if len(params) == 1:  # autocommit: the statement is the transaction (one round trip)
            with conn.cursor() as cur:
                cur.execute(self.sql, params[0])
                return [_first(cur.fetchall())]
        with conn.transaction(), conn.cursor() as cur:
            out = []
            for p in params:
                cur.execute(self.sql, p)
                out.append(_first(cur.fetchall()))
            return out


def _psycopg_json_text(text: str) -> Any:
    from psycopg.types.json import Json

    return Json(text, dumps=str)  # the dumper calls dumps(obj): the text itself


def _first(rows: list) -> int | None:
    return rows[0][0] if rows else None


#: SQLite: while another process holds the write lock, a delivery asks again every POLL
#: seconds instead of SQLite's busy handler, whose sleeps grow to 100 ms (a delivery would
#: wake long after a worker's batch committed); it gives up after BUSY_SECONDS, as busy_timeout.
SQLITE_BUSY_POLL = 0.001
SQLITE_BUSY_SECONDS = 30.0


def _sqlite_run(conn: Any, sql: str, params: list[tuple]) -> list[int | None]:
    import sqlite3

    waited = 0.0
    while True:
        try:
            if len(params) == 1:  # autocommit: the statement takes the write lock, commits when done
                return [_first(conn.execute(sql, params[0]).fetchall())]
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = [_first(conn.execute(sql, p).fetchall()) for p in params]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return out
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
                or "locked" in str(exc)
            if not busy or waited >= SQLITE_BUSY_SECONDS:
                raise
        time.sleep(SQLITE_BUSY_POLL)
        waited += SQLITE_BUSY_POLL


def _broken(engine: Any, exc: BaseException, conn: Any) -> bool:
    dbapi = engine.dialect.loaded_dbapi
    if not isinstance(exc, dbapi.Error):
        return True  # not the database's answer: do not trust the connection's state
    try:
        return bool(engine.dialect.is_disconnect(exc, conn, None)) or bool(getattr(conn, "closed", False))
    except Exception:  # noqa: BLE001
        return True


def _wrapped(engine: Any, sql: str, exc: BaseException) -> BaseException:
    """A driver error as SQLAlchemy's (IntegrityError, OperationalError...), as a Core insert raises it."""
    from sqlalchemy import exc as sa_exc

    dbapi = engine.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return sa_exc.DBAPIError.instance(sql, None, exc, dbapi.Error)
    return exc


_inserts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_inserts_lock = threading.Lock()


def pending_inserts(db: Any) -> PendingInserts:
    """The :class:`PendingInserts` of ``db`` (made on first use)."""
    got = _inserts.get(db)
    if got is None:
        with _inserts_lock:
            got = _inserts.get(db)
            if got is None:
                got = _inserts[db] = PendingInserts(db)
    return got


def store_pending(db: Any, source: str, raws: Sequence[RawIn], now: dt.datetime) -> list[int]:
    """A webhook delivery's raw events, stored ``pending`` and committed: the ids of the new ones.

    The request path's whole write: one INSERT per event, ``ON CONFLICT DO
    NOTHING`` so a redelivery is a duplicate (no id) without a look-up first,
    through :class:`PendingInserts` (no ORM, no Core statement per request).
    Committed before the caller answers 2xx, so an acknowledged delivery is
    never lost.
    """
    rows = []
    seen: set[str] = set()
    for raw in raws:
        text = parsed_text(raw.payload)
        if text is not None:  # the body's own parse, known clean: only the small fields are cleaned
            row = _pending_row(source, _storable_but_payload(raw), now)
            row["payload"] = JsonText(text)  # stored as the body's text, not encoded again
        else:
            row = _pending_row(source, storable_raw(raw), now)
        key = row["dedupe_key"]
        if key is not None:
            if key in seen:
                continue  # the same event twice in one delivery
            seen.add(key)
        rows.append(row)
    if not rows:
        return []
    with one_writer(db):
        ids = pending_inserts(db).insert(rows)
    return [i for i in ids if i is not None]


#: SQLite has one writer at a time, and a writer that finds the lock taken
#: sleeps in growing steps (up to 100 ms) before it tries again.  Writers of
#: this process that take turns here instead are handed the lock the moment
#: it is free: a delivery waits for the drainer's batch, not for a back-off.
_sqlite_writer = threading.Lock()


@contextmanager
def one_writer(db: Any) -> Iterator[None]:
    """On SQLite, hold this process's writer turn (see :data:`_sqlite_writer`); elsewhere nothing."""
    if db.dialect != "sqlite":
        yield
        return
    with _sqlite_writer:
        yield


@dataclass
class Normalized:
    """What :func:`normalize_and_mark` made of a set of raw events."""

    entries: list[Entry] = field(default_factory=list)
    processed: int = 0
    skipped: int = 0
    failed: int = 0


def raw_in(row: m.RawEvent) -> RawIn:
    """A stored raw event as the plugin sees it (the same for pulls, webhooks and replays)."""
    return RawIn(payload=row.payload, dedupe_key=row.dedupe_key, kind=row.kind, headers=row.headers or {})


def normalize_and_mark(session: Session, connector: SourceConnector, source: str, rows: Sequence[m.RawEvent]
                       ) -> Normalized:
    """Normalize each raw event through its connector and mark it, in the caller's transaction.

    A raw event ends ``processed`` (it gave items, returned as entries to
    ingest), ``skipped`` (it gave none, e.g. a retweet) or ``failed`` with the
    reason (any exception of the plugin; the event stays stored for replay).
    The one place this happens, for pulls (:mod:`hub.engine.pulls`) and for
    webhook deliveries and replays (:func:`process_raw_events`); the caller
    ingests the entries and commits marks, items and cursor together.
    """
    out = Normalized()
    with joined(session):  # state the plugin writes while normalizing commits with the page
        for row in rows:
            if row.kind == ERASE_REQUEST:  # the source asks to erase what it sent before: the core's job
                try:
                    honour_erase_request(session, source, row.payload)
                    row.status = "processed"
                    out.processed += 1
                except ValueError as exc:
                    row.status, row.error = "failed", f"erase request: {safe_reason(exc)}"
                    out.failed += 1
                continue
            try:
                produced = connector.normalize(raw_in(row))
            except Exception as exc:  # any plugin error marks the event, keeps it for replay
                # The reason, not the message: it can quote the customer's text.
                row.status, row.error = "failed", f"normalize: {safe_reason(exc)}"
                out.failed += 1
                log.warning("raw event %s of %s failed to normalize: %s", row.id, source, type(exc).__name__)
                continue
            row.status = "processed" if produced else "skipped"
            if produced:
                out.processed += 1
            else:
                out.skipped += 1
            out.entries.extend(Entry(item, row.id) for item in produced)
    return out


#: Database errors that say nothing about the records: never blamed on one.
NOT_THE_RECORDS = (OperationalError, DisconnectionError)


def ingest_isolated(session: Session, pipeline: Pipeline, source: str, entries: Sequence[Entry],
                    rows: Sequence[m.RawEvent], now: dt.datetime | None = None
                    ) -> tuple[list[IngestResult], set[int]]:
    """Ingest ``entries`` as one batch; if that fails, find the raw events that poison it.

    The normal case is the pipeline's one batch (its fixed handful of
    statements).  A failed batch rolled back its savepoint only; it is run
    again in halves (the entries of one raw event stay together) until each
    failing raw event is alone: that one is marked ``failed`` with a safe
    reason, and everything else is stored.  One poisoned event among ``n``
    costs about ``2 log2 n`` batches.  Returns the results and the ids of the
    raw events marked failed.
    """
    try:
        return pipeline.ingest(session, source, entries, now), set()
    except NOT_THE_RECORDS:
        raise
    except Exception as exc:  # noqa: BLE001 - any record-made failure is isolated below
        groups: dict[int | None, list[Entry]] = {}
        for e in entries:
            groups.setdefault(e.raw_event_id, []).append(e)
        if None in groups:
            raise  # entries without a raw event cannot be marked: the caller's error
        if len(groups) == 1:
            (raw_id,) = groups
            row = next(r for r in rows if r.id == raw_id)
            row.status, row.error = "failed", f"ingest: {safe_reason(exc)}"
            log.warning("raw event %s of %s failed to ingest: %s", raw_id, source, row.error)
            return [], {raw_id}
        log.info("batch of %d raw events of %s failed (%s); isolating the culprit", len(groups), source,
                 type(exc).__name__)
    ids = list(groups)
    half = len(ids) // 2
    results: list[IngestResult] = []
    failed: set[int] = set()
    for part in (ids[:half], ids[half:]):
        got, bad = ingest_isolated(session, pipeline, source, [e for i in part for e in groups[i]], rows, now)
        results.extend(got)
        failed |= bad
    return results, failed


def process_raw_events(hub: Hub, source: str, raw_ids: Sequence[int], statuses: Sequence[str] = ("pending",)
                       ) -> dict[str, int]:
    """Normalize and ingest stored raw events (webhook deliveries, replays).

    Each raw event ends ``processed`` (items stored), ``skipped`` (nothing to
    store, e.g. a retweet) or ``failed`` with the reason, never silently lost;
    one that cannot be stored fails alone, the rest of the batch is ingested.
    ``statuses``: which raw events to take (a replay of failed ones adds "failed").
    """
    connector = hub.registry.connector(source)
    with hub.db.session() as session, joined(session):
        # The claim: rows another worker is processing right now are skipped
        # (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write lock, taken at
        # BEGIN IMMEDIATE, serializes workers instead), and rows already
        # processed are no longer in ``statuses``: a second run of the same
        # ids does nothing, so no event becomes two items.
        rows = session.scalars(select(m.RawEvent).where(m.RawEvent.id.in_(list(raw_ids)),
                                                        m.RawEvent.status.in_(list(statuses)))
                               .order_by(m.RawEvent.id).with_for_update(skip_locked=True)).all()
        for row in rows:
            row.error = None
        done = normalize_and_mark(session, connector, source, rows)
        counts = {"processed": done.processed, "skipped": done.skipped, "failed": done.failed, "items": 0}
        if done.entries:
            results, failed = ingest_isolated(session, Pipeline(hub), source, done.entries, rows)
            counts["items"] = sum(r.created for r in results)
            counts["processed"] -= len(failed)
            counts["failed"] += len(failed)
    return counts


#: Raw events processed in one pipeline batch by the in-process drainer (:data:`SQLITE_BATCH` on SQLite).
BATCH = 100
SQLITE_BATCH = 25
#: How long the drainer thread waits for more work before it ends (it starts again on the next submit).
LINGER_SECONDS = 0.5
#: After waking, how long the drainer lets deliveries gather (up to a full batch) before it processes:
#: a trickle then costs one pipeline run (and on SQLite one write-lock hold) per few deliveries, not each.
GATHER_SECONDS = 0.02
#: The batcher's sleep step while it lingers or gathers.
POLL_SECONDS = 0.005


class RawEventBatcher:
    """The in-process executor's raw-event drainer: one thread per hub and process.

    Why: one pipeline run per delivery costs its fixed handful of statements
    (and on SQLite the write lock) for every single item.  Deliveries hand their
    ids here instead; the thread wakes, takes everything pending and processes
    it :data:`BATCH` at a time per source, so the cost per item falls as the
    rate rises.  The ids live only in memory: the rows are committed
    ``pending`` first, so a crash leaves them for ``replay_pending``.
    """

    def __init__(self, hub: Hub, batch_size: int = BATCH):
        self._hub = weakref.ref(hub)
        self.batch_size = batch_size
        self._cond = threading.Condition()
        self._pending: dict[str, list[int]] = {}
        self._running = False
        self._busy = 0  # ids taken and not yet processed
        self._warmed = False

    def add(self, source: str, ids: Sequence[int]) -> None:
        with self._cond:
            self._pending.setdefault(source, []).extend(ids)
            self._cond.notify_all()
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="hub-raw-events", daemon=True).start()

    def _take(self) -> dict[str, list[int]] | None:
        # Short sleeps, not timed waits on the condition: a timed wait that runs
        # out never returns under libfaketime (the suite's run a year ahead),
        # while sleeps do; a few ms of polling cost nothing beside a batch.
        self._pause_until(lambda: bool(self._pending) or self._hub() is None, LINGER_SECONDS)
        with self._cond:
            if not self._pending or self._hub() is None:
                self._running = False
                self._cond.notify_all()
                return None
        self._pause_until(lambda: sum(map(len, self._pending.values())) >= self.batch_size, GATHER_SECONDS)
        with self._cond:
            work, self._pending = self._pending, {}
            self._busy = sum(map(len, work.values()))
            return work

    def _pause_until(self, ready, seconds: float) -> None:
        """Sleep in steps of POLL_SECONDS until ``ready()`` (under the lock) or ``seconds`` passed."""
        for _ in range(max(1, int(seconds / POLL_SECONDS))):
            with self._cond:
                if ready():
                    return
            time.sleep(POLL_SECONDS)

    def _run(self) -> None:
        if not self._warmed and (hub := self._hub()) is not None:
            # Models and lexicons load here, before the first batch, not inside it (and its lock).
            warm_up(hub)
            self._warmed = True
            del hub
        while (work := self._take()) is not None:
            hub = self._hub()
            # SQLite: smaller batches, since deliveries wait for the write lock while one runs.
            size = self.batch_size if hub is None or hub.db.dialect != "sqlite" else min(self.batch_size, SQLITE_BATCH)
            for source, ids in work.items():
                for start in range(0, len(ids), size):
                    if hub is None:
                        break
                    try:
                        with one_writer(hub.db):
                            process_raw_events(hub, source, ids[start:start + size])
                    except Exception:  # the events stay pending: replay_pending takes them later
                        log.exception("processing %d raw events of %s failed", len(ids[start:]), source)
            del hub
            with self._cond:
                self._busy = 0
                self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed in was processed; False on timeout (tests, benchmarks)."""
        def idle() -> bool:
            with self._cond:
                return not self._pending and not self._busy

        return wait_until(idle, timeout, step=POLL_SECONDS)


_batchers: dict[int, tuple[weakref.ref, RawEventBatcher]] = {}
_batchers_lock = threading.Lock()


def batcher(hub: Hub) -> RawEventBatcher:
    """This process's drainer of ``hub`` (made on first use; the Hub is not hashable)."""
    with _batchers_lock:
        entry = _batchers.get(id(hub))
        if entry is None or entry[0]() is not hub:
            for key in [k for k, (ref, _) in _batchers.items() if ref() is None]:
                del _batchers[key]
            entry = _batchers[id(hub)] = (weakref.ref(hub), RawEventBatcher(hub))
        return entry[1]


def enqueue(hub: Hub, source: str, ids: Sequence[int]) -> None:
    """Hand stored ``pending`` raw events to be processed (the webhook path's last step).

    The in-process ``threads`` executor batches them in :func:`batcher`'s
    drainer; any other executor gets the plain job (``inline`` runs it now,
    a distributed one sends it to a worker, where the claim in
    :func:`process_raw_events` keeps two workers from taking the same event).
    """
    from hub.engine.executor import ThreadExecutor

    if hub.config.get("webhook_processing") == "worker":
        return  # stored pending: `feedback-hub worker` processes it (drain_pending), not this web process
    if isinstance(hub.executor, ThreadExecutor):
        batcher(hub).add(source, ids)
    else:
        hub.executor.submit(process_raw_events, hub, source, list(ids))


def drain(hub: Hub, timeout: float = 30.0) -> bool:
    """Wait for the in-process drainer of ``hub`` (True at once when it has none)."""
    entry = _batchers.get(id(hub))
    return entry is None or entry[0]() is not hub or entry[1].drain(timeout)


#: A worker's batches and its pauses (``webhook_processing = "worker"``), while deliveries keep
#: arriving (the newest raw event id grew since the last batch): after each batch the worker
#: pauses ``worker_yield`` (default WORKER_YIELD) times as long as the batch took, so the
#: deliveries get about three quarters of what they share with it, and acknowledgements come
#: first on a machine where both run.
#: * SQLite: what they share is the one write lock, and a delivery waits for whatever batch
#:   holds it, so batches are WORKER_SQLITE_BATCH events then (a batch of 5 holds it ~9 ms on a
#:   2-core machine) and the pause is within the GAP bounds (bench/webhooks.py at half the hub's
#:   top rate: p99 160-190 ms with a share of one half, 33-88 ms with one quarter).  A backlog
#:   that no new delivery contends for is worked in batches that double up to
#:   WORKER_SQLITE_BATCH_MAX, back to back: one of 25 costs ~0.8 ms of CPU per event against
#:   ~1.8 ms in batches of 5.
#: * PostgreSQL: what they share is the CPU, and the worker's database work runs in a server
#:   process that ``nice`` does not reach, so the pause gives it back (bench/webhooks.py on 2
#:   cores: 739 acknowledgements/s with the worker working back to back, 1,456 with it stopped;
#:   paced 1,108 against 1,231 stopped, in runs side by side).
#:   Batches stay BATCH; a pause is at most WORKER_GAP_MAX.
#: Under a sustained flood the backlog grows and is caught up when the flood eases; the
#: deployment that must keep up with one is PostgreSQL with Celery workers (docs/deploying.md),
#: and a worker on a machine of its own sets ``worker_yield = 0``.
WORKER_YIELD = 3.0
WORKER_SQLITE_BATCH = 5
WORKER_SQLITE_BATCH_MAX = 25
WORKER_SQLITE_GAP = 0.003
WORKER_SQLITE_GAP_MAX = 0.1
WORKER_GAP_MAX = 1.0


def drain_pending(hub: Hub, batch: int | None = None, limit: int = 10_000) -> int:
    """Process pending raw events of every source, oldest first, a batch at a time, until none is left
    (or ``limit`` were taken); returns how many were taken.  A worker's round
    (``webhook_processing = "worker"``): several workers may run it at once, the claim in
    :func:`process_raw_events` gives each event to one of them.  ``batch`` fixes the batch
    size; else, on SQLite, it follows the deliveries; while they arrive the worker pauses
    after each batch (see :data:`WORKER_YIELD`)."""
    sqlite = hub.db.dialect == "sqlite"
    pace = float(hub.config.get("worker_yield", WORKER_YIELD))
    smallest = size = batch or (WORKER_SQLITE_BATCH if sqlite else BATCH)
    largest = batch or (WORKER_SQLITE_BATCH_MAX if sqlite else BATCH)
    taken, newest = 0, None
    while taken < limit:
        with hub.db.ReadSession() as s:
            seen, newest = newest, s.scalar(select(func.max(m.RawEvent.id)))
            arriving = seen is None or newest != seen  # deliveries came in since the last batch
            size = smallest if arriving else min(largest, size * 2)
            rows = s.execute(select(m.RawEvent.source, m.RawEvent.id).where(
                m.RawEvent.status == "pending", m.RawEvent.source.in_(sorted(hub.registry.sources)))
                .order_by(m.RawEvent.id).limit(size)).all()
        by_source: dict[str, list[int]] = {}
        for source, rid in rows:
            if source in hub.registry.sources:
                by_source.setdefault(source, []).append(rid)
        if not by_source:
            return taken
        done = 0
        for source, ids in by_source.items():
            started = time.perf_counter()
            counts = process_raw_events(hub, source, ids)
            done += counts["processed"] + counts["skipped"] + counts["failed"]
            if arriving and pace:
                # The deliveries go in between batches (on SQLite: those waiting for the lock,
                # their 1 ms polls); back to back, a backlog kept acknowledgements out batch after batch.
                held = time.perf_counter() - started
                gap_max = WORKER_SQLITE_GAP_MAX if sqlite else WORKER_GAP_MAX
                time.sleep(min(gap_max, max(WORKER_SQLITE_GAP, pace * held)))
        taken += sum(map(len, by_source.values()))
        if done == 0:
            return taken  # every one was claimed by another worker: leave them to it
    return taken


REPLAY_BATCH = 500


def replay(hub: Hub, source: str | None = None, include_failed: bool = False,
           progress: Callable[[str, dict[str, int]], None] | None = None) -> dict[str, int]:
    """Process every pending (and with ``include_failed`` every failed) raw event
    again, in batches of :data:`REPLAY_BATCH` per source; returns the totals.
    ``progress(source, counts)`` is called after each committed batch."""
    statuses = ("pending", "failed") if include_failed else ("pending",)
    names = [source] if source else sorted(hub.registry.sources)
    totals = {"processed": 0, "skipped": 0, "failed": 0, "items": 0}
    for name in names:
        hub.registry.connector(name)  # an unknown source fails before anything runs
        with hub.db.Session() as s:
            ids = list(s.scalars(select(m.RawEvent.id).where(
                m.RawEvent.source == name, m.RawEvent.status.in_(statuses)).order_by(m.RawEvent.id)))
        for start in range(0, len(ids), REPLAY_BATCH):
            counts = process_raw_events(hub, name, ids[start:start + REPLAY_BATCH], statuses)
            for key, n in counts.items():
                totals[key] += n
            if progress:
                progress(name, counts)
    return totals


def ingest_inputs(session: Session, pipeline: Pipeline, source: str, pairs: Sequence[tuple[Any, FeedbackIn]],
                  now: dt.datetime, kind: str = "import", clean: Sequence[bool] | None = None) -> list[IngestResult]:
    """The path of input already in the common schema (API, import, demo):
    each (decoded object, item) is kept verbatim as a raw event and ingested,
    in the caller's transaction (``clean``: see :func:`store_raw`)."""
    raws = [RawIn(payload=obj, dedupe_key=item.external_id, kind=kind) for obj, item in pairs]
    raw_ids = store_raw(session, source, raws, now, status="processed", clean=clean)
    entries = [Entry(item, raw_id) for (_, item), raw_id in zip(pairs, raw_ids, strict=True)]
    return pipeline.ingest(session, source, entries, now)
