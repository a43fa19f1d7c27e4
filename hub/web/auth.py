"""Sign in, sign out and the user's own language."""

from __future__ import annotations

import flask
from sqlalchemy import select

from hub.engine.accounts import check_password, end_sessions
from hub.storage import models as m
from hub.web.common import (
    audit,
    current_user,
    db_session,
    public,
    safe_next,
    session_fingerprint,
    ui_blueprint,
)
from hub.web.forms import LocaleForm, LoginForm
from hub.web.i18n import LOCALES, gettext

bp = ui_blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    form = LoginForm()
    next_url = safe_next(flask.request.args.get("next"), flask.url_for("inbox.index"))
    if current_user() is not None and flask.request.method == "GET":
        return flask.redirect(next_url)
    error = None
    if form.validate_on_submit():
        session = db_session()
        user = session.scalars(select(m.User).where(m.User.username == form.username.data.strip())).first()
        if check_password(user, form.password.data):  # hashes for unknown users too: same answer time
            flask.session.clear()  # a fresh session: no fixation of a planted one
            flask.session["uid"] = user.id
            flask.session["fp"] = session_fingerprint(user)
            flask.session["epoch"] = user.session_epoch
            flask.session.permanent = True
            flask.g.user = user
            audit(session, "user.login")
            session.commit()
            return flask.redirect(next_url)
        error = gettext("Wrong username or password.")
        audit(session, "user.login_failed", username=form.username.data[:100], denied=True)
        session.commit()
    elif flask.request.method == "POST":
        error = gettext("Enter your username and password.")
    return flask.render_template("login.html", form=form, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    session = db_session()
    audit(session, "user.logout")
    # Ends every session of this user, not just this browser's: a copied
    # cookie must not outlive the logout.
    end_sessions(current_user())
    session.commit()
    flask.session.clear()
    return flask.redirect(flask.url_for("auth.login"))


@bp.post("/me/locale")
def set_locale():
    form = LocaleForm()
    if form.validate_on_submit() and form.locale.data in LOCALES:
        user = current_user()
        session = db_session()
        user.locale = form.locale.data
        audit(session, "user.locale", locale=form.locale.data)
        session.commit()
    return flask.redirect(safe_next(flask.request.form.get("next"), flask.url_for("inbox.index")))
