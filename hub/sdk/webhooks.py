"""Webhook helpers: what a plugin's ``handle_webhook`` needs to trust a request.

Vendors sign deliveries in a handful of ways that differ only in details
(hash, hex or base64, a ``sha256=`` prefix, what exactly is signed).  These
helpers do the parts that are easy to get subtly wrong, once:

* :func:`header` - case-insensitive header lookup on any mapping (werkzeug's
  ``Headers`` already is; a plain ``dict`` in a test is not);
* :func:`sign` / :func:`hmac_b64` / :func:`hmac_hex` - the signature value of a
  message, to answer challenges and to sign requests in tests;
* :func:`verify_hmac` - constant-time check of a signature header against the
  raw body, raising :class:`WebhookRejected` (401) with a reason that says
  what was wrong (missing header, wrong scheme prefix, mismatch);
* :func:`check_timestamp` - refuse replayed or delayed deliveries, on the
  injected clock;
* :func:`subscription_challenge` - the ``GET ?hub.mode=subscribe&hub.challenge=
  ...&hub.verify_token=...`` handshake (WebSub, Meta Graph webhooks): echo the
  challenge when the verify token matches;
* :func:`challenge_token` - refuse a challenge (CRC) token that is not a short
  run of URL-safe characters.  Answer every challenge through it: a vendor
  that signs its CRC answer with the delivery key (X does) would otherwise
  sign a forged delivery body for anyone who sends it as the token;
* :func:`json_body` - the body as JSON, 400 when it is not JSON or nested
  deeper than :data:`MAX_JSON_DEPTH`.

Always verify over ``request.body`` - the bytes exactly as received.  Parsed
and re-serialised JSON changes key order and spacing, and so the digest.

Example, a vendor that signs ``sha256=<hex>`` in ``X-Hub-Signature-256``:

.. code-block:: python

    from hub.sdk import webhooks

    def handle_webhook(self, request):
        if request.method == "GET":
            return webhooks.subscription_challenge(request, self.config["verify_token"])
        webhooks.verify_hmac(self.config["app_secret"], request.body,
                             webhooks.header(request.headers, "X-Hub-Signature-256"),
                             prefix="sha256=", encoding="hex", header_name="X-Hub-Signature-256")
        event = webhooks.json_body(request)
        ...
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.sdk.clock import Clock
from hub.sdk.contracts import MAX_JSON_DEPTH, JsonTooDeep, loads_bounded
from hub.sdk.schema import RawIn

Encoding = Literal["hex", "base64"]
#: Hashes a signature may use.  MD5 and the like are refused on purpose.
ALGORITHMS = frozenset({"sha1", "sha256", "sha512"})
#: Longest challenge token answered.  Real ones (X's CRC, Meta's challenge) are
#: far shorter; a delivery body is far longer.
MAX_CHALLENGE_LENGTH = 256
#: URL-safe base64 and the few other characters tokens use (``+ / = . ~``).
#: No braces, brackets, quotes, colons, commas or spaces: a token is never a JSON
#: object, array or string, so a signed challenge is never a signed delivery body.
_CHALLENGE = re.compile(rf"[A-Za-z0-9_\-+/=.~]{{1,{MAX_CHALLENGE_LENGTH}}}")


@dataclass
class WebhookRequest:
    """The raw request handed to a plugin (bytes exactly as received)."""

    method: str
    url: str
    path: str
    headers: Mapping[str, str]
    args: Mapping[str, str]
    body: bytes


@dataclass
class WebhookResult:
    """A plugin's verdict on a webhook request.

    ``raw_events`` are stored (deduplicated) before the core answers; their
    processing happens after the answer, in the executor.  ``status``/``body``
    is what the caller gets (for a CRC challenge, say): a dict or list is sent
    as JSON, anything else as ``text/plain``.
    """

    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    raw_events: list[RawIn] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    #: Sinks: external ids (CRM task ids) the request says are completed; the
    #: core closes this sink's matching follow-ups at once.
    completed_external_ids: list[str] = field(default_factory=list)


class WebhookRejected(Exception):
    """Raise from ``handle_webhook`` to refuse a request: nothing is stored.

    The caller gets ``status`` and ``{"error": {"code": "rejected", "message":
    reason}}``; the reason is logged, so it must never contain a secret.
    """

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in any case spelling, or None.

    >>> header({"x-hub-signature-256": "sha256=ab"}, "X-Hub-Signature-256")
    'sha256=ab'
    """
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; werkzeug's Headers is not
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _message(message: str | bytes) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else message


def hmac_digest(secret: str | bytes, message: str | bytes, algorithm: str = "sha256") -> bytes:
    """Raw HMAC of ``message`` keyed with ``secret`` (text is UTF-8 encoded)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported HMAC algorithm {algorithm!r} (use one of {', '.join(sorted(ALGORITHMS))})")
    return hmac.new(_key(secret), _message(message), getattr(hashlib, algorithm)).digest()


def hmac_hex(secret: str | bytes, message: str | bytes, algorithm: str = "sha256") -> str:
    """Lower-case hex HMAC, e.g. Meta's ``X-Hub-Signature-256`` after ``sha256=``."""
    return hmac_digest(secret, message, algorithm).hex()


