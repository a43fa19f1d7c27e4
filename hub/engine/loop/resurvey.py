"""Re-surveys: after a callback, ask the customer again.

A case whose callback happened (``contacted_at`` set: the CRM completed the
task, or staff marked it contacted in the hub; the case lifecycle is the one
place both go through) gets one re-survey invitation
``resurvey.delay_hours`` later, through ``resurvey.notifier``, carrying the
re-survey link of ``resurvey.source`` (the case id in a hidden field).  Its
answer joins the case as the outcome (:mod:`hub.engine.pipeline`).

A control-group case (:mod:`.control_group`) never gets a callback, so it
is re-surveyed after what a callback would have taken
(``loop.control_contact_hours``) plus the same delay: both groups are asked
the same question after about the same time, which is what makes their
answers comparable.

Planned by the dispatcher from the cases themselves rather than from an
event: whichever way a case became contacted (a CRM sync, a webhook, the UI,
the API), and even if the hub stopped right after, the next dispatch run
finds it; the idempotency key (``resurvey-case-<id>``) keeps it to one.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from hub.engine.loop import invitations
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

#: How far back a dispatch run looks for cases still to plan (a scheduler that
#: was down for less than this loses nothing).
LOOKBACK = dt.timedelta(days=30)


def resurvey_key(case_id: int) -> str:
    return f"resurvey-case-{case_id}"


def plan_resurveys(hub: Hub, now: dt.datetime) -> int:
    """Queue the re-survey of each contacted (or control) case that has none yet; returns how many."""
    cfg = hub.config.get("resurvey", {})
    notifier, source = cfg.get("notifier"), cfg.get("source")
    if not notifier or not source:
        return 0  # re-surveys are off until a notifier and a source are configured
    delay = dt.timedelta(hours=float(cfg.get("delay_hours", 72)))
    control_wait = dt.timedelta(hours=float(hub.config.get("loop", {}).get("control_contact_hours", 48)))
    C, I = m.Case, m.Invitation  # noqa: E741
    planned = select(I.id).where(I.case_id == C.id, I.kind == "resurvey").exists()
    due_cases = select(C.id, C.customer_id, C.contacted_at, C.opened_at, C.control).where(
        C.customer_id.is_not(None), ~planned,
        or_(and_(C.control.is_(False), C.contacted_at.is_not(None), C.contacted_at >= now - delay - LOOKBACK),
            and_(C.control.is_(True), C.opened_at >= now - delay - control_wait - LOOKBACK)))
    made = 0
    with hub.db.session() as s:
        for case_id, customer_id, contacted_at, opened_at, control in s.execute(due_cases.limit(5000)).all():
            due = (opened_at + control_wait if control else contacted_at) + delay
            _, created = invitations.queue(s, customer_id=customer_id, kind="resurvey", key=resurvey_key(case_id),
                                           due_at=due, now=now, source=source, notifier=notifier, case_id=case_id,
                                           trigger="control" if control else "followup", actor="dispatcher")
            made += created
    return made
