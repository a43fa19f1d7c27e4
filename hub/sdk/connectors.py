"""Connector framework: the base classes plugins subclass.

A source plugin is a small declarative class (in the manner of the Singer SDK):

.. code-block:: python

    class MentionsStream(Stream):
        name = "mentions"
        path = "/v1/accounts/{account_id}/mentions"
        cursor_field = "id"
        cursor_kind = "int"
        is_sorted = False            # newest first: cursor moves when the run completes
        page_size = 100
        paginator = BodyTokenPaginator("meta.next_token")

        def request_params(self, cursor, page_token, since): ...
        def parse_records(self, response): ...

    class MentionsConnector(SourceConnector):
        plugin_name = "social_mentions"
        default_base_url = "https://api.example.com"
        settings = [Setting("bearer_token", secret=True, required=True), ...]
        def streams(self): return [MentionsStream(self)]
        def normalize(self, raw): return [FeedbackIn(...)]

The core (:mod:`hub.engine.pulls`) runs the page loop, stores raw events, runs the
pipeline and moves the cursor in the same transaction; the shared
:class:`hub.sdk.http.HttpClient` gives retries, backoff, rate budgets and loop
detection.  A plugin never writes its own request loop.

What a stream may say, besides path, params and parsing:

* ``paginator`` - how the next page is found (:mod:`hub.sdk.pagination`);
* ``request_options(page_token)`` - per-request ``requests`` options
  (headers, timeout, a JSON body...);
* ``validate_response(response)`` - classify a response as usable, retriable,
  rate limited (with a wait) or fatal (default: the connector's, which goes by
  the HTTP status);
* ``children`` + ``child_context(record)`` - child streams (the comments of
  each post) whose requests the core pages, counts and resumes:

.. code-block:: python

    class CommentsStream(Stream):
        name = "comments"
        path = "/{post_id}/comments"            # formatted with the parent's context
        paginator = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")

        def request_params(self, cursor, page_token, since):
            return {"after": page_token} if page_token else {}

    class PostsStream(Stream):
        name = "posts"
        path = "/{page_id}/feed"
        children = (CommentsStream,)

        def child_context(self, record):
            return {"post_id": record["id"]}     # None: this post has no children to read
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from hub.sdk.addresses import OutboundPolicy
from hub.sdk.http import Clock, HttpClient, Paginator, RateBudget, RollingWindowBudget
from hub.sdk.schema import Completion, FeedbackIn, FollowupView, PushResult, RawIn
from hub.sdk.settings import Setting
from hub.sdk.state import StateStore
from hub.sdk.webhooks import WebhookRejected, WebhookRequest, WebhookResult

if TYPE_CHECKING:  # pragma: no cover
    import flask


@dataclass(frozen=True)
class Instance:
    """A configured instance: ``[sources.<name>]`` or ``[sinks.<name>]``."""

    name: str
    plugin: str
    kind: str  # "source" | "sink"
    settings: Mapping[str, Any]

    def __repr__(self) -> str:  # never print secrets
        return f"Instance({self.kind}:{self.name} plugin={self.plugin})"


class _Plugin:
    plugin_name: ClassVar[str] = ""
    default_base_url: ClassVar[str | None] = None
    settings: ClassVar[list[Setting]] = []
    #: (requests, per_seconds) budget for the instance's HTTP client, or None.
    rate_limit: ClassVar[tuple[int, float] | None] = None
    #: ``feedback-hub plugins`` shows this.
    description: ClassVar[str] = ""

    def __init__(self, instance: Instance, *, clock: Clock | None = None, session: requests.Session | None = None):
        self.instance = instance
        self.config = instance.settings
        self.clock = clock or Clock()
        self._session = session
        self._http: HttpClient | None = None
        #: Where the instance's client may connect; the core sets the hub's (``http.allowed_private_hosts``).
        self.http_policy: OutboundPolicy | None = None
        #: Where named rate budgets come from; the core sets the hub's (shared by every
        #: process: Redis or PostgreSQL, hub.engine.shared_budget).  None: this object's own.
        self.budget_provider: Callable[[str, int, float, Clock], RateBudget] | None = None
        #: The instance's persistent JSON values (:mod:`hub.sdk.state`).  In
        #: memory until the core binds it to the hub's database, which it does
        #: right after building the plugin: read and write it from hooks,
        #: pulls and webhooks, not from ``__init__``.
        self.state = StateStore()

    @classmethod
    def all_settings(cls) -> list[Setting]:
        declared = list(cls.settings)
        if cls.default_base_url is not None and not any(s.name == "base_url" for s in declared):
            declared.append(Setting("base_url", default=cls.default_base_url, help="API root (emulator or EU host)"))
        return declared

    def auth_headers(self) -> dict[str, str]:
        """Headers sent with every request (e.g. Bearer token)."""
        return {}

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        """Read vendor rate-limit headers; return Unix time to pause until, or None."""
        return None

    def validate_response(self, response: requests.Response) -> None:
        """Classify every response of the instance's client; raise to refuse it.

        Raise :class:`~hub.sdk.http.RetriableError` (try again with backoff),
        :class:`~hub.sdk.http.RateLimitedError` with ``retry_after`` seconds
        (wait that long; with a ``rate_limit`` every request of the instance
        pauses until then) or
        :class:`~hub.sdk.http.FatalError` (stop; the pull records the error).
        Return to accept the response.  The default goes by the HTTP status
        (:meth:`~hub.sdk.http.HttpClient.check_status`); override it for
        vendors that code errors in the body, and call ``super()`` for the rest:

        .. code-block:: python

            GRAPH_THROTTLING = {4, 17, 32, 613}

            def validate_response(self, response):
                if response.status_code == 400:
                    error = (response.json() or {}).get("error") or {}
                    if error.get("code") in GRAPH_THROTTLING:
                        raise RateLimitedError(f"Graph throttling: {error.get('message')}",
                                               400, error, response, retry_after=60.0)
                super().validate_response(response)
        """
        self.http.check_status(response)

    def rate_budget(self, requests_: int, per_seconds: float, purpose: str = "http", *,
                    rolling: bool = False) -> RateBudget:
        """The budget ``<instance>:<purpose>``, shared with every process of the hub when the core can.

        Ask for each limit the vendor counts (e.g. ``"http"`` and ``"search"``);
        every sharer waits for a 429's Retry-After (``block_until``).  ``rolling``:
        at most ``requests_`` in any ``per_seconds``; otherwise a token bucket
        (a burst of ``requests_``, then a steady rate).  Without a provider
        (SQLite, embedded) the budget is this process's own.
        """
        if self.budget_provider is not None:
            return self.budget_provider(f"{self.instance.name}:{purpose}", int(requests_), float(per_seconds),
                                        self.clock, rolling=rolling)
        cls = RollingWindowBudget if rolling else RateBudget
        return cls(int(requests_), float(per_seconds), clock=self.clock)

    def http_budget(self) -> RateBudget | None:
        limit = self.config.get("rate_limit") or self.rate_limit
        if not limit:
            return None
        return self.rate_budget(int(limit[0]), float(limit[1]))

    #: Subclass of :class:`HttpClient` to build (a plugin may extend the client).
    http_client_class: ClassVar[type[HttpClient]] = HttpClient

    def http_client_kwargs(self) -> dict[str, Any]:
        """Arguments for the instance's client; extend to pass your own."""
        return {
            "name": self.instance.name,
            "headers": self.auth_headers(),
            "budget": self.http_budget(),
            "clock": self.clock,
            "session": self._session,
            "on_response": self.rate_limit_wait,
            "validate": self.validate_response,
            # TOML gives a list; requests wants a number or a tuple.
            "timeout": _timeout(self.config.get("timeout")),
            "policy": self.http_policy,
        }

    @property
    def http(self) -> HttpClient:
        """The instance's shared HTTP client (built on first use)."""
        if self._http is None:
            base_url = self.config.get("base_url") or self.default_base_url or ""
            self._http = self.http_client_class(base_url, **self.http_client_kwargs())
        return self._http

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Verify and parse a request to ``/webhooks/<instance>``.

        Raise :class:`WebhookRejected` for bad signatures or bodies.  The
        default refuses: this plugin takes no webhooks.
        """
        raise WebhookRejected(404, f"instance {self.instance.name!r} does not accept webhooks")


def _timeout(value: Any) -> float | tuple[float, float]:
    if value is None:
        return (5.0, 30.0)
    if isinstance(value, list | tuple):
        return (float(value[0]), float(value[1]))
    return float(value)


class Stream:
    """One endpoint of a source, with its own cursor (bookmark).

    A *child* stream (listed in a parent's ``children``) is read once per
    parent record: the core calls the parent's ``child_context(record)`` and,
    for a dict, formats the child's ``path`` with it (next to the instance's
    settings) and sets it as the child's ``context`` before its requests.  Its
    records are stored, normalized and counted like the parent's (the pull
    report counts them per stream, ``"posts/comments"``).  The parent's cursor
    moves only after every child of its page is committed; a run that dies
    half way resumes where it stopped: parents whose children were finished
    are not read again, and the child that was cut short continues from its
    last committed page's token (from its first page when its paginator's
    tokens are URLs, which may carry credentials and are not stored).  A
    child's ``request_params`` gets
    ``cursor=None`` (the parent's cursor already bounds the run) and the
    backfill ``since``.
    """

    name: ClassVar[str] = "default"
    path: ClassVar[str] = ""
    method: ClassVar[str] = "GET"
    #: Record key whose value is the bookmark.
    cursor_field: ClassVar[str | None] = None
    #: "str" (ISO times compare as text) or "int" (snowflake ids).
    cursor_kind: ClassVar[str] = "str"
    #: True when pages come oldest-first, so the cursor may move per page.
    #: False (newest first): the highest value is kept as a signpost and
    #: becomes the cursor when the run finished, so a crash loses nothing.
    is_sorted: ClassVar[bool] = True
    page_size: ClassVar[int] = 100
    paginator: Paginator = Paginator()
    #: Kind recorded on raw events from this stream.
    raw_kind: ClassVar[str] = "record"
    #: Child stream classes, built with ``cls(connector)`` (override
    #: :meth:`child_streams` to build them otherwise).
    children: ClassVar[tuple[type[Stream], ...]] = ()

    def __init__(self, connector: SourceConnector):
        self.connector = connector
        #: For a child stream: the parent's ``child_context`` of the record
        #: being read (empty for top-level streams).
        self.context: dict[str, Any] = {}

    def request_path(self) -> str:
        return self.path.format(**{**self.connector.config, **self.context})

    def request_params(self, cursor: str | None, page_token: str | None, since: dt.datetime | None) -> dict[str, Any]:
        """Query of one page.  ``since`` is set for a backfill (cursor ignored)."""
        return {}

    def request_options(self, page_token: str | None) -> dict[str, Any]:
        """Extra ``requests`` options for one page: ``headers``, ``timeout``, ``json``, ``data``...

        ``headers`` add to (and override) the client's; ``timeout`` replaces
        the instance's for this request.  Query parameters belong in
        :meth:`request_params`.

        .. code-block:: python

            def request_options(self, page_token):
                return {"headers": {"Accept-Language": "nl"}, "timeout": (5, 120)}
        """
        return {}

    def validate_response(self, response: requests.Response) -> None:
        """Classify a response of this stream (default: the connector's ``validate_response``)."""
        self.connector.validate_response(response)

    def parse_records(self, response: requests.Response) -> list[Any]:
        """The page's records (vendor shape), in page order."""
        return list(response.json())

    def record_cursor(self, record: Any) -> str | None:
        if self.cursor_field and isinstance(record, dict):
            value = record.get(self.cursor_field)
            return None if value is None else str(value)
        return None

    def dedupe_key(self, record: Any) -> str | None:
        """Identity of the record for duplicate detection (e.g. response token)."""
        return self.record_cursor(record)

    def to_raw(self, record: Any, response: requests.Response) -> RawIn:
        """Wrap a record as a raw event; override to keep page-level context.

        A child stream that needs its parent in ``normalize`` puts it in the
        payload here, e.g. ``{"comment": record, "post_id": self.context["post_id"]}``.
        """
        return RawIn(payload=record, dedupe_key=self.dedupe_key(record), kind=self.raw_kind)

    def child_streams(self) -> list[Stream]:
        """Child streams read for each record (default: one of each ``children`` class)."""
        return [cls(self.connector) for cls in self.children]

    def child_context(self, record: Any) -> dict[str, Any] | None:
        """What a child stream needs to read ``record``'s children, or None to skip them.

        Keys fill the child's ``path`` placeholders and its ``context``; the
        same context always means the same child requests (the core's resume
        relies on it).  Default: None (no children).
        """
        return None

    def cursor_max(self, a: str | None, b: str | None) -> str | None:
        if a is None:
            return b
        if b is None:
            return a
        if self.cursor_kind == "int":
            return a if int(a) >= int(b) else b
        return a if a >= b else b


class SourceConnector(_Plugin):
    """Base class of source plugins (surveys, social media...)."""

    def streams(self) -> list[Stream]:
        """The instance's streams to pull; empty for webhook-only sources."""
        return []

    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        """Turn one raw event into common-schema items (maybe none).

        Raise ``ValueError`` for a payload that cannot be understood: the raw
        event stays stored, marked failed with the reason, for replay.
        """
        raise NotImplementedError

    def health(self) -> dict[str, Any]:
        """Extra health facts for ``feedback-hub sources`` (budgets...)."""
        return {}


#: ``RawIn.kind`` of a source's request to erase items it delivered before (the
#: author deleted a post, or revoked the app's access).  The core, not the
#: connector's ``normalize``, handles these: payload ``{"external_ids": [...]}``
#: (those items of this source) and/or ``{"author_ids": [...]}`` (every item of
#: this source whose ``extra["author_id"]`` is one of them), ``"reason"`` optional.
ERASE_REQUEST = "erase_request"


@dataclass(frozen=True)
class TaskState:
    """A CRM task as the CRM holds it now (``CrmSink.task_states``); None = unknown."""

    followup_id: int
    due_at: dt.datetime | None = None
    owner: str | None = None
    completed: bool = False
    completed_at: dt.datetime | None = None


@dataclass(frozen=True)
class ContactMatch:
    """A CRM contact found by :meth:`CrmSink.lookup_contact`: its id, name and the
    handles it holds as ``(kind, value)`` pairs (e.g. ``("x_handle", "janb")``)."""

    id: str
    name: str | None = None
    handles: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CustomerFact:
    """Something the CRM knows happened to a customer (``CrmSink.customer_facts``).

    ``kind`` is ``"renewed"`` or ``"churned"`` (what the outcome ledger counts) or
    ``None`` for a moment that is no outcome (a ticket closed); ``moment`` names what
    happened (``deal_won``, ``deal_lost``, ``ticket_closed``...) and is what proactive
    invitations are configured by.  ``record`` identifies the CRM record and its state
    (e.g. ``deal:123:closedwon``): the hub records each record once.
    """

    record: str
    moment: str
    occurred_at: dt.datetime
    contact_ids: tuple[str, ...] = ()
    kind: str | None = None


class CrmSink(_Plugin):
    """Base class of follow-up sinks (CRMs, ticketing, the built-in local sink)."""

    #: Most follow-ups handed to one ``push`` call.
    batch_size: ClassVar[int] = 100

    def push(self, followups: list[FollowupView]) -> list[PushResult]:
        """Create the callback task for each follow-up; one result per follow-up.

        Must be idempotent per ``followup.idempotency_key``: a follow-up whose
        earlier push may have reached the CRM (timeout, crash) is pushed again
        with the same key, and the sink must find the earlier task instead of
        creating a second one.
        """
        raise NotImplementedError

    def sync_completed(self, followups: list[FollowupView]) -> list[Completion]:
        """Report which sent follow-ups are completed in the CRM (default: none)."""
        return []

    def looks_up_contacts(self) -> bool:
        """Whether :meth:`lookup_contact` asks the CRM (default: no); the identity rules use it when yes."""
        return False

    def lookup_contact(self, *, email: str | None = None, phone: str | None = None) -> ContactMatch | None:
        """The CRM contact with this e-mail address or phone number, or None (default: none).

        Raise ``RetriableError`` for an outage or a 429 (the core asks again
        later); the hub links the contact's id and handles to its customer
        with the ``[identity.weights]`` of ``crm_lookup`` and ``crm_handle``.
        """
        return None

    def merges_contacts(self) -> bool:
        """Whether :meth:`merge_contacts` merges in the CRM (default: no; ``[identity] crm_merge`` uses it)."""
        return False

    def merge_contacts(self, primary_id: str, other_id: str) -> None:
        """Merge CRM contact ``other_id`` into ``primary_id`` after the hub merged their customers (default: nothing)."""
        return None

    # -- two-way sync: the hub changed a callback the CRM already holds ----------------
    # Each gets sent follow-ups (``external_id`` set) and returns one result per
    # follow-up; ``ok`` means the CRM now holds the wish.  They must be
    # idempotent (absolute values, not increments): after a timeout the core
    # sends the same wish again.  Raise or return retriable failures for an
    # outage; the core waits and retries, never gives up.  The defaults do
    # nothing and report success, for sinks whose CRM cannot change tasks.
    def update(self, followups: list[FollowupView]) -> list[PushResult]:
        """Move each follow-up's task to its (re-planned) ``due_at``, never creating a second task."""
        return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

    def complete(self, followups: list[FollowupView]) -> list[PushResult]:
        """Mark each task done: the customer was contacted, or the case resolved, in the hub."""
        return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

    def cancel(self, followups: list[FollowupView]) -> list[PushResult]:
        """Withdraw each task: its case was closed without a callback."""
        return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

    def task_states(self, followups: list[FollowupView]) -> list[TaskState]:
        """What the CRM's tasks say now (due time, owner, status), for changes made
        in the CRM to show in the hub after the next sync (default: nothing known)."""
        return []

    def reads_customer_facts(self) -> bool:
        """Whether :meth:`customer_facts` asks the CRM (default: no, the sink exposes none)."""
        return False

    def customer_facts(self, cursor: str | None) -> tuple[list[CustomerFact], str | None]:
        """(facts changed since ``cursor``, the new cursor); ``None``: from the beginning.

        Facts may repeat (the core records each ``record`` once); raise
        ``RetriableError`` for an outage or a 429, the core asks again later
        from the same cursor.  Default: none.
        """
        return [], cursor

    def erases_people(self) -> bool:
        """Whether :meth:`erase_person` does anything for this instance (default: no).

        The core queues a CRM erasure after a GDPR erase only for sinks that say yes.
        """
        return False

    def erase_person(self, identities: list[tuple[str, str]]) -> None:
        """Delete a person the hub erased (GDPR) from the CRM as well (default: nothing).

        ``identities`` are ``(kind, value)`` pairs such as ``("crm_id", "5101")``
        or ``("email", "a@b.nl")``.  Must be idempotent (it is called again
        after a timeout).  Raise ``RetriableError`` for an outage or a 429:
        the core's privacy outbox waits and retries, it never gives up on an
        outage; raise ``FatalError`` when the CRM refuses the request itself.
        """
        return None


@dataclass
class Emulator:
    """A local stand-in for a vendor API, for the sandbox, demo and tests.

    ``blueprint`` builds the Flask blueprint (mounted under ``/<name>``);
    ``demo_config(base_url, hub_url)`` returns config tables
    (``{"sources": {...}, "sinks": {...}, "routing": {...}}``) pointing the
    plugin's real connector at the emulator, and ``demo_env`` the secrets those
    tables reference.  ``tick(base_url, hub_url)``, if set, is called
    periodically in demo mode (e.g. to send signed webhooks).
    """

    name: str
    blueprint: Callable[[], flask.Blueprint]
    demo_config: Callable[[str, str], dict[str, Any]] | None = None
    demo_env: dict[str, str] = field(default_factory=dict)
    tick: Callable[[str, str], None] | None = None
    description: str = ""
