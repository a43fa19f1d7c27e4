"""The customer page and the identity review queue.

The customer page shows one person across channels: every item of every
channel in one timeline, each identity with the hub's confidence and the
evidence for it, the cases, the yearly value, and merge and split (each merge
listed with its undo).  The review queue shows each suggestion with both
customers' timelines side by side, to confirm or reject.

Changes go through :mod:`hub.engine.merge` and :mod:`hub.engine.suggestions`
(audited there, with the signed-in user as actor) and need the ``agent`` role.
"""

from __future__ import annotations

from typing import Any

import flask
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hub.engine.context import current_hub
from hub.engine.identity_search import customer_matches
from hub.engine.merge import MergeError, merge, split
from hub.engine.suggestions import SuggestionError, confirm, reject
from hub.storage import models as m
from hub.storage.themes import themes_of_extra
from hub.web.common import current_user, db_session, now, requires, ui_blueprint
from hub.web.i18n import gettext

bp = ui_blueprint("customers", __name__)

TIMELINE_LIMIT = 500
SIDE_BY_SIDE = 8  # items of each customer in the review queue
QUEUE_PAGE = 20
SEARCH_LIMIT = 50


def _actor() -> str:
    user = current_user()
    return f"user:{user.username}" if user else "anonymous"


def _customer_or_404(customer_id: int) -> m.Customer:
    customer = db_session().get(m.Customer, customer_id) if customer_id <= 2**63 - 1 else None
    if customer is None:
        flask.abort(404)
    return customer


def shown_identity(kind: str, value: str) -> dict[str, str]:
    """An identity as people read it: the kind's label and display (``X``, ``@janb``)."""
    k = current_hub().registry.identity_kind(kind)
    return {"label": k.label, "shown": k.show(value)}


def _timeline(session: Session, customer_id: int, limit: int = TIMELINE_LIMIT) -> list[m.FeedbackItem]:
    F = m.FeedbackItem
    rows = session.scalars(select(F).where(F.customer_id == customer_id)
                           .order_by(F.occurred_at.desc(), F.id.desc()).limit(limit)).all()
    return list(reversed(rows))  # oldest first, like the case page, but the newest when there are many


def _identities(session: Session, customer_id: int) -> list[m.Identity]:
    return list(session.scalars(select(m.Identity).where(m.Identity.customer_id == customer_id)
                                .order_by(m.Identity.id)))


@bp.get("/customers")
def search():
    q = (flask.request.args.get("q") or "").strip()[:200].replace("\x00", "")
    found: list[dict[str, Any]] = []
    if q:
        session = db_session()
        rows = session.scalars(select(m.Customer).where(customer_matches(q), m.Customer.merged_into_id.is_(None))
                               .order_by(m.Customer.id.desc()).limit(SEARCH_LIMIT)).all()
        idents: dict[int, list[m.Identity]] = {}
        if rows:
            for i in session.scalars(select(m.Identity).where(m.Identity.customer_id.in_([c.id for c in rows]))
                                     .order_by(m.Identity.id)):
                idents.setdefault(i.customer_id, []).append(i)
        found = [{"customer": c, "identities": idents.get(c.id, [])} for c in rows]
    merge_into = flask.request.args.get("merge_into", "")
    return flask.render_template("customer_search.html", q=q, found=found, limit=SEARCH_LIMIT,
                                 merge_into=int(merge_into) if merge_into.isdigit() else None,
                                 shown=shown_identity)


@bp.get("/customers/<int:customer_id>")
def show(customer_id: int):
    session = db_session()
    customer = _customer_or_404(customer_id)
    if customer.merged_into_id is not None:
        flask.flash(gettext("This customer was merged into customer {id}.", id=customer.merged_into_id), "notice")
    timeline = _timeline(session, customer.id)
    cases = session.scalars(select(m.Case).where(m.Case.customer_id == customer.id)
                            .order_by(m.Case.opened_at.desc(), m.Case.id.desc())).all()
    merges = session.scalars(select(m.CustomerMerge).where(m.CustomerMerge.survivor_id == customer.id)
                             .order_by(m.CustomerMerge.id.desc())).all()
    S = m.IdentitySuggestion
    pending = session.scalars(select(S).where(S.status == "pending", or_(S.customer_id == customer.id,
                                                                         S.other_customer_id == customer.id))
                              .order_by(S.id.desc()).limit(20)).all()
    identities = _identities(session, customer.id)
    merged_names = {c.id: c.name for c in session.scalars(select(m.Customer).where(
        m.Customer.id.in_([r.merged_id for r in merges])))} if merges else {}
    return flask.render_template(
        "customer.html", customer=customer, identities=identities, timeline=timeline, cases=cases,
        channels=sorted({it.channel for it in timeline}), merges=merges, merged_names=merged_names,
        pending=pending, item_themes={it.id: themes_of_extra(it.extra) for it in timeline}, shown=shown_identity,
        undoable={r.id: _undo_identities(session, r) for r in merges if r.split_at is None},
    )


