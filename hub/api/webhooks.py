"""``/webhooks/<instance>``: hand the raw request to the instance's plugin.

The plugin verifies (signature) and parses; the core stores the raw events it
returns (duplicates skipped), commits, answers fast, and processes them after
the answer in the executor.  Processing failures leave the raw event stored
(``failed`` or still ``pending``) for replay: a delivery is never lost once
answered 2xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import flask
from sqlalchemy import select
from werkzeug.datastructures import Headers
from werkzeug.exceptions import InternalServerError, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request as WerkzeugRequest

from hub.engine.completion import complete_followups
from hub.engine.context import current_hub
from hub.engine.metrics import WEBHOOK_SECONDS
from hub.engine.raw_events import enqueue, store_pending
from hub.sdk.connectors import WebhookRejected, WebhookRequest
from hub.sdk.schema import Completion
from hub.storage import models as m

log = logging.getLogger(__name__)
bp = flask.Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _reject(status: int, reason: str):
    return flask.jsonify(error={"code": "rejected", "message": reason}), status


def _complete_by_external_id(hub, sink: str, external_ids: list[str]) -> int:
    with hub.db.Session() as s:
        ids = s.scalars(select(m.Followup.id).where(
            m.Followup.sink == sink, m.Followup.status == "sent", m.Followup.external_id.in_(external_ids))).all()
    return complete_followups(hub, [Completion(i) for i in ids], actor=f"webhook:{sink}")


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _deliver(hub, instance: str, plugin, req: WebhookRequest) -> tuple[int, Any, dict[str, str]]:
    """A source's delivery: the plugin verifies and parses, the core stores the raw events
    pending (committed) and hands them on; the answer as (status, body, headers)."""
    try:
        result = plugin.handle_webhook(req)
    except WebhookRejected as exc:
        log.info("webhook %s rejected (%s): %s", instance, exc.status, exc.reason)
        return exc.status, _error("rejected", exc.reason), {}
    stored: list[int] = []
    if result.raw_events:
        stored = store_pending(hub.db, instance, result.raw_events, hub.clock.utcnow())
        if stored:
            enqueue(hub, instance, stored)
    body_out = result.body
    if isinstance(body_out, dict) and result.raw_events and "stored" not in body_out:
        body_out = {**body_out, "stored": len(stored), "duplicates": len(result.raw_events) - len(stored)}
    return result.status, body_out, result.headers


@bp.route("/<instance>", methods=["GET", "POST", "PUT"])
def receive(instance: str):
    # The request path only verifies, stores the raw event pending (one INSERT,
    # committed) and hands its id on (raw_events.enqueue): processing runs
    # batched in the executor, never in the request.  A source's POST and PUT
    # usually never get here: FastPath serves them in front of Flask.
    hub = current_hub()
    inst = hub.registry.instance(instance)
    if inst is None:
        return _reject(404, f"no instance named {instance!r}")
    plugin = hub.registry.connector(instance) if inst.kind == "source" else hub.registry.sink(instance)
    request = flask.request
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _reject(413, f"body larger than {hub.config['max_body_bytes']} bytes")
    req = WebhookRequest(method=request.method, url=request.url, path=request.path, headers=request.headers,
                         args=request.args, body=body)
    if inst.kind == "source":
        status, body_out, headers = _deliver(hub, instance, plugin, req)
    else:
        try:
            result = plugin.handle_webhook(req)
        except WebhookRejected as exc:
            log.info("webhook %s rejected (%s): %s", instance, exc.status, exc.reason)
            return _reject(exc.status, exc.reason)
        if result.completed_external_ids:
            _complete_by_external_id(hub, instance, result.completed_external_ids)
        if result.raw_events:
            # Sinks use webhooks for their own state changes (they return no raw events).
            return _reject(500, "sink webhooks cannot carry feedback")
        status, body_out, headers = result.status, result.body, result.headers
    resp = flask.jsonify(body_out) if isinstance(body_out, dict | list) else flask.Response(str(body_out))
    resp.status_code = status
    for key, value in headers.items():
        resp.headers[key] = value
    return resp


class _Request(WerkzeugRequest):
    max_content_length: int | None = None


PREFIX = "/webhooks/"


class FastPath:
    """WSGI in front of the Flask app: ``POST``/``PUT /webhooks/<source>`` answered without Flask.

    Why: a delivery needs none of what Flask runs for every request (the
    request and app contexts, the session cookie, the login limiter's and
    CSRF's hooks, the per-request database session's teardown), about half a
    millisecond of CPU per delivery, as much as a bare Flask app's whole
    request.  What a delivery does need is here, as the blueprint does it:
    the body limit (413), the plugin's verdict (its signature check, 4xx with
    the reason), the pending insert, the answer with the app's security
    headers, the ``hub_webhook_seconds`` histogram and, on an unexpected
    error, a logged JSON 500 (raised instead when the app propagates
    exceptions, as Flask does in tests).  Everything else (``GET``
    handshakes, sinks, unknown names, other paths) goes to Flask unchanged.
    """

    def __init__(self, app: flask.Flask, security_headers: Sequence[tuple[str, str]] = ()):
        self.app = app
        self.inner = app.wsgi_app
        self.hub = app.extensions["hub"]
        self.security_headers = tuple(security_headers)
        self._timers: dict[str, Any] = {}

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO") or ""
        if path.startswith(PREFIX) and environ.get("REQUEST_METHOD") in ("POST", "PUT"):
            name = path[len(PREFIX):]
            if name in self.hub.registry.sources:
                return self.serve(name, environ, start_response)
        return self.inner(environ, start_response)

    def serve(self, name: str, environ: dict, start_response):
        started = time.perf_counter()
        try:
            status, body_out, headers = self._receive(name, environ)
        except Exception:
            propagate = self.app.config.get("PROPAGATE_EXCEPTIONS")
            if propagate or (propagate is None and (self.app.testing or self.app.debug)):
                raise
            self.app.logger.exception("Exception on %s [%s]", environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"))
            status, body_out, headers = 500, _error("error", InternalServerError.description or ""), {}
        finally:
            self._timer(name).observe(time.perf_counter() - started)
        if isinstance(body_out, dict | list):
            data = (self.app.json.dumps(body_out, separators=(",", ":")) + "\n").encode()
            kind = "application/json"
        else:
            data = str(body_out).encode()
            kind = "text/html; charset=utf-8"
        status_line = f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN')}"
        if not headers:  # the usual answer: the fixed headers as they are, no Headers object to build
            start_response(status_line, [("Content-Type", kind), *self.security_headers,
                                         ("Content-Length", str(len(data)))])
            return [data]
        out = Headers()
        out["Content-Type"] = kind
        for key, value in headers.items():  # a plugin's own: checked for line breaks, may replace the type
            out[key] = value
        for key, value in self.security_headers:
            out.setdefault(key, value)
        out["Content-Length"] = str(len(data))
        start_response(status_line, out.to_wsgi_list())
        return [data]

    def _receive(self, name: str, environ: dict) -> tuple[int, Any, dict[str, str]]:
        hub = self.hub
        request = _Request(environ)
        request.max_content_length = self.app.config.get("MAX_CONTENT_LENGTH")
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return 413, _error("rejected", f"body larger than {hub.config['max_body_bytes']} bytes"), {}
        req = WebhookRequest(method=request.method, url=request.url, path=request.path, headers=request.headers,
                             args=request.args, body=body)
        return _deliver(hub, name, hub.registry.connector(name), req)

    def _timer(self, name: str):
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = WEBHOOK_SECONDS.labels(name)
        return timer
