"""``GET /metrics``: Prometheus exposition (hub.engine.metrics), for a scraper with a token.

Metrics name instances, sinks and volumes, so they are not public: the scraper
sends ``Authorization: Bearer <token>``, either an API token with the ``read``
scope (``feedback-hub token create prometheus --scope read``) or the token in
the file named by ``[metrics] token_file`` (a scraper's secret that opens
nothing else).  ``[metrics] enabled = false`` answers 404.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import flask

from hub.api.routes import error, token_required
from hub.engine import metrics
from hub.engine.context import current_hub

bp = flask.Blueprint("metrics", __name__)


def _file_token(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None  # read each scrape: a rotated token applies at once
    except OSError:
        return None


def _scrape():
    body, content_type = metrics.render(current_hub())
    return flask.Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


_with_api_token = token_required(_scrape, scope="read")


@bp.get("/metrics")
def scrape():
    cfg = current_hub().config.get("metrics") or {}
    if not cfg.get("enabled", True):
        flask.abort(404)
    token_file = cfg.get("token_file")
    if token_file:
        expected = _file_token(token_file)
        scheme, _, sent = flask.request.headers.get("Authorization", "").partition(" ")
        if expected and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), expected.encode()):
            return _scrape()
        if expected is None:
            return error(503, "unavailable", "the metrics token file cannot be read")
    return _with_api_token()
