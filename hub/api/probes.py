"""Liveness and readiness of a web process, for load balancers and orchestrators.

``GET /healthz``: the process answers (liveness; touches nothing else, so a
database outage never gets healthy web processes restarted).
``GET /readyz``: it can serve: the database answers, its schema is at the
newest migration (``feedback-hub db upgrade`` ran), and with ``executor =
"celery"`` the broker accepts a connection.  503 names the failing checks.

Both are unauthenticated, so they say nothing else: no versions, names or counts.
"""

from __future__ import annotations

import functools
import logging

import flask
from sqlalchemy import text

from hub.engine.context import current_hub

log = logging.getLogger(__name__)
bp = flask.Blueprint("probes", __name__)


@bp.get("/healthz")
def healthz():
    return _answer({"status": "ok"}, 200)


@bp.get("/readyz")
def readyz():
    failing = [name for name, check in (("database", _database), ("migrations", _migrations), ("broker", _broker))
               if not _passes(name, check)]
    if failing:
        return _answer({"status": "not ready", "failing": failing}, 503)
    return _answer({"status": "ready"}, 200)


def _answer(body: dict, status: int):
    resp = flask.jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _passes(name: str, check) -> bool:
    try:
        return bool(check())
    except Exception as exc:  # a probe answers 503, never 500
        log.warning("readiness: %s check failed (%s)", name, exc.__class__.__name__)
        return False


def _database() -> bool:
    with current_hub().db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True


@functools.cache
def _script_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    from hub.storage.migrate import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _migrations() -> bool:
    from alembic.runtime.migration import MigrationContext

    with current_hub().db.engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads()) == _script_heads()


def _broker() -> bool:
    celery = getattr(current_hub().executor, "celery", None)
    if celery is None:
        return True  # threads / inline: no broker to need
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return True
