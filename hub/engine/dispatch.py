"""The dispatcher: pushes outbox rows (follow-ups) to their sink, and the
completion sync that closes them.

Rows are *claimed* before the push (status ``sending``, ``claimed_at``) in a
short transaction of their own; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``
so that several dispatchers never take the same row.  A row left in
``sending`` by a crashed dispatcher is claimed again after
``dispatch.claim_timeout_seconds``; the sink's idempotency (same
``idempotency_key``) makes that second push find, not duplicate, the task.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from hub.engine.cases import CASE_STATUSES, advance, allowed
from hub.engine.identity_rules import EVIDENCE_MAX, match_key
from hub.engine.metrics import count_push_errors
from hub.sdk.http import FatalError, HttpError
from hub.sdk.schema import FollowupView, PushResult
from hub.storage import models as m
from hub.storage.database import after_commit, bulk_insert
from hub.storage.rows import followup_views

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


#: ``connector_state.stream`` of a sink's outage document (like the plugins'
#: ``[instance]`` row: bracketed, so no real stream is named so).
OUTAGE_STREAM = "[outbox]"
#: A Retry-After beyond this is a vendor's mistake, not a wait we keep.
MAX_RETRY_AFTER = dt.timedelta(days=2)


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    #: Rows claimed but not pushed because their sink was down earlier in this run.
    deferred: int = 0
    errors: list[str] = field(default_factory=list)
    #: Changes to tasks the CRM already holds (re-planned, completed, cancelled: hub.engine.crm_sync).
    synced: int = 0
    #: Survey invitations sent in the same run (hub.engine.loop), when the run is not limited to one sink.
    invitations: Any = None

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.dead


def _backoff(cfg: dict, attempts: int) -> dt.timedelta:
    base = float(cfg.get("backoff_base_seconds", 30))
    cap = float(cfg.get("backoff_max_seconds", 3600))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _retry_wait(seconds: float | None) -> dt.timedelta:
    return min(MAX_RETRY_AFTER, dt.timedelta(seconds=max(0.0, float(seconds or 0))))


# -- a sink's outage, as the dispatcher remembers it -----------------------------------
def _outage_row(s, sink: str, create: bool = False) -> m.ConnectorState | None:
    row = s.scalars(select(m.ConnectorState).where(m.ConnectorState.instance == sink,
                                                   m.ConnectorState.stream == OUTAGE_STREAM)).first()
    if row is None and create:
        row = m.ConnectorState(instance=sink, stream=OUTAGE_STREAM, state={}, items_total=0)
        s.add(row)
    return row


def sink_outages(hub: Hub) -> dict[str, dict]:
    """Sinks failing right now: name -> {"since", "retry_at", "reason", "alerted"} (ISO times)."""
    with hub.db.Session() as s:
        rows = s.scalars(select(m.ConnectorState).where(m.ConnectorState.stream == OUTAGE_STREAM)).all()
        return {r.instance: dict(r.state) for r in rows if (r.state or {}).get("since")}


def _waiting_sinks(hub: Hub, now: dt.datetime) -> dict[str, dt.datetime]:
    """Sinks whose CRM asked us to wait (Retry-After, daily reset) until a time still ahead, and that time."""
    times = {name: dt.datetime.fromisoformat(o["retry_at"]) for name, o in sink_outages(hub).items()
             if o.get("retry_at")}
    return {name: at for name, at in times.items() if at > now}


def record_sink_health(hub: Hub, s, outages: dict[str, PushResult], healthy: set[str], down: dict[str, dt.datetime],
                       rows: list[m.Followup], attempts: str, now: dt.datetime) -> None:
    """After a round of calls: sinks that answered with an outage wait (``down``
    gets when they may be tried again) and alert; those that answered well recover.
    ``attempts`` names the rows' attempt counter (pushes or CRM-sync changes), for the alert."""
    for name, res in outages.items():
        retry_at = now + _retry_wait(res.retry_after) if res.retry_after else None
        down[name] = retry_at or now
        _record_outage(hub, s, name, res.error or "failed", retry_at,
                       max(getattr(r, attempts) for r in rows if r.sink == name), now)
    for name in healthy - set(outages):
        _record_recovery(s, name, now)