def _undo_identities(session: Session, record: m.CustomerMerge) -> list[m.Identity]:
    """The identities a merge brought that the survivor still holds (what its undo splits off)."""
    ids = record.moved.get("identities") or []
    if not ids:
        return []
    return list(session.scalars(select(m.Identity).where(m.Identity.id.in_(ids),
                                                         m.Identity.customer_id == record.survivor_id)))


def _back(customer_id: int):
    return flask.redirect(flask.url_for("customers.show", customer_id=customer_id))


def _reason() -> str | None:
    return (flask.request.form.get("reason") or "").strip()[:500] or None


@bp.post("/customers/<int:customer_id>/merge")
@requires("agent")
def merge_view(customer_id: int):
    session = db_session()
    _customer_or_404(customer_id)
    other = (flask.request.form.get("other_customer_id") or "").strip().lstrip("#")
    if not other.isdigit():
        flask.flash(gettext("Give the number of the customer to merge into this one."), "error")
        return _back(customer_id)
    try:
        merge(session, customer_id, int(other), actor=_actor(), now=now(), reason=_reason(), hub=current_hub())
    except MergeError as exc:
        session.rollback()
        flask.flash(gettext("Not merged: {reason}", reason=str(exc)), "error")
        return _back(customer_id)
    session.commit()
    flask.flash(gettext("Customer {other} merged into this customer.", other=other), "ok")
    return _back(customer_id)


@bp.post("/customers/<int:customer_id>/split")
@requires("agent")
def split_view(customer_id: int):
    session = db_session()
    _customer_or_404(customer_id)
    chosen = [int(v) for v in flask.request.form.getlist("identity") if v.isdigit()]
    rows = session.scalars(select(m.Identity).where(m.Identity.id.in_(chosen),
                                                    m.Identity.customer_id == customer_id)).all() if chosen else []
    if not rows:
        flask.flash(gettext("Tick the identities to split off."), "error")
        return _back(customer_id)
    try:
        holder = split(session, customer_id, [(r.kind, r.value) for r in rows], actor=_actor(), now=now(),
                       reason=_reason())
    except MergeError as exc:
        session.rollback()
        flask.flash(gettext("Not split: {reason}", reason=str(exc)), "error")
        return _back(customer_id)
    session.commit()
    flask.flash(gettext("Split off as customer {id}.", id=holder.id), "ok")
    return _back(holder.id)


# -- the review queue ---------------------------------------------------------------
@bp.get("/identity/review")
def review():
    session = db_session()
    S = m.IdentitySuggestion
    total = session.scalar(select(func.count()).select_from(S).where(S.status == "pending"))
    rows = session.scalars(select(S).where(S.status == "pending")
                           .order_by(S.confidence.desc(), S.id.desc()).limit(QUEUE_PAGE)).all()
    ids = {c for r in rows for c in (r.customer_id, r.other_customer_id) if c}
    people = {c.id: c for c in session.scalars(select(m.Customer).where(m.Customer.id.in_(ids)))} if ids else {}
    sides = {cid: {"customer": people[cid], "identities": _identities(session, cid),
                   "timeline": _timeline(session, cid, SIDE_BY_SIDE)} for cid in ids if cid in people}
    return flask.render_template("identity_review.html", suggestions=rows, sides=sides, total=total,
                                 shown=shown_identity)


def _decided(action, suggestion_id: int, done: str):
    session = db_session()
    try:
        action(session, suggestion_id)
    except (SuggestionError, MergeError) as exc:
        session.rollback()
        flask.flash(gettext("Not done: {reason}", reason=str(exc)), "error")
        return flask.redirect(flask.url_for("customers.review"))
    session.commit()
    flask.flash(done, "ok")
    return flask.redirect(flask.url_for("customers.review"))


@bp.post("/identity/suggestions/<int:suggestion_id>/confirm")
@requires("agent")
def confirm_view(suggestion_id: int):
    return _decided(lambda s, sid: confirm(s, sid, actor=_actor(), now=now(), reason=_reason(), hub=current_hub()),
                    suggestion_id, gettext("Confirmed: one customer now."))


@bp.post("/identity/suggestions/<int:suggestion_id>/reject")
@requires("agent")
def reject_view(suggestion_id: int):
    return _decided(lambda s, sid: reject(s, sid, actor=_actor(), now=now(), reason=_reason()),
                    suggestion_id, gettext("Rejected: this pair will not be suggested again."))
