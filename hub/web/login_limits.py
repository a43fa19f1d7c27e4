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
import threading
import time
from collections import Counter, defaultdict

import flask
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from limits.storage import MemoryStorage, Storage

from hub.web.common import audit_denied
from hub.web.i18n import gettext


class ThreadlessMemoryStorage(MemoryStorage):
    """limits' memory storage without its clean-up timer thread.

    Why: ``MemoryStorage`` starts a non-daemon ``threading.Timer`` when it is
    made and after each write, only to drop expired keys early.  Every app
    (every test app too) then holds a thread that interpreter exit waits for,
    and under a shifted clock (CI runs the suite a year ahead with faketime)
    that timer never fires: the process hangs at exit.  Fixed windows expire
    on read anyway (``get`` drops an expired key before counting), so here the
    sweep runs inline, at most once a minute, on a write.
    """

    STORAGE_SCHEME = ["hub-memory"]
    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self.storage = Counter()
        self.locks = defaultdict(threading.RLock)
        self.expirations = {}
        self.events = {}
        self.timer = threading.Timer(0, lambda: None)  # never started; the base class looks at it
        self._swept_at = time.time()
        Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the timer with an inline sweep
        if time.time() - self._swept_at >= self.SWEEP_SECONDS:
            self._swept_at = time.time()
            self._MemoryStorage__expire_events()


def _storage_uri(uri: str) -> str:
    return "hub-memory://" if uri.startswith("memory://") else uri


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
    audit_denied("user.login_limited", username=_username(), retry_after=seconds)
    error = gettext("Too many sign-in attempts. Try again in {seconds} seconds.", seconds=seconds)
    resp = flask.make_response(flask.render_template("login.html", form=LoginForm(), error=error), 429)
    resp.headers["Retry-After"] = str(seconds)
    return resp


def init_app(app: flask.Flask, endpoint: str = "auth.login") -> Limiter:
    web = app.config["HUB"]["web"]
    limiter = Limiter(key_func=get_remote_address, app=app, storage_uri=_storage_uri(web["ratelimit_storage_uri"]),
                      strategy="fixed-window", headers_enabled=False)
    view = app.view_functions[endpoint]
    view = limiter.limit(web["login_failures_per_user"], key_func=_username, methods=["POST"],
                         deduct_when=_failed, scope="login-user", on_breach=_too_many)(view)
    view = limiter.limit(web["login_limit_per_ip"], methods=["POST"], scope="login-ip", on_breach=_too_many)(view)
    app.view_functions[endpoint] = view
    app.extensions["hub_login_limiter"] = limiter
    return limiter
