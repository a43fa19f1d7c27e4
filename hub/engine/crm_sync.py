"""Two-way CRM sync: the hub and the CRM's task stay in step.

Hub -> CRM.  A callback the CRM already holds (``followup.external_id``) may
change in the hub afterwards: re-planned (a new ``due_at``), done (contacted
or resolved in the hub: ``status = done``), cancelled (its case closed
without a callback: ``cancelled_at``) or escalated (SLA breach: priority and
owner).  Each change sets ``sync_pending``; :func:`push_changes` (run by the
dispatcher) sends the follow-up's *current wish* - not a list of commands -
with the sink's ``update``, ``complete`` or ``cancel``, and records what the
CRM now holds (``crm_due_at``, ``crm_status``).  So a change made during an
outage is sent once the CRM is back, and two re-plans in a row send only the
last; the same retry, backoff and outage bookkeeping as the dispatcher's
pushes (a sink that is down is left alone until it said to come back).

CRM -> hub.  :func:`pull_changes` (run with the completion sync) asks each
sink for its tasks' state: a task rescheduled or reassigned in the CRM
changes the follow-up's due time (and the planner's load) or CRM owner, with
an audit event.  Completed tasks are closed by the completion sync itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from hub.engine import audit
from hub.engine import load as planned_load
from hub.engine.dispatch import (
    _backoff,
    _is_outage,
    _retry_wait,
    _waiting_sinks,
    record_sink_health,
)
from hub.engine.metrics import count_push_errors
from hub.engine.teams import Teams
from hub.sdk.http import HttpError
from hub.sdk.schema import FollowupView, PushResult
from hub.storage import models as m
from hub.storage.rows import followup_views

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)

#: What the CRM's task holds after each operation.
COMPLETED, CANCELLED, OPEN = "COMPLETED", "CANCELLED", "NOT_STARTED"


@dataclass
class SyncReport:
    updated: int = 0
    completed: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


def operation(row: m.Followup) -> str:
    """What the CRM must be told about ``row``: cancel, complete or update."""
    if row.cancelled_at is not None:
        return "cancel"
    if row.status == "done":
        return "complete"
    return "update"


def needs_sync(row: m.Followup) -> bool:
    """Whether the CRM's task differs from the hub's wish (only tasks the CRM holds)."""
    if row.external_id is None:
        return False
    op = operation(row)
    if op == "cancel":
        return row.crm_status != CANCELLED
    if op == "complete":
        return row.crm_status not in (COMPLETED, CANCELLED)
    return row.crm_status not in (COMPLETED, CANCELLED) and row.crm_due_at != row.due_at


def mark(row: m.Followup, now: dt.datetime) -> None:
    """The hub changed ``row``: tell the CRM at the next dispatch (when it holds the task)."""
    if needs_sync(row):
        row.sync_pending, row.sync_next_at, row.sync_attempts, row.sync_error = True, now, 0, None


def pushed(row: m.Followup, view: FollowupView) -> None:
    """The dispatcher created ``row``'s task with ``view``'s values: what the CRM holds now."""
    row.crm_due_at, row.crm_status = view.due_at, OPEN
    row.crm_owner = view.crm_owner or row.crm_owner
    row.sync_pending = needs_sync(row)  # changed while the push was on its way
    row.sync_next_at = row.sync_next_at or row.sent_at


def with_owners(hub: Hub, session, views: list[FollowupView]) -> list[FollowupView]:
    """Views with the CRM owner of the calling team (its lead's once escalated)."""
    teams = Teams(hub.config)
    if not any(t.crm_owner or t.lead_crm_owner for t in teams):
        return views
    ids = sorted({v.case_id for v in views})
    cases = {cid: (team, escalated) for cid, team, escalated in session.execute(
        select(m.Case.id, m.Case.team, m.Case.escalated_at).where(m.Case.id.in_(ids)))}
    out = []
    for v in views:
        team_name, escalated = cases.get(v.case_id, (None, None))
        team = teams[team_name]
        owner = team.lead_crm_owner if escalated is not None and team.lead_crm_owner else team.crm_owner
        out.append(dataclasses.replace(v, crm_owner=owner) if owner else v)
    return out


# -- hub -> CRM --------------------------------------------------------------------
def _claim(hub: Hub, now: dt.datetime, limit: int, skip: frozenset[str], sink: str | None) -> list[int]:
    F = m.Followup
    lease = dt.timedelta(seconds=float(hub.config.get("dispatch", {}).get("claim_timeout_seconds", 300)))
    q = select(F).where(F.sync_pending.is_(True), F.external_id.is_not(None),
                        or_(F.sync_next_at.is_(None), F.sync_next_at <= now)).order_by(F.sync_next_at, F.id)
    if skip:
        q = q.where(F.sink.not_in(sorted(skip)))
    if sink:
        q = q.where(F.sink == sink)
    if hub.db.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    with hub.db.session() as s:
        rows = s.scalars(q.limit(limit)).all()
        for row in rows:
            # A lease: a second dispatcher skips the row until it expires (a crash mid-call).
            row.sync_next_at = now + lease
            row.sync_attempts += 1
        return [r.id for r in rows]


def _call(sink, op: str, chunk: list[FollowupView]) -> tuple[dict[int, PushResult], BaseException | None]:
    try:
        answered = {r.followup_id: r for r in getattr(sink, op)(chunk)}
    except Exception as exc:  # noqa: BLE001 - an outage or a sink's bug: kept, with a safe reason
        if not _is_outage(exc):
            return {v.id: PushResult(v.id, ok=False, error=str(exc), retriable=False) for v in chunk}, None
        error = str(exc) if isinstance(exc, HttpError) else f"{type(exc).__name__}: {exc}"
        wait = getattr(exc, "retry_after", None)
        return {v.id: PushResult(v.id, ok=False, error=error, retry_after=wait) for v in chunk}, exc
    results = {v.id: answered.get(v.id) or PushResult(v.id, ok=False, error="sink gave no result") for v in chunk}
    if all(not r.ok and r.retriable for r in results.values()):
        return results, RuntimeError(next(iter(results.values())).error or "failed")
    return results, None


def push_changes(hub: Hub, *, sink: str | None = None, batch: int = 100, max_rounds: int = 100,
                 down: dict[str, dt.datetime] | None = None) -> SyncReport:
    """Send every pending change to its CRM (see the module docstring)."""
    report = SyncReport()
    cfg = hub.config.get("dispatch", {})
    down = dict(down if down is not None else _waiting_sinks(hub, hub.clock.utcnow()))
    for _ in range(max_rounds):
        now = hub.clock.utcnow()
        ids = _claim(hub, now, batch, frozenset(down), sink)
        if not ids:
            break
        with hub.db.Session() as s:
            rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids)).order_by(m.Followup.id)).all()
            ops = {r.id: operation(r) for r in rows}
            views = with_owners(hub, s, followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds))
        groups: dict[tuple[str, str], list[FollowupView]] = {}
        for v in views:
            groups.setdefault((v.sink, ops[v.id]), []).append(v)
        results: dict[int, PushResult] = {}
        outages: dict[str, PushResult] = {}
        healthy: set[str] = set()
        for (sink_name, op), group in groups.items():
            try:
                target = hub.registry.sink(sink_name)
            except KeyError as exc:
                results.update({v.id: PushResult(v.id, ok=False, error=str(exc), retriable=False) for v in group})
                continue
            size = max(1, target.batch_size)
            for start in range(0, len(group), size):
                if sink_name in outages or sink_name in down:
                    continue
                answered, outage = _call(target, op, group[start : start + size])
                count_push_errors(sink_name, answered.values())  # /metrics: hub_crm_errors_total
                results.update(answered)
                if outage is not None:
                    outages[sink_name] = next(iter(answered.values()))
                elif any(r.ok for r in answered.values()):
                    healthy.add(sink_name)
        view_by_id = {v.id: v for v in views}
        with hub.db.session() as s:
            rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids))).all()
            record_sink_health(hub, s, outages, healthy, down, rows, "sync_attempts", now)
            for row in rows:
                _record(s, row, ops[row.id], view_by_id[row.id], results.get(row.id), down, cfg, now, report)
    return report


