"""GDPR: export everything the hub holds on a person, and erase it.

A person is found by e-mail, handle (any social identity kind) or customer id
(:func:`find_subject`).  :func:`export` gathers their customer record(s),
identities, items, raw payloads, cases, follow-ups, every other row hanging
off those (notes, invitations... whatever later tables add) and the audit rows
about their cases.  :func:`erase` removes it:

* cases and customers are **deleted**, with every row that refers to them,
  found through the schema's foreign keys (so a table added later is covered
  without a change here); audit rows are kept, detached from the case;
* items and raw events become **tombstones**: emptied of text, links and
  payload, but kept with their unique keys, so a re-delivered webhook or a
  backfill cannot bring the person's data back (the dedupe sees the key);
* a **sweep** then replaces any remaining occurrence of the person's e-mail
  addresses and handles in any text or JSON column of any table (another
  customer's post that mentions them, an error message) with ``[erased]``;
* each CRM sink that erases people (:meth:`hub.sdk.CrmSink.erases_people`)
  gets a row in the privacy outbox (``privacy_request``), pushed at once and
  retried through outages by the scheduler (:func:`deliver_requests`); its
  ``subject`` (the CRM id, else the e-mail) is emptied once the CRM confirmed;
* on SQLite the file is then compacted (``secure_delete``, ``VACUUM``, WAL
  checkpoint) so no byte of the erased values stays in it; on PostgreSQL the
  rows are gone and the touched tables are vacuumed.

The audit records the erasure by ids and counts only (``gdpr.erase``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, String, Table, Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.engine.poison import safe_reason
from hub.sdk.http import FatalError
from hub.storage import models as m
from hub.storage.search import purge_deleted_text

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)

ERASED = "[erased]"
#: Identity kinds that are not social handles (``--handle`` looks in every other kind).
NON_HANDLE_KINDS = frozenset({"email", "phone", "crm_id"})
#: Kinds whose values the sweep looks for in free text: short numeric ids (CRM
#: ids, phone numbers in other formats) would match unrelated numbers.
SWEPT_KINDS_EXCLUDED = frozenset({"crm_id", "phone"})
#: Characters that continue an e-mail address or a handle: a value inside a longer
#: token (``jan@x.nl`` in ``marjan@x.nl``) is someone else's and is left alone.
TOKEN_CHARS = r"A-Za-z0-9._%+\-@_"
#: Tables whose references to an erased case or customer are set to NULL (the
#: row stays): items are tombstones, the audit outlives the erasure.
DETACH = frozenset({"feedback_item", "audit_event"})
CHUNK = 500


class SubjectNotFound(LookupError):
    """No customer, identity or stored payload matches the query."""


@dataclass
class Subject:
    """The person an export or erase is about."""

    customer_ids: list[int] = field(default_factory=list)
    #: (kind, value) of every identity of those customers, plus the queried values.
    identities: list[tuple[str, str]] = field(default_factory=list)

    @property
    def needles(self) -> list[str]:
        """The values the sweep removes wherever they occur (handles also as ``@handle``)."""
        values = {v for k, v in self.identities if k not in SWEPT_KINDS_EXCLUDED and len(v) >= 3}
        return sorted(values, key=len, reverse=True)


@dataclass
class ErasureReport:
    customers: int = 0
    identities: int = 0
    items: int = 0
    raw_events: int = 0
    cases: int = 0
    other_rows: int = 0
    swept: int = 0
    crm_requests: list[int] = field(default_factory=list)
    crm_delivered: int = 0
    crm_waiting: int = 0
    #: False when the file could not be compacted right away (busy): ``gdpr compact`` finishes it.
    compacted: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- finding the person ---------------------------------------------------------------
def find_subject(hub: Hub, session: Session, *, email: str | None = None, handle: str | None = None,
                 customer_id: int | None = None) -> Subject:
    """The customers matching exactly one of ``email``, ``handle``, ``customer_id``.

    Raises ValueError for a query that names not exactly one of them, and
    :class:`SubjectNotFound` when nothing in the hub matches.
    """
    given = [x for x in (email, handle, customer_id) if x not in (None, "")]
    if len(given) != 1:
        raise ValueError("name exactly one of --email, --handle or --customer")
    wanted: list[tuple[str, str]] = []
    ids: set[int] = set()
    if customer_id is not None:
        if session.get(m.Customer, customer_id) is None:
            raise SubjectNotFound(f"no customer {customer_id}")
        ids.add(customer_id)
    else:
        kinds = ["email"] if email else sorted(
            set(hub.registry.identity_kinds) - NON_HANDLE_KINDS)
        raw_value = str(email or handle).strip()
        for kind in kinds:
            value = hub.registry.identity_kind(kind).clean(raw_value.lstrip("@") if handle else raw_value)
            if value:
                wanted.append((kind, value))
        for kind, value in wanted:
            ids.update(session.scalars(select(m.Identity.customer_id).where(
                m.Identity.kind == kind, m.Identity.value == value)))
    subject = Subject(customer_ids=sorted(ids))
    found = [(i.kind, i.value) for i in session.scalars(select(m.Identity).where(
        m.Identity.customer_id.in_(subject.customer_ids)))] if ids else []
    # The queried value too: it may sit in a failed payload that never made a customer.
    subject.identities = sorted(set(found) | ({wanted[0]} if wanted else set()))
    if not ids and not _payloads_mentioning(session, subject.needles):
        raise SubjectNotFound(f"nothing in the hub matches {given[0]!r}")
    return subject


def _json_forms(needle: str) -> set[str]:
    """The needle as plain text and as JSON writes it (non-ASCII escaped), lower-cased."""
    return {needle.lower(), json.dumps(needle)[1:-1].lower()}


def _mentions(column, needles: Iterable[str]):
    text = func.lower(cast(column, Text))
    return or_(*(text.contains(form, autoescape=True) for n in needles for form in _json_forms(n)))


def _payloads_mentioning(session: Session, needles: Sequence[str]) -> list[int]:
    if not needles:
        return []
    return list(session.scalars(select(m.RawEvent.id).where(
        or_(_mentions(m.RawEvent.payload, needles), _mentions(m.RawEvent.headers, needles)))))


# -- what hangs off a row ---------------------------------------------------------------
def _referrers(table: Table) -> list[tuple[Table, Any]]:
    """Every (table, column) with a foreign key to ``table``'s primary key."""
    out = []
    for other in m.Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is table and fk.column.primary_key:
                out.append((other, fk.parent))
    return out


