"""The randomised control group: the way to prove what callbacks achieve.

A detractor who gets a callback and then scores higher may have calmed down
anyway.  To tell the callback's effect from time's, ``loop.control_share`` of
the eligible detractors (new cases that would get a callback) are held out: no
callback, never pushed to a CRM, shown in the inbox as *control*, and
re-surveyed after the same time as the others (:mod:`.resurvey`).  The
difference in conversion (and churn, and repeat contacts) between the treated
and the control group is then the callback's effect, with its confidence
interval (:mod:`.outcomes`).

Assignment is a deterministic hash of the customer id and
``loop.control_salt``, not a random draw: the same customer is always in the
same group (a customer who complains twice is not treated once and held out
once), a replay assigns the same way, and changing the salt draws a new group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.storage import models as m


def in_control(customer_id: int, share: float, salt: str) -> bool:
    """Whether the customer falls in the control group (uniform in [0, 1) below ``share``)."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def hold_out(session: Session, config, cases: Iterable, detractor_customers: set, now) -> set[int]:
    """Mark the control cases among ``cases`` (pipeline OpenCase objects whose customer is
    in ``detractor_customers``); returns their ids, which get no follow-up."""
    loop = config.get("loop", {})
    share, salt = float(loop.get("control_share", 0) or 0), str(loop.get("control_salt", "feedback-hub"))
    if share <= 0:
        return set()
    held = [c for c in cases if c.customer in detractor_customers and in_control(c.customer.id, share, salt)]
    if not held:
        return set()
    session.execute(update(m.Case).execution_options(synchronize_session=False),
                    [{"id": c.id, "control": True} for c in held])
    for c in held:
        audit.record(session, actor="system", action="case.control_group", at=now, case_id=c.id, share=share)
    return {c.id for c in held}