def _record_outage(hub: Hub, s, sink: str, reason: str, retry_at: dt.datetime | None, attempts: int,
                   now: dt.datetime) -> None:
    """Remember that ``sink`` is failing; alert the admin once it has failed for a while."""
    cfg = hub.config.get("dispatch", {})
    row = _outage_row(s, sink, create=True)
    state = dict(row.state or {})
    since = dt.datetime.fromisoformat(state["since"]) if state.get("since") else now
    state.update(since=since.isoformat(), reason=reason, retry_at=retry_at.isoformat() if retry_at else None)
    long_enough = now - since >= dt.timedelta(seconds=float(cfg.get("alert_after_seconds", 900)))
    if not state.get("alerted") and (long_enough or attempts >= int(cfg.get("max_attempts", 8))):
        state["alerted"] = now.isoformat()
        log.warning("sink %s has been failing since %s (%s); follow-ups wait and are retried%s", sink,
                    since.isoformat(), reason, f" after {retry_at.isoformat()}" if retry_at else "")
        s.add(m.AuditEvent(at=now, actor="dispatcher", action="sink.outage", detail={
            "sink": sink, "since": since.isoformat(), "reason": reason,
            "retry_at": retry_at.isoformat() if retry_at else None}))
    row.state = state  # a new dict: the JSON column is not mutation-tracked


def _record_recovery(s, sink: str, now: dt.datetime) -> None:
    row = _outage_row(s, sink)
    if row is None or not (row.state or {}).get("since"):
        return
    if row.state.get("alerted"):
        log.warning("sink %s works again (failing since %s)", sink, row.state["since"])
        s.add(m.AuditEvent(at=now, actor="dispatcher", action="sink.recovered",
                           detail={"sink": sink, "since": row.state["since"]}))
    row.state = {}


# -- claiming ----------------------------------------------------------------------
def _claim(hub: Hub, now: dt.datetime, ignore_schedule: bool, limit: int, sink: str | None,
           after_id: int = 0, skip_sinks: frozenset[str] = frozenset()) -> list[int]:
    cfg = hub.config.get("dispatch", {})
    stale = now - dt.timedelta(seconds=float(cfg.get("claim_timeout_seconds", 300)))
    ready = m.Followup.status.in_(("pending", "failed"))
    if ignore_schedule:
        # --all: the rows still waiting for their backoff too, each once per run (ids ascending).
        ready = and_(ready, m.Followup.id > after_id)
        order = (m.Followup.id,)
    else:
        ready = and_(ready, m.Followup.next_attempt_at <= now)
        order = (m.Followup.next_attempt_at, m.Followup.id)
    orphaned = and_(m.Followup.status == "sending", m.Followup.claimed_at <= stale)
    q = select(m.Followup).where(or_(ready, orphaned)).order_by(*order).limit(limit)
    if sink:
        q = q.where(m.Followup.sink == sink)
    if skip_sinks:
        q = q.where(m.Followup.sink.not_in(sorted(skip_sinks)))
    if hub.db.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    with hub.db.session() as s:
        rows = s.scalars(q).all()
        for row in rows:
            row.status = "sending"
            row.claimed_at = now
            row.attempts += 1
        return [r.id for r in rows]


