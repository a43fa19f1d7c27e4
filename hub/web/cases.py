"""The case page: the customer's story across channels, and what an agent
does about it (assign, note, plan the callback, mark contacted, resolve,
close, reopen).

Every action writes an :class:`~hub.storage.models.AuditEvent` in the same
transaction as its change, and needs the ``agent`` role.  Status changes go
through :mod:`hub.engine.cases` (the lifecycle table), never set here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import flask
from sqlalchemy import func, select

from hub.engine import cases as lifecycle
from hub.engine.completion import complete_followups
from hub.engine.context import current_hub
from hub.sdk.schema import Completion
from hub.storage import models as m
from hub.storage.themes import themes_of_extra
from hub.web.common import audit, current_user, db_session, now, requires, ui_blueprint
from hub.web.filters import localtime, team_tz
from hub.web.forms import OUTCOMES, AssignForm, CloseForm, ContactForm, NoteForm, PlanForm, ResolveForm
from hub.web.i18n import gettext

bp = ui_blueprint("cases", __name__, url_prefix="/cases")

TIMELINE_LIMIT = 500
#: Follow-up states in which the callback is still to happen.
OPEN_FOLLOWUP = ("pending", "sending", "sent", "failed", "dead")
#: Follow-up states the dispatcher would still push: closing a case cancels these.
UNPUSHED_FOLLOWUP = ("pending", "failed")


def _case_or_404(case_id: int) -> m.Case:
    case = db_session().get(m.Case, case_id)
    if case is None:
        flask.abort(404)
    return case


def _assignable_users() -> list[str]:
    return list(db_session().scalars(select(m.User.username).where(
        m.User.active.is_(True), m.User.role.in_(("agent", "admin"))).order_by(m.User.username)))


@bp.get("/<int:case_id>")
def show(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    customer = session.get(m.Customer, case.customer_id) if case.customer_id else None
    identities = session.scalars(select(m.Identity).where(m.Identity.customer_id == case.customer_id)
                                 .order_by(m.Identity.id)).all() if customer else []
    # The whole customer, not just this case: the agent sees the earlier
    # complaint on another channel too.
    who = m.FeedbackItem.customer_id == case.customer_id if customer else m.FeedbackItem.case_id == case.id
    timeline = session.scalars(select(m.FeedbackItem).where(who)
                               .order_by(m.FeedbackItem.occurred_at, m.FeedbackItem.id).limit(TIMELINE_LIMIT)).all()
    case_items = [it for it in timeline if it.case_id == case.id]
    worst = max(case_items, key=lambda it: (it.risk, it.id), default=None)
    item_themes = {it.id: themes_of_extra(it.extra) for it in timeline}
    case_themes = list(dict.fromkeys(t for it in case_items for t in item_themes[it.id]))  # union, first seen first
    signals = sorted(worst.risk_reasons or [], key=lambda s: -float(s.get("weight", 0))) if worst else []
    followups = session.scalars(select(m.Followup).where(m.Followup.case_id == case.id).order_by(m.Followup.id)).all()
    events = session.scalars(select(m.AuditEvent).where(m.AuditEvent.case_id == case.id)
                             .order_by(m.AuditEvent.at.desc(), m.AuditEvent.id.desc()).limit(200)).all()
    channels = sorted({it.channel for it in timeline})
    open_followup = next((f for f in reversed(followups) if f.status in OPEN_FOLLOWUP), None)
    soon = now() + dt.timedelta(hours=2)
    default_due = open_followup.due_at if open_followup and open_followup.due_at > soon else soon
    plan_form = PlanForm(data={"due": default_due.astimezone(team_tz()).replace(tzinfo=None, second=0,
                                                                                 microsecond=0)})
    return flask.render_template(
        "case.html", case=case, customer=customer, identities=identities, timeline=timeline, worst=worst,
        signals=signals, max_weight=max([float(s.get("weight", 0)) for s in signals] + [1.0]),
        followups=followups, open_followup=open_followup, events=events, channels=channels,
        users=_assignable_users(), plan_form=plan_form, outcomes=OUTCOMES,
        is_open=lifecycle.is_open(case), can_close="closed" in lifecycle.allowed(case.status),
        root_causes=root_causes(), item_themes=item_themes, case_themes=case_themes,
    )


def _back(case_id: int):
    return flask.redirect(flask.url_for("cases.show", case_id=case_id))


def _invalid(form) -> None:
    names = ", ".join(sorted(form.errors))
    flask.flash(gettext("Check the form: {fields}.", fields=names), "error")


def _actor() -> str:
    return f"user:{current_user().username}"


def _closed(case: m.Case) -> bool:
    if lifecycle.is_open(case):
        return False
    flask.flash(gettext("This case is already closed."), "error")
    return True


@bp.post("/<int:case_id>/assign")
@requires("agent")
def assign(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    form = AssignForm()
    if not form.validate_on_submit():
        _invalid(form)
        return _back(case_id)
    owner = current_user().username if form.owner.data == "me" else form.owner.data
    if owner not in _assignable_users():
        flask.flash(gettext("No such user."), "error")
        return _back(case_id)
    if _closed(case):
        return _back(case_id)
    previous = case.owner
    case.owner = owner
    lifecycle.advance(case, "assigned", actor=_actor(), now=now(), action="case.assigned", owner=owner,
                      previous_owner=previous)
    session.commit()
    flask.flash(gettext("Assigned to {name}.", name=owner), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/note")
@requires("agent")
def note(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    form = NoteForm()
    if not form.validate_on_submit():
        _invalid(form)
        return _back(case_id)
    case.updated_at = now()
    audit(session, "case.note", case.id, text=form.text.data.strip())
    session.commit()
    flask.flash(gettext("Note added."), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/plan")
@requires("agent")
def plan(case_id: int):
    """Plan or re-plan the callback.

    A callback not yet in the CRM is moved (the dispatcher pushes it with the
    new time).  One the CRM already holds cannot be moved from here (sinks
    have no 'update task' call), so a new follow-up is queued for the new
    time; the audit record names the earlier task.
    """
    session = db_session()
    case = _case_or_404(case_id)
    form = PlanForm()
    if not form.validate_on_submit():
        _invalid(form)
        return _back(case_id)
    if _closed(case):
        return _back(case_id)
    when = form.due.data.replace(tzinfo=team_tz()).astimezone(dt.UTC)
    current = now()
    if when <= current:
        flask.flash(gettext("Pick a time in the future."), "error")
        return _back(case_id)
    followups = session.scalars(select(m.Followup).where(m.Followup.case_id == case.id)
                                .order_by(m.Followup.id)).all()
    latest = followups[-1] if followups else None
    detail: dict[str, Any] = {"due_at": when.isoformat()}
    if latest is not None and latest.status in ("pending", "failed", "dead"):
        detail.update(followup_id=latest.id, previous_due_at=latest.due_at.isoformat(), moved=True)
        latest.due_at, latest.status, latest.next_attempt_at, latest.last_error = when, "pending", current, None
    else:
        if latest is not None and latest.status in ("sending", "sent"):
            detail.update(previous_followup_id=latest.id, previous_external_id=latest.external_id)
        key = f"hub-case-{case.id}-callback" + (f"-{len(followups) + 1}" if followups else "")
        row = m.Followup(case_id=case.id, sink=current_hub().registry.followup_sink, idempotency_key=key,
                         due_at=when, status="pending", attempts=0, next_attempt_at=current, created_at=current)
        session.add(row)
        session.flush()
        detail["followup_id"] = row.id
    lifecycle.advance(case, "scheduled", actor=_actor(), now=current, action="case.callback_planned", **detail)
    session.commit()
    flask.flash(gettext("Callback planned for {when}.", when=localtime(when)), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/contacted")
@requires("agent")
def contacted(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    form = ContactForm()
    form.validate()
    if _closed(case):
        return _back(case_id)
    outcome = form.outcome.data or "contacted"
    open_ids = list(session.scalars(select(m.Followup.id).where(
        m.Followup.case_id == case.id, m.Followup.status.in_(OPEN_FOLLOWUP))))
    previous = case.status
    # complete_followups commits in a session of its own: end ours first so
    # SQLite's write lock is free for it.  It moves the case to contacted
    # when it completes a follow-up; without one, the advance below does.
    session.commit()
    done = complete_followups(current_hub(), [Completion(fid, outcome) for fid in open_ids], actor=_actor())
    session.refresh(case)
    lifecycle.advance(case, "contacted", actor=_actor(), now=now(), action="case.contacted", previous=previous,
                      followups_completed=done)
    session.commit()
    flask.flash(gettext("Marked as contacted."), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/resolve")
@requires("agent")
def resolve(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    form = ResolveForm()
    if not form.validate_on_submit():
        _invalid(form)
        return _back(case_id)
    if _closed(case):
        return _back(case_id)
    current = now()
    case.outcome = form.outcome.data
    case.root_cause = form.root_cause.data.strip()
    case.resolved = form.resolved.data == "yes"
    case.contacted_at = case.contacted_at or (current if form.outcome.data != "not_reachable" else None)
    lifecycle.transition(case, "resolved", actor=_actor(), now=current, outcome=case.outcome,
                         root_cause=case.root_cause, resolved=case.resolved)
    session.commit()
    flask.flash(gettext("Case resolved."), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/close")
@requires("agent")
def close(case_id: int):
    """Close the loop for good: after resolving, or at once when no callback
    is needed (spam, a duplicate).  Callbacks not yet in the CRM are cancelled
    so the dispatcher never pushes a task for a closed case."""
    session = db_session()
    case = _case_or_404(case_id)
    form = CloseForm()
    if not form.validate_on_submit():
        _invalid(form)
        return _back(case_id)
    current = now()
    reason = (form.reason.data or "").strip() or None
    cancelled = []
    if lifecycle.is_open(case):
        for f in session.scalars(select(m.Followup).where(m.Followup.case_id == case.id,
                                                          m.Followup.status.in_(UNPUSHED_FOLLOWUP))):
            f.status, f.last_error = "dead", "cancelled: case closed without callback"
            cancelled.append(f.id)
    try:
        lifecycle.transition(case, "closed", actor=_actor(), now=current, reason=reason,
                             followups_cancelled=cancelled or None)
    except lifecycle.InvalidTransition:
        session.rollback()
        flask.flash(gettext("This case is already closed."), "error")
        return _back(case_id)
    session.commit()
    flask.flash(gettext("Case closed."), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/reopen")
@requires("agent")
def reopen(case_id: int):
    session = db_session()
    case = _case_or_404(case_id)
    if lifecycle.is_open(case):
        flask.flash(gettext("This case is still open."), "error")
        return _back(case_id)
    lifecycle.reopen(case, actor=_actor(), now=now())
    session.commit()
    flask.flash(gettext("Case reopened."), "ok")
    return _back(case_id)


def root_causes() -> list[str]:
    """Earlier root causes, offered as suggestions so reports group well."""
    return list(db_session().scalars(select(m.Case.root_cause).where(m.Case.root_cause.is_not(None))
                                     .group_by(m.Case.root_cause).order_by(func.count().desc()).limit(30)))
