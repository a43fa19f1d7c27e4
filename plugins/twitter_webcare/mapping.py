"""From X posts to common-schema items: one place for both wire formats.

Polled posts come in API v2 shape (``{"tweet": ..., "author": ...}`` records
joined by :mod:`plugins.twitter_webcare.connector`); Account Activity webhook
posts come in the older v1.1 shape (``id_str``, ``user.screen_name``,
``extended_tweet.full_text``).  Both map to the same :class:`FeedbackIn` with
the tweet id as ``external_id``, so a post seen by webhook *and* by a poll is
one item.

What is not feedback returns ``[]`` (the raw event ends ``skipped``, kept for
audit): retweets (the words are someone else's; the original is its own
post) and anything the brand's own accounts wrote (webcare replies, notices).

A post whose fields have unexpected types raises ``ValueError`` naming the
field (the raw event ends ``failed``, kept for replay); optional facts
(metrics, link entities) of a wrong type are left out instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.sdk import CustomerRef, FeedbackIn
from hub.sdk.schema import IdentityKind


def normalize_handle(value: str) -> str:
    """X usernames are case-insensitive and people write them with or without "@"."""
    return value.lstrip("@").lower()


#: How the hub knows an X user: by username.  Not reachable: the hub cannot
#: call or mail someone it knows only by a handle (webcare answers in public).
X_HANDLE = IdentityKind("x_handle", reachable=False, label="X", display="@{value}", normalize=normalize_handle)

#: Raw-event kinds: tells :func:`normalize` which wire format the payload has.
RAW_V2 = "x.tweet.v2"
RAW_V1 = "x.tweet.v1"

#: X's pseudo language codes (undetermined, no text, media/hashtags/mentions/
#: cashtags only, very short): not a language, so the hub's detector decides.
NOT_A_LANGUAGE = frozenset({"und", "zxx", "qme", "qht", "qam", "qct", "qst", "qro"})

#: Twitter snowflake epoch (ms): ids encode their creation time.
SNOWFLAKE_EPOCH_MS = 1288834974657
#: Times at or after 2100 (ms) are junk: the hub stores times of 1970-2099.
LATEST_MS = 4_102_444_800_000
#: Largest follower count taken as reach (the hub stores a 32-bit integer); more is junk.
MAX_REACH = 2**31 - 1


@dataclass(frozen=True)
class BrandAccounts:
    """The brand's own accounts: their posts are answers, not feedback."""

    ids: frozenset[str] = frozenset()
    handles: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, user_ids: Iterable[str], extra_ids: Iterable[str], handles: Iterable[str]
                      ) -> BrandAccounts:
        return cls(ids=frozenset(str(i).strip() for i in [*user_ids, *extra_ids] if str(i).strip()),
                   handles=frozenset(normalize_handle(h) for h in handles if normalize_handle(h)))

    def is_own(self, user_id: Any, handle: str | None) -> bool:
        if user_id is not None and str(user_id) in self.ids:
            return True
        return bool(handle) and normalize_handle(handle) in self.handles


def normalize_handle(handle: str | None) -> str:
    return (handle or "").strip().lstrip("@").lower()