def dispatch(hub: Hub, *, ignore_schedule: bool = False, sink: str | None = None, max_rounds: int = 1000,
             progress=None) -> DispatchReport:
    """Push every follow-up that is due for (re)sending; returns counts.

    ``ignore_schedule`` (CLI ``--all``) also takes rows waiting for their
    backoff, each at most once.  A sink that asked to be left alone until a
    time (Retry-After, daily reset) is not pushed before then, with or without
    ``--all``; one that fails during the run is not pushed again in it.  Rows
    not pushed for either reason keep their attempts.
    """
    cfg = hub.config.get("dispatch", {})
    batch = int(cfg.get("batch_size", 100))
    report = DispatchReport()
    # Sinks not to push in this run -> when to try them again: those whose CRM
    # said when to come back (Retry-After, daily reset; --all too), and those
    # that fail during the run.
    down: dict[str, dt.datetime] = _waiting_sinks(hub, hub.clock.utcnow())
    last_id = 0
    for _ in range(max_rounds):
        now = hub.clock.utcnow()
        ids = _claim(hub, now, ignore_schedule, batch, sink, last_id, frozenset(down))
        if not ids:
            break
        last_id = max(ids)
        _push_claimed(hub, ids, now, report, down)
        if progress:
            progress(len(ids))
    # Then the changes to tasks already in a CRM, through the same outage bookkeeping.
    from hub.engine.crm_sync import push_changes

    changes = push_changes(hub, sink=sink, down=down)
    report.synced = changes.updated + changes.completed + changes.cancelled
    report.errors.extend(changes.errors)
    if sink is None:  # invitations (re-surveys, surveys, review requests) go out with the follow-ups
        from hub.engine.loop.run import run_invitations

        report.invitations = run_invitations(hub)
    return report


# -- pushing -----------------------------------------------------------------------
def _is_outage(exc: BaseException) -> bool:
    """The sink or its CRM is unavailable (not the follow-up's fault): wait, never give up.

    FatalError is permanent, except 401: an expired or rotated token is fixed
    in the configuration, and the follow-ups must still be there then.
    """
    if isinstance(exc, FatalError):
        return exc.status == 401
    return True  # RetriableError (429, 5xx, timeouts), connection errors, a sink's bug


def _push_chunk(sink, sink_name: str, chunk: list[FollowupView]) -> tuple[dict[int, PushResult], bool]:
    """One sink call; returns its results and whether the sink as a whole failed (an outage)."""
    try:
        answered = {r.followup_id: r for r in sink.push(chunk)}
    except Exception as exc:  # noqa: BLE001 - an outage or a sink's bug: kept, with a safe reason
        if not _is_outage(exc):
            return {v.id: PushResult(v.id, ok=False, error=str(exc), retriable=False) for v in chunk}, False
        log.warning("sink %s push failed: %s", sink_name, exc)
        wait = getattr(exc, "retry_after", None)
        error = str(exc) if isinstance(exc, HttpError) else f"{type(exc).__name__}: {exc}"
        return {v.id: PushResult(v.id, ok=False, error=error, retry_after=wait) for v in chunk}, True
    results = {v.id: answered.get(v.id) or PushResult(v.id, ok=False, error="sink gave no result") for v in chunk}
    # Every task of the call failed and may be retried: the CRM is down, not the tasks wrong.
    down = all(not r.ok and r.retriable for r in results.values())
    return results, down


