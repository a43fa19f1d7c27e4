"""The audit trail: one function every part calls to say who did what.

Actors are written ``kind:name`` (``user:anna``, ``token:ci-export``,
``cli``, ``scheduler``, ``dispatcher``, ``system``) so the audit page can
filter by kind.  ``detail`` must never hold customers' text or personal data
(emails, handles, names): the audit outlives a GDPR erase, so it records ids.
Denied attempts are recorded too, with ``denied=True`` in their detail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from hub.storage import models as m


def record(session: Session, *, actor: str, action: str, at: dt.datetime, case_id: int | None = None,
           **detail: Any) -> m.AuditEvent:
    """Add one audit event to ``session`` (committed with the change it describes)."""
    event = m.AuditEvent(at=at, actor=actor, action=action, case_id=case_id, detail=detail)
    session.add(event)
    return event
