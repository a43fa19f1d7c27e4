"""The web UI: webcare inbox, case pages, dashboard and admin.

May import: ``hub.sdk``, ``hub.engine``, ``hub.storage``, ``hub.config``,
``hub.plugin_manager`` (the admin page lists plugins).
Not: ``hub.api``, ``hub.cli``, ``hub.demo``, bundled plugins.

``init_app(app)`` (called by :func:`hub.app.create_app`) registers the
blueprints, CSRF protection, the per-request database session, the user's
language and the Jinja helpers.

Why CSRF is checked per blueprint instead of app-wide: only these pages
authenticate with the session cookie, so only they can be forged from another
site.  The API uses bearer tokens, webhooks use signatures, and plugin routes
(vendor emulators in demo mode, plugin webhooks) receive machine POSTs that
carry no form token at all; an app-wide check would refuse those.  Every UI
blueprint is made by :func:`hub.web.common.ui_blueprint`, which installs the
check, so a new page cannot forget it.
"""

from __future__ import annotations

import datetime as dt

import flask
from flask_wtf.csrf import CSRFError

from hub.web import admin, auth, cases, dashboard, inbox, login_limits, loop_views, unsubscribe, workspace
from hub.web import audit as audit_pages
from hub.web import customers as customer_pages
from hub.web.badges import TEMPLATE_GLOBALS
from hub.web.common import SessionCookies, close_session, csrf, render_error
from hub.web.filters import register_filters
from hub.web.i18n import current_locale, forget_locale, gettext, ngettext

UI_BLUEPRINTS = (auth.bp, inbox.bp, cases.bp, dashboard.bp, admin.bp, workspace.bp)
UI_BLUEPRINTS += (customer_pages.bp,)  # the customer page and the identity review queue
UI_BLUEPRINTS += (audit_pages.bp,)  # the audit log (admins)
# The opt-out page: no login (customers open it from an e-mail), a signed token instead.
UI_BLUEPRINTS += (unsubscribe.bp, loop_views.bp)


def init_app(app: flask.Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # An agent keeps the inbox open all day: the token lives as long as the
    # (signed) session instead of Flask-WTF's default hour.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    hub_cfg = app.config.get("HUB", {})
    web_cfg = hub_cfg.get("web", {})
    # Assigned, not setdefault: Flask pre-defines SESSION_COOKIE_SECURE=False,
    # so a setdefault would never turn it on.
    if str(hub_cfg.get("public_url", "")).startswith("https://") or web_cfg.get("secure_cookies") is True:
        app.config["SESSION_COOKIE_SECURE"] = True
    # Sliding: Flask re-sends the permanent session cookie on every request, so
    # the lifetime counts from the last request, not from the login.
    app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(hours=web_cfg.get("session_hours", 12))
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    app.session_interface = SessionCookies()
    csrf.init_app(app)
    for name in ("api", "webhooks"):
        if name in app.blueprints:
            csrf.exempt(app.blueprints[name])
    for bp in UI_BLUEPRINTS:
        app.register_blueprint(bp)
    login_limits.init_app(app)

    app.teardown_appcontext(close_session)
    flask.request_started.connect(forget_locale, app)
    app.teardown_request(forget_locale)
    app.jinja_env.globals.update(_=gettext, ngettext=ngettext, current_locale=current_locale, **TEMPLATE_GLOBALS)
    register_filters(app)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return render_error(400, gettext("The form expired or was not sent from this site. Reload and try again."))
