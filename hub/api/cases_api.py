"""``/api/v1/cases/<id>`` (read and change one case) and ``/api/v1/planner/load``.

PATCH goes through :mod:`hub.engine.case_actions`, the functions the web UI
calls: the same rules (a status move the lifecycle forbids answers 409), the
same audit events (actor ``token:<name>``) and the same CRM effects (a new
``callback_at`` moves the CRM's task, contacted or resolved completes it,
closed cancels it).  A request is all or nothing: any refusal rolls back
what the request had changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import flask
from sqlalchemy.orm import Session

from hub.api import contracts as answers
from hub.api.routes import MAX_ID, answer, db_session, error, json_model, token_actor, token_required
from hub.engine import case_actions as actions
from hub.engine import cases as lifecycle
from hub.engine import sla
from hub.engine.context import current_hub
from hub.engine.planner import hourly_load, planner_for
from hub.sdk.contracts import InputError
from hub.storage import models as m

bp = flask.Blueprint("cases_api", __name__, url_prefix="/api/v1")
#: Longest window GET /planner/load answers (one row per hour).
MAX_LOAD_DAYS = 31


def case_detail(session: Session, case: m.Case) -> answers.CaseDetail:
    hub = current_hub()
    rows = actions.followups(session, case)
    waiting = sla.callback_of(session, case.id)
    current = waiting or (rows[-1] if rows else None)
    base = dict(answers.Case.model_validate(case))
    return answers.CaseDetail.model_validate({
        **base, "team": case.team, "root_cause": case.root_cause, "resolved": case.resolved,
        "escalated_at": case.escalated_at, "sla_state": sla.case_state(hub, session, case),
        "callback_at": waiting.due_at if waiting else None,
        "allowed_status": [s for s in lifecycle.allowed(case.status) if s in ("assigned", "contacted", "resolved",
                                                                                "closed")],
        "followup": answers.CaseFollowup.from_row(current) if current else None,
        "followups": [answers.CaseFollowup.from_row(f) for f in rows]})


def _case_or_404(session: Session, case_id: int) -> m.Case | None:
    return session.get(m.Case, case_id) if case_id <= MAX_ID else None


@bp.get("/cases/<int:case_id>")
@token_required
def get_case(case_id: int):
    session = db_session()
    case = _case_or_404(session, case_id)
    if case is None:
        return error(404, "not_found", f"no case {case_id}")
    return answer(case_detail(session, case))


def _patch_body() -> answers.CasePatch:
    patch = json_model(answers.CasePatch)
    if not patch.model_fields_set:
        raise InputError("body", "nothing to change: send any of " + ", ".join(answers.CasePatch.model_fields))
    return patch


@bp.patch("/cases/<int:case_id>")
@token_required
def patch_case(case_id: int):
    hub = current_hub()
    try:
        patch = _patch_body()
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    session = db_session()
    case = _case_or_404(session, case_id)
    if case is None:
        return error(404, "not_found", f"no case {case_id}")
    try:
        _apply(hub, session, case, patch, actor=token_actor(), now=hub.clock.utcnow())
        session.commit()
    except lifecycle.InvalidTransition as exc:
        session.rollback()
        return error(409, "invalid_transition", str(exc))
    except actions.ActionError as exc:
        session.rollback()
        if exc.conflict:
            return error(409, "conflict", exc.message)
        return error(400, "invalid", exc.message, exc.field)
    session.refresh(case)
    return answer(case_detail(session, case))


def _apply(hub: Any, session: Session, case: m.Case, patch: answers.CasePatch, *, actor: str,
           now: dt.datetime) -> None:
    """The patch in the order a person would do it: reopen or assign, note, plan, then the outcome."""
    status = patch.status
    if status is not None and status not in lifecycle.allowed(case.status):
        raise lifecycle.InvalidTransition(case.id, case.status, status)
    if status == "assigned":
        if lifecycle.is_open(case):
            lifecycle.transition(case, "assigned", actor=actor, now=now, owner=patch.owner or case.owner)
        else:
            lifecycle.reopen(case, actor=actor, now=now)
            if case.status != "assigned":  # reopened without an owner: new, then assigned by this request
                lifecycle.transition(case, "assigned", actor=actor, now=now)
    if patch.owner is not None:
        actions.assign(session, case, patch.owner, actor=actor, now=now)
    if patch.note is not None and status != "closed":
        actions.add_note(session, case, patch.note, actor=actor, now=now)
    if patch.callback_at is not None:
        actions.plan_callback(hub, session, case, patch.callback_at, actor=actor, now=now)
    if status == "contacted":
        actions.mark_contacted(hub, session, case, patch.outcome, actor=actor, now=now)
    elif status == "resolved":
        actions.resolve(hub, session, case, outcome=patch.outcome, root_cause=patch.root_cause,
                        resolved=patch.resolved, actor=actor, now=now)
    elif status == "closed":
        actions.close(hub, session, case, patch.note, actor=actor, now=now)
    elif status is None and {"outcome", "root_cause", "resolved"} & patch.model_fields_set:
        raise actions.ActionError("status", "outcome, root_cause and resolved go with status resolved "
                                            "(or outcome with contacted)")


# -- the planner's load -------------------------------------------------------------------
def _time_param(name: str) -> dt.datetime:
    raw = flask.request.args.get(name)
    if not raw:
        raise InputError(name, f"give {name} as an ISO time with zone, e.g. 2026-11-23T08:00:00Z")
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InputError(name, f"{raw[:40]!r} is not an ISO time") from None
    if value.tzinfo is None:
        raise InputError(name, "give a time zone (Z or +01:00)")
    return value.astimezone(dt.UTC)


@bp.get("/planner/load")
@token_required
def planner_load():
    hub = current_hub()
    try:
        start, end = _time_param("from"), _time_param("to")
        if end <= start:
            raise InputError("to", "must be after from")
        if end - start > dt.timedelta(days=MAX_LOAD_DAYS):
            raise InputError("to", f"at most {MAX_LOAD_DAYS} days after from")
        wanted = flask.request.args.get("team")
        session = db_session()
        planner = planner_for(hub, session, start)
        if wanted is not None and wanted not in planner.teams.by_name:
            raise InputError("team", f"no team {wanted[:50]!r}; teams: {', '.join(planner.teams.by_name)}")
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    items = [answers.LoadHour.model_validate(row) for row in hourly_load(hub, session, start, end, wanted)]
    return answer(answers.PlannerLoadAnswer(items=items))