def snowflake_time(tweet_id: str | int) -> dt.datetime:
    """Creation time encoded in a post id (exact to the millisecond)."""
    ms = (int(tweet_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def language(code: Any) -> str | None:
    if not isinstance(code, str) or not code or len(code) > 10 or code in NOT_A_LANGUAGE:
        return None
    return code


def expand_urls(text: str, url_entities: Any) -> str:
    """Replace t.co short links by where they point (agents read the real URL).

    v2 entities may carry ``unwound_url`` (the final URL after redirects);
    v1.1 and v2 both carry ``expanded_url``.  Entities that are not objects
    with text values are ignored: the text stays as posted.
    """
    for ent in url_entities if isinstance(url_entities, list) else []:
        if not isinstance(ent, Mapping):
            continue
        short = ent.get("url")
        target = ent.get("unwound_url") or ent.get("expanded_url")
        if short and target and isinstance(short, str) and isinstance(target, str):
            text = text.replace(short, target)
    return text


# -- typed reads of untrusted payloads ----------------------------------------------
def _object(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` when it is an object, ``{}`` when absent; ValueError otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is a {type(value).__name__}, not an object")
    return value


def _text(value: Any, what: str) -> str | None:
    """``value`` when it is text, None when absent or empty; ValueError otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} is a {type(value).__name__}, not text")
    return value


def _count(value: Any) -> int | None:
    """A count (followers, likes) or None when it is missing or not a sane count."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REACH:
        return None
    return value


def _entity_lists(entities: Any, *keys: str) -> list[Any]:
    if not isinstance(entities, Mapping):
        return []
    return [e for key in keys if isinstance(entities.get(key), list) for e in entities[key]]


def author_ref(user: Mapping[str, Any] | None) -> tuple[CustomerRef, int | None]:
    """Identity and reach from a v2 user object (``includes.users[]`` or ``/2/users/me``)."""
    if not user:
        return CustomerRef(), None
    user = _object(user, "author")
    metrics = _object(user.get("public_metrics"), "author.public_metrics")
    return customer_ref(_text(user.get("username"), "author.username"),
                        _text(user.get("name"), "author.name")), _count(metrics.get("followers_count"))


def customer_ref(username: str | None, name: str | None) -> CustomerRef:
    """The author as the hub knows them: an X handle (and the display name)."""
    return CustomerRef(name=name or None, handles=((X_HANDLE.name, username),) if username else ())


def status_url(handle: str | None, tweet_id: str) -> str:
    return f"https://x.com/{handle}/status/{tweet_id}" if handle else f"https://x.com/i/web/status/{tweet_id}"


# -- API v2 (polling) -------------------------------------------------------------
def from_v2(record: Mapping[str, Any], brand: BrandAccounts) -> list[FeedbackIn]:
    """One polled post (``{"tweet": v2 post, "author": v2 user or None}``)."""
    tweet = record.get("tweet")
    if not isinstance(tweet, Mapping) or not tweet.get("id"):
        raise ValueError("raw X record has no tweet id")
    tweet_id = str(tweet["id"])
    if not tweet_id.isascii() or not tweet_id.isdigit() or len(tweet_id) > 19:
        raise ValueError("X post id is not a numeric post id")
    author = _object(record.get("author"), "author") or None
    listed = tweet.get("referenced_tweets")
    refs = [r for r in listed if isinstance(r, Mapping)] if isinstance(listed, list) else []
    text = _text(tweet.get("text"), "tweet.text") or ""
    if any(r.get("type") == "retweeted" for r in refs) or (not refs and text.startswith("RT @")):
        return []  # a retweet: the original post is the feedback, not the share
    handle = _text(author.get("username"), "author.username") if author else None
    if brand.is_own(tweet.get("author_id") or (author or {}).get("id"), handle):
        return []
    customer, reach = author_ref(author)
    occurred = _v2_time(_text(tweet.get("created_at"), "tweet.created_at"), tweet_id)
    extra: dict[str, Any] = {
        "api": "v2",
        "author_id": tweet.get("author_id"),
        "author_username": handle,
        "public_metrics": tweet.get("public_metrics") or {},
        "author_metrics": (author or {}).get("public_metrics") or {},
    }
    if tweet.get("in_reply_to_user_id"):
        extra["in_reply_to_user_id"] = tweet["in_reply_to_user_id"]
    if refs:
        extra["referenced_tweets"] = [{"type": r.get("type"), "id": r.get("id")} for r in refs]
    if record.get("stream"):
        extra["stream"] = record["stream"]
    return [FeedbackIn(
        external_id=tweet_id,
        channel="social",
        occurred_at=occurred,
        text=expand_urls(text, _entity_lists(tweet.get("entities"), "urls")),
        language=language(tweet.get("lang")),
        reach=reach,
        # Replies and quotes keep their conversation: the whole thread shares it.
        thread_id=str(tweet.get("conversation_id") or tweet_id)[:200],
        url=status_url(handle, tweet_id),
        customer=customer,
        extra=extra,
    )]


def _v2_time(created: str | None, tweet_id: str) -> dt.datetime:
    """``created_at`` (ISO-8601) of a v2 post, else the time in its id."""
    if not created:
        return snowflake_time(tweet_id)
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        when = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"tweet.created_at {created[:40]!r} is not an ISO-8601 time") from None
    if not 1970 <= when.year < 2100:
        raise ValueError(f"tweet.created_at {created[:40]!r} is not a time between 1970 and 2100")
    return when


# -- API v1.1 (Account Activity webhook) ----------------------------------------------
V1_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def from_v1(payload: Mapping[str, Any], brand: BrandAccounts) -> list[FeedbackIn]:
    """One webhook post (``{"for_user_id": ..., "tweet": v1.1 tweet}``).

    v1.1 has no ``conversation_id``: a reply's thread is the post it answers
    (the conversation root when it answers the root, as most webcare replies
    do); a new post starts its own thread, as in v2.
    """
    tweet = payload.get("tweet")
    if not isinstance(tweet, Mapping) or not tweet.get("id_str"):
        # Never fall back to the numeric ``id``: it loses precision past 2**53.
        raise ValueError("X webhook tweet has no id_str")
    tweet_id = str(tweet["id_str"])
    if not tweet_id.isascii() or not tweet_id.isdigit() or len(tweet_id) > 19:
        raise ValueError("X webhook tweet id_str is not a numeric post id")
    if tweet.get("retweeted_status"):
        return []
    user = _object(tweet.get("user"), "tweet.user")
    handle = _text(user.get("screen_name"), "tweet.user.screen_name")
    own_ids = set(brand.ids)
    if payload.get("for_user_id"):
        own_ids.add(str(payload["for_user_id"]))  # events also fire for the subscribed account's own posts
    if (user.get("id_str") and str(user["id_str"]) in own_ids) or brand.is_own(None, handle):
        return []
    extended = _object(tweet.get("extended_tweet"), "tweet.extended_tweet")
    text = _text(extended.get("full_text"), "tweet.extended_tweet.full_text") or _text(
        tweet.get("text"), "tweet.text") or ""
    entities = extended.get("entities") if extended else tweet.get("entities")
    urls = _entity_lists(entities, "urls", "media")
    occurred = _v1_time(tweet, tweet_id)
    followers = _count(user.get("followers_count"))
    extra: dict[str, Any] = {
        "api": "v1.1",
        "author_id": user.get("id_str"),
        "author_username": handle,
        "public_metrics": {
            "retweet_count": _count(tweet.get("retweet_count")), "reply_count": _count(tweet.get("reply_count")),
            "like_count": _count(tweet.get("favorite_count")), "quote_count": _count(tweet.get("quote_count")),
        },
        "for_user_id": payload.get("for_user_id"),
    }
    if tweet.get("in_reply_to_user_id_str"):
        extra["in_reply_to_user_id"] = tweet["in_reply_to_user_id_str"]
    refs = []
    if tweet.get("in_reply_to_status_id_str"):
        refs.append({"type": "replied_to", "id": tweet["in_reply_to_status_id_str"]})
    if tweet.get("quoted_status_id_str"):
        refs.append({"type": "quoted", "id": tweet["quoted_status_id_str"]})
    if refs:
        extra["referenced_tweets"] = refs
    return [FeedbackIn(
        external_id=tweet_id,
        channel="social",
        occurred_at=occurred,
        text=expand_urls(text, urls),
        language=language(tweet.get("lang")),
        reach=followers,
        thread_id=str(tweet.get("in_reply_to_status_id_str") or tweet_id)[:200],
        url=status_url(handle, tweet_id),
        customer=customer_ref(handle, _text(user.get("name"), "tweet.user.name")),
        extra=extra,
    )]


def _v1_time(tweet: Mapping[str, Any], tweet_id: str) -> dt.datetime:
    """When a v1.1 post was made: ``timestamp_ms``, else ``created_at``, else its id."""
    stamp = tweet.get("timestamp_ms")
    if stamp:
        text = str(stamp) if isinstance(stamp, int | str) and not isinstance(stamp, bool) else ""
        if not text.isascii() or not text.isdigit() or not int(text) < LATEST_MS:
            raise ValueError("tweet.timestamp_ms is not a time in milliseconds before 2100")
        return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC)
    created = _text(tweet.get("created_at"), "tweet.created_at")
    if created:
        try:
            when = dt.datetime.strptime(created, V1_TIME_FORMAT).astimezone(dt.UTC)
        except (ValueError, OverflowError):
            raise ValueError(f"tweet.created_at {created[:40]!r} is not in X's time format") from None
        if not 1970 <= when.year < 2100:
            raise ValueError(f"tweet.created_at {created[:40]!r} is not a time between 1970 and 2100")
        return when
    return snowflake_time(tweet_id)
