"""The case page: the customer's story across channels, and what an agent
does about it (assign, note, plan the callback, mark contacted, resolve,
close, reopen).

Every action writes an :class:`~hub.storage.models.AuditEvent` in the same
transaction as its change, and needs the ``agent`` role.  Status changes go
through :mod:`hub.engine.cases` (the lifecycle table), never set here.
"""

from __future__ import annotations

import datetime as dt

import flask
from sqlalchemy import func, select

from hub.engine import case_actions as actions
from hub.engine import cases as lifecycle
from hub.engine import sla
from hub.engine.context import current_hub
from hub.storage import models as m
from hub.storage.themes import themes_of_extra
from hub.web.common import current_user, db_session, now, requires, ui_blueprint
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
    return actions.assignable_users(db_session())


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
        sla_state=sla.case_state(current_hub(), session, case),
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
    actions.assign(session, case, owner, actor=_actor(), now=now())
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
    actions.add_note(session, case, form.text.data, actor=_actor(), now=now())
    session.commit()
    flask.flash(gettext("Note added."), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/plan")
@requires("agent")
def plan(case_id: int):
    """Plan or re-plan the callback at the agent's time (:func:`hub.engine.case_actions.plan_callback`:
    the same CRM task moves, never a second one)."""
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
    actions.plan_callback(current_hub(), session, case, when, actor=_actor(), now=current)
    session.commit()
    flask.flash(gettext("Callback planned for {when}.", when=localtime(when)), "ok")
    return _back(case_id)


@bp.post("/<int:case_id>/replan")
@requires("agent")
def replan(case_id: int):
    """One click for a case at risk: the planner's next free slot of the team, before the SLA where it can."""
    session = db_session()
    case = _case_or_404(case_id)
    if _closed(case):
        return _back(case_id)
    row = actions.replan(current_hub(), session, case, actor=_actor(), now=now())
    session.commit()
    flask.flash(gettext("Callback planned for {when}.", when=localtime(row.due_at)), "ok")
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
    actions.mark_contacted(current_hub(), session, case, form.outcome.data, actor=_actor(), now=now())
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
    actions.resolve(current_hub(), session, case, outcome=form.outcome.data, root_cause=form.root_cause.data,
                    resolved=form.resolved.data == "yes", actor=_actor(), now=now())
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
    try:
        actions.close(current_hub(), session, case, form.reason.data, actor=_actor(), now=now())
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
    try:
        lifecycle.reopen(case, actor=_actor(), now=now())
    except lifecycle.OpenCaseExists as exc:  # one open case per customer
        session.rollback()
        flask.flash(gettext("This customer already has open case {id}: work on that one.", id=exc.open_case_id),
                    "error")
        return _back(case_id)
    session.commit()
    flask.flash(gettext("Case reopened."), "ok")
    return _back(case_id)


def root_causes() -> list[str]:
    """Earlier root causes, offered as suggestions so reports group well."""
    return list(db_session().scalars(select(m.Case.root_cause).where(m.Case.root_cause.is_not(None))
                                     .group_by(m.Case.root_cause).order_by(func.count().desc()).limit(30)))
