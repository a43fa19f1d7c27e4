"""Graph API records (Page posts and comments) as common-schema items.

One item per visitor post or comment; ``thread_id`` is always the post, so a
customer's post and their comments under it (or under the Page's own post) are
one case.  What the Page itself wrote (``from.id == page_id``: its posts,
webcare replies) is not feedback: it is stored as a raw event of the thread and
makes no item.

Raw events carry one record each, self-contained, so a replay needs no page:

* ``post``: a post of the feed, without its nested ``comments``;
* ``comment``: ``{"post_id": ..., "comment": {...}}``;
* ``change``: one ``entry[].changes[]`` value of a webhook delivery with its
  entry's ``id`` and ``time`` (``{"page_id", "time", "value"}``).

Graph writes times as ``2013-02-22T12:25:14+0000`` (no colon in the offset);
webhook values carry Unix seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from hub.sdk import CustomerRef, FeedbackIn, IdentityKind

RAW_POST, RAW_COMMENT, RAW_CHANGE = "post", "comment", "change"
#: Webhook ``value.item`` kinds that carry text people wrote.
TEXT_ITEMS = frozenset({"comment", "post", "status"})
VERBS = {"add": None, "edited": "edited", "remove": "removed"}

FACEBOOK_USER = IdentityKind(
    "facebook_user", reachable=False, label="Facebook",
    # A page-scoped id: the same person has another id on another Page (and app).
    display="{value} on Facebook")

#: Graph ids: digits, or digits joined by underscores (``<page>_<post>``, ``<post>_<comment>``).
GRAPH_ID = re.compile(r"[0-9]{1,40}(_[0-9]{1,40}){0,2}")
_GRAPH_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?([+-]\d{2}):?(\d{2})$")


def parse_graph_time(value: Any) -> dt.datetime:
    """A Graph time (``2013-02-22T12:25:14+0000``, ISO with a colon, ``Z``, or Unix seconds) in UTC.

    Raises ValueError for anything else, or a time outside 1970-2099.
    """
    if isinstance(value, bool):
        raise ValueError("a time is not a boolean")
    if isinstance(value, int | float):
        when = dt.datetime.fromtimestamp(float(value), dt.UTC)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            when = dt.datetime.fromtimestamp(int(text), dt.UTC)
        else:
            match = _GRAPH_TIME.match(text.replace("Z", "+0000"))
            if not match:
                raise ValueError(f"not a Graph time: {text[:40]!r}")
            base, hours, minutes = match.groups()
            when = dt.datetime.fromisoformat(f"{base}{hours}:{minutes}").astimezone(dt.UTC)
    else:
        raise ValueError(f"not a Graph time: {type(value).__name__}")
    if not 1970 <= when.year <= 2099:
        raise ValueError(f"time out of range: {when.year}")
    return when


def unix_seconds(value: Any) -> int | None:
    """A record's time as Unix seconds, or None when it has none that parses."""
    try:
        return int(parse_graph_time(value).timestamp())
    except ValueError:
        return None


