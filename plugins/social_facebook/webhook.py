"""Graph webhooks of the Page ``feed`` field: handshake, signature, changes.

* ``GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C``: Meta checks
  the callback URL when the subscription is saved; the answer is ``C`` as plain
  text when ``T`` is the instance's ``verify_token``, else 403
  (:func:`hub.sdk.webhooks.subscription_challenge`).
* ``POST``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
  keyed with the app secret>``; a missing or wrong signature is a 401 and
  nothing is stored.  The body is ``{"object": "page", "entry": [{"id":
  <page id>, "time": ..., "changes": [{"field": "feed", "value": {...}}]}]}``.

One app has one callback URL for every Page it is subscribed to, so entries of
other Pages are acknowledged and ignored here (their own instance has its own
URL when configured so).  Each feed change of a post, status or comment becomes
one raw event; its dedupe key is the record's Graph id for a complete ``add``
(the key a pull gives the same record, so a delivery and a pull of one comment
are one raw event and one item), and the id with the verb (and, for an edit, a
hash of the new text) otherwise, so a redelivered edit is stored once but a
second edit is not lost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.sdk import RawIn, webhooks

from .mapping import RAW_CHANGE, change_target

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return webhooks.sign(app_secret, body, encoding="hex", prefix=SIGNATURE_PREFIX)


def verify(app_secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise :class:`~hub.sdk.WebhookRejected` (401) unless Meta signed ``body`` with the app secret."""
    webhooks.verify_hmac(app_secret, body, webhooks.header(headers, SIGNATURE_HEADER), encoding="hex",
                         prefix=SIGNATURE_PREFIX, header_name=SIGNATURE_HEADER)


@dataclass
class Delivery:
    """What one POST carried for this Page, and what it did not."""

    raw_events: list[RawIn] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def dedupe_key(value: Mapping[str, Any], item_id: str) -> str:
    verb = value.get("verb")
    if verb == "add":
        # Only a change that carries the record itself may take the record's key:
        # a bare notice (2013 format, photo posts) must not make the pull's copy a duplicate.
        return item_id if isinstance(value.get("message"), str) and isinstance(value.get("from"), Mapping) \
            else f"{item_id}:notice"
    if verb == "edited":
        text = value.get("message") if isinstance(value.get("message"), str) else ""
        return f"{item_id}:edited:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return f"{item_id}:{verb}"


def parse(body: bytes, page_id: str) -> Delivery:
    """Split a signed delivery into raw events; raises ValueError for a body that is not one."""
    try:
        payload = webhooks.json_body(body)
    except webhooks.WebhookRejected as exc:
        raise ValueError(exc.reason) from None
    if not isinstance(payload, Mapping):
        raise ValueError("body is not a JSON object")
    delivery = Delivery()
    if payload.get("object") != "page":
        delivery.ignored.append(f"object {str(payload.get('object'))[:40]}")
        return delivery
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise ValueError("entry is not a list")
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ValueError("an entry is not an object")
        if str(entry.get("id")) != page_id:
            delivery.ignored.append(f"entry of page {str(entry.get('id'))[:40]}")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            raise ValueError("changes is not a list")
        for change in changes:
            _add_change(delivery, entry, change, page_id)
    return delivery


def _add_change(delivery: Delivery, entry: Mapping[str, Any], change: Any, page_id: str) -> None:
    if not isinstance(change, Mapping) or not isinstance(change.get("value"), Mapping):
        raise ValueError("a change has no value object")
    value = change["value"]
    if change.get("field") != "feed":
        delivery.ignored.append(f"field {str(change.get('field'))[:40]}")
        return
    target = change_target(value, page_id)  # ValueError for a text item without proper ids
    if target is None:
        delivery.ignored.append(f"{str(value.get('item'))[:40]} {str(value.get('verb'))[:20]}")
        return
    delivery.raw_events.append(RawIn(
        payload={"page_id": page_id, "time": entry.get("time"), "value": dict(value)},
        dedupe_key=dedupe_key(value, target[0]), kind=RAW_CHANGE))
