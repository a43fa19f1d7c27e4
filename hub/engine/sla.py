"""SLA operations: on track, at risk or breached, and what a breach sets off.

A case's SLA is its first contact: ``case.sla_due_at`` (business hours of its
team after opening, :mod:`hub.engine.planner`).  Per open case:

``breached``  the deadline passed without a contact;
``at_risk``   its callback is planned at or after the deadline (the planner ran
              out of capacity before it), or it has no callback and less than
              ``[sla] at_risk_share`` of its SLA's business hours is left;
``on_track``  otherwise.

Contacted cases met (or missed) their SLA for good: ``met`` / ``missed``.

:func:`sweep` (a scheduler job) escalates each breached case once: priority
one step up, the team lead (``[teams.<team>] lead``) as owner, an audit event,
the CRM told (the task's priority and owner follow through the outbox), and
``hub_sla_breached`` after commit; with ``[sla] notifier`` set, an alert to the
team lead's ``lead_email`` through that notifier (:mod:`hub.engine.sla_alerts`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.engine import audit, sla_alerts
from hub.engine.teams import Teams
from hub.sdk.schema import OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.storage.database import after_commit
from hub.storage.rows import case_view

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)

STATES = ("on_track", "at_risk", "breached", "met", "missed")
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
#: Follow-up states whose callback is still to happen.
WAITING = ("pending", "sending", "sent", "failed")


def state(case: m.Case, callback_at: dt.datetime | None, now: dt.datetime, teams: Teams,
          at_risk_share: float = 0.25) -> str | None:
    """The case's SLA state (see the module docstring), None without an SLA."""
    if case.sla_due_at is None:
        return None
    if case.contacted_at is not None:
        return "met" if case.contacted_at <= case.sla_due_at else "missed"
    if case.status not in OPEN_CASE_STATUSES:
        return None  # resolved or closed without a contact: nothing is due
    if now >= case.sla_due_at:
        return "breached"
    if callback_at is not None:
        return "at_risk" if callback_at >= case.sla_due_at else "on_track"
    calendar = teams[case.team].calendar
    total = calendar.business_hours_between(case.opened_at, case.sla_due_at)
    left = calendar.business_hours_between(now, case.sla_due_at)
    return "at_risk" if total > 0 and left < at_risk_share * total else "on_track"


def callback_of(session, case_id: int) -> m.Followup | None:
    """The case's callback still to happen (the newest), if any."""
    return session.scalars(select(m.Followup).where(
        m.Followup.case_id == case_id, m.Followup.status.in_(WAITING), m.Followup.cancelled_at.is_(None))
        .order_by(m.Followup.id.desc()).limit(1)).first()


def case_state(hub: Hub, session, case: m.Case) -> str | None:
    followup = callback_of(session, case.id)
    share = float(hub.config.get("sla", {}).get("at_risk_share", 0.25))
    return state(case, followup.due_at if followup else None, hub.clock.utcnow(), Teams(hub.config), share)


def sweep(hub: Hub, limit: int = 500) -> int:
    """Escalate every breached case not escalated before; returns how many."""
    cfg = hub.config.get("sla", {})
    if not cfg.get("escalate", True):
        return 0
    teams = Teams(hub.config)
    now = hub.clock.utcnow()
    fired: list[tuple[int, str | None, str | None, float]] = []
    with hub.db.session() as s:
        q = select(m.Case).where(m.Case.status.in_(OPEN_CASE_STATUSES), m.Case.status != "contacted",
                                 m.Case.contacted_at.is_(None), m.Case.escalated_at.is_(None),
                                 m.Case.sla_due_at.is_not(None), m.Case.sla_due_at <= now).order_by(m.Case.id)
        if hub.db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)  # two schedulers never escalate one case twice
        for case in s.scalars(q.limit(limit)):
            team = teams[case.team]
            late = team.calendar.business_hours_between(case.sla_due_at, now)
            previous_priority, previous_owner = case.priority, case.owner
            case.priority = PRIORITY_UP.get(case.priority, "high")
            if team.lead:
                case.owner = team.lead
            case.escalated_at = case.updated_at = now
            audit.record(s, actor="scheduler", action="case.sla_breached", at=now, case_id=case.id,
                         team=team.name, priority=case.priority, previous_priority=previous_priority,
                         owner=case.owner, previous_owner=previous_owner, late_by_hours=round(late, 2))
            for f in s.scalars(select(m.Followup).where(m.Followup.case_id == case.id,
                                                        m.Followup.status.in_(WAITING))):
                if team.lead_crm_owner:
                    f.crm_owner = None  # the task goes to the lead's CRM owner at the next sync
                f.sync_pending = f.external_id is not None
                f.sync_next_at = now
            sla_alerts.queue(hub, s, case, team, late, now)  # with the escalation, or not at all
            fired.append((case.id, team.name, case.owner if team.lead else None, late))
        s.flush()
        views = {cid: case_view(s.get(m.Case, cid)) for cid, *_ in fired}
        if fired:
            after_commit(s, lambda: [hub.hook.hub_sla_breached(case=views[cid], team=t, lead=lead, late_by_hours=late)
                                     for cid, t, lead, late in fired])
    if fired:
        log.warning("SLA breached and escalated: %d case(s)", len(fired))
    sla_alerts.send_due(hub)  # this breach's alerts, and earlier ones an outage held back
    return len(fired)
