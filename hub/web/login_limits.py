"""Login rate limits: per client address and per username (failed attempts only).

One :class:`flask_limiter.Limiter` per app (made in :func:`init_app`), so each
app, and each test app, counts in storage of its own.  The counters live in
memory by default, which is right for one web process; production with several
web nodes must share them: set ``web.ratelimit_storage_uri`` to Redis, e.g.
``redis://127.0.0.1:6379`` (needs the ``redis`` package).  Behind a reverse
proxy the client address is only right if the proxy's address is not what
Flask sees (use werkzeug's ``ProxyFix``).
"""

from __future__ import annotations

import math
import time

import flask
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address

from hub.web.i18n import gettext


def _username() -> str:
    return (flask.request.form.get("username") or "").strip()[:100]


def _failed(response: flask.Response) -> bool:
    return response.status_code == 401


def _too_many(limit: RequestLimit) -> flask.Response:
    """The login page with a readable 429 and when to try again."""
    from hub.web.forms import LoginForm

    # The limiter's windows run on its storage's clock (the wall clock, or
    # Redis's); the answer must agree with it, not with the hub's clock.
    seconds = max(1, math.ceil(limit.window.reset_time - time.time()))
    error = gettext("Too many sign-in attempts. Try again in {seconds} seconds.", seconds=seconds)
    resp = flask.make_response(flask.render_template("login.html", form=LoginForm(), error=error), 429)
    resp.headers["Retry-After"] = str(seconds)
    return resp


def init_app(app: flask.Flask, endpoint: str = "auth.login") -> Limiter:
    web = app.config["HUB"]["web"]
    limiter = Limiter(key_func=get_remote_address, app=app, storage_uri=web["ratelimit_storage_uri"],
                      strategy="fixed-window", headers_enabled=False)
    view = app.view_functions[endpoint]
    view = limiter.limit(web["login_failures_per_user"], key_func=_username, methods=["POST"],
                         deduct_when=_failed, scope="login-user", on_breach=_too_many)(view)
    view = limiter.limit(web["login_limit_per_ip"], methods=["POST"], scope="login-ip", on_breach=_too_many)(view)
    app.view_functions[endpoint] = view
    app.extensions["hub_login_limiter"] = limiter
    return limiter