def _push_claimed(hub: Hub, ids: list[int], now: dt.datetime, report: DispatchReport,
                  down: dict[str, dt.datetime]) -> None:
    cfg = hub.config.get("dispatch", {})
    with hub.db.Session() as s:
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids)).order_by(m.Followup.id)).all()
        from hub.engine.crm_sync import with_owners  # the calling team's CRM owner on each task

        views = with_owners(hub, s, followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds))
    by_sink: dict[str, list[FollowupView]] = {}
    for v in views:
        by_sink.setdefault(v.sink, []).append(v)
    results: dict[int, PushResult] = {}
    outages: dict[str, PushResult] = {}  # sink -> a failed result of its outage (reason, wait)
    healthy: set[str] = set()
    for sink_name, group in by_sink.items():
        try:
            sink = hub.registry.sink(sink_name)
        except KeyError as exc:
            for v in group:
                results[v.id] = PushResult(v.id, ok=False, error=str(exc), retriable=False)
            continue
        size = max(1, sink.batch_size)
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            if sink_name in outages or sink_name in down:
                continue  # down: not pushed, so no attempt spent (see below)
            answered, failed = _push_chunk(sink, sink_name, chunk)
            count_push_errors(sink_name, answered.values())  # /metrics: hub_crm_errors_total
            results.update(answered)
            if failed:
                outages[sink_name] = next(iter(answered.values()))
            elif any(r.ok for r in answered.values()):
                healthy.add(sink_name)
    pushed: list[tuple[FollowupView, str]] = []
    from hub.engine.crm_sync import pushed as record_crm_task

    # One query for the rows' cases and a few for what the sinks learned, not some per row
    # (no autoflush: nothing here reads back what it wrote; a drain writes 100 rows at a time).
    with hub.db.session() as s, s.no_autoflush:
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids))).all()
        cases = {c.id: c for c in s.scalars(select(m.Case).where(m.Case.id.in_({r.case_id for r in rows})))}
        view_by_id = {v.id: v for v in views}
        record_sink_health(hub, s, outages, healthy, down, rows, "attempts", now)
        scheduled: list[tuple[m.Case, m.Followup]] = []
        for row in rows:
            res = results.get(row.id)
            row.claimed_at = None
            if res is None:  # claimed, but its sink was down: back to waiting, the attempt not spent
                row.status, row.attempts = "failed" if row.attempts > 1 else "pending", row.attempts - 1
                row.next_attempt_at = max(down.get(row.sink, now), row.next_attempt_at)
                report.deferred += 1
            elif res.ok:
                # Completed or cancelled in the hub while the push was on its way: the
                # task exists now, so the CRM is told that next (crm_sync), not the row reopened.
                settled = row.status == "done" or row.cancelled_at is not None
                row.external_id, row.sent_at, row.last_error = res.external_id, now, None
                row.status = "dead" if row.cancelled_at else "done" if row.status == "done" else "sent"
                record_crm_task(row, view_by_id[row.id])
                case = cases.get(row.case_id)
                if case is not None and not settled:  # the callback is in the CRM's calendar now
                    scheduled.append((case, row))
                report.sent += 1
                pushed.append((view_by_id[row.id], res.external_id or ""))
            elif res.retriable:
                # Never dead for an outage: wait for what the CRM asked, at least the (capped) backoff.
                row.status, row.last_error = "failed", res.error
                row.next_attempt_at = now + max(_backoff(cfg, row.attempts), _retry_wait(res.retry_after))
                report.retried += 1
            else:  # the CRM refused this task itself: retrying will not help
                row.status, row.last_error = "dead", res.error
                report.dead += 1
                report.errors.append(f"follow-up {row.id}: {res.error}")
        _schedule_cases(s, scheduled, now)
        _learn_customers(s, [(row, results.get(row.id)) for row in rows], cases, now)
        if pushed:
            after_commit(s, lambda: [hub.hook.hub_followup_pushed(followup=v, external_id=e) for v, e in pushed])


def requeue(hub: Hub, *, include_dead: bool = False, sink: str | None = None) -> int:
    """Put failed (and with ``include_dead`` dead) follow-ups back to pending, due now.

    Attempts are kept: a row tried before makes the sink look for the task it
    may have created before creating one (exactly once).
    """
    statuses = ("failed", "dead") if include_dead else ("failed",)
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        # A cancelled callback (its case closed) stays dead: pushing it would call a closed case.
        q = select(m.Followup).where(m.Followup.status.in_(statuses), m.Followup.cancelled_at.is_(None))
        if sink:
            q = q.where(m.Followup.sink == sink)
        rows = s.scalars(q).all()
        for row in rows:
            row.status, row.next_attempt_at, row.claimed_at = "pending", now, None
        if rows:
            s.add(m.AuditEvent(at=now, actor="cli", action="outbox.requeue", detail={
                "count": len(rows), "dead": include_dead, "sink": sink}))
        return len(rows)


