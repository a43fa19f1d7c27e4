"""Admin pages: connector health and "pull now", installed plugins, users,
API tokens.  Admins only.

Sources and sinks are shown generically from the registry and
:func:`hub.engine.pulls.source_status`: the UI knows no plugin by name, so a newly
installed plugin shows up here without a change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import flask
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from hub.engine.accounts import create_token, create_user, end_sessions, expiry_after
from hub.engine.context import current_hub
from hub.engine.dispatch import sink_outages
from hub.engine.pulls import pull, source_status
from hub.plugin_manager import plugin_infos
from hub.storage import models as m
from hub.web.admin_text import config_files, error_sentence, readable
from hub.web.common import audit, current_user, db_session, now, ui_blueprint
from hub.web.forms import CannedAnswerForm, PasswordResetForm, TokenForm, UserEditForm, UserForm
from hub.web.i18n import gettext

bp = ui_blueprint("admin", __name__, url_prefix="/admin", min_role="admin")

#: source_status keys shown in their own columns; any other key a plugin's
#: ``health()`` adds is listed under "Details".
KNOWN_KEYS = {"name", "plugin", "last_run_at", "lag_seconds", "items_total", "cursor", "last_error"}


def _budget(name: str) -> dict[str, Any] | None:
    """The instance's rate budget: its limit and, once it has made requests,
    the tokens left and any vendor-imposed pause."""
    hub = current_hub()
    try:
        connector = hub.registry.connector(name)
    except KeyError:
        return None
    limit = connector.config.get("rate_limit") or connector.rate_limit
    if not limit:
        return None
    out: dict[str, Any] = {"requests": int(limit[0]), "per_seconds": float(limit[1]), "left": None, "paused": None}
    client = getattr(connector, "_http", None)  # only built once the instance made a request
    budget = getattr(client, "budget", None)
    if budget is not None:
        t = budget.clock.time()
        out["left"] = int(min(budget.capacity, budget.tokens + (t - budget.updated) * budget.rate))
        if budget.blocked_until > t:
            out["paused"] = dt.datetime.fromtimestamp(budget.blocked_until, dt.UTC)
    return out


@bp.get("/")
def index():
    hub = current_hub()
    session = db_session()
    sources = []
    for row in source_status(hub):
        state = "error" if row.get("last_error") else "ok" if row.get("last_run_at") else "never"
        # Plugins' health facts as "key: value" sentences, never a Python dict.
        details = {k.replace("_", " "): readable(v) for k, v in row.items() if k not in KNOWN_KEYS}
        row = {**row, "error_text": error_sentence(row.get("last_error"))}
        sources.append({**row, "state": state, "details": details, "budget": _budget(row["name"])})
    counts: dict[tuple[str, str], int] = {
        (sink, status): n for sink, status, n in session.execute(
            select(m.Followup.sink, m.Followup.status, func.count()).group_by(m.Followup.sink, m.Followup.status))
    }
    errors = dict(session.execute(select(m.Followup.sink, func.max(m.Followup.last_error)).where(
        m.Followup.status.in_(("failed", "dead"))).group_by(m.Followup.sink)).all())
    outages = sink_outages(hub)  # failing now; "alerted" once it failed long enough to tell the admin
    sinks = [{"name": name, "plugin": inst.plugin, "routed": name == hub.registry.followup_sink,
              "counts": {st: counts.get((name, st), 0) for st in ("pending", "sent", "failed", "dead", "done")},
              "last_error": errors.get(name), "outage": outages.get(name) if (outages.get(name) or {}).get(
                  "alerted") else None}
             for name, inst in sorted(hub.registry.sinks.items())]
    kinds = {**{k: ("source", c) for k, c in hub.registry.source_kinds.items()},
             **{k: ("sink", c) for k, c in hub.registry.sink_kinds.items()}}
    for sink in sinks:
        sink["error_text"] = error_sentence(sink["last_error"])
    return flask.render_template("admin.html", sources=sources, sinks=sinks, plugins=plugin_infos(hub.pm),
                                 kinds=sorted(kinds.items()), tab="connectors", config_files=config_files(hub.config))


@bp.post("/sources/<name>/pull")
def pull_now(name: str):
    hub = current_hub()
    if name not in hub.registry.sources:
        flask.abort(404)
    session = db_session()
    audit(session, "source.pull", instance=name)
    # Commit before submitting: the inline executor (tests, CLI) runs the pull
    # right here, and it writes through sessions of its own.
    session.commit()
    hub.executor.submit(pull, hub, name)
    flask.flash(gettext("Pull of {name} started.", name=name), "ok")
    return flask.redirect(flask.url_for("admin.index"))


# -- users ---------------------------------------------------------------------
def _users_page(form: UserForm, status: int = 200):
    users = db_session().scalars(select(m.User).order_by(m.User.username)).all()
    return flask.render_template("admin_users.html", users=users, form=form, tab="users"), status


@bp.get("/users")
def users():
    return _users_page(UserForm())


@bp.post("/users")
def user_create():
    form = UserForm()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    session = db_session()
    if session.scalar(select(m.User.id).where(m.User.username == form.username.data)) is not None:
        # Creating must never overwrite: resetting a password is its own, deliberate action.
        form.username.errors.append(gettext("A user named {name} exists already: use Reset password on its row.",
                                            name=form.username.data))
        return _users_page(form, 409)
    try:
        user = create_user(session, form.username.data, form.password.data, form.role.data)
    except ValueError as exc:
        form.username.errors.append(str(exc))
        return _users_page(form, 400)
    user.locale = form.locale.data or None
    audit(session, "user.created", username=user.username, role=user.role)
    session.commit()
    flask.flash(gettext("User {name} saved.", name=user.username), "ok")
    return flask.redirect(flask.url_for("admin.users"))


@bp.post("/users/<int:user_id>")
def user_edit(user_id: int):
    session = db_session()
    user = session.get(m.User, user_id)
    if user is None:
        flask.abort(404)
    form = UserEditForm()
    if not form.validate_on_submit():
        flask.abort(400)
    me = current_user()
    if user.id == me.id and (form.role.data != "admin" or not form.active.data):
        flask.flash(gettext("You cannot remove your own admin role."), "error")
        return flask.redirect(flask.url_for("admin.users"))
    audit(session, "user.changed", username=user.username, role=form.role.data, active=form.active.data,
          previous_role=user.role, previous_active=user.active)
    user.role, user.active = form.role.data, form.active.data
    session.commit()
    flask.flash(gettext("User {name} saved.", name=user.username), "ok")
    return flask.redirect(flask.url_for("admin.users"))


def _user_or_404(user_id: int) -> m.User:
    user = db_session().get(m.User, user_id)
    if user is None:
        flask.abort(404)
    return user


@bp.post("/users/<int:user_id>/password")
def user_password(user_id: int):
    """Set a new password; every session of the user ends."""
    session = db_session()
    user = _user_or_404(user_id)
    form = PasswordResetForm()
    if not form.validate_on_submit():
        flask.flash(gettext("A password needs at least 8 characters."), "error")
        return flask.redirect(flask.url_for("admin.users"))
    user.password_hash = generate_password_hash(form.password.data)
    end_sessions(user)
    audit(session, "user.password_reset", username=user.username)
    session.commit()
    flask.flash(gettext("New password set for {name}; their sessions have ended.", name=user.username), "ok")
    return flask.redirect(flask.url_for("admin.users"))


@bp.post("/users/<int:user_id>/active")
def user_active(user_id: int):
    """Deactivate (signs the user out at once) or activate again."""
    session = db_session()
    user = _user_or_404(user_id)
    active = flask.request.form.get("active") == "yes"
    if user.id == current_user().id and not active:
        flask.flash(gettext("You cannot deactivate yourself."), "error")
        return flask.redirect(flask.url_for("admin.users"))
    if user.active != active:
        user.active = active
        audit(session, "user.activated" if active else "user.deactivated", username=user.username)
        session.commit()
    flask.flash(gettext("{name} can sign in again.", name=user.username) if active
                else gettext("{name} is deactivated and signed out.", name=user.username), "ok")
    return flask.redirect(flask.url_for("admin.users"))


# -- canned answers --------------------------------------------------------------
def _canned_page(form: CannedAnswerForm, status: int = 200):
    answers = db_session().scalars(select(m.CannedAnswer).order_by(m.CannedAnswer.language,
                                                                   m.CannedAnswer.title)).all()
    return flask.render_template("admin_canned.html", answers=answers, form=form, tab="canned"), status


@bp.get("/canned")
def canned():
    return _canned_page(CannedAnswerForm())


@bp.post("/canned")
@bp.post("/canned/<int:answer_id>")
def canned_save(answer_id: int | None = None):
    session = db_session()
    form = CannedAnswerForm()
    if not form.validate_on_submit():
        return _canned_page(form, 400)
    answer = session.get(m.CannedAnswer, answer_id) if answer_id else m.CannedAnswer()
    if answer is None:
        flask.abort(404)
    answer.language, answer.title, answer.text = form.language.data, form.title.data.strip(), form.text.data.strip()
    answer.updated_at, answer.updated_by = now(), current_user().username
    session.add(answer)
    session.flush()
    audit(session, "canned_answer.saved", answer_id=answer.id, language=answer.language)
    session.commit()
    flask.flash(gettext("Canned answer {title} saved.", title=answer.title), "ok")
    return flask.redirect(flask.url_for("admin.canned"))


@bp.post("/canned/<int:answer_id>/delete")
def canned_delete(answer_id: int):
    session = db_session()
    answer = session.get(m.CannedAnswer, answer_id)
    if answer is None:
        flask.abort(404)
    audit(session, "canned_answer.deleted", answer_id=answer.id)
    session.delete(answer)
    session.commit()
    flask.flash(gettext("Canned answer {title} deleted.", title=answer.title), "ok")
    return flask.redirect(flask.url_for("admin.canned"))


# -- API tokens ------------------------------------------------------------------
def _tokens_page(form: TokenForm, new_token: str | None = None, status: int = 200):
    tokens = db_session().scalars(select(m.ApiToken).order_by(m.ApiToken.revoked_at.is_not(None), m.ApiToken.id.desc())).all()
    resp = flask.make_response(flask.render_template("admin_tokens.html", tokens=tokens, form=form,
                                                     new_token=new_token, tab="tokens", now=now()), status)
    if new_token:
        resp.headers["Cache-Control"] = "no-store"  # the one page that shows a secret: never cache it
    return resp


@bp.get("/tokens")
def tokens():
    return _tokens_page(TokenForm())


@bp.post("/tokens")
def token_create():
    form = TokenForm()
    if not form.validate_on_submit():
        return _tokens_page(form, status=400)
    session = db_session()
    expires_at = expiry_after(now(), form.expires_days.data)
    value = create_token(session, form.name.data, scope=form.scope.data, expires_at=expires_at)
    audit(session, "token.created", name=form.name.data, prefix=value[:10], scope=form.scope.data,
          expires_at=expires_at.isoformat() if expires_at else None)
    session.commit()
    # Shown in this response only (never flashed: the session cookie is
    # signed, not encrypted).
    return _tokens_page(TokenForm(formdata=None), new_token=value)


@bp.post("/tokens/<int:token_id>/revoke")
def token_revoke(token_id: int):
    session = db_session()
    token = session.get(m.ApiToken, token_id)
    if token is None:
        flask.abort(404)
    if token.revoked_at is None:
        token.revoked_at = now()
        audit(session, "token.revoked", name=token.name, prefix=token.prefix)
        session.commit()
    flask.flash(gettext("Token {name} revoked.", name=token.name), "ok")
    return flask.redirect(flask.url_for("admin.tokens"))
