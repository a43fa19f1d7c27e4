"""``/webhooks/<instance>``: hand the raw request to the instance's plugin.

The plugin verifies (signature) and parses; the core stores the raw events it
returns (duplicates skipped), commits, answers fast, and processes them after
the answer in the executor.  Processing failures leave the raw event stored
(``failed`` or still ``pending``) for replay: a delivery is never lost once
answered 2xx.
"""

from __future__ import annotations

import logging

import flask
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from hub.engine.completion import complete_followups
from hub.engine.context import current_hub
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


@bp.route("/<instance>", methods=["GET", "POST", "PUT"])
def receive(instance: str):
    # The request path only verifies, stores the raw event pending (one INSERT,
    # committed) and hands its id on (raw_events.enqueue): processing runs
    # batched in the executor, never in the request.
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
    try:
        result = plugin.handle_webhook(req)
    except WebhookRejected as exc:
        log.info("webhook %s rejected (%s): %s", instance, exc.status, exc.reason)
        return _reject(exc.status, exc.reason)
    if inst.kind == "sink" and result.completed_external_ids:
        _complete_by_external_id(hub, instance, result.completed_external_ids)
    stored: list[int] = []
    if result.raw_events:
        if inst.kind != "source":
            # Sinks use webhooks for their own state changes (they return no raw events).
            return _reject(500, "sink webhooks cannot carry feedback")
        stored = store_pending(hub.db, instance, result.raw_events, hub.clock.utcnow())
        if stored:
            enqueue(hub, instance, stored)
    body_out = result.body
    if isinstance(body_out, dict) and result.raw_events and "stored" not in body_out:
        body_out = {**body_out, "stored": len(stored), "duplicates": len(result.raw_events) - len(stored)}
    resp = flask.jsonify(body_out) if isinstance(body_out, dict | list) else flask.Response(str(body_out))
    resp.status_code = result.status
    for key, value in result.headers.items():
        resp.headers[key] = value
    return resp