def _schedule_cases(s, pushed: list[tuple[m.Case, m.Followup]], now: dt.datetime) -> None:
    """Advance the pushed follow-ups' cases to ``scheduled``, as :func:`~hub.engine.cases.advance` does,
    in one UPDATE and one INSERT of audit events for the batch.

    Through the ORM each case would be an UPDATE of its own (its version
    counter is SQL: ``version + 1``), a round trip per follow-up on PostgreSQL.
    """
    rank = {status: i for i, status in enumerate(CASE_STATUSES)}
    moved: dict[int, tuple[str, m.Followup]] = {}
    for case, row in pushed:
        if case.id in moved or rank[case.status] >= rank["scheduled"]:
            continue  # already that far (or moved by an earlier follow-up of this batch)
        if "scheduled" not in allowed(case.status):
            advance(case, "scheduled", actor=f"sink:{row.sink}", now=now, followup_id=row.id)  # raises, as before
        moved[case.id] = (case.status, row)
    if not moved:
        return
    s.execute(update(m.Case).where(m.Case.id.in_(sorted(moved)))
              .values(status="scheduled", updated_at=now, version=m.Case.version + 1)
              .execution_options(synchronize_session=False))
    s.execute(insert(m.AuditEvent), [
        {"at": now, "actor": f"sink:{row.sink}", "action": "case.scheduled", "case_id": case_id,
         "detail": {"from": before, "to": "scheduled", "followup_id": row.id}}
        for case_id, (before, row) in moved.items()])
    for case, _row in pushed:  # the loaded objects say what the database says now (no flush: not dirty)
        if case.id in moved:
            set_committed_value(case, "status", "scheduled")
            set_committed_value(case, "updated_at", now)


def _learn_customers(s, answered: list[tuple[m.Followup, PushResult | None]], cases: dict[int, m.Case],
                     now: dt.datetime) -> None:
    """Record what sinks learned about the cases' customers (CRM id, value), in a few queries per batch."""
    learned = [(row, res, cases[row.case_id].customer_id) for row, res in answered
               if res is not None and (res.identities or res.customer_value is not None or res.customer_attributes)
               and row.case_id in cases and cases[row.case_id].customer_id is not None]
    if not learned:
        return
    # Each customer's attributes, for the merge; the changes go back by primary key below, not as
    # unit-of-work rows (a drain learns a contact id and a value for each of 10,000 customers).
    attributes = dict(s.execute(select(m.Customer.id, m.Customer.attributes).where(
        m.Customer.id.in_({c for _, _, c in learned}))).all())
    by_kind: dict[str, set[str]] = {}
    for _, res, _ in learned:
        for kind, value in res.identities:
            by_kind.setdefault(kind, set()).add(value)
    #: (kind, value) -> the customer it belongs to: in the database, or added by this batch.
    owner: dict[tuple[str, str], int] = {}
    for kind, values in by_kind.items():
        ordered = sorted(values)
        for start in range(0, len(ordered), 500):
            q = select(m.Identity.value, m.Identity.customer_id).where(
                m.Identity.kind == kind, m.Identity.value.in_(ordered[start : start + 500]))
            owner.update({(kind, value): cid for value, cid in s.execute(q)})
    new: list[dict[str, Any]] = []  # inserted in one statement below the ORM, not a unit-of-work row each
    changes: dict[int, dict[str, Any]] = {}
    for row, res, customer_id in learned:
        if customer_id not in attributes:
            continue
        for kind, value in res.identities:
            taken = owner.get((kind, value))
            if taken is None:
                new.append({"customer_id": customer_id, "kind": kind, "value": value, "confidence": 1.0,
                            "evidence": f"sink {row.sink}"[:EVIDENCE_MAX], "created_at": now,
                            "match_key": match_key(kind, value)})  # as every other identity: handles meet it
                owner[(kind, value)] = customer_id
            elif taken != customer_id:
                log.warning("sink %s says %s=%s is customer %s, but the hub links it to %s; kept the hub's link",
                            row.sink, kind, value, customer_id, taken)
        if res.customer_value is not None:
            changes.setdefault(customer_id, {})["value"] = res.customer_value
        if res.customer_attributes:  # merged over what earlier answers of this batch merged
            attributes[customer_id] = {**(attributes[customer_id] or {}), **res.customer_attributes}
            changes.setdefault(customer_id, {})["attributes"] = attributes[customer_id]
    if new:
        bulk_insert(s, m.Identity.__table__, new)
    _update_by_id(s, m.Customer, changes)


def _update_by_id(s, model, changes: dict[int, dict[str, Any]]) -> None:
    """Each row's new column values by primary key: one executemany per set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row_id, change in changes.items():
        by_columns.setdefault(tuple(sorted(change)), []).append({"id": row_id, **change})
    for rows in by_columns.values():
        s.execute(update(model), rows)
