"""Application factory (``create_app``), in the manner of Flask's tutorial."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from hub.config import load_config
from hub.engine.context import Hub
from hub.engine.executor import make_executor
from hub.engine.registry import Registry
from hub.engine.state_store import DatabaseStateBackend
from hub.plugin_manager import make_plugin_manager
from hub.sdk.http import Clock
from hub.storage.database import DEFAULT_MMAP_BYTES, Database, default_database_url

log = logging.getLogger(__name__)


def _instance_path(cfg: Mapping[str, Any]) -> str:
    return str(Path(os.environ.get("HUB_INSTANCE_PATH") or cfg.get("instance_path") or "instance").resolve())


def _secret_key(cfg: Mapping[str, Any], instance_path: str) -> str:
    """Session signing key: from config/env/file, else generated once per install.

    Production (``environment = "production"``) requires it from the
    environment or a file: a key generated in one node's instance folder would
    differ from the other nodes', and sessions would break between them.
    """
    from hub.config import ConfigError, resolve_secret

    if cfg.get("secret_key"):
        key = resolve_secret(cfg["secret_key"], cfg, "secret_key")  # type: ignore[arg-type]
    elif cfg.get("secret_key_file"):
        key = resolve_secret(f"file:{cfg['secret_key_file']}", cfg, "secret_key_file")  # type: ignore[arg-type]
    elif cfg.get("environment") == "production":
        raise ConfigError(None, "secret_key", "environment is production: set HUB_SECRET_KEY or HUB_SECRET_KEY_FILE "
                                              "(or secret_key = \"file:PATH\"), the same on every node")
    else:
        return instance_secret(Path(instance_path) / "secret_key")
    if cfg.get("environment") == "production" and len(key) < 32:
        raise ConfigError(None, "secret_key", "too short for production: use at least 32 random characters "
                                              "(python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return key


def instance_secret(path: Path) -> str:
    """Read the key at ``path``, creating it first if absent; the first of racing creators wins.

    Several gunicorn workers start at once on a fresh install: each writes a
    complete key to a private temporary file and hard-links it to ``path``
    (which fails if another got there first), so every process reads the
    winner's key and nobody ever reads a half-written one.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won: use its key
        except OSError:  # a filesystem without hard links: the exclusive create decides instead
            _create_exclusive(path, tmp.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _create_exclusive(path: Path, key: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(key)


def _read_key(path: Path) -> str:
    import time

    for _ in range(50):  # the O_EXCL fallback: the winner may still be writing
        key = path.read_text().strip()
        if key:
            if path.stat().st_mode & 0o077:
                log.warning("%s is readable by other users: chmod 600 it", path)
            return key
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty: delete it (sessions will be signed out) or put a key in it")


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    site_file: str | None = None,
    plugins: tuple[Any, ...] = (),
    load_entry_points: bool = True,
    clock: Clock | None = None,
) -> flask.Flask:
    """Build the hub's Flask app.

    ``config`` overrides every configuration layer (tests use it);
    ``plugins`` are registered after the default and entry-point plugins.
    Raises :class:`hub.config.ConfigError` for bad configuration.
    """
    cfg = load_config(site_file, overrides=config)
    if cfg.get("log_format") == "json":
        from hub.engine.logging_json import use_json_logs

        use_json_logs()
    instance_path = _instance_path(cfg)
    app = flask.Flask("hub", instance_path=instance_path, instance_relative_config=False,
                      template_folder="web/templates", static_folder="web/static")
    app.config["MAX_CONTENT_LENGTH"] = cfg["max_body_bytes"]
    app.config["SECRET_KEY"] = _secret_key(cfg, instance_path)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["HUB"] = cfg

    pm = make_plugin_manager(load_entry_points=load_entry_points, extra=tuple(plugins))
    pm.hook.hub_configure.call_historic(kwargs={"config": cfg})
    clock = clock or Clock()
    registry = Registry(pm, cfg, clock=clock)
    db = Database(cfg.get("database_url") or default_database_url(instance_path),
                  sqlite_mmap_bytes=int(cfg.get("sqlite_mmap_mb", DEFAULT_MMAP_BYTES >> 20)) << 20)
    # Plugins' self.state lives in the hub's database (connector_state).
    registry.state_backend = lambda instance: DatabaseStateBackend(db, instance)
    # Vendor rate budgets shared by every process (Redis, else PostgreSQL); in process on SQLite.
    from hub.engine.shared_budget import SharedBudgets

    budgets = SharedBudgets.from_config(cfg, db)
    registry.budget_provider = budgets if budgets.backend != "memory" else None
    hub = Hub(
        pm=pm,
        config=cfg,
        registry=registry,
        db=db,
        executor=make_executor(cfg["executor"], cfg["executor_workers"], cfg),
        clock=clock,
        instance_path=instance_path,
    )
    app.extensions["hub"] = hub
    if hasattr(hub.executor, "bind"):  # a Celery worker in this process runs jobs with this hub
        hub.executor.bind(app)

    from hub.api import reports_api, webhooks
    from hub.api import routes as api

    app.register_blueprint(api.bp)
    from hub.api import cases_api

    app.register_blueprint(cases_api.bp)
    from hub.api import identity_api

    app.register_blueprint(identity_api.bp)
    app.register_blueprint(reports_api.bp)
    from hub.api import privacy_api

    app.register_blueprint(privacy_api.bp)
    app.register_blueprint(webhooks.bp)
    from hub.api import metrics_api, probes
    from hub.engine import metrics

    app.register_blueprint(probes.bp)  # /healthz, /readyz
    app.register_blueprint(metrics_api.bp)  # /metrics
    metrics.init_app(app)
    try:
        from hub import web
    except ImportError:  # the web UI is optional in slim installs
        web = None
    if web is not None:
        web.init_app(app)
    for result in pm.hook.hub_register_routes(app=app):
        for blueprint in result or []:
            app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def _json_errors(exc: HTTPException):
        # JSON for API/webhook callers; pages get the styled error page below.
        if flask.request.path.startswith(("/api/", "/webhooks/")):
            from hub.api.contracts import Error, ErrorDetail, body

            code = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(exc.code or 500, "error")
            resp = flask.jsonify(body(Error(error=ErrorDetail(code=code, message=exc.description or ""))))
            resp.status_code = exc.code or 500
            # The exception's own headers (405's Allow, 429's Retry-After) belong to the answer.
            for name, value in exc.get_headers():
                if name.lower() != "content-type":
                    resp.headers[name] = value
            return resp
        if web is not None:  # pages get the UI's styled error page, in the user's language
            from hub.web.errors import page_error

            return page_error(exc)
        return exc

    @app.after_request
    def _security_headers(resp: flask.Response):
        for name, value in SECURITY_HEADERS:
            resp.headers.setdefault(name, value)
        return resp

    # Sources' webhook deliveries (POST/PUT /webhooks/<source>) are answered in front of Flask:
    # no session, login limiter, CSRF or per-request database session (hub.api.webhooks.FastPath).
    app.wsgi_app = webhooks.FastPath(app, SECURITY_HEADERS)  # type: ignore[method-assign]
    return app


#: Headers every answer carries unless the view set them (pages, API, webhooks).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy",
     "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
)


def settle_for_serving(app: flask.Flask) -> flask.Flask:
    """What a process that serves ``app`` does once the app is built (gunicorn's
    ``post_worker_init`` in gunicorn.conf.py, ``feedback-hub serve``, ``make run``):
    hand what is loaded by now (modules, plugins, configuration, lexicons) to
    ``gc.freeze``, so the garbage collector's full passes no longer walk it.

    Why: a full pass over a web node's ~100,000 start-up objects took 86 ms,
    inside whichever request happened to trigger it (the inbox at a million
    items: one page in twenty). Frozen objects are never freed, which is what
    the start-up's objects do anyway: they live as long as the process."""
    import gc

    gc.freeze()
    return app
