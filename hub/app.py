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
from hub.storage.database import Database, default_database_url

log = logging.getLogger(__name__)


def _instance_path(cfg: Mapping[str, Any]) -> str:
    return str(Path(os.environ.get("HUB_INSTANCE_PATH") or cfg.get("instance_path") or "instance").resolve())


def _secret_key(cfg: Mapping[str, Any], instance_path: str) -> str:
    """Session signing key: from config/env, else generated once per install."""
    if cfg.get("secret_key"):
        from hub.config import resolve_secret

        return resolve_secret(cfg["secret_key"], cfg, "secret_key")  # type: ignore[arg-type]
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


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
    db = Database(cfg.get("database_url") or default_database_url(instance_path))
    # Plugins' self.state lives in the hub's database (connector_state).
    registry.state_backend = lambda instance: DatabaseStateBackend(db, instance)
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
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        return resp

    return app
