"""What staff do with a case, once, for the web UI and the case API alike.

Assign, note, plan or re-plan the callback, mark contacted, resolve, close,
reopen.  Each function works in the caller's session (the caller commits),
moves the status only through :mod:`hub.engine.cases` (so a move the
lifecycle forbids raises :class:`~hub.engine.cases.InvalidTransition`),
writes its audit event, and leaves the CRM's task to follow through the
outbox (:mod:`hub.engine.crm_sync`): a re-plan moves the *same* task, a
contact or resolution completes it, a close without callback cancels it.
Bad input raises :class:`ActionError` naming the field.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.engine import audit, crm_sync
from hub.engine import cases as lifecycle
from hub.engine import load as planned_load
from hub.engine.completion import complete_followups
from hub.engine.planner import planner_for
from hub.engine.teams import Teams
from hub.sdk.schema import Completion
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

#: How a resolved case ended (reports group by these).
OUTCOMES = ("callback_done", "solved_remotely", "compensated", "explained", "not_reachable", "no_action_needed")
#: Follow-up states in which the callback is still to happen (dead: given up, may be re-planned).
OPEN_FOLLOWUP = ("pending", "sending", "sent", "failed", "dead")
#: States whose callback holds a slot of the planner's load.
HOLDING_SLOT = ("pending", "sending", "sent", "failed")
MAX_NOTE = 5000


class ActionError(ValueError):
    """Input an action refuses: ``field`` names it; ``conflict`` when the case's state is the problem."""

    def __init__(self, field: str, message: str, conflict: bool = False):
        self.field, self.message, self.conflict = field, message, conflict
        super().__init__(f"{field}: {message}")


def assignable_users(session: Session) -> list[str]:
    return list(session.scalars(select(m.User.username).where(
        m.User.active.is_(True), m.User.role.in_(("agent", "admin"))).order_by(m.User.username)))


def _open(case: m.Case, what: str) -> None:
    if not lifecycle.is_open(case):
        raise ActionError("status", f"case {case.id} is {case.status}: reopen it to {what}", conflict=True)


def followups(session: Session, case: m.Case) -> list[m.Followup]:
    return list(session.scalars(select(m.Followup).where(m.Followup.case_id == case.id).order_by(m.Followup.id)))


def _tz(hub: Hub, case: m.Case):
    return Teams(hub.config)[case.team].calendar.tz


# -- the actions -----------------------------------------------------------------------
def assign(session: Session, case: m.Case, owner: str, *, actor: str, now: dt.datetime) -> None:
    if owner not in assignable_users(session):
        raise ActionError("owner", f"no active agent or admin named {owner!r}")
    _open(case, "assign it")
    previous = case.owner
    case.owner = owner
    lifecycle.advance(case, "assigned", actor=actor, now=now, action="case.assigned", owner=owner,
                      previous_owner=previous)


def add_note(session: Session, case: m.Case, text: str, *, actor: str, now: dt.datetime) -> None:
    text = (text or "").strip()
    if not text or len(text) > MAX_NOTE:
        raise ActionError("note", f"a note has 1 to {MAX_NOTE} characters")
    case.updated_at = now
    audit.record(session, actor=actor, action="case.note", at=now, case_id=case.id, text=text)


def plan_callback(hub: Hub, session: Session, case: m.Case, when: dt.datetime, *, actor: str, now: dt.datetime,
                  **detail: Any) -> m.Followup:
    """Plan or re-plan the callback at ``when``.

    A callback not yet in the CRM is moved (the dispatcher pushes it with the
    new time); one the CRM already holds keeps its task, whose due time the
    next dispatch updates (``hs_timestamp`` in HubSpot) - never a second task.
    """
    if when.tzinfo is None:
        raise ActionError("callback_at", "give a time zone (e.g. 2026-11-23T10:30:00+01:00)")
    when = when.astimezone(dt.UTC)
    if when <= now:
        raise ActionError("callback_at", "pick a time in the future")
    _open(case, "plan a callback")
    team = Teams(hub.config)[case.team]
    rows = followups(session, case)
    latest = next((f for f in reversed(rows) if f.cancelled_at is None), None)
    info: dict[str, Any] = {"due_at": when.isoformat(), **detail}
    if not team.calendar.is_open(when):
        info["outside_business_hours"] = True  # an agent may agree a time with the customer
    if latest is not None and latest.status in ("pending", "failed", "dead", "sending", "sent"):
        info.update(followup_id=latest.id, previous_due_at=latest.due_at.isoformat(), moved=True)
        holding = latest.status in HOLDING_SLOT
        if holding:
            planned_load.move(session, team.name, latest.due_at, when, team.calendar.tz)
        else:
            planned_load.add(session, team.name, when, team.calendar.tz)
        latest.due_at, latest.team = when, latest.team or team.name
        if latest.status in ("pending", "failed", "dead"):
            latest.status, latest.next_attempt_at, latest.last_error = "pending", now, None
        else:  # in the CRM (or on its way there): the same task moves
            crm_sync.mark(latest, now)
            if latest.external_id:
                info["external_id"] = latest.external_id
        row = latest
    else:
        key = f"hub-case-{case.id}-callback" + (f"-{len(rows) + 1}" if rows else "")
        row = m.Followup(case_id=case.id, sink=hub.registry.followup_sink, idempotency_key=key, due_at=when,
                         team=team.name, status="pending", attempts=0, next_attempt_at=now, created_at=now)
        session.add(row)
        session.flush()
        planned_load.add(session, team.name, when, team.calendar.tz)
        info["followup_id"] = row.id
    lifecycle.advance(case, "scheduled", actor=actor, now=now, action="case.callback_planned", **info)
    return row


