"""The Facebook Page source: the Page's feed with its comments, by pull and webhook.

Streams (declared; the core runs the page loop, :mod:`hub.engine.pulls`):

* ``feed`` - ``GET {base_url}/{page_id}/feed`` with ``fields`` asking for each
  post's ``message``, ``from{id,name}``, ``created_time``, ``updated_time``,
  ``permalink_url`` and its first page of ``comments`` (replies included,
  ``filter(stream)``).  Each post and each nested comment is one record, so a
  comment added to a post read before is still new.  Paged on
  ``paging.cursors.after`` while ``paging.next`` is there (Graph keeps a cursor
  on the last page).  Graph answers newest first, so the cursor (the newest
  post's ``updated_time``, Unix seconds) moves when a run finished; the next
  run asks ``since`` that time minus ``overlap_seconds`` (clock skew, posts
  written while the last run read): re-read records are duplicates, skipped.
* ``comments`` - a child of ``feed``: for a post whose nested comments have a
  ``paging.next``, ``GET /{post_id}/comments?after=<the nested after cursor>``,
  page by page.

Errors come coded in the body (:func:`graph_error`): 4, 17, 32, 613 and the
80000-range business use case codes are throttling (waited out, the instance
paused), 190 is a dead token and 100 a bad parameter (both fatal, with what to
do).  The ``X-App-Usage`` / ``X-Page-Usage`` / ``X-Business-Use-Case-Usage``
headers say how much of Meta's budget is used; above ``slow_down_at_percent``
the instance pauses a little before each request, more the closer it gets.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import requests

from hub.sdk import (
    BodyTokenPaginator,
    FatalError,
    FeedbackIn,
    RateLimitedError,
    RawIn,
    RetriableError,
    Setting,
    SourceConnector,
    Stream,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
    webhooks,
)

from . import webhook
from .mapping import RAW_CHANGE, RAW_COMMENT, RAW_POST, Mapper, unix_seconds

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com/v21.0"
#: Graph's throttling codes: app (4), user (17), page (32), API-specific (613);
#: 80000-80014 are the business use case limits (pages: 80001).
THROTTLING = frozenset({4, 17, 32, 613}) | frozenset(range(80000, 80015))
TOKEN_DEAD = 190
BAD_PARAMETER = 100
#: Permission errors: 10 and the 200-299 range (a permission the token lacks).
PERMISSION = frozenset({10}) | frozenset(range(200, 300))
USAGE_HEADERS = ("X-App-Usage", "X-Page-Usage", "X-Business-Use-Case-Usage")
PERSON = "id,name"
COMMENT_FIELDS = f"id,message,created_time,permalink_url,parent{{id}},from{{{PERSON}}}"


def post_fields(comments_per_post: int) -> str:
    return (f"id,message,created_time,updated_time,permalink_url,from{{{PERSON}}},"
            f"comments.filter(stream).limit({comments_per_post}){{{COMMENT_FIELDS}}}")


# -- Graph's errors and usage headers ------------------------------------------------
def graph_error(response: requests.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Graph answer, or None when it has none."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else None


def _code(error: Mapping[str, Any], key: str = "code") -> int | None:
    value = error.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: Any, limit: int = 200) -> str:
    return str(value or "")[:limit]


def named_parameter(message: str) -> str | None:
    """The parameter or field a code-100 message names (``(#100) Tried accessing nonexisting field (address)``)."""
    for pattern in (r"field \(([^)]{1,80})\)", r"param(?:eter)? ([\w.\[\]]{1,80})", r"\(([\w.]{1,80})\)"):
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return None


def usage_percent(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(highest percentage used in Meta's usage headers, minutes until access is back), each maybe None.

    ``X-App-Usage`` and ``X-Page-Usage`` are ``{"call_count": 28, "total_time":
    25, "total_cputime": 25}``; ``X-Business-Use-Case-Usage`` is ``{"<id>":
    [{"type": "pages", "call_count": ..., "estimated_time_to_regain_access": 0}]}``.
    Values that are not JSON numbers are ignored, never fatal.
    """
    highest: float | None = None
    regain: float | None = None

    def note(metrics: Any) -> None:
        nonlocal highest, regain
        if not isinstance(metrics, Mapping):
            return
        for key in ("call_count", "total_time", "total_cputime"):
            v = metrics.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                highest = max(highest or 0.0, float(v))
        eta = metrics.get("estimated_time_to_regain_access")
        if isinstance(eta, int | float) and not isinstance(eta, bool) and eta > 0:
            regain = max(regain or 0.0, float(eta))

    for name in USAGE_HEADERS:
        text = webhooks.header(headers, name)
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if name == "X-Business-Use-Case-Usage" and isinstance(value, Mapping):
            for rows in value.values():
                for row in rows if isinstance(rows, list) else [rows]:
                    note(row)
        else:
            note(value)
    return highest, regain


# -- the streams --------------------------------------------------------------------
def _records(response: requests.Response, what: str) -> list[Any]:
    try:
        body = response.json()
    except ValueError:
        raise FatalError(f"Graph answered {what} with something that is not JSON", response.status_code,
                         response.text[:300], response) from None
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        raise FatalError(f"Graph answered {what} without a data list", response.status_code, None, response)
    return [r for r in data if isinstance(r, Mapping)]


class FeedStream(Stream):
    """``/{page_id}/feed``: posts, each followed by its first page of comments as records."""

    name = "feed"
    path = "/{page_id}/feed"
    cursor_field = "updated_time"
    cursor_kind = "int"  # Unix seconds
    is_sorted = False  # newest first: the cursor moves when the run finished
    paginator = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")
    raw_kind = RAW_POST
    children = ()  # set below, once CommentsStream exists

    def request_params(self, cursor, page_token, since):
        conn = self.connector
        params: dict[str, Any] = {"fields": post_fields(conn.config["comments_per_post"]),
                                  "limit": conn.config["page_size"]}
        start = int(since.timestamp()) if since else (int(cursor) - conn.config["overlap_seconds"] if cursor else None)
        if start is None and conn.config.get("initial_lookback_days"):
            now = conn.clock.time()
            start = int(now - float(conn.config["initial_lookback_days"]) * 86400)
        if start is not None:
            params["since"] = max(0, start)
        if page_token:
            params["after"] = page_token
        return params

    def parse_records(self, response):
        records: list[dict[str, Any]] = []
        for post in _records(response, "the feed"):
            post_id = post.get("id")
            comments = post.get("comments") if isinstance(post.get("comments"), Mapping) else {}
            records.append({"post": {k: v for k, v in post.items() if k != "comments"},
                            "more_comments": _after_cursor(comments)})
            for comment in comments.get("data") or []:
                if isinstance(comment, Mapping):
                    records.append({"post_id": post_id, "comment": dict(comment)})
        return records

    def record_cursor(self, record):
        post = record.get("post")
        if not isinstance(post, Mapping):
            return None
        times = [unix_seconds(post.get(k)) for k in ("updated_time", "created_time")]
        times = [t for t in times if t is not None]
        return str(max(times)) if times else None

    def dedupe_key(self, record):
        if "post" in record:
            return _key(record["post"].get("id"))
        return _key(record["comment"].get("id"))

    def to_raw(self, record, response):
        if "post" in record:
            return RawIn(payload=record["post"], dedupe_key=self.dedupe_key(record), kind=RAW_POST)
        return RawIn(payload={"post_id": record["post_id"], "comment": record["comment"]},
                     dedupe_key=self.dedupe_key(record), kind=RAW_COMMENT)

    def child_context(self, record):
        after = record.get("more_comments")
        post_id = (record.get("post") or {}).get("id")
        if not after or not isinstance(post_id, str):
            return None
        return {"post_id": post_id, "after": after}


def _after_cursor(edge: Mapping[str, Any]) -> str | None:
    """The nested edge's ``after`` cursor when Graph says there is more (``paging.next``)."""
    paging = edge.get("paging") if isinstance(edge, Mapping) else None
    if not isinstance(paging, Mapping) or not paging.get("next"):
        return None
    after = (paging.get("cursors") or {}).get("after") if isinstance(paging.get("cursors"), Mapping) else None
    return after if isinstance(after, str) and after else None


def _key(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


class CommentsStream(Stream):
    """``/{post_id}/comments`` from where the nested first page stopped."""

    name = "comments"
    path = "/{post_id}/comments"
    paginator = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")
    raw_kind = RAW_COMMENT

    def request_params(self, cursor, page_token, since):
        return {"fields": COMMENT_FIELDS, "filter": "stream", "limit": self.connector.config["page_size"],
                "after": page_token or self.context["after"]}

    def parse_records(self, response):
        return _records(response, f"the comments of {self.context.get('post_id')}")

    def dedupe_key(self, record):
        return _key(record.get("id"))

    def to_raw(self, record, response):
        return RawIn(payload={"post_id": self.context["post_id"], "comment": dict(record)},
                     dedupe_key=self.dedupe_key(record), kind=RAW_COMMENT)


FeedStream.children = (CommentsStream,)


# -- the connector ----------------------------------------------------------------
class FacebookConnector(SourceConnector):
    """A Facebook Page's posts and comments into the webcare inbox."""

    plugin_name = "social_facebook"
    default_base_url = DEFAULT_BASE_URL
    description = "Facebook Page feed and comments (Graph API pull + signed feed webhooks)"
    #: Our own ceiling; Meta's usage headers then steer the pace (rate_limit_wait).
    rate_limit = (200, 60.0)
    settings = [
        Setting("page_id", type=(str, int), required=True, help="The Page's numeric id (Page settings > About)"),
        Setting("page_token", secret=True, required=True,
                help="Page access token with pages_read_engagement and pages_read_user_content"),
        Setting("app_secret", secret=True, help="The app's secret: checks X-Hub-Signature-256 of webhooks"),
        Setting("verify_token", secret=True, help="The Verify Token typed in the app's webhook subscription"),
        Setting("page_size", type=int, default=25, minimum=1, maximum=100, help="Posts (or comments) per page"),
        Setting("comments_per_post", type=int, default=25, minimum=1, maximum=100,
                help="Comments read with each post; more come page by page"),
        Setting("overlap_seconds", type=int, default=300, minimum=0, maximum=86400,
                help="How far before the last post seen the next pull starts (duplicates are skipped)"),
        Setting("initial_lookback_days", type=(int, float), default=30, minimum=0,
                help="How far back the very first pull reads (0: as far as Graph goes)"),
        Setting("throttle_wait_seconds", type=(int, float), default=300, minimum=1, maximum=3600,
                help="Wait after a throttling error when Meta's headers give no time"),
        Setting("slow_down_at_percent", type=(int, float), default=80, minimum=1, maximum=100,
                help="Above this share of Meta's usage budget requests are spaced out"),
    ]

    def __init__(self, instance, *, clock=None, session=None):
        super().__init__(instance, clock=clock, session=session)
        page_id = str(self.config.get("page_id") or "")
        if not page_id.isdigit():
            raise ValueError(f"sources.{instance.name}.page_id: must be the Page's numeric id, not {page_id!r}")
        self.page_id = page_id
        self.mapper = Mapper(page_id)
        #: The last usage Meta reported (``feedback-hub sources`` shows it).
        self.usage: dict[str, Any] = {}
        #: Whether a refused token is on record (None: not looked up yet; one look-up per process).
        self._token_flagged: bool | None = None

    # -- HTTP ------------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        # A header, not ?access_token=: the token stays out of URLs and their logs.
        return {"Authorization": f"Bearer {self.config['page_token']}"}

    def validate_response(self, response: requests.Response) -> None:
        error = graph_error(response) if response.status_code >= 400 else None
        if error is None:
            if response.status_code < 400:
                self._token_works()
            return super().validate_response(response)
        code, subcode = _code(error), _code(error, "error_subcode")
        message = _short(error.get("message"))
        where = f"{self.instance.name}: {_path(response)}"
        if code in THROTTLING:
            _, regain = usage_percent(response.headers)
            wait = regain * 60 if regain else float(self.config["throttle_wait_seconds"])
            raise RateLimitedError(f"{where}: Graph throttling (code {code}): {message}; waiting {wait:.0f} s",
                                   response.status_code, dict(error), response, retry_after=wait)
        if error.get("is_transient") is True:  # Graph says a retry may work (codes 1, 2...): backoff
            raise RetriableError(f"{where}: Graph transient error (code {code}): {message}", response.status_code,
                                 dict(error), response)
        if code == TOKEN_DEAD:
            self.state.set("token_problem", {"code": code, "subcode": subcode, "at": self.clock.utcnow().isoformat()})
            self._token_flagged = True
            raise FatalError(
                f"{where}: the Page access token was refused (Graph code 190"
                f"{f', subcode {subcode}' if subcode else ''}: expired or revoked): {message} - make a new "
                "Page access token (README: app set-up) and put it where page_token points", response.status_code,
                dict(error), response)
        if code in PERMISSION:
            raise FatalError(f"{where}: the Page token lacks a permission (code {code}): {message} - give it "
                             "pages_read_engagement and pages_read_user_content (README: app set-up)",
                             response.status_code, dict(error), response)
        if code == BAD_PARAMETER:
            named = named_parameter(message)
            raise FatalError(f"{where}: Graph refused a parameter{f' ({named})' if named else ''} (code 100): "
                             f"{message}", response.status_code, dict(error), response)
        super().validate_response(response)

    def _token_works(self) -> None:
        """Graph accepted the token: a refusal on record is over (``feedback-hub sources`` stops showing it)."""
        if self._token_flagged is None:
            self._token_flagged = bool(self.state.get("token_problem"))
        if self._token_flagged:
            self.state.delete("token_problem")
            self._token_flagged = False

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        """Pause the instance as Meta's usage headers fill up: nothing below the threshold,
        up to a minute per request just under 100 %, Meta's own wait (or ours) at 100 %."""
        used, regain = usage_percent(response.headers)
        if used is None and regain is None:
            return None
        now = self.clock.time()
        self.usage = {"percent": used, "regain_minutes": regain, "at": now}
        threshold = float(self.config["slow_down_at_percent"])
        if regain:
            return now + regain * 60
        if used is None or used < threshold:
            return None
        if used >= 100:
            return now + float(self.config["throttle_wait_seconds"])
        pause = 60.0 * (used - threshold) / max(1.0, 100.0 - threshold)
        log.info("%s: Meta usage at %.0f%%; pausing %.1f s between requests", self.instance.name, used, pause)
        return now + pause

    # -- the connector contract ------------------------------------------------------
    def streams(self) -> list[Stream]:
        return [FeedStream(self)]

    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        payload = raw.payload
        if raw.kind == RAW_POST:
            return self.mapper.post(payload)
        if raw.kind == RAW_COMMENT:
            if not isinstance(payload, Mapping):
                raise ValueError("comment event is not an object")
            return self.mapper.comment(payload.get("post_id"), payload.get("comment"))
        if raw.kind == RAW_CHANGE:
            return self.mapper.change(payload)
        raise ValueError(f"unknown Facebook raw event kind {raw.kind!r}")

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        if request.method == "GET":
            return webhooks.subscription_challenge(request, self.config.get("verify_token"))
        if request.method != "POST":
            raise WebhookRejected(405, "Graph webhooks are GET (subscription handshake) or POST (changes)")
        secret = self.config.get("app_secret")
        if not secret:
            raise WebhookRejected(401, f"instance {self.instance.name!r} has no app_secret: deliveries are refused")
        webhook.verify(secret, request.body, request.headers)
        try:
            delivery = webhook.parse(request.body, self.page_id)
        except ValueError as exc:
            raise WebhookRejected(400, f"not a Page feed delivery: {exc}") from None
        if delivery.ignored:
            log.info("%s: Facebook webhook: ignored %s", self.instance.name, ", ".join(delivery.ignored[:10]))
        return WebhookResult(body={"ok": True, "changes": len(delivery.raw_events), "ignored": delivery.ignored[:20]},
                             raw_events=delivery.raw_events)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.usage.get("percent") is not None:
            out["meta_usage"] = f"{self.usage['percent']:.0f}% of Meta's budget used"
        problem = self.state.get("token_problem")
        if problem:
            out["token"] = (f"refused by Graph (code 190, subcode {problem.get('subcode')}) at {problem.get('at')}: "
                            "make a new Page access token")
        return out


def _path(response: requests.Response) -> str:
    # The path only: a next-page URL's query may carry a token.
    return f"GET {requests.utils.urlparse(response.url).path}"


__all__ = ["FacebookConnector", "graph_error", "named_parameter", "usage_percent"]

