"""``/api/v1``: JSON API with bearer-token auth (health is open)."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Any

import flask
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.api import contracts as answers
from hub.api.openapi import openapi_document
from hub.engine import audit
from hub.engine.accounts import check_token, scope_allows
from hub.engine.context import current_hub
from hub.engine.pipeline import Pipeline
from hub.engine.raw_events import ingest_inputs
from hub.sdk.contracts import InputError, JsonTooDeep, input_error, loads_bounded, parse_feedback
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, CHANNELS
from hub.storage import models as m
from hub.storage.search import item_text_match
from hub.storage.themes import has_theme, themes_of_extra

bp = flask.Blueprint("api", __name__, url_prefix="/api/v1")
MAX_LIMIT = answers.MAX_LIMIT
#: Largest row id (a signed 64-bit integer, what every database stores).
MAX_ID = 2**63 - 1
#: ASCII digits only: ``str.isdigit`` accepts "²" and "٣", which ``int`` then refuses or reads.
_DIGITS = re.compile(r"[0-9]{1,19}")


def answer(model: BaseModel, status: int = 200):
    return flask.jsonify(answers.body(model)), status


def error(status: int, code: str, message: str, field: str | None = None):
    return answer(answers.Error(error=answers.ErrorDetail(code=code, message=message, field=field)), status)


def db_session() -> Session:
    """The request's session, closed at teardown."""
    if "hub_session" not in flask.g:
        db = current_hub().db
        # GETs only read: a deferred (non-locking) session on SQLite.
        flask.g.hub_session = db.PageSession() if flask.request.method == "GET" else db.Session()
    return flask.g.hub_session


@bp.teardown_app_request
def _close_session(_exc):
    session = flask.g.pop("hub_session", None)
    if session is not None:
        session.close()


#: The scope a request needs when its view names none: reading is ``read``,
#: changing is ``write``, deleting is ``admin`` (admin actions name it).
METHOD_SCOPES = {"GET": "read", "HEAD": "read", "OPTIONS": "read", "POST": "write", "PUT": "write",
                 "PATCH": "write", "DELETE": "admin"}
_UNAUTHORIZED = {"unknown": "invalid token", "revoked": "this token was revoked",
                 "expired": "this token has expired (create a new one: feedback-hub token create NAME --expires-days N)"}


def token_actor() -> str:
    """The audit actor of the request's token (``token:<name>``)."""
    return f"token:{flask.g.get('api_token') or '?'}"


def _deny(actor: str, reason: str, needed: str | None = None) -> None:
    """Record a refused API request in the audit (its own transaction: the request's may be read-only)."""
    hub = current_hub()
    request = flask.request
    pending = flask.g.get("hub_session")
    if pending is not None:
        pending.rollback()  # nothing written yet; on SQLite it may hold the write lock the record needs
    detail = {"method": request.method, "path": request.path, "reason": reason, "denied": True}
    if needed:
        detail["needed"] = needed
    with hub.db.session() as s:
        audit.record(s, actor=actor, action="api.denied", at=hub.clock.utcnow(), **detail)


def token_required(view=None, *, scope: str | None = None):
    """Demand a bearer token whose scope covers the request (403 otherwise, 401 without a usable token).

    ``@token_required`` derives the scope from the HTTP method
    (:data:`METHOD_SCOPES`); ``@token_required(scope="admin")`` names it, for
    admin actions that are not DELETEs.  Every refusal is audited.
    """
    if view is None:
        return functools.partial(token_required, scope=scope)

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        header = flask.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            _deny("anonymous", "no_token")
            return error(401, "unauthorized", "send Authorization: Bearer <token> (feedback-hub token create NAME)")
        checked = check_token(db_session(), token.strip(), current_hub().clock.utcnow())
        if not checked.ok:
            _deny(f"token:{checked.row.name}" if checked.row else "anonymous", checked.problem)
            return error(401, "unauthorized", _UNAUTHORIZED[checked.problem])
        row = checked.row
        flask.g.api_token = row.name
        needed = scope or METHOD_SCOPES.get(flask.request.method, "admin")
        if not scope_allows(row.scope, needed):
            _deny(token_actor(), "scope", needed)
            return error(403, "forbidden", f"this token's scope is {row.scope!r}; {flask.request.method} "
                                           f"{flask.request.path} needs {needed!r} (feedback-hub token create "
                                           f"NAME --scope {needed})")
        flask.g.api_scope = row.scope
        return view(*args, **kwargs)

    return wrapped


@bp.get("/health")
def health():
    hub = current_hub()
    try:
        db_session().execute(select(1))
        db_ok = True
    except Exception:  # health must answer, not raise
        db_ok = False
    # Open for liveness probes; which instances exist is for token holders only
    # (names like "crm-eu-prod" tell an attacker what to aim at).
    detailed = db_ok and _valid_token_sent()
    health = answers.Health(status="ok" if db_ok else "degraded", database="ok" if db_ok else "unreachable",
                            sources=sorted(hub.registry.sources) if detailed else None,
                            sinks=sorted(hub.registry.sinks) if detailed else None)
    return answer(health, 200 if db_ok else 503)