def _author(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    author = record.get("from")
    if not isinstance(author, Mapping):
        return None, None
    uid, name = author.get("id"), author.get("name")
    uid = str(uid) if isinstance(uid, str | int) and not isinstance(uid, bool) and str(uid).isdigit() else None
    return uid, (name.strip()[:200] or None) if isinstance(name, str) else None


def _customer(uid: str | None, name: str | None) -> CustomerRef:
    return CustomerRef(name=name, handles=((FACEBOOK_USER.name, uid),) if uid else ())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("message is not text")
    return value


def _graph_id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not GRAPH_ID.fullmatch(value):
        raise ValueError(f"{what} is not a Graph id")
    return value


def _url(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) and value.startswith("https://") else None


class Mapper:
    """Turns raw events of one Page into items (``page_id`` says whose words are the Page's own)."""

    def __init__(self, page_id: str):
        self.page_id = str(page_id)

    def is_page(self, uid: str | None) -> bool:
        return uid == self.page_id

    def post(self, post: Mapping[str, Any]) -> list[FeedbackIn]:
        """A feed post: an item when a visitor wrote it and it says something."""
        if not isinstance(post, Mapping):
            raise ValueError("post is not an object")
        post_id = _graph_id(post.get("id"), "post id")
        uid, name = _author(post)
        text = _text(post.get("message"))
        if self.is_page(uid) or not text:
            return []  # the Page's own post (its comments may still be feedback), or a photo without words
        return [FeedbackIn(
            external_id=post_id, channel="social", occurred_at=parse_graph_time(post.get("created_time")),
            text=text, thread_id=post_id, url=_url(post.get("permalink_url")), customer=_customer(uid, name),
            extra={"facebook": {"item": "post"}})]

    def comment(self, post_id: Any, comment: Mapping[str, Any]) -> list[FeedbackIn]:
        """A comment (or a reply to one) under ``post_id``: an item unless the Page wrote it."""
        if not isinstance(comment, Mapping):
            raise ValueError("comment is not an object")
        comment_id = _graph_id(comment.get("id"), "comment id")
        thread = _graph_id(post_id, "post id")
        uid, name = _author(comment)
        text = _text(comment.get("message"))
        if self.is_page(uid) or not text:
            return []  # a webcare reply of the Page, or a sticker without words
        parent = comment.get("parent")
        extra: dict[str, Any] = {"item": "comment"}
        if isinstance(parent, Mapping) and isinstance(parent.get("id"), str):
            extra["reply_to"] = parent["id"][:100]
        return [FeedbackIn(
            external_id=comment_id, channel="social", occurred_at=parse_graph_time(comment.get("created_time")),
            text=text, thread_id=thread, url=_url(comment.get("permalink_url")), customer=_customer(uid, name),
            extra={"facebook": extra})]

    def change(self, payload: Mapping[str, Any]) -> list[FeedbackIn]:
        """One webhook change (``field: feed``): a new, edited or removed post or comment."""
        value = payload.get("value") if isinstance(payload, Mapping) else None
        if not isinstance(value, Mapping):
            raise ValueError("change has no value object")
        target = change_target(value, self.page_id)
        if target is None:
            return []
        item_id, post_id = target
        verb = value.get("verb")
        change = VERBS.get(verb) if isinstance(verb, str) else None
        uid, name = _author(value)
        if uid is None and "sender_id" in value:  # the 2013 format names the author by sender_id only
            uid = str(value["sender_id"]) if str(value["sender_id"]).isdigit() else None
        if change == "removed":
            # No text, no author needed: the stored item is marked (a removal never makes one).
            return [FeedbackIn(external_id=item_id, channel="social", occurred_at=_change_time(payload),
                               thread_id=post_id, change="removed")]
        text = _text(value.get("message"))
        if self.is_page(uid) or not text:
            return []  # the Page's own words, or a notice without text (the next pull brings the record)
        kind = "comment" if value.get("item") == "comment" else "post"
        return [FeedbackIn(
            external_id=item_id, channel="social", occurred_at=_change_time(payload),
            text=text, thread_id=post_id, customer=_customer(uid, name), change=change,
            extra={"facebook": {"item": kind}})]


def change_target(value: Mapping[str, Any], page_id: str) -> tuple[str, str] | None:
    """(id of the post or comment, id of its post) of a feed change, or None for other items.

    Raises ValueError for a text item whose ids are missing or malformed.  A
    ``post_id`` of bare digits (Graph's 2013 format) is joined onto the Page id.
    """
    item = value.get("item")
    if item not in TEXT_ITEMS or value.get("verb") not in VERBS:
        return None
    post_id = value.get("post_id")
    if item == "comment":
        comment_id = _graph_id(value.get("comment_id"), "comment_id")
        post_id = post_id if post_id is not None else value.get("parent_id")
        post_id = _graph_id(post_id if post_id is not None else comment_id.rsplit("_", 1)[0], "post_id")
    else:
        post_id = _graph_id(post_id, "post_id")
    if "_" not in post_id:
        post_id = f"{page_id}_{post_id}"
    return (comment_id if item == "comment" else post_id), post_id


def _change_time(payload: Mapping[str, Any]) -> dt.datetime:
    """When the change happened: the value's ``created_time``, else the entry's ``time``."""
    value = payload.get("value") or {}
    for candidate in (value.get("created_time"), payload.get("time")):
        if candidate is not None:
            return parse_graph_time(candidate)
    raise ValueError("change has no created_time nor entry time")
