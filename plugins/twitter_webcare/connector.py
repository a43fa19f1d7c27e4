"""The X (Twitter) API v2 source: mentions and recent-search polling, the
Account Activity webhook, rate windows and the monthly read budget.

Streams (one cursor each, kept by the core per ``(instance, stream name)``):

* ``mentions:<user id>`` - ``GET /2/users/:id/mentions`` for each brand account;
* ``search:<hash of query>`` - ``GET /2/tweets/search/recent`` per query.  The
  name hashes the query text so editing a query starts a fresh cursor (a
  ``since_id`` says nothing about a different query's results).

X returns pages newest first; the core keeps the highest id as a signpost and
makes it the ``since_id`` cursor only when the run finished, so a run that
dies half way re-reads instead of skipping.  A brand-new stream reads
``initial_lookback_hours`` back, not the whole reachable history, so the
first poll does not spend a month's read budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import requests

from hub.sdk import (
    BodyTokenPaginator,
    Clock,
    FatalError,
    FeedbackIn,
    HttpClient,
    Instance,
    Page,
    RawIn,
    Setting,
    SourceConnector,
    Stream,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
)

from .budget import ReadBudget, StateLedger, UsageCapExceeded
from .mapping import RAW_V1, RAW_V2, BrandAccounts, from_v1, from_v2, snowflake_time
from .webhook import crc_response_token, parse_delivery, verify_delivery

log = logging.getLogger(__name__)

TWEET_FIELDS = ("created_at,lang,conversation_id,in_reply_to_user_id,referenced_tweets,public_metrics,"
                "author_id,entities")
USER_FIELDS = "public_metrics,username,name"
#: Recent search only reaches 7 days back; stay a little inside that edge.
SEARCH_HORIZON = dt.timedelta(days=7) - dt.timedelta(minutes=5)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str | int):
        return [str(value)]
    return [str(v) for v in value]


def query_stream_name(query: str) -> str:
    """Stable stream name of a search query (fits the 100-char state column)."""
    return "search:" + hashlib.sha256(query.encode()).hexdigest()[:12]


def is_usage_cap(body: Any) -> bool:
    """The monthly usage-cap 429 differs from the rate-limit 429 (CONTRACTS §3.5)."""
    if not isinstance(body, Mapping):
        return False
    return body.get("title") == "UsageCapExceeded" or str(body.get("type", "")).endswith("/usage-capped")


def problem_text(body: Any) -> str:
    """A readable line from an X problem object (``title``, ``detail``, ``errors[].message``)."""
    if not isinstance(body, Mapping):
        return str(body)[:300]
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    parts += [str(e.get("message") or e.get("detail")) for e in body.get("errors") or []
              if isinstance(e, Mapping) and (e.get("message") or e.get("detail"))]
    return "; ".join(parts) or str(body)[:300]


class XStream(Stream):
    """Shared by both endpoints: fields, cursor, paging, joining authors."""

    cursor_field = "id"
    cursor_kind = "int"
    is_sorted = False  # newest first
    paginator = BodyTokenPaginator("meta.next_token")
    raw_kind = RAW_V2
    #: Request parameter that carries ``meta.next_token`` on this endpoint.
    token_param: ClassVar[str] = "pagination_token"
    min_results: ClassVar[int] = 5
    #: Oldest post the endpoint can return (None: no horizon).
    horizon: ClassVar[dt.timedelta | None] = None

    def __init__(self, connector: TwitterConnector, name: str):
        super().__init__(connector)
        self.connector: TwitterConnector = connector
        self.name = name  # per instance: one cursor per account / query

    def base_params(self) -> dict[str, Any]:
        return {}

    def request_params(self, cursor: str | None, page_token: str | None, since: dt.datetime | None) -> dict[str, Any]:
        conn = self.connector
        params: dict[str, Any] = {
            **self.base_params(),
            "max_results": max(self.min_results, min(100, int(conn.config.get("max_results") or 100))),
            "expansions": "author_id",
            "tweet.fields": TWEET_FIELDS,
            "user.fields": USER_FIELDS,
        }
        if page_token:
            params[self.token_param] = page_token
        now = dt.datetime.fromtimestamp(conn.clock.time(), dt.UTC)
        oldest = now - self.horizon if self.horizon else None
        if since is not None:  # backfill: the cursor is ignored, never moved back
            params["start_time"] = _rfc3339(max(since, oldest) if oldest else since)
        elif cursor:
            if oldest and snowflake_time(cursor) < oldest:
                # X refuses a since_id older than the search horizon (400); the
                # hub was down for a week: read what is still reachable.
                params["start_time"] = _rfc3339(oldest)
            else:
                params["since_id"] = cursor
        else:
            hours = float(conn.config.get("initial_lookback_hours") or 0)
            start = now - dt.timedelta(hours=hours) if hours > 0 else oldest
            if start is not None:
                params["start_time"] = _rfc3339(max(start, oldest) if oldest else start)
        return params

    def parse_records(self, response: requests.Response) -> list[dict[str, Any]]:
        """Posts of the page, each with its author joined in, oldest first.

        Oldest first so the pipeline sees a thread in the order it was written
        (the repeat-contact signal counts earlier posts of the batch).  Each
        record is self-contained, so the raw event replays without the page.
        """
        try:
            body = response.json()
        except ValueError:
            raise FatalError(f"{self.connector.instance.name}: X answered non-JSON", response.status_code,
                             response.text[:300], response) from None
        if not isinstance(body, Mapping):
            raise FatalError(f"{self.connector.instance.name}: unexpected X body", response.status_code, body)
        data = body.get("data") or []
        if isinstance(data, Mapping):  # single-object lookups (GET /2/tweets/:id, POST /2/tweets)
            data = [data]
        errors = [e for e in body.get("errors") or [] if isinstance(e, Mapping)]
        if errors and not data:
            fatal = [e for e in errors if str(e.get("type", "")).endswith("/resource-not-found")
                     or e.get("title") in ("Not Found Error", "Authorization Error", "Forbidden")]
            if fatal:
                raise FatalError(f"{self.connector.instance.name}: {self.name}: {problem_text({'errors': fatal})}",
                                 response.status_code, body, response)
        for err in errors:  # partial errors (e.g. a deleted referenced post) do not stop the page
            log.info("%s: %s: X partial error: %s", self.connector.instance.name, self.name, problem_text(err))
        users = {u.get("id"): u for u in (body.get("includes") or {}).get("users") or [] if isinstance(u, Mapping)}
        records = [{"tweet": t, "author": users.get(t.get("author_id")), "stream": self.name}
                   for t in data if isinstance(t, Mapping) and t.get("id")]
        records.sort(key=lambda r: int(r["tweet"]["id"]))
        return records

    def record_cursor(self, record: Any) -> str | None:
        return str(record["tweet"]["id"])

    def dedupe_key(self, record: Any) -> str | None:
        # The same key as the webhook path: one raw event per post, however it came.
        return str(record["tweet"]["id"])


class MentionsStream(XStream):
    path = "/2/users/{user_id}/mentions"
    token_param = "pagination_token"
    min_results = 5

    def __init__(self, connector: TwitterConnector, user_id: str):
        super().__init__(connector, f"mentions:{user_id}")
        self.user_id = user_id

    def request_path(self) -> str:
        return self.path.format(user_id=self.user_id)


class SearchStream(XStream):
    path = "/2/tweets/search/recent"
    token_param = "next_token"
    min_results = 10
    horizon = SEARCH_HORIZON

    def __init__(self, connector: TwitterConnector, query: str):
        super().__init__(connector, query_stream_name(query))
        self.query = query

    def base_params(self) -> dict[str, Any]:
        return {"query": self.query, "sort_order": "recency"}


class BudgetedHttpClient(HttpClient):
    """The core's client plus the monthly read budget around each stream run.

    A run that the budget does not allow yet is skipped before its first
    request (the cursor stays, nothing is lost); a run that reaches the budget
    stops before its next page.  Posts are counted page by page.
    """

    def __init__(self, *args: Any, read_budget: ReadBudget, windows: dict[str, Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_budget = read_budget
        self.windows = windows

    def pages(self, method, path, *, params_for, **kwargs) -> Iterator[Page]:
        reason = self.read_budget.gate()
        if reason:
            log.info("%s: skipping %s: %s", self.name, path, reason)
            return

        def guarded(token: str | None) -> dict[str, Any]:
            if token is not None:
                self.read_budget.before_next_page()
            return params_for(token)

        for page in super().pages(method, path, params_for=guarded, **kwargs):
            self.read_budget.record(len(page.records), dict(self.windows))
            yield page


class TwitterConnector(SourceConnector):
    """X / Twitter webcare: brand mentions and searches into the hub's inbox."""

    plugin_name = "twitter_webcare"
    default_base_url = "https://api.x.com"
    description = "X (Twitter) API v2 mentions + recent search polling, Account Activity webhook"
    #: X's app-level window for both endpoints is 450 requests / 15 min; the
    #: ``x-rate-limit-*`` headers then pause the instance precisely.
    rate_limit = (450, 900.0)
    settings = [
        Setting("bearer_token", secret=True, required=True, help="App-only Bearer token (developer portal)"),
        Setting("user_id", type=(str, int, list), help="Brand account id(s) whose mentions to read"),
        Setting("queries", type=list, default=[], help="Recent-search queries, e.g. 'acme OR akme lang:nl'"),
        Setting("brand_user_ids", type=list, default=[], help="More own account ids whose posts are not feedback"),
        Setting("brand_handles", type=list, default=[], help="Own handles whose posts are not feedback"),
        Setting("consumer_secret", secret=True, help="App consumer (API key) secret: CRC and webhook signatures"),
        Setting("monthly_read_budget", type=int, default=0, minimum=0,
                help="Posts to read per period at most (0: no limit)"),
        Setting("budget_reset_day", type=int, default=1, minimum=1, maximum=28,
                help="Day of month your X plan's usage resets"),
        Setting("budget_pacing", type=bool, default=True, help="Spread the budget over the period"),
        Setting("max_results", type=int, default=100, minimum=5, maximum=100,
                help="Posts per page (X allows 5-100 for mentions, 10-100 for search: search asks at least 10)"),
        Setting("initial_lookback_hours", type=(int, float), default=24, minimum=0,
                help="How far back a new stream starts (0: as far as X allows)"),
        Setting("state_dir", help="Folder of a read-budget ledger file from before 0.2, imported once into the "
                                  "hub's database (default: <instance folder>/twitter_webcare)"),
    ]

    def __init__(self, instance: Instance, *, clock: Clock | None = None, session: requests.Session | None = None):
        super().__init__(instance, clock=clock, session=session)
        problems = validate_instance_settings(self.config)
        if problems:
            raise ValueError(f"sources.{instance.name}: " + "; ".join(problems))
        self.user_ids = _as_list(self.config.get("user_id"))
        self.queries = [str(q) for q in self.config.get("queries") or []]
        self.brand = BrandAccounts.from_settings(self.user_ids, _as_list(self.config.get("brand_user_ids")),
                                                 _as_list(self.config.get("brand_handles")))
        #: Last rate-limit window seen per endpoint (shown by ``feedback-hub sources``).
        self.windows: dict[str, dict[str, Any]] = {}
        # The budget's count lives in the hub's database (self.state), shared by
        # every process; a ledger file of an older version is imported once.
        self.read_budget = ReadBudget(
            StateLedger(self.state, legacy_file=self._legacy_ledger_file()),
            monthly_budget=int(self.config.get("monthly_read_budget") or 0),
            reset_day=int(self.config.get("budget_reset_day") or 1),
            pacing=bool(self.config.get("budget_pacing", True)),
            clock=self.clock, name=instance.name)

    def _legacy_ledger_file(self) -> Path:
        """Where versions before the state store kept the budget (imported once, then unused)."""
        configured = self.config.get("state_dir")
        folder = Path(configured) if configured else (
            Path(os.environ.get("HUB_INSTANCE_PATH") or "instance").resolve() / "twitter_webcare")
        return folder / (re.sub(r"[^\w.-]", "_", self.instance.name) + ".json")

    # -- HTTP -------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config['bearer_token']}"}

    http_client_class = BudgetedHttpClient

    def http_client_kwargs(self) -> dict[str, Any]:
        return {**super().http_client_kwargs(), "read_budget": self.read_budget, "windows": self.windows}

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        """Pause the instance until ``x-rate-limit-reset`` when the window is spent.

        Raises :class:`UsageCapExceeded` (fatal, not retried) for the monthly
        usage-cap 429: the window's reset would not lift it.
        """
        endpoint = _endpoint(response.url)
        headers = response.headers
        remaining = _int(headers.get("x-rate-limit-remaining"))
        reset = _int(headers.get("x-rate-limit-reset"))
        if remaining is not None:
            self.windows[endpoint] = {"limit": _int(headers.get("x-rate-limit-limit")), "remaining": remaining,
                                      "reset": reset}
        if response.status_code == 429:
            try:
                body = response.json()
            except ValueError:
                body = None
            if is_usage_cap(body):
                detail = problem_text(body)
                if isinstance(body, Mapping) and body.get("product_name"):
                    detail += f" (product {body['product_name']}, period {body.get('period')})"
                until = self.read_budget.mark_usage_capped(detail)
                raise UsageCapExceeded(
                    f"{self.instance.name}: X monthly usage cap reached: {detail}; not retrying, polling resumes "
                    f"{until:%Y-%m-%d} (budget_reset_day) or after you raise the plan", 429, body, response)
        if remaining == 0 and reset:
            self.read_budget.note_rate_limits({endpoint: self.windows.get(endpoint)})
            log.info("%s: X %s window spent; pausing until %s", self.instance.name, endpoint,
                     dt.datetime.fromtimestamp(reset, dt.UTC).isoformat())
            return float(reset) + 1.0  # reset is whole seconds; one more avoids an early 429
        return None

    # -- the connector contract ----------------------------------------------------
    def streams(self) -> list[Stream]:
        return [*(MentionsStream(self, uid) for uid in self.user_ids),
                *(SearchStream(self, q) for q in self.queries)]

    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        if raw.kind == RAW_V1:
            return from_v1(raw.payload, self.brand)
        if raw.kind == RAW_V2:
            return from_v2(raw.payload, self.brand)
        raise ValueError(f"unknown X raw event kind {raw.kind!r}")

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        secret = self.config.get("consumer_secret")
        if not secret:
            raise WebhookRejected(404, f"instance {self.instance.name!r} has no consumer_secret: webhooks are off")
        if request.method == "GET":
            token = request.args.get("crc_token")
            if not token:
                raise WebhookRejected(400, "expected ?crc_token= (X's challenge-response check)")
            return WebhookResult(status=200, body={"response_token": crc_response_token(secret, token)})
        if request.method != "POST":
            raise WebhookRejected(405, "X webhooks are GET (CRC) or POST (events)")
        verify_delivery(secret, request.body, request.headers)
        try:
            delivery = parse_delivery(request.body)
        except ValueError as exc:
            raise WebhookRejected(400, f"not an Account Activity delivery: {exc}") from None
        raws = [RawIn(payload={"for_user_id": delivery.for_user_id, "tweet": tweet}, dedupe_key=str(tweet["id_str"]),
                      kind=RAW_V1) for tweet in delivery.tweets] + delivery.erase_requests()
        if delivery.ignored:
            log.info("%s: X webhook: ignored %s", self.instance.name, ", ".join(delivery.ignored))
        return WebhookResult(status=200, body={"ok": True, "tweets": len(delivery.tweets), "ignored": delivery.ignored},
                             raw_events=raws)

    def health(self) -> dict[str, Any]:
        status = self.read_budget.status().as_dict()
        saved = (self.read_budget.ledger.read().get("rate_limits") or {})
        windows = {**saved, **self.windows}
        return {
            "read_budget": status,
            "rate_limits": {name: _window_text(w) for name, w in sorted(windows.items()) if w},
        }


def validate_instance_settings(config: Mapping[str, Any]) -> list[str]:
    """Checks that the declared settings (types, ranges) cannot express, used at start:
    ranges such as max_results 5-100 are declared on the settings and checked by the core."""
    problems = []
    if not _as_list(config.get("user_id")) and not config.get("queries"):
        problems.append("set user_id (mentions) and/or queries (recent search)")
    for uid in _as_list(config.get("user_id")) + _as_list(config.get("brand_user_ids")):
        if not uid.isdigit():
            problems.append(f"user id {uid!r} must be the numeric account id, not a handle")
    for q in config.get("queries") or []:
        if not isinstance(q, str) or not q.strip() or len(q) > 4096:
            problems.append(f"query {q!r} must be a non-empty string of at most 4096 characters")
    return problems


def _endpoint(url: str) -> str:
    path = urlparse(url).path
    if "/mentions" in path:
        return "mentions"
    if "/tweets/search/" in path:
        return "search"
    return path.rsplit("/2/", 1)[-1] or path


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _window_text(window: Mapping[str, Any]) -> str:
    reset = window.get("reset")
    when = dt.datetime.fromtimestamp(reset, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if reset else "?"
    return f"{window.get('remaining')}/{window.get('limit')} requests left, window resets {when}"