def _valid_token_sent() -> bool:
    scheme, _, token = flask.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return check_token(db_session(), token.strip(), current_hub().clock.utcnow()).ok


@bp.get("/openapi.json")
def openapi():
    return flask.jsonify(openapi_document())


def _json_body() -> Any:
    request = flask.request
    if not request.mimetype or not request.mimetype.endswith("json"):
        raise InputError("body", "send Content-Type: application/json")
    raw = request.get_data(cache=True)  # raises 413 over MAX_CONTENT_LENGTH
    try:
        return loads_bounded(raw)
    except JsonTooDeep as exc:
        raise InputError("body", str(exc)) from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise InputError("body", f"malformed JSON: {exc}") from None


def json_model(model: type[BaseModel], *, required: bool = True) -> Any:
    """The request's JSON body as ``model``, else InputError naming the field.

    With ``required=False`` an empty body is None (an optional reason, say).
    """
    if not required and not flask.request.get_data(cache=True):
        return None
    payload = _json_body()
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise input_error(exc, payload) from None


@bp.post("/feedback")
@token_required
def post_feedback():
    hub = current_hub()
    try:
        payload = _json_body()
        source, item = parse_feedback(payload, now=hub.clock.utcnow())
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    if source in hub.registry.sinks:
        return error(400, "invalid", f"{source!r} is a sink, not a source", "source")
    session = db_session()
    now = hub.clock.utcnow()
    try:
        existing = session.scalars(select(m.FeedbackItem.id).where(
            m.FeedbackItem.source == source, m.FeedbackItem.external_id == item.external_id)).first()
        if existing is None:
            # A concurrent POST of the same item that commits first simply
            # makes this one a duplicate inside ingest (created=False).
            (result,) = ingest_inputs(session, Pipeline(hub), source, [(payload, item)], now, kind="api")
            created, item_id = result.created, result.item_id
        else:
            created, item_id = False, existing
        audit.record(session, actor=token_actor(), action="api.feedback.posted", at=now, source=source,
                     item_id=item_id, created=created)
        session.commit()
    except Exception:
        session.rollback()
        raise
    row = session.get(m.FeedbackItem, item_id)
    status = session.get(m.Case, row.case_id).status if row.case_id else None
    return answer(answers.Feedback.from_row(row, status), 201 if created else 200)


def _row_id(text: str) -> int | None:
    """``text`` as a row id (ASCII digits, 1..MAX_ID), or None."""
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        return None
    return int(text)


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value.encode("utf-8", "replace") + b"==").decode("ascii")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        decoded = ""
    after = _row_id(decoded)
    if after is None:
        raise InputError("cursor", "invalid cursor (pass next_cursor of the previous page)")
    return after


