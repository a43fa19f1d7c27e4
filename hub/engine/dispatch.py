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
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from hub.engine.cases import advance
from hub.sdk.http import FatalError, HttpError
from hub.sdk.schema import FollowupView, PushResult
from hub.storage import models as m
from hub.storage.database import after_commit
from hub.storage.rows import followup_views

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.dead


def _backoff(cfg: dict, attempts: int) -> dt.timedelta:
    base = float(cfg.get("backoff_base_seconds", 30))
    cap = float(cfg.get("backoff_max_seconds", 3600))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _claim(hub: Hub, now: dt.datetime, ignore_schedule: bool, limit: int, sink: str | None) -> list[int]:
    cfg = hub.config.get("dispatch", {})
    stale = now - dt.timedelta(seconds=float(cfg.get("claim_timeout_seconds", 300)))
    ready = m.Followup.status.in_(("pending", "failed"))
    if not ignore_schedule:
        ready = and_(ready, m.Followup.next_attempt_at <= now)
    orphaned = and_(m.Followup.status == "sending", m.Followup.claimed_at <= stale)
    q = select(m.Followup).where(or_(ready, orphaned)).order_by(m.Followup.next_attempt_at, m.Followup.id).limit(limit)
    if sink:
        q = q.where(m.Followup.sink == sink)
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
    retry time.
    """
    cfg = hub.config.get("dispatch", {})
    batch = int(cfg.get("batch_size", 100))
    report = DispatchReport()
    for _ in range(max_rounds):
        now = hub.clock.utcnow()
        ids = _claim(hub, now, ignore_schedule, batch, sink)
        if not ids:
            break
        _push_claimed(hub, ids, now, report)
        if progress:
            progress(len(ids))
    return report


def _push_claimed(hub: Hub, ids: list[int], now: dt.datetime, report: DispatchReport) -> None:
    cfg = hub.config.get("dispatch", {})
    max_attempts = int(cfg.get("max_attempts", 8))
    with hub.db.Session() as s:
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids)).order_by(m.Followup.id)).all()
        views = followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds)
    by_sink: dict[str, list[FollowupView]] = {}
    for v in views:
        by_sink.setdefault(v.sink, []).append(v)
    results: dict[int, PushResult] = {}
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
            try:
                answered = {r.followup_id: r for r in sink.push(chunk)}
            except FatalError as exc:
                answered = {v.id: PushResult(v.id, ok=False, error=str(exc), retriable=False) for v in chunk}
            except (HttpError, Exception) as exc:  # outage, bug: retry later, keep the reason
                log.warning("sink %s push failed: %s", sink_name, exc)
                answered = {v.id: PushResult(v.id, ok=False, error=f"{type(exc).__name__}: {exc}") for v in chunk}
            for v in chunk:
                results[v.id] = answered.get(v.id) or PushResult(v.id, ok=False, error="sink gave no result")
    pushed: list[tuple[FollowupView, str]] = []
    with hub.db.session() as s:
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(ids))).all()
        view_by_id = {v.id: v for v in views}
        for row in rows:
            res = results[row.id]
            if res.ok:
                row.status, row.external_id, row.sent_at, row.last_error = "sent", res.external_id, now, None
                case = s.get(m.Case, row.case_id)
                if case is not None:  # the callback is in the CRM's calendar now
                    advance(case, "scheduled", actor=f"sink:{row.sink}", now=now, followup_id=row.id)
                report.sent += 1
                pushed.append((view_by_id[row.id], res.external_id or ""))
            elif res.retriable and row.attempts < max_attempts:
                row.status, row.last_error = "failed", res.error
                row.next_attempt_at = now + _backoff(cfg, row.attempts)
                report.retried += 1
            else:
                row.status, row.last_error = "dead", res.error
                report.dead += 1
                report.errors.append(f"follow-up {row.id}: {res.error}")
            row.claimed_at = None
            if res.identities or res.customer_value is not None or res.customer_attributes:
                _learn_customer(s, row.case_id, row.sink, res, now)
        if pushed:
            after_commit(s, lambda: [hub.hook.hub_followup_pushed(followup=v, external_id=e) for v, e in pushed])


def _learn_customer(s, case_id: int, sink: str, res: PushResult, now: dt.datetime) -> None:
    """Record what a sink learned about the case's customer (CRM id, value)."""
    case = s.get(m.Case, case_id)
    if case is None or case.customer_id is None:
        return
    customer = s.get(m.Customer, case.customer_id)
    for kind, value in res.identities:
        taken = s.scalars(select(m.Identity).where(m.Identity.kind == kind, m.Identity.value == value)).first()
        if taken is None:
            s.add(m.Identity(customer_id=customer.id, kind=kind, value=value, confidence=1.0,
                             evidence=f"sink {sink}", created_at=now))
        elif taken.customer_id != customer.id:
            log.warning("sink %s says %s=%s is customer %s, but the hub links it to %s; kept the hub's link",
                        sink, kind, value, customer.id, taken.customer_id)
    if res.customer_value is not None:
        customer.value = res.customer_value
    if res.customer_attributes:
        customer.attributes = {**(customer.attributes or {}), **res.customer_attributes}
