"""``/api/v1`` for the identity graph: the review queue of suggestions,
customer search by name, e-mail or handle, merge and split.

Every change is made by :mod:`hub.engine.suggestions` / :mod:`hub.engine.merge`
(audited there, with the token as actor) and committed here in one transaction.
"""

from __future__ import annotations

import flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api import contracts as answers
from hub.api.routes import (
    MAX_ID,
    _cursor,
    _limit,
    _next_cursor,
    answer,
    db_session,
    error,
    json_model,
    text_param,
    token_required,
)
from hub.engine.context import current_hub
from hub.engine.identity_search import customer_matches
from hub.engine.merge import MergeError, merge, split
from hub.engine.suggestions import SuggestionError, confirm, list_pending, reject
from hub.sdk.contracts import InputError
from hub.storage import models as m

bp = flask.Blueprint("identity_api", __name__, url_prefix="/api/v1")
TIMELINE_LIMIT = 1000


def _actor() -> str:
    return f"token:{flask.g.get('api_token', 'unknown')}"


def customer_answer(session: Session, customer: m.Customer) -> answers.Customer:
    """The customer as ``GET /api/v1/customers/<id>`` shows it: identities, timeline and cases."""
    F, C = m.FeedbackItem, m.Case
    identities = session.scalars(select(m.Identity).where(m.Identity.customer_id == customer.id)
                                 .order_by(m.Identity.id)).all()
    items = session.execute(select(F, C.status).outerjoin(C, C.id == F.case_id).where(F.customer_id == customer.id)
                            .order_by(F.occurred_at, F.id).limit(TIMELINE_LIMIT)).all()
    cases = session.scalars(select(C).where(C.customer_id == customer.id).order_by(C.id)).all()
    return answers.Customer(id=customer.id, name=customer.name, value=customer.value, identities=identities,
                            timeline=[answers.Feedback.from_row(it, st) for it, st in items], cases=cases,
                            merged_into_id=customer.merged_into_id)


def _commit(session: Session) -> None:
    try:
        session.commit()
    except Exception:
        session.rollback()
        raise


def _row_id_or_404(value: int, what: str):
    return None if value <= MAX_ID else error(404, "not_found", f"no {what} {value}")


@bp.get("/identity/suggestions")
@token_required
def list_suggestions():
    try:
        limit = _limit()
        after = _cursor(flask.request.args.get("cursor"))
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    rows = list_pending(db_session(), limit=limit, after=after)
    items = [answers.Suggestion.model_validate(r) for r in rows[:limit]]
    return answer(answers.SuggestionPage(items=items, next_cursor=_next_cursor(rows, limit)))


def _decide(suggestion_id: int, decide):
    if (missing := _row_id_or_404(suggestion_id, "suggestion")) is not None:
        return missing
    try:
        body = json_model(answers.Decision, required=False)
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    session = db_session()
    hub = current_hub()
    try:
        result = decide(session, suggestion_id, body.reason if body else None, hub)
    except (SuggestionError, MergeError) as exc:
        session.rollback()
        return error(exc.status, "not_found" if exc.status == 404 else "conflict", str(exc))
    _commit(session)
    return result(session)


@bp.post("/identity/suggestions/<int:suggestion_id>/confirm")
@token_required
def confirm_suggestion(suggestion_id: int):
    def decide(session, sid, reason, hub):
        survivor = confirm(session, sid, actor=_actor(), now=hub.clock.utcnow(), reason=reason, hub=hub)
        return lambda s: answer(customer_answer(s, s.get(m.Customer, survivor.id)))

    return _decide(suggestion_id, decide)


@bp.post("/identity/suggestions/<int:suggestion_id>/reject")
@token_required
def reject_suggestion(suggestion_id: int):
    def decide(session, sid, reason, hub):
        row = reject(session, sid, actor=_actor(), now=hub.clock.utcnow(), reason=reason)
        return lambda s: answer(answers.Suggestion.model_validate(s.get(m.IdentitySuggestion, row.id)))

    return _decide(suggestion_id, decide)


@bp.get("/customers")
@token_required
def search_customers():
    try:
        term = text_param("q", 200)
        limit = _limit()
        after = _cursor(flask.request.args.get("cursor"))
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    if not term or not term.strip():
        return error(400, "invalid", "q: give part of a name, an e-mail address or a handle", "q")
    session = db_session()
    q = select(m.Customer).where(matching_customers(term), m.Customer.merged_into_id.is_(None))
    if after is not None:
        q = q.where(m.Customer.id < after)
    rows = list(session.scalars(q.order_by(m.Customer.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    idents: dict[int, list[m.Identity]] = {}
    if page:
        for ident in session.scalars(select(m.Identity).where(m.Identity.customer_id.in_([c.id for c in page]))
                                     .order_by(m.Identity.id)):
            idents.setdefault(ident.customer_id, []).append(ident)
    items = [answers.CustomerListed(id=c.id, name=c.name, value=c.value, identities=idents.get(c.id, []))
             for c in page]
    return answer(answers.CustomerPage(items=items, next_cursor=_next_cursor(rows, limit)))


def matching_customers(term: str):
    """A WHERE clause: customers whose name, or one of whose identities, contains ``term``."""
    return customer_matches(term)


@bp.post("/customers/<int:customer_id>/merge")
@token_required
def merge_customers(customer_id: int):
    if (missing := _row_id_or_404(customer_id, "customer")) is not None:
        return missing
    try:
        body = json_model(answers.MergeRequest)
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    session, hub = db_session(), current_hub()
    try:
        survivor = merge(session, customer_id, body.other_customer_id, actor=_actor(), now=hub.clock.utcnow(),
                         reason=body.reason, hub=hub)
    except MergeError as exc:
        session.rollback()
        return error(exc.status, {404: "not_found", 400: "invalid"}.get(exc.status, "conflict"), str(exc))
    _commit(session)
    return answer(customer_answer(session, session.get(m.Customer, survivor.id)))


@bp.post("/customers/<int:customer_id>/split")
@token_required
def split_customer(customer_id: int):
    if (missing := _row_id_or_404(customer_id, "customer")) is not None:
        return missing
    try:
        body = json_model(answers.SplitRequest)
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    session, hub = db_session(), current_hub()
    kinds = hub.registry.identity_kinds
    # The values as stored: normalized by their kind, like every identity.
    wanted = [(i.kind, kinds[i.kind].clean(i.value) if i.kind in kinds else i.value.strip()) for i in body.identities]
    try:
        holder = split(session, customer_id, wanted, actor=_actor(), now=hub.clock.utcnow(), reason=body.reason)
    except MergeError as exc:
        session.rollback()
        return error(exc.status, {404: "not_found", 400: "invalid"}.get(exc.status, "conflict"), str(exc))
    _commit(session)
    return answer(customer_answer(session, session.get(m.Customer, holder.id)), 201)


__all__ = ["bp", "customer_answer", "matching_customers"]