def _next_cursor(rows: list[Any], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    return base64.urlsafe_b64encode(str(rows[limit - 1].id).encode()).decode().rstrip("=")


def bounded_int(name: str, low: int, high: int, default: int | None = None) -> int | None:
    """Query parameter ``name`` as an integer in [low, high] (``default`` when absent), else InputError.

    The one parser of integer parameters: ASCII digits only, bounded before
    it reaches a database, so no input becomes a server error.
    """
    raw = flask.request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InputError(name, f"must be an integer {low}-{high}")
    return int(raw)


def _limit() -> int:
    return bounded_int("limit", 1, MAX_LIMIT, answers.DEFAULT_LIMIT)


def text_param(name: str, max_length: int = 200) -> str | None:
    """Query parameter ``name`` as text (None when absent or empty), else InputError.

    NUL is refused: PostgreSQL cannot compare text with it (it would be a server error).
    """
    value = flask.request.args.get(name)
    if not value:
        return None
    if "\x00" in value or len(value) > max_length:
        raise InputError(name, f"must be text of at most {max_length} characters, without NUL")
    return value


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = flask.request.args.get(name)
    if value is not None and value not in allowed:
        raise InputError(name, f"must be one of {', '.join(allowed)}")
    return value


@bp.get("/feedback")
@token_required
def list_feedback():
    args = flask.request.args
    try:
        limit = _limit()
        after = _cursor(args.get("cursor"))
        channel = _choice("channel", CHANNELS)
        category = _choice("category", CATEGORIES)
        status = _choice("status", CASE_STATUSES)
        min_risk = bounded_int("min_risk", 0, 100)
        source, term = text_param("source", 100), text_param("q", 500)
        theme = text_param("theme", 100)
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    q = select(m.FeedbackItem, m.Case.status).outerjoin(m.Case, m.Case.id == m.FeedbackItem.case_id)
    if channel:
        q = q.where(m.FeedbackItem.channel == channel)
    if category:
        q = q.where(m.FeedbackItem.category == category)
    if min_risk is not None:
        q = q.where(m.FeedbackItem.risk >= min_risk)
    if status:
        q = q.where(m.Case.status == status)
    if source:
        q = q.where(m.FeedbackItem.source == source)
    if term:
        q = q.where(item_text_match(db_session(), term))  # the full-text index where it pays
    if theme:
        q = q.where(has_theme(theme))
    if after is not None:
        q = q.where(m.FeedbackItem.id < after)
    # The page's ids first (from an index and the filters alone), then their rows: a
    # filter served by ix_feedback_item_channel_risk otherwise sorts every matching
    # row by id, whole (channel + min_risk at a million items: 40,000 rows).
    ids = db_session().scalars(q.with_only_columns(m.FeedbackItem.id)
                               .order_by(m.FeedbackItem.id.desc()).limit(limit + 1)).all()
    rows = db_session().execute(
        select(m.FeedbackItem, m.Case.status).outerjoin(m.Case, m.Case.id == m.FeedbackItem.case_id)
        .where(m.FeedbackItem.id.in_(ids)).order_by(m.FeedbackItem.id.desc())).all() if ids else []
    items = [answers.Feedback.from_row(item, st) for item, st in rows[:limit]]
    return answer(answers.FeedbackPage(items=items, next_cursor=_next_cursor([r[0] for r in rows], limit)))


@bp.get("/feedback/<int:item_id>")
@token_required
def get_feedback(item_id: int):
    row = db_session().get(m.FeedbackItem, item_id) if item_id <= MAX_ID else None
    if row is None:
        return error(404, "not_found", f"no feedback item {item_id}")
    status = db_session().get(m.Case, row.case_id).status if row.case_id else None
    return answer(answers.Feedback.from_row(row, status))


@bp.get("/cases")
@token_required
def list_cases():
    args = flask.request.args
    try:
        limit = _limit()
        after = _cursor(args.get("cursor"))
        status = _choice("status", CASE_STATUSES)
        customer_id = bounded_int("customer_id", 0, MAX_ID)
    except InputError as exc:
        return error(400, "invalid", exc.message, exc.field)
    q = select(m.Case)
    if status:
        q = q.where(m.Case.status == status)
    if customer_id is not None:
        q = q.where(m.Case.customer_id == customer_id)
    if after is not None:
        q = q.where(m.Case.id < after)
    rows = db_session().scalars(q.order_by(m.Case.id.desc()).limit(limit + 1)).all()
    session = db_session()
    counts = dict(session.execute(select(m.FeedbackItem.case_id, func.count()).where(
        m.FeedbackItem.case_id.in_([r.id for r in rows])).group_by(m.FeedbackItem.case_id)).all()) if rows else {}
    followups = {f.case_id: f for f in session.scalars(select(m.Followup).where(
        m.Followup.case_id.in_([r.id for r in rows])))} if rows else {}
    themes = _case_themes(session, [r.id for r in rows[:limit]])
    items = [answers.CaseListed.from_row(r, counts.get(r.id, 0), followups.get(r.id), themes.get(r.id))
             for r in rows[:limit]]
    return answer(answers.CasePage(items=items, next_cursor=_next_cursor(list(rows), limit)))


def _case_themes(session: Session, case_ids: list[int]) -> dict[int, list[str]]:
    """Each case's themes: the union of its items' themes, first seen first (one query for the page)."""
    found: dict[int, dict[str, None]] = {}
    if case_ids:
        for case_id, extra in session.execute(select(m.FeedbackItem.case_id, m.FeedbackItem.extra).where(
                m.FeedbackItem.case_id.in_(case_ids)).order_by(m.FeedbackItem.id)):
            found.setdefault(case_id, {}).update(dict.fromkeys(themes_of_extra(extra)))
    return {case_id: list(themes) for case_id, themes in found.items()}


@bp.get("/customers/<int:customer_id>")
@token_required
def get_customer(customer_id: int):
    session = db_session()
    customer = session.get(m.Customer, customer_id) if customer_id <= MAX_ID else None
    if customer is None:
        return error(404, "not_found", f"no customer {customer_id}")
    identities = session.scalars(select(m.Identity).where(m.Identity.customer_id == customer_id)).all()
    items = session.execute(select(m.FeedbackItem, m.Case.status).outerjoin(
        m.Case, m.Case.id == m.FeedbackItem.case_id).where(m.FeedbackItem.customer_id == customer_id)
        .order_by(m.FeedbackItem.occurred_at, m.FeedbackItem.id).limit(1000)).all()
    cases = session.scalars(select(m.Case).where(m.Case.customer_id == customer_id).order_by(m.Case.id)).all()
    return answer(answers.Customer(
        id=customer.id, name=customer.name, value=customer.value, identities=identities,
        timeline=[answers.Feedback.from_row(it, st) for it, st in items], cases=cases,
        merged_into_id=customer.merged_into_id))

