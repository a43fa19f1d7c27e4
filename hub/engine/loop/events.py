"""Customer events (churned, renewed, complaint_filed): one way to record them.

``POST /api/v1/events`` and the CRM facts job (:mod:`hub.engine.loop.crm_facts`)
both write through :func:`record_event`, so a fact looks the same whichever way
it arrived and the outcome ledger counts both.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from hub.engine import audit
from hub.storage import models as m


def record_event(session: Session, *, customer_id: int, kind: str, occurred_at: dt.datetime, source: str,
                 now: dt.datetime, actor: str) -> m.CustomerEvent:
    """A ``customer_event`` row and its audit entry, as ``POST /api/v1/events`` makes them."""
    row = m.CustomerEvent(customer_id=customer_id, type=kind, occurred_at=occurred_at, source=source[:100],
                          created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action=f"customer.{kind}", at=now, customer_id=customer_id, event_id=row.id)
    return row
