"""What every page shares: the guarded blueprint, the request's database
session, the signed-in user, roles, audit records and error pages."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import flask
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from hub.engine.context import current_hub
from hub.storage import models as m

csrf = CSRFProtect()

#: Each role may do everything the roles before it may.
ROLE_RANK = {"viewer": 0, "agent": 1, "admin": 2}

F = TypeVar("F", bound=Callable[..., Any])


def db_session() -> Session:
    """The request's session; :func:`close_session` closes it at teardown."""
    if "web_session" not in flask.g:
        db = current_hub().db
        # Pages (GET) only read: a deferred session never waits on an import.
        flask.g.web_session = db.PageSession() if flask.request.method in ("GET", "HEAD") else db.Session()
    return flask.g.web_session


def close_session(_exc: BaseException | None = None) -> None:
    session = flask.g.pop("web_session", None)
    if session is not None:
        session.close()


def now() -> dt.datetime:
    """The hub's clock (a FakeClock in tests), timezone-aware UTC."""
    return current_hub().clock.utcnow()


def current_user() -> m.User | None:
    return flask.g.get("user")


def has_role(role: str) -> bool:
    user = current_user()
    return user is not None and ROLE_RANK.get(user.role, -1) >= ROLE_RANK[role]


def background(view: F) -> F:
    """Mark a view an open page calls on its own (polling), not the agent.

    Its answer never re-sends the session cookie (``SessionCookies``), so a
    poll cannot put back the cookie from before the agent's last click."""
    view._hub_background = True  # type: ignore[attr-defined]
    return view


class SessionCookies(SecureCookieSessionInterface):
    """The signed cookie session, except that background polls leave it alone.

    Why: the session slides (re-sent on every answer) and holds the flash
    message of the last form post.  A poll sent just before a post and
    answered just after it carries the older cookie; the browser stores it
    last, and the post's flash ("Assigned to you") is gone from the next page.
    A poll that really changes the session (a sign-out) still writes it."""

    def should_set_cookie(self, app: flask.Flask, session: Any) -> bool:
        view = app.view_functions.get(flask.request.endpoint or "")
        if getattr(view, "_hub_background", False) and not session.modified:
            return False
        return super().should_set_cookie(app, session)


def public(view: F) -> F:
    """Mark a view that answers without a signed-in user (the login page)."""
    view._hub_public = True  # type: ignore[attr-defined]
    return view


def requires(role: str) -> Callable[[F], F]:
    """Refuse (403) users below ``role``; the blueprint guard already demands a login."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not has_role(role):
                flask.abort(403)
            return view(*args, **kwargs)

        wrapped._hub_role = role  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate


def session_fingerprint(user: m.User) -> str:
    """Changes when the password does, so a reset signs out old sessions."""
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:16]


def _load_user() -> m.User | None:
    uid = flask.session.get("uid")
    if not isinstance(uid, int):
        return None
    user = db_session().get(m.User, uid)
    # A password change, logout (session_epoch) or deactivation ends existing
    # sessions, also copies of their cookie.
    if (user is None or not user.active or flask.session.get("fp") != session_fingerprint(user)
            or flask.session.get("epoch") != user.session_epoch):
        flask.session.clear()
        return None
    return user


def wants_json() -> bool:
    return flask.request.accept_mimetypes.best == "application/json" or flask.request.path.endswith(".json")


def ui_blueprint(name: str, import_name: str, min_role: str = "viewer", **kwargs: Any) -> flask.Blueprint:
    """A blueprint whose every request is CSRF-checked and needs a signed-in
    user of at least ``min_role`` (views marked :func:`public` excepted)."""
    bp = flask.Blueprint(name, import_name, **kwargs)

    @bp.before_request
    def _guard():
        csrf.protect()  # no-op for GET/HEAD/OPTIONS
        flask.g.user = _load_user()
        if "web_session" in flask.g:
            # End the look-up's transaction: on SQLite every transaction takes
            # the write lock (BEGIN IMMEDIATE), and jobs must not wait on a page.
            flask.g.web_session.commit()
        view = flask.current_app.view_functions.get(flask.request.endpoint or "")
        if getattr(view, "_hub_public", False):
            return None
        if flask.g.user is None:
            if wants_json():
                return flask.jsonify(error={"code": "unauthorized", "message": "sign in first"}), 401
            return flask.redirect(flask.url_for("auth.login", next=flask.request.full_path.rstrip("?")))
        if not has_role(min_role):
            flask.abort(403)
        return None

    for code in (403, 404):
        bp.register_error_handler(code, _error_handler(code))
    return bp


def _error_handler(code: int):
    def handler(_exc):
        from hub.web.i18n import gettext

        if code == 403:
            audit_denied("web.denied", reason="role")

        message = {403: gettext("You do not have permission for this."),
                   404: gettext("This page does not exist.")}[code]
        if wants_json():
            return flask.jsonify(error={"code": "forbidden" if code == 403 else "not_found", "message": message}), code
        return render_error(code, message)

    return handler


def render_error(code: int, message: str):
    return flask.render_template("error.html", code=code, message=message), code


def audit(session: Session, action: str, case_id: int | None = None, **detail: Any) -> None:
    """Record who did what; every UI action writes one."""
    user = current_user()
    session.add(m.AuditEvent(at=now(), actor=f"user:{user.username}" if user else "anonymous", action=action,
                             case_id=case_id, detail=detail))


def audit_denied(action: str, **detail: Any) -> None:
    """Record a refused attempt (``denied=True``) in a transaction of its own.

    The request's session is rolled back first: nothing was written for a
    refused request, and on SQLite it may hold the write lock the record needs.
    """
    from hub.engine import audit as trail

    pending = flask.g.get("web_session")
    if pending is not None:
        pending.rollback()
    user = current_user()
    request = flask.request
    with current_hub().db.session() as s:
        trail.record(s, actor=f"user:{user.username}" if user else "anonymous", action=action, at=now(),
                     method=request.method, path=request.path, denied=True, **detail)


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths: ``?next=`` must not become an open redirect."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
