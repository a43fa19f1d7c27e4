"""Claiming rows of a small outbox (invitations, staff alerts) and draining it.

Such a table has ``status`` (pending, sending, failed, ...), ``next_attempt_at``,
``claimed_at`` and ``attempts``.  A row is claimed before it is sent, outside
any transaction that sends; a row left ``sending`` by a crash is claimed again
after ``dispatch.claim_timeout_seconds``.  On PostgreSQL ``SKIP LOCKED`` keeps
two processes from claiming the same row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, or_, select

if TYPE_CHECKING:
    from hub.engine.context import Hub

R = TypeVar("R")


def claim_due(hub: Hub, model: Any, now: dt.datetime, limit: int) -> list[int]:
    """Mark up to ``limit`` due rows of ``model`` as sending (one attempt more); their ids."""
    stale = now - dt.timedelta(seconds=float(hub.config.get("dispatch", {}).get("claim_timeout_seconds", 300)))
    q = select(model).where(or_(
        and_(model.status.in_(("pending", "failed")), model.next_attempt_at <= now),
        and_(model.status == "sending", model.claimed_at <= stale))).order_by(model.next_attempt_at, model.id)
    q = q.limit(limit)
    if hub.db.dialect == "postgresql":
        q = q.with_for_update(skip_locked=True)
    with hub.db.session() as s:
        rows = s.scalars(q).all()
        for row in rows:
            row.status, row.claimed_at = "sending", now
            row.attempts = (row.attempts or 0) + 1
        return [r.id for r in rows]


def drain(hub: Hub, model: Any, send_one: Callable[[Hub, int, dt.datetime, R], None], report: R,
          *, max_rounds: int) -> R:
    """Claim and send due rows in batches of ``dispatch.batch_size`` until none is due."""
    batch = int(hub.config.get("dispatch", {}).get("batch_size", 100))
    for _ in range(max_rounds):
        now = hub.clock.utcnow()
        ids = claim_due(hub, model, now, batch)
        if not ids:
            break
        for row_id in ids:
            send_one(hub, row_id, now, report)
    return report