def _record(s, row: m.Followup, op: str, view: FollowupView, res: PushResult | None, down: dict, cfg: dict,
            now: dt.datetime, report: SyncReport) -> None:
    if res is None:  # its sink was down: not tried, the attempt not spent
        row.sync_attempts -= 1
        row.sync_next_at = max(down.get(row.sink, now), now)
        report.deferred += 1
        return
    if res.ok:
        if op == "update":
            row.crm_due_at = view.due_at
            row.crm_owner = view.crm_owner or row.crm_owner
            report.updated += 1
        elif op == "complete":
            row.crm_status = COMPLETED
            report.completed += 1
        else:
            row.crm_status = CANCELLED
            report.cancelled += 1
        audit.record(s, actor=f"sink:{row.sink}", action=f"followup.crm_{op}", at=now, case_id=row.case_id,
                     followup_id=row.id, external_id=row.external_id,
                     due_at=view.due_at.isoformat() if op == "update" else None)
        row.sync_pending = needs_sync(row)  # changed again while the call was on its way
        row.sync_next_at, row.sync_error, row.sync_attempts = now, None, 0
    elif res.retriable:
        row.sync_error = res.error
        row.sync_next_at = now + max(_backoff(cfg, row.sync_attempts), _retry_wait(res.retry_after))
        report.retried += 1
    else:  # the CRM refused the change itself: retrying will not help
        row.sync_pending, row.sync_error = False, res.error
        report.failed += 1
        report.errors.append(f"follow-up {row.id} ({op}): {res.error}")
        audit.record(s, actor=f"sink:{row.sink}", action="followup.crm_sync_failed", at=now, case_id=row.case_id,
                     followup_id=row.id, operation=op)