def _single_pk(table: Table):
    cols = list(table.primary_key.columns)
    return cols[0] if len(cols) == 1 else None


def _rows(session: Session, table: Table, column, ids: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start:start + CHUNK])
        out.extend(dict(r._mapping) for r in session.execute(select(table).where(column.in_(chunk))))
    return out


def _dependents(session: Session, table: Table, ids: Sequence[Any], skip: frozenset[str]
                ) -> dict[str, list[dict[str, Any]]]:
    """Rows of other tables that refer to ``ids`` of ``table`` (recursively), by table name."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not ids:
        return found
    for child, column in _referrers(table):
        if child.name in skip or child is table:
            continue
        rows = _rows(session, child, column, ids)
        if not rows:
            continue
        found.setdefault(child.name, []).extend(rows)
        pk = _single_pk(child)
        if pk is not None:
            deeper = _dependents(session, child, [r[pk.name] for r in rows], skip | {child.name})
            for name, more in deeper.items():
                found.setdefault(name, []).extend(more)
    return found


def _purge(session: Session, table: Table, ids: Sequence[Any], seen: frozenset[str] = frozenset()) -> int:
    """Delete ``ids`` of ``table`` and, first, every row that refers to them.

    References from :data:`DETACH` tables and from ``table`` itself (a merge
    pointer) are set to NULL instead.  Returns the number of rows deleted
    besides ``ids`` themselves.
    """
    if not ids:
        return 0
    deleted = 0
    for child, column in _referrers(table):
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start:start + CHUNK])
            if child.name in DETACH or child is table or child.name in seen:
                session.execute(update(child).where(column.in_(chunk)).values({column.name: None}))
                continue
            pk = _single_pk(child)
            if pk is not None:
                child_ids = list(session.scalars(select(pk).where(column.in_(chunk))))
                deleted += _purge(session, child, child_ids, seen | {table.name}) + len(child_ids)
            else:
                deleted += session.execute(delete(child).where(column.in_(chunk))).rowcount or 0
    pk = _single_pk(table)
    for start in range(0, len(ids), CHUNK):
        session.execute(delete(table).where(pk.in_(list(ids[start:start + CHUNK]))))
    return deleted


# -- export -----------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def export(hub: Hub, *, email: str | None = None, handle: str | None = None,
           customer_id: int | None = None) -> dict[str, Any]:
    """Everything the hub holds on the person, JSON-ready (``gdpr export``)."""
    with hub.db.Session() as s:
        subject = find_subject(hub, s, email=email, handle=handle, customer_id=customer_id)
        ids = subject.customer_ids
        items = _rows(s, m.FeedbackItem.__table__, m.FeedbackItem.customer_id, ids)
        case_ids = sorted({r["id"] for r in _rows(s, m.Case.__table__, m.Case.customer_id, ids)}
                          | {i["case_id"] for i in items if i["case_id"]})
        raw_ids = sorted({i["raw_event_id"] for i in items if i["raw_event_id"]}
                         | set(_payloads_mentioning(s, subject.needles)))
        related: dict[str, list[dict[str, Any]]] = {}
        for table, keys in ((m.Customer.__table__, ids), (m.Case.__table__, case_ids)):
            for name, rows in _dependents(s, table, keys, frozenset({"identity", "feedback_item", "case",
                                                                      "audit_event"})).items():
                related.setdefault(name, []).extend(rows)
        document = {
            "exported_at": hub.clock.utcnow().isoformat(),
            "query": {"email": email, "handle": handle, "customer_id": customer_id},
            "customers": _rows(s, m.Customer.__table__, m.Customer.id, ids),
            "identities": _rows(s, m.Identity.__table__, m.Identity.customer_id, ids),
            "items": items,
            "raw_events": _rows(s, m.RawEvent.__table__, m.RawEvent.id, raw_ids),
            "cases": _rows(s, m.Case.__table__, m.Case.id, case_ids),
            "followups": related.pop("followup", []),
            "audit": _rows(s, m.AuditEvent.__table__, m.AuditEvent.case_id, case_ids),
            # Notes, invitations, events...: every other table that refers to them.
            "related": {name: _unique(rows) for name, rows in sorted(related.items())},
        }
    return _jsonable(document)


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for row in rows:
        key = json.dumps(_jsonable(row), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


# -- erase ------------------------------------------------------------------------------
def tombstone_items(session: Session, item_ids: Sequence[int], reason: str) -> int:
    """Empty items of everything personal; scores stay (anonymous) for the reports."""
    done = 0
    for start in range(0, len(item_ids), CHUNK):
        chunk = list(item_ids[start:start + CHUNK])
        done += session.execute(update(m.FeedbackItem.__table__).where(m.FeedbackItem.id.in_(chunk)).values(
            text=None, url=None, thread_id=None, customer_id=None, case_id=None, risk_reasons=[],
            extra={"erased": reason})).rowcount or 0
    return done


def tombstone_raw_events(session: Session, raw_ids: Sequence[int], reason: str) -> int:
    """Empty raw events of their payload and headers; the dedupe key stays, so the
    same delivery is recognised (and not stored again) if it comes back."""
    done = 0
    for start in range(0, len(raw_ids), CHUNK):
        chunk = list(raw_ids[start:start + CHUNK])
        done += session.execute(update(m.RawEvent.__table__).where(m.RawEvent.id.in_(chunk)).values(
            payload={"erased": reason}, headers=None, status="skipped", error=f"erased ({reason})")).rowcount or 0
    return done


def _crm_subject(subject: Subject) -> list[list[str]]:
    """What a CRM needs to find the person: its own id when known, else the e-mail addresses."""
    crm = [[k, v] for k, v in subject.identities if k == "crm_id"]
    return crm or [[k, v] for k, v in subject.identities if k == "email"]


def _queue_crm_requests(hub: Hub, session: Session, subject: Subject, now: dt.datetime) -> list[m.PrivacyRequest]:
    wanted = _crm_subject(subject)
    out = []
    if not wanted:
        return out
    for name in sorted(hub.registry.sinks):
        try:
            sink = hub.registry.sink(name)
        except Exception:  # noqa: BLE001 - a broken sink must not stop the erase; logged
            log.warning("sink %s could not be built; no CRM erasure queued for it", name)
            continue
        if sink.erases_people():
            row = m.PrivacyRequest(action="erase", sink=name, customer_id=(subject.customer_ids or [None])[0],
                                   subject=wanted, status="pending", attempts=0, next_attempt_at=now, created_at=now)
            session.add(row)
            out.append(row)
    session.flush()
    return out


def erase(hub: Hub, *, actor: str, email: str | None = None, handle: str | None = None,
          customer_id: int | None = None, compact_now: bool = True) -> ErasureReport:
    """Erase the person (``gdpr erase``, ``DELETE /api/v1/customers/<id>``); see the module docstring."""
    report = ErasureReport()
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        _secure_delete(s)
        subject = find_subject(hub, s, email=email, handle=handle, customer_id=customer_id)
        ids = subject.customer_ids
        item_rows = _rows(s, m.FeedbackItem.__table__, m.FeedbackItem.customer_id, ids)
        case_ids = sorted({r["id"] for r in _rows(s, m.Case.__table__, m.Case.customer_id, ids)}
                          | {i["case_id"] for i in item_rows if i["case_id"]})
        raw_ids = sorted({i["raw_event_id"] for i in item_rows if i["raw_event_id"]}
                         | set(_payloads_mentioning(s, subject.needles)))
        requests = _queue_crm_requests(hub, s, subject, now)
        report.crm_requests = [r.id for r in requests]
        report.items = tombstone_items(s, [i["id"] for i in item_rows], "gdpr")
        report.raw_events = tombstone_raw_events(s, raw_ids, "gdpr")
        _detach_audit(s, case_ids)
        report.identities = len(s.scalars(select(m.Identity.id).where(m.Identity.customer_id.in_(ids))).all())
        report.other_rows += _purge(s, m.Case.__table__, case_ids)
        report.cases = len(case_ids)
        report.other_rows += _purge(s, m.Customer.__table__, ids) - report.identities
        report.customers = len(ids)
        report.swept = sweep(s, subject.needles)
        audit.record(s, actor=actor, action="gdpr.erase", at=now, customers=ids, cases=case_ids,
                     items=report.items, raw_events=report.raw_events, crm_requests=report.crm_requests)
    if report.crm_requests:
        counts = deliver_requests(hub, ids=report.crm_requests, compact_after=False)
        report.crm_delivered, report.crm_waiting = counts["sent"], counts["failed"] + counts["pending"]
    if compact_now:
        report.compacted = try_compact(hub)
    log.info("gdpr erase by %s: %s", actor, {k: v for k, v in report.as_dict().items() if k != "crm_requests"})
    return report


def _detach_audit(session: Session, case_ids: Sequence[int]) -> None:
    """Audit rows about erased cases stay, with the case id in their detail (an id, no personal data)."""
    for start in range(0, len(case_ids), CHUNK):
        chunk = list(case_ids[start:start + CHUNK])
        for row in session.scalars(select(m.AuditEvent).where(m.AuditEvent.case_id.in_(chunk))):
            row.detail = {**(row.detail or {}), "erased_case_id": row.case_id}
            row.case_id = None
    session.flush()


# -- the sweep --------------------------------------------------------------------------
def _pattern(needles: Sequence[str]) -> re.Pattern[str]:
    forms = sorted({f for n in needles for f in (n, json.dumps(n)[1:-1])}, key=len, reverse=True)
    alternatives = "|".join(re.escape(f) for f in forms)
    # Not inside a longer token; a full stop after it ends a sentence, one before a letter a domain.
    return re.compile(rf"(?<![{TOKEN_CHARS}])@?(?:{alternatives})(?![A-Za-z0-9_%+\-@]|\.[A-Za-z0-9])",
                      re.IGNORECASE)


def _scrub(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, dict):
        return {_scrub(k, pattern): _scrub(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pattern) for v in value]
    return value


def sweep(session: Session, needles: Sequence[str]) -> int:
    """Replace each needle, as a whole token, in every text and JSON column of every table.

    The privacy outbox's ``subject`` is left alone (the CRM still needs it;
    it is emptied on delivery).  Returns the number of rows changed.
    """
    if not needles:
        return 0
    pattern = _pattern(needles)
    changed = 0
    for table in m.Base.metadata.sorted_tables:
        pk = _single_pk(table)
        if pk is None:
            continue
        for column in table.columns:
            if column is pk or (table.name == "privacy_request" and column.name == "subject"):
                continue
            if not isinstance(column.type, String | Text | JSON) and not isinstance(
                    getattr(column.type, "impl", None), String | Text | JSON):
                continue
            for key, value in session.execute(select(pk, column).where(_mentions(column, needles))).all():
                clean = _scrub(value, pattern)
                if clean != value:
                    session.execute(update(table).where(pk == key).values({column.name: clean}))
                    changed += 1
    return changed


# -- the privacy outbox -----------------------------------------------------------------
def _backoff(hub: Hub, attempts: int) -> dt.timedelta:
    cfg = hub.config.get("dispatch", {})
    base, cap = float(cfg.get("backoff_base_seconds", 30)), float(cfg.get("backoff_max_seconds", 3600))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _claim(hub: Hub, now: dt.datetime, ids: Sequence[int] | None) -> list[int]:
    stale = now - dt.timedelta(seconds=float(hub.config.get("dispatch", {}).get("claim_timeout_seconds", 300)))
    P = m.PrivacyRequest
    ready = or_(
        P.status.in_(("pending", "failed")) & (P.next_attempt_at <= now),
        (P.status == "sending") & (P.claimed_at <= stale))
    q = select(P).where(ready).order_by(P.next_attempt_at, P.id).limit(100)
    if ids is not None:
        q = q.where(P.id.in_(list(ids)))
    if hub.db.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    with hub.db.session() as s:
        rows = s.scalars(q).all()
        for row in rows:
            row.status, row.claimed_at, row.attempts = "sending", now, row.attempts + 1
        return [r.id for r in rows]


def deliver_requests(hub: Hub, *, ids: Sequence[int] | None = None, compact_after: bool = True) -> dict[str, int]:
    """Push due CRM erasures (the scheduler's ``privacy`` job; ``erase`` for its own at once).

    An outage, 429 or expired token never ends a request: it waits (backoff,
    at least the CRM's Retry-After) and is tried again; only a CRM that refuses
    the request itself makes it ``dead`` (audited, for the admin to finish by hand).
    """
    now = hub.clock.utcnow()
    counts = {"sent": 0, "failed": 0, "dead": 0, "pending": 0}
    claimed = _claim(hub, now, ids)
    for rid in claimed:
        with hub.db.Session() as s:
            row = s.get(m.PrivacyRequest, rid)
            sink_name, wanted = row.sink, [tuple(p) for p in row.subject or []]
        outcome, error, wait = "sent", None, None
        try:
            hub.registry.sink(sink_name).erase_person(wanted)
        except FatalError as exc:
            outcome, error = ("failed", safe_reason(exc)) if exc.status == 401 else ("dead", safe_reason(exc))
        except KeyError as exc:  # the sink left the configuration: it can never be done here
            outcome, error = "dead", f"sink {sink_name!r} is not configured ({type(exc).__name__})"
        except Exception as exc:  # noqa: BLE001 - outages, 429, timeouts, a sink's bug: wait and retry
            outcome, error, wait = "failed", safe_reason(exc), getattr(exc, "retry_after", None)
        with hub.db.session() as s:
            _secure_delete(s)
            row = s.get(m.PrivacyRequest, rid)
            row.claimed_at, row.last_error = None, error
            row.status = outcome
            if outcome == "failed":
                row.next_attempt_at = now + max(_backoff(hub, row.attempts), dt.timedelta(seconds=float(wait or 0)))
                log.warning("CRM erasure %s on %s failed (attempt %s), retried: %s", rid, sink_name, row.attempts, error)
            else:
                row.subject = []  # the CRM has it (or refused it): the hub keeps no copy
                if outcome == "sent":
                    row.sent_at = now
                audit.record(s, actor="dispatcher", action=f"gdpr.crm_erase.{outcome}", at=now,
                             request_id=rid, sink=sink_name, customer_id=row.customer_id)
        counts[outcome] += 1
    if ids is not None:
        counts["pending"] = len(set(ids) - set(claimed))
    if compact_after and counts["sent"] + counts["dead"]:
        try_compact(hub)
    return counts


# -- the database file ------------------------------------------------------------------
def _secure_delete(session: Session) -> None:
    """SQLite: overwrite freed content with zeros on this connection (the erase's and the outbox's)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")


def try_compact(hub: Hub) -> bool:
    """:func:`compact`, but a busy database (a long reader, a lock) is logged, not raised:
    the erase itself is committed; ``feedback-hub gdpr compact`` finishes the file later."""
    try:
        compact(hub)
        return True
    except Exception as exc:  # noqa: BLE001 - the erase is done; only the file's free pages wait
        log.warning("database not compacted after an erase (%s); run `feedback-hub gdpr compact`", safe_reason(exc))
        return False


def compact(hub: Hub) -> None:
    """Make erased bytes unrecoverable from the database file.

    SQLite: ``VACUUM`` rebuilds the file from live rows only, and a
    ``wal_checkpoint(TRUNCATE)`` empties the write-ahead log, whose frames
    still hold old page images.  PostgreSQL: ``VACUUM`` of the touched tables
    (their dead rows become free space; the server reuses it).
    """
    engine = hub.db.engine
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            purge_deleted_text(conn)  # the full-text index keeps deleted trigrams until merged
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    elif engine.dialect.name == "postgresql":
        tables = ", ".join(f'"{t.name}"' for t in m.Base.metadata.sorted_tables)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {tables}")


# -- a source's own erase requests (deleted posts, revoked access) ------------------------
def honour_erase_request(session: Session, source: str, payload: Any) -> int:
    """Tombstone the items (and their raw events) a source asks to erase; returns how many.

    Called for raw events of kind :data:`hub.sdk.connectors.ERASE_REQUEST`
    (see there for the payload) in the transaction that marks them processed.
    """
    if not isinstance(payload, dict):
        raise ValueError("an erase request's payload is not an object")
    external_ids = [str(x) for x in payload.get("external_ids") or [] if isinstance(x, str | int)]
    author_ids = [str(x) for x in payload.get("author_ids") or [] if isinstance(x, str | int)]
    reason = str(payload.get("reason") or "source request")[:50]
    F = m.FeedbackItem
    ids: set[int] = set()
    raw_ids: set[int] = set()
    conditions = []
    if external_ids:
        conditions.append(F.external_id.in_(external_ids))
    if author_ids:
        conditions.append(F.extra["author_id"].as_string().in_(author_ids))
    if conditions:
        _secure_delete(session)
        for item_id, raw_id in session.execute(select(F.id, F.raw_event_id).where(F.source == source, or_(*conditions))):
            ids.add(item_id)
            if raw_id:
                raw_ids.add(raw_id)
        # Deliveries not (yet) made into items, e.g. still pending or failed, by their dedupe key.
        if external_ids:
            raw_ids.update(session.scalars(select(m.RawEvent.id).where(
                m.RawEvent.source == source, m.RawEvent.dedupe_key.in_(external_ids))))
    tombstone_items(session, sorted(ids), reason)
    tombstone_raw_events(session, sorted(raw_ids), reason)
    return len(ids)
