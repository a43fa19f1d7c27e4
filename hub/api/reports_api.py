"""``/api/v1`` for closing the loop: outcome and revenue reports, customer events, invitations.

* ``GET /reports/outcomes`` - detractor cases treated vs control (docs/closing_the_loop.md);
* ``GET /reports/revenue-at-risk`` - the complaints-and-revenue model, inputs overridable;
* ``POST /events`` - a customer churned, renewed or filed a complaint (CRM, billing);
* ``POST /invitations`` - invite customers to a survey after a moment that matters.

Registering the blueprint also builds the hub's notifiers once, so a bad
``[notifiers.*]``, ``[resurvey]`` or ``[promoters]`` table stops the start with
its file, key and reason, like a bad source.
"""

from __future__ import annotations

import datetime as dt
import math

import flask

from hub.api import contracts as answers
from hub.api.routes import answer, db_session, error, json_model, token_required
from hub.engine.context import current_hub, hub_of
from hub.engine.loop import events, invitations, outcomes, promoters, revenue
from hub.engine.loop.notifiers import notifiers_of
from hub.sdk.contracts import InputError, customer_ref
from hub.storage import models as m

bp = flask.Blueprint("loop_api", __name__, url_prefix="/api/v1")
#: Largest value of a model input (a billion customers, or EUR per customer): sums stay exact floats.
MAX_INPUT = 1_000_000_000


@bp.record_once
def _check_loop_config(state: flask.blueprints.BlueprintSetupState) -> None:
    notifiers_of(hub_of(state.app))


def _actor() -> str:
    return f"token:{flask.g.get('api_token', '?')}"


def _time_param(name: str) -> dt.datetime | None:
    raw = flask.request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _BadParam(name, "is not an ISO-8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class _BadParam(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


@bp.errorhandler(_BadParam)
def _bad_param(exc: _BadParam):
    return error(400, "invalid", f"{exc.name} {exc.message}", field=exc.name)


# -- reports --------------------------------------------------------------------------------
@bp.get("/reports/outcomes")
@token_required
def outcome_report():
    hub = current_hub()
    since, until = _time_param("since"), _time_param("until")
    session = db_session()
    loop = hub.config.get("loop", {})
    rows = outcomes.ledger(session, since=since, until=until,
                           repeat_window_days=float(loop.get("repeat_window_days", 30)))
    report = outcomes.compare(rows)
    detail = flask.request.args.get("detail")
    if detail not in (None, "", "cases"):
        raise _BadParam("detail", "must be 'cases'")
    limit = _number("limit", int) if detail else None
    limit = answers.DEFAULT_LIMIT if limit is None else int(limit)
    if detail and not 1 <= limit <= answers.MAX_LIMIT:
        raise _BadParam("limit", f"must be 1-{answers.MAX_LIMIT}")
    report.update(control_share=float(loop.get("control_share", 0) or 0),
                  invitations=invitations.invitation_stats(session, since),
                  promoters=promoters.promoter_report(session, since),
                  cases=[r.as_dict() for r in sorted(rows, key=lambda r: -r.case_id)[:limit]] if detail else None)
    return answer(answers.OutcomeReport.model_validate(report))


def _number(name: str, kind: type) -> int | float | None:
    raw = flask.request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        raise _BadParam(name, f"must be {'an integer' if kind is int else 'a number'} (got {raw[:40]!r})") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_INPUT:
        raise _BadParam(name, f"must be a number from 0 to {MAX_INPUT:,}")
    if name.endswith("_churn") and value > 1:
        raise _BadParam(name, "is a share: between 0 and 1")
    return value


@bp.get("/reports/revenue-at-risk")
@token_required
def revenue_at_risk():
    overrides = {name: value for name, kind in revenue.INPUTS.items() if (value := _number(name, kind)) is not None}
    report = revenue.revenue_at_risk(db_session(), current_hub().config, overrides)
    return answer(answers.RevenueReport.model_validate(report))


# -- customer events ------------------------------------------------------------------------
@bp.post("/events")
@token_required
def post_event():
    hub = current_hub()
    try:
        event = json_model(answers.EventInput)
    except InputError as exc:
        return error(400, "invalid", exc.message, field=exc.field)
    ref = customer_ref(event.customer)
    if not ref.identities():
        return error(400, "invalid", "name the customer by at least one identity (email, phone, crm_id...)",
                     field="customer")
    now = hub.clock.utcnow()
    session = db_session()
    customer_id = _known_customer(session, hub, ref)
    if customer_id is None:
        return error(404, "not_found", "no customer with these identities")
    row = events.record_event(session, customer_id=customer_id, kind=event.type, occurred_at=event.occurred_at or now,
                              source=f"api:{flask.g.get('api_token', '?')}", now=now, actor=_actor())
    session.commit()
    return answer(answers.EventStored.model_validate(row), 201)


def _known_customer(session, hub, ref) -> int | None:
    from sqlalchemy import select

    kinds = hub.registry.identity_kinds
    for kind, value in ref.identities():
        clean = kinds[kind].clean(value) if kind in kinds else str(value).strip()
        found = session.scalars(select(m.Identity.customer_id).where(m.Identity.kind == kind,
                                                                     m.Identity.value == clean)).first()
        if found is not None:
            return found
    return None


# -- proactive invitations ----------------------------------------------------------------
@bp.post("/invitations")
@token_required
def post_invitations():
    hub = current_hub()
    try:
        request = json_model(answers.InvitationRequest)
    except InputError as exc:
        return error(400, "invalid", exc.message, field=exc.field)
    source = request.source or hub.config.get("loop", {}).get("invitation_source")
    if not source:
        return error(400, "invalid", "name the survey source (or set loop.invitation_source)", field="source")
    if source not in hub.registry.sources:
        return error(400, "invalid", f"no source instance named {source!r}", field="source")
    refs = [customer_ref(c) for c in request.customers]
    for i, ref in enumerate(refs):
        if not ref.identities():
            return error(400, "invalid", "name the customer by at least one identity", field=f"customers[{i}]")
    session = db_session()
    made = invitations.invite(session, hub, refs, source=source, trigger=request.trigger,
                              now=hub.clock.utcnow(), actor=_actor())
    session.commit()
    batch = answers.InvitationBatch(
        queued=sum(created for _, created in made), existing=sum(not created for _, created in made),
        invitations=[answers.InvitationQueued(id=row.id, customer_id=row.customer_id, status=row.status,
                                              created=created) for row, created in made])
    return answer(batch, 202)
