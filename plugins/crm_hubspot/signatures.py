"""HubSpot webhook signatures (CONTRACTS.md §2.8).

v3 (``X-HubSpot-Signature-v3``): base64 HMAC-SHA256, keyed with the app's
client secret, over ``method + uri + raw body + X-HubSpot-Request-Timestamp``;
requests older than five minutes are refused so a captured delivery cannot be
replayed.  v1 (hex SHA-256 of ``client secret + body``) has no timestamp and
so no replay protection; it is accepted only when an instance opts in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import unquote

MAX_AGE_MS = 5 * 60 * 1000


class SignatureError(Exception):
    pass


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def v1_signature(secret: str, body: bytes) -> str:
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
        raise SignatureError("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("X-HubSpot-Request-Timestamp is not a number") from None
    if now_ms - sent > max_age_ms:
        raise SignatureError("timestamp older than 5 minutes (replayed or delayed delivery)")
    for candidate in _uri_variants(uri):
        if hmac.compare_digest(v3_signature(secret, method, candidate, body, timestamp), signature.strip()):
            return
    raise SignatureError("X-HubSpot-Signature-v3 does not match")


def verify_v1(secret: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature")
    if not hmac.compare_digest(v1_signature(secret, body), signature.strip().lower()):
        raise SignatureError("X-HubSpot-Signature (v1) does not match")