def hmac_b64(secret: str | bytes, message: str | bytes, algorithm: str = "sha256") -> str:
    """Standard base64 HMAC, e.g. X's CRC ``response_token`` after ``sha256=``.

    >>> hmac_b64("secret", "token")[:12]
    '6UERDj0r/oJi'
    """
    return base64.b64encode(hmac_digest(secret, message, algorithm)).decode("ascii")


def sign(secret: str | bytes, message: str | bytes, *, algorithm: str = "sha256", encoding: Encoding = "hex",
         prefix: str = "") -> str:
    """The signature value a vendor would send: ``prefix`` + hex or base64 HMAC.

    >>> sign("s", b"{}", encoding="base64", prefix="sha256=").startswith("sha256=")
    True
    """
    digest = hmac_digest(secret, message, algorithm)
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")
    return prefix + text


def _decode(text: str, encoding: Encoding) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


def hmac_matches(secret: str | bytes, message: str | bytes, signature: str | None, *, algorithm: str = "sha256",
                 encoding: Encoding = "hex", prefix: str = "") -> bool:
    """True when ``signature`` is ``prefix`` + the HMAC of ``message``; constant time.

    The prefix is matched exactly (a signature without it does not match);
    hex is compared case-insensitively, base64 exactly as decoded.
    """
    if not signature:
        return False
    signature = signature.strip()
    if prefix and not signature.startswith(prefix):
        return False
    given = _decode(signature[len(prefix):], encoding)
    expected = hmac_digest(secret, message, algorithm)
    # compare_digest on the decoded bytes: time does not depend on where they differ.
    return hmac.compare_digest(expected, given if given is not None else b"")


def verify_hmac(secret: str | bytes, message: str | bytes, signature: str | None, *, algorithm: str = "sha256",
                encoding: Encoding = "hex", prefix: str = "", header_name: str = "signature") -> None:
    """Raise :class:`WebhookRejected` (401) unless ``signature`` signs ``message``.

    ``header_name`` only words the reason: ``missing X-Hub-Signature-256
    header``, ``X-Hub-Signature-256 does not match the body (expected sha256=
    + hex HMAC-SHA256)``.

    >>> body = b'{"object": "page"}'
    >>> verify_hmac("app-secret", body, sign("app-secret", body, prefix="sha256="), prefix="sha256=")
    >>> verify_hmac("app-secret", body, "sha256=00", prefix="sha256=", header_name="X-Hub-Signature-256")
    Traceback (most recent call last):
    ...
    hub.sdk.webhooks.WebhookRejected: X-Hub-Signature-256 does not match the body (expected sha256= + hex HMAC-SHA256)
    """
    if not signature or not signature.strip():
        raise WebhookRejected(401, f"missing {header_name} header")
    if not hmac_matches(secret, message, signature, algorithm=algorithm, encoding=encoding, prefix=prefix):
        raise WebhookRejected(401, f"{header_name} does not match the body "
                                   f"(expected {prefix + ' + ' if prefix else ''}{encoding} HMAC-{algorithm.upper()})")


def check_timestamp(value: str | int | float | None, clock: Clock | float, *, max_age: float = 300.0,
                    max_future: float | None = None, unit: Literal["s", "ms"] = "s",
                    header_name: str = "timestamp") -> float:
    """Refuse a delivery whose signed timestamp is too old (a replay); returns it in seconds.

    ``value`` is Unix time in ``unit`` (HubSpot sends milliseconds, Slack and
    Stripe seconds).  ``max_age`` seconds is the oldest accepted;
    ``max_future`` (default: same as ``max_age``) bounds clock skew the other way.
    ``clock`` is the plugin's injected clock (``self.clock``, so tests use a
    FakeClock) or a Unix time in seconds.
    Check the signature too: the timestamp is only worth something when it is
    part of the signed message.

    >>> from hub.sdk.clock import FakeClock
    >>> check_timestamp("1700000000000", FakeClock(1_700_000_100.0), unit="ms")
    1700000000.0
    """
    if value is None or str(value).strip() == "":
        raise WebhookRejected(401, f"missing {header_name}")
    try:
        sent = float(value)
    except ValueError:
        raise WebhookRejected(401, f"{header_name} is not a number") from None
    if not math.isfinite(sent):  # "nan" compares false with every bound: it would pass both checks
        raise WebhookRejected(401, f"{header_name} is not a number")
    if unit == "ms":
        sent /= 1000.0
    now = clock.time() if isinstance(clock, Clock) else float(clock)
    age = now - sent
    if age > max_age:
        raise WebhookRejected(401, f"{header_name} older than {_duration(max_age)} (replayed or delayed delivery)")
    if -age > (max_age if max_future is None else max_future):
        raise WebhookRejected(401, f"{header_name} lies in the future (clock skew or forged)")
    return sent


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


