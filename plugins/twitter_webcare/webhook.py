"""Account Activity API webhooks: CRC challenge, signatures, event envelopes.

X signs with the app's **consumer secret** (API key secret), never the bearer
token: ``base64(HMAC-SHA256(consumer_secret, message))``, prefixed ``sha256=``.
The CRC challenge signs the ``crc_token``; deliveries sign the raw body bytes
exactly as received (re-serialised JSON would not match).

Because both use one key and one format, a CRC answer *is* a delivery
signature for whatever the token says.  Tokens are therefore limited to a short
run of URL-safe characters (:func:`hub.sdk.webhooks.challenge_token`), which
no JSON delivery body ever is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.sdk import RawIn, webhooks
from hub.sdk.connectors import ERASE_REQUEST

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
SIGNATURE_PREFIX = "sha256="

#: Envelope keys that carry posts.  Everything else in an AAA delivery
#: (DMs, likes, follows...) is acknowledged and ignored, except deletes and
#: revokes (below).
TWEET_EVENTS = "tweet_create_events"
#: Envelope keys the hub honours by erasing: a post deleted by its author, a revoked authorisation.
DELETE_EVENTS = "tweet_delete_events"
USER_EVENT = "user_event"
#: Keys of the envelope that are context, not events.
ENVELOPE_KEYS = frozenset({"for_user_id", "user_has_blocked", "users", "apps", "source"})
#: A post id as X sends it in ``id_str``: digits, at most 19 (a 64-bit snowflake).
POST_ID = re.compile(r"[0-9]{1,19}")


def sign(secret: str, message: bytes) -> str:
    """``sha256=`` + base64 HMAC-SHA256 of ``message`` keyed with the consumer secret."""
    return webhooks.sign(secret, message, encoding="base64", prefix=SIGNATURE_PREFIX)


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """The answer to ``GET ?crc_token=...`` (X checks it at registration and hourly).

    Raises :class:`~hub.sdk.WebhookRejected` (400) for a token that is not a
    safe challenge token: signing it could sign a forged delivery.
    """
    token = webhooks.challenge_token(crc_token, "crc_token")
    return SIGNATURE_PREFIX + webhooks.hmac_b64(consumer_secret, token)


def verify_delivery(consumer_secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Raise :class:`~hub.sdk.WebhookRejected` (401) unless the delivery is signed by X."""
    webhooks.verify_hmac(consumer_secret, body, webhooks.header(headers, SIGNATURE_HEADER), encoding="base64",
                         prefix=SIGNATURE_PREFIX, header_name=SIGNATURE_HEADER)


def signature_valid(consumer_secret: str, body: bytes, header: str | None) -> bool:
    return webhooks.hmac_matches(consumer_secret, body, header, encoding="base64", prefix=SIGNATURE_PREFIX)


@dataclass
class Delivery:
    """A parsed AAA delivery: the posts it carries and what we ignored."""

    for_user_id: str | None
    tweets: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    #: Posts their authors deleted (``tweet_delete_events``): X's policy says delete them too.
    deleted_post_ids: list[str] = field(default_factory=list)
    #: Users who revoked the app's access (``user_event.revoke``): their posts are erased.
    revoked_user_ids: list[str] = field(default_factory=list)

    def erase_requests(self) -> list[RawIn]:
        """The deletes and revokes as the core's erase requests (raw events it handles itself)."""
        out = [RawIn(payload={"external_ids": [pid], "reason": "deleted on X"}, dedupe_key=f"delete:{pid}",
                     kind=ERASE_REQUEST) for pid in self.deleted_post_ids]
        out += [RawIn(payload={"author_ids": [uid], "reason": "access revoked on X"}, dedupe_key=f"revoke:{uid}",
                      kind=ERASE_REQUEST) for uid in self.revoked_user_ids]
        return out


def parse_delivery(body: bytes) -> Delivery:
    """Split an AAA delivery; raises ValueError for a body that is not an envelope."""
    try:
        payload = webhooks.json_body(body)
    except webhooks.WebhookRejected as exc:
        raise ValueError(exc.reason) from None
    if not isinstance(payload, Mapping):
        raise ValueError("body is not a JSON object")
    for_user = payload.get("for_user_id")
    if isinstance(for_user, int) and not isinstance(for_user, bool):
        for_user = str(for_user)
    if for_user is not None and not (isinstance(for_user, str) and POST_ID.fullmatch(for_user)):
        raise ValueError("for_user_id is not a numeric account id")
    delivery = Delivery(for_user_id=for_user)
    for key, value in payload.items():
        if key in ENVELOPE_KEYS:
            continue
        if key == TWEET_EVENTS:
            if not isinstance(value, list):
                raise ValueError("tweet_create_events is not a list")
            for tweet in value:
                if not isinstance(tweet, Mapping) or not isinstance(tweet.get("id_str"), str) or \
                        not POST_ID.fullmatch(tweet["id_str"]):
                    raise ValueError("a tweet_create_event has no numeric id_str")
                delivery.tweets.append(dict(tweet))
        elif key == DELETE_EVENTS and isinstance(value, list):
            delivery.deleted_post_ids += _ids(e.get("status", {}).get("id") for e in value
                                              if isinstance(e, Mapping) and isinstance(e.get("status"), Mapping))
        elif key == USER_EVENT and isinstance(value, Mapping) and isinstance(value.get("revoke"), Mapping):
            source = value["revoke"].get("source")
            delivery.revoked_user_ids += _ids([source.get("user_id")] if isinstance(source, Mapping) else [])
        else:
            delivery.ignored.append(key)
    return delivery


def _ids(values) -> list[str]:
    """Numeric X ids (as strings) among ``values``; anything else is dropped."""
    out = []
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and POST_ID.fullmatch(value):
            out.append(value)
    return out