def replan(hub: Hub, session: Session, case: m.Case, *, actor: str, now: dt.datetime) -> m.Followup:
    """One click: the planner's next slot in the team's capacity, before the SLA where it can."""
    _open(case, "plan a callback")
    planner = planner_for(hub, session, now)
    current = next((f for f in reversed(followups(session, case))
                    if f.cancelled_at is None and f.status in HOLDING_SLOT), None)
    team = planner.team(case.team)
    holds = (team.name, planned_load.slot_of(current.due_at, team.calendar.tz)) if current else None
    plan = planner.plan_slot(now, case.sla_due_at, team.name, ignore=holds)
    return plan_callback(hub, session, case, plan.at, actor=actor, now=now, replanned=True,
                         sla_at_risk=plan.sla_at_risk)


def mark_contacted(hub: Hub, session: Session, case: m.Case, outcome: str | None, *, actor: str,
                   now: dt.datetime) -> int:
    """The customer was reached: open callbacks done (their CRM tasks completed), case ``contacted``."""
    outcome = (outcome or "").strip() or "contacted"
    if len(outcome) > 50:
        raise ActionError("outcome", "at most 50 characters")
    _open(case, "record a contact")
    previous = case.status
    open_ids = [f.id for f in followups(session, case) if f.status in OPEN_FOLLOWUP and f.cancelled_at is None]
    session.flush()
    done = complete_followups(hub, [Completion(fid, outcome) for fid in open_ids], actor=actor, session=session)
    lifecycle.advance(case, "contacted", actor=actor, now=now, action="case.contacted", previous=previous,
                      followups_completed=done)
    return done


def resolve(hub: Hub, session: Session, case: m.Case, *, outcome: str | None, root_cause: str | None,
            resolved: bool | None, actor: str, now: dt.datetime) -> None:
    """Resolve: how it ended, why it happened, whether it is fixed for the customer.

    Callbacks still open are done with it (a resolved case needs no call): their
    CRM tasks are completed at the next dispatch.
    """
    if outcome not in OUTCOMES:
        raise ActionError("outcome", "one of " + ", ".join(OUTCOMES))
    root_cause = (root_cause or "").strip()
    if not root_cause or len(root_cause) > 200:
        raise ActionError("root_cause", "1 to 200 characters")
    if resolved is None:
        raise ActionError("resolved", "say whether it is resolved for the customer (true or false)")
    if "resolved" not in lifecycle.allowed(case.status):
        raise lifecycle.InvalidTransition(case.id, case.status, "resolved")
    completed = []
    for f in followups(session, case):
        if f.status in OPEN_FOLLOWUP and f.cancelled_at is None and f.status != "dead":
            f.status, f.completed_at = "done", now
            crm_sync.mark(f, now)
            completed.append(f.id)
    case.outcome, case.root_cause, case.resolved = outcome, root_cause, bool(resolved)
    case.contacted_at = case.contacted_at or (now if outcome != "not_reachable" else None)
    lifecycle.transition(case, "resolved", actor=actor, now=now, outcome=outcome, root_cause=root_cause,
                         resolved=bool(resolved), followups_completed=completed or None)


def close(hub: Hub, session: Session, case: m.Case, reason: str | None, *, actor: str, now: dt.datetime) -> list[int]:
    """Close for good; callbacks still to happen are cancelled (in the CRM too).  Returns their ids."""
    if "closed" not in lifecycle.allowed(case.status):
        raise lifecycle.InvalidTransition(case.id, case.status, "closed")
    reason = (reason or "").strip()[:200] or None
    cancelled = []
    if lifecycle.is_open(case):
        tz = _tz(hub, case)
        for f in followups(session, case):
            if f.status in HOLDING_SLOT and f.cancelled_at is None:
                planned_load.remove(session, Teams(hub.config)[f.team or case.team].name, f.due_at, tz)
                f.status, f.last_error, f.cancelled_at = "dead", "cancelled: case closed without callback", now
                crm_sync.mark(f, now)  # a task the CRM holds is withdrawn there
                cancelled.append(f.id)
    lifecycle.transition(case, "closed", actor=actor, now=now, reason=reason, followups_cancelled=cancelled or None)
    return cancelled


def reopen(session: Session, case: m.Case, *, actor: str, now: dt.datetime) -> None:
    if lifecycle.is_open(case):
        raise ActionError("status", f"case {case.id} is still open", conflict=True)
    lifecycle.reopen(case, actor=actor, now=now)