def challenge_token(value: str | None, name: str = "challenge") -> str:
    """``value`` when it is a safe challenge token, else :class:`WebhookRejected` (400).

    Safe: 1-256 characters of ``A-Z a-z 0-9 - _ + / = . ~``.  Whatever a
    plugin signs or echoes in a handshake must pass here first, so the
    handshake cannot be used to sign (or reflect) a JSON delivery body.

    >>> challenge_token("challenge_string")
    'challenge_string'
    >>> challenge_token('{"tweet_create_events": []}', "crc_token")
    Traceback (most recent call last):
    ...
    hub.sdk.webhooks.WebhookRejected: crc_token must be 1-256 characters of A-Z a-z 0-9 - _ + / = . ~
    """
    if not isinstance(value, str) or not _CHALLENGE.fullmatch(value):
        raise WebhookRejected(400, f"{name} must be 1-{MAX_CHALLENGE_LENGTH} characters of A-Z a-z 0-9 - _ + / = . ~")
    return value


def subscription_challenge(request: WebhookRequest, verify_token: str | None, *, prefix: str = "hub.",
                           ) -> WebhookResult:
    """Answer a subscription handshake (``GET ?hub.mode=subscribe&hub.challenge=C&hub.verify_token=T``).

    Used by WebSub and Meta's Graph webhooks: the vendor checks that the
    endpoint is ours by sending the verify token set in its dashboard and
    expects the challenge echoed back as plain text with 200.  Refuses (403)
    when the token is missing or wrong, 400 when the request is no handshake.
    The token compare is constant-time.

    >>> req = WebhookRequest("GET", "", "", {}, {"hub.mode": "subscribe", "hub.challenge": "1158201444",
    ...                                          "hub.verify_token": "meatyhamhock"}, b"")
    >>> subscription_challenge(req, "meatyhamhock").body
    '1158201444'
    """
    args = request.args
    mode, challenge, token = (args.get(prefix + k) for k in ("mode", "challenge", "verify_token"))
    if mode != "subscribe" or not challenge:
        raise WebhookRejected(400, f"expected ?{prefix}mode=subscribe&{prefix}challenge=...&{prefix}verify_token=...")
    challenge = challenge_token(challenge, prefix + "challenge")
    if not verify_token:
        raise WebhookRejected(403, "this instance has no verify token configured: handshakes are refused")
    if not token or not hmac.compare_digest(_message(token), _message(verify_token)):
        raise WebhookRejected(403, f"{prefix}verify_token does not match this instance's verify token")
    return WebhookResult(status=200, body=challenge, headers={"Content-Type": "text/plain; charset=utf-8"})


def json_body(request: WebhookRequest | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The body (of a request, or bytes) parsed as JSON, or :class:`WebhookRejected` (400) saying why not.

    Nesting deeper than ``max_depth`` is refused too: no vendor sends it, and
    storing or mapping it would overflow the stack further on.
    """
    body = request if isinstance(request, bytes | bytearray) else request.body
    try:
        value = loads_bounded(body, max_depth=max_depth)
    except JsonTooDeep:
        raise WebhookRejected(400, f"body is nested deeper than {max_depth} levels") from None
    except ValueError:
        raise WebhookRejected(400, "body is not valid JSON") from None
    # ASCII without a single \u escape: no string in it can hold a NUL or a surrogate (raw control
    # characters are not JSON), so the core need not walk it again to clean it (parsed_clean).
    clean = isinstance(value, dict | list) and body.isascii() and b"\\u" not in body
    _last_clean.value, _last_clean.body = (value, body) if clean else (None, None)
    return value


_last_clean = threading.local()


def parsed_clean(value: Any) -> bool:
    """Whether ``value`` is the container this thread's last :func:`json_body` parsed from a
    body that holds no NUL and no surrogate (so cleaning it for storage would change nothing).

    Return the parsed value as a raw event's payload unchanged, or a new object: the very
    object :func:`json_body` returned is stored as the body's own text (:func:`parsed_text`),
    so a change made to it in place would not be stored."""
    return value is not None and getattr(_last_clean, "value", None) is value


def parsed_text(value: Any) -> str | None:
    """The JSON text ``value`` was parsed from, when :func:`parsed_clean` holds for it (else None):
    a payload that is a delivery's whole body can be stored as that text, not encoded again."""
    return bytes(_last_clean.body).decode("ascii") if parsed_clean(value) else None


__all__ = [
    "ALGORITHMS", "MAX_CHALLENGE_LENGTH", "MAX_JSON_DEPTH", "WebhookRejected", "WebhookRequest", "WebhookResult",
    "challenge_token",
    "check_timestamp", "header", "hmac_b64",
    "hmac_digest", "hmac_hex", "hmac_matches", "json_body", "sign", "subscription_challenge", "verify_hmac",
]