# -- CRM -> hub ------------------------------------------------------------------------
def reads_task_states(sink) -> bool:
    """Whether ``sink`` implements ``task_states`` (else only ``sync_completed`` is asked)."""
    from hub.sdk.connectors import CrmSink

    return type(sink).task_states is not CrmSink.task_states


def pull_changes(hub: Hub, batch: int = 100) -> int:
    """Take over due times and owners changed in the CRM; returns how many follow-ups changed.

    The completion sync does the same in its own read; this is for a sync of changes alone.
    """
    changed = 0
    for sink_name in hub.registry.sinks:
        target = hub.registry.sink(sink_name)
        if not reads_task_states(target):
            continue
        last_id = 0
        while True:
            with hub.db.Session() as s:
                rows = s.scalars(select(m.Followup).where(
                    m.Followup.sink == sink_name, m.Followup.status == "sent", m.Followup.id > last_id,
                    m.Followup.external_id.is_not(None)).order_by(m.Followup.id).limit(batch)).all()
                if not rows:
                    break
                last_id = rows[-1].id
                views = followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds)
            try:
                states = target.task_states(views)
            except HttpError as exc:
                log.warning("task sync of %s failed: %s", sink_name, exc)
                break
            changed += apply_states(hub, sink_name, [st for st in states if not st.completed])
    return changed


def apply_states(hub: Hub, sink_name: str, states) -> int:
    """Due times and owners the CRM holds that differ from what the hub last knew: taken over, audited."""
    if not states:
        return 0
    teams = Teams(hub.config)
    now = hub.clock.utcnow()
    changed = 0
    with hub.db.session() as s:
        by_id = {st.followup_id: st for st in states}
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(sorted(by_id)))).all()
        for row in rows:
            st = by_id[row.id]
            if row.sync_pending or row.status != "sent":
                continue  # the hub's own change is on its way: it wins
            moved = st.due_at is not None and st.due_at != row.crm_due_at and st.due_at != row.due_at
            if moved:
                previous = row.due_at
                team = teams[row.team]
                planned_load.move(s, team.name, previous, st.due_at, team.calendar.tz)
                row.due_at = row.crm_due_at = st.due_at
                audit.record(s, actor=f"sink:{sink_name}", action="followup.rescheduled_in_crm", at=now,
                             case_id=row.case_id, followup_id=row.id, due_at=st.due_at.isoformat(),
                             previous_due_at=previous.isoformat())
            if st.owner and st.owner != row.crm_owner:
                previous_owner, row.crm_owner = row.crm_owner, st.owner
                audit.record(s, actor=f"sink:{sink_name}", action="followup.reassigned_in_crm", at=now,
                             case_id=row.case_id, followup_id=row.id, crm_owner=st.owner,
                             previous_crm_owner=previous_owner)
                moved = True
            changed += int(moved)
    return changed
