"""HubSpot webhook signatures (CONTRACTS.md §2.8), on the SDK's webhook helpers.

v3 (``X-HubSpot-Signature-v3``): base64 HMAC-SHA256, keyed with the app's
client secret, over ``method + uri + raw body + X-HubSpot-Request-Timestamp``;
requests older than five minutes are refused so a captured delivery cannot be
replayed.  v1 (hex SHA-256 of ``client secret + body``) has no timestamp and
so no replay protection; it is accepted only when an instance opts in.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import unquote

from hub.sdk import WebhookRejected, webhooks

MAX_AGE_MS = 5 * 60 * 1000
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"


class SignatureError(WebhookRejected):
    """A HubSpot request that is not authentic or not fresh (answered 401)."""

    def __init__(self, reason: str):
        super().__init__(401, reason)


def v3_message(method: str, uri: str, body: bytes, timestamp: str) -> bytes:
    return method.upper().encode() + uri.encode() + body + timestamp.encode()


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    return webhooks.hmac_b64(secret, v3_message(method, uri, body, timestamp))


def v1_signature(secret: str, body: bytes) -> str:
    # Not an HMAC: HubSpot's v1 is a plain hash of secret + body.
    return hashlib.sha256(secret.encode() + body).hexdigest()


def _uri_variants(uri: str) -> list[str]:
    # HubSpot's docs say the signed URI has URL-encoded characters decoded;
    # accept both forms rather than guess which one a proxy hands us.
    decoded = unquote(uri)
    return [uri] if decoded == uri else [uri, decoded]


def verify_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str | None, signature: str | None,
              now_ms: float, max_age_ms: int = MAX_AGE_MS) -> None:
    """Raise :class:`SignatureError` unless the request is authentic and fresh."""
    if not signature or not timestamp:
        raise SignatureError(f"missing X-HubSpot-Signature-v3 or {TIMESTAMP_HEADER}")
    try:
        webhooks.check_timestamp(timestamp, now_ms / 1000, unit="ms", max_age=max_age_ms / 1000,
                                 header_name=TIMESTAMP_HEADER)
    except WebhookRejected as exc:
        raise SignatureError(exc.reason) from None
    if not any(webhooks.hmac_matches(secret, v3_message(method, candidate, body, timestamp), signature,
                                     encoding="base64") for candidate in _uri_variants(uri)):
        raise SignatureError("X-HubSpot-Signature-v3 does not match")


def verify_v1(secret: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature")
    if not hmac.compare_digest(v1_signature(secret, body), signature.strip().lower()):
        raise SignatureError("X-HubSpot-Signature (v1) does not match")
