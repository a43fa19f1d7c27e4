"""The Typeform source connector: webhooks, Responses API pulls and backfills.

Two paths bring the same response in, and both end in one feedback item:

* **webhook** (real time): Typeform POSTs a signed ``form_response`` event to
  ``/webhooks/<instance>``; we verify the signature over the raw bytes, return
  the event as a raw event keyed by the response ``token`` and answer at once
  (the core stores it, answers, then processes it in the executor);
* **pull / backfill** (catch-up, history): ``GET /forms/{form_id}/responses``
  paged with ``before=<token of the last item>``, the way Typeform's own SDK
  walks all responses.  The raw event of each item has the same ``token`` key,
  so a response already delivered by webhook is skipped as a duplicate, and
  vice versa.

Why ``before`` paging and a signpost cursor: ``since``/``until`` windows are
inclusive and only to the second, so paging by time would loop on a second
holding more responses than a page; ``before`` is an exclusive token and cannot
repeat.  It walks newest first, so the stream is ``is_sorted = False``: the core
keeps the newest ``submitted_at`` seen as a signpost and turns it into the
cursor only when the run reached the end.  A run that dies half way starts
again from the old cursor; the dedupe makes the re-read pages harmless.  The
next incremental run asks for ``since = cursor - overlap_seconds`` because very
recent submissions may show up in the Responses API a little late.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import requests

from hub.sdk import (
    Clock,
    FatalError,
    FeedbackIn,
    HttpError,
    Instance,
    LastRecordPaginator,
    RawIn,
    Setting,
    SourceConnector,
    Stream,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
    webhooks,
)

from .mapping import MappingConfig, ResponseMapper, format_time, parse_time

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Typeform-Signature"
SIGNATURE_PREFIX = "sha256="
MAX_PAGE_SIZE = 1000  # Typeform's documented maximum for page_size
MAX_TOKEN_LENGTH = 200  # raw_event.dedupe_key column; real tokens are 32 characters
DEFINITION_TTL_SECONDS = 3600.0


def sign(secret: str, body: bytes) -> str:
    """The ``Typeform-Signature`` value for ``body``: ``sha256=`` + base64 HMAC-SHA256.

    Computed over the exact bytes received, never over re-serialised JSON
    (key order and spacing would change the digest).
    """
    return webhooks.sign(secret, body, encoding="base64", prefix=SIGNATURE_PREFIX)


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of a ``Typeform-Signature`` header against ``body``."""
    return webhooks.hmac_matches(secret, body, header, encoding="base64", prefix=SIGNATURE_PREFIX)


def build_resurvey_url(form_url: str, case_id: int | str, email: str | None = None, *,
                       case_id_field: str = "case_id", email_field: str = "email", **hidden: Any) -> str:
    """A form link that pre-fills hidden fields, Typeform style: ``...#case_id=12&email=a%40b.nl``.

    Typeform reads hidden fields from the URL fragment; values are
    percent-encoded (``@`` -> ``%40``, space -> ``%20``) so any email or name
    survives.  The answer comes back with ``hidden.case_id`` set, which the
    mapping turns into the case's re-survey outcome.
    """
    values: dict[str, str] = {case_id_field: str(case_id)}
    if email:
        values[email_field] = email
    values.update({k: str(v) for k, v in hidden.items() if v is not None and v != ""})
    return f"{form_url.split('#', 1)[0]}#{urlencode(values, quote_via=quote, safe='')}"


def _token_of(response: Mapping[str, Any]) -> str | None:
    token = response.get("token")
    return token if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH else None


class ResponsesStream(Stream):
    """``GET /forms/{form_id}/responses``, newest first, paged by ``before`` token."""

    name = "responses"
    path = "/forms/{form_id}/responses"
    cursor_field = "submitted_at"
    cursor_kind = "str"  # Typeform's "YYYY-MM-DDTHH:MM:SSZ" sorts as text
    is_sorted = False  # before-token paging walks newest first: cursor via the signpost
    raw_kind = "response"

    connector: TypeformConnector

    def __init__(self, connector: TypeformConnector):
        super().__init__(connector)
        self.page_size = connector.page_size
        # A short page is the last one: no empty round trip at the end.  The first
        # page's total_items (all responses since the run's `since`) is the run's size.
        self.paginator = LastRecordPaginator("token", self.page_size, total_path="total_items")

    def request_path(self) -> str:
        return f"/forms/{quote(self.connector.form_id, safe='')}/responses"

    def request_params(self, cursor: str | None, page_token: str | None, since: dt.datetime | None) -> dict[str, Any]:
        c = self.connector
        if page_token is None:
            # Responses-API items carry no question titles or scale ranges:
            # read the form's definition once per run (cached) for the mapping.
            c.refresh_definition()
        params: dict[str, Any] = {"page_size": self.page_size}
        if c.opt("completed"):
            params["completed"] = "true"
        start = c.pull_start(cursor, since)
        if start is not None:
            params["since"] = start.strftime("%Y-%m-%dT%H:%M:%S")
        if page_token:
            params["before"] = page_token  # exclusive; no `sort` with it (Typeform refuses the mix)
        return params

    def parse_records(self, response: requests.Response) -> list[Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise FatalError(f"{self.connector.instance.name}: Responses API answered non-JSON",
                             response.status_code, response.text[:300]) from exc
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise FatalError(f"{self.connector.instance.name}: Responses API page without an items list",
                             response.status_code, str(body)[:300])
        return items

    def record_cursor(self, record: Any) -> str | None:
        when = parse_time(record.get("submitted_at")) if isinstance(record, dict) else None
        return format_time(when) if when else None

    def dedupe_key(self, record: Any) -> str | None:
        return _token_of(record) if isinstance(record, dict) else None


class TypeformConnector(SourceConnector):
    """One Typeform form as a feedback source (see the module docstring)."""

    plugin_name = "survey_typeform"
    description = "Typeform surveys (NPS): signed webhooks, Responses API pull and backfill, re-survey links"
    default_base_url = "https://api.typeform.com"
    #: Typeform allows 2 requests per second per account on the Responses API.
    rate_limit: ClassVar[tuple[int, float] | None] = (2, 1.0)
    settings = [
        Setting("form_id", required=True, help="The form's id, as in https://acme.typeform.com/to/<form_id>"),
        Setting("token", secret=True, help="Personal access token with responses:read (and forms:read); "
                                           "leave out for a webhook-only instance"),
        Setting("webhook_secret", secret=True, help="The secret set on the Typeform webhook; without it "
                                                    "every delivery is refused"),
        Setting("nps_field_ref", help="ref (or id) of the NPS question when it is not an 'nps' or 0-10 "
                                      "opinion_scale question"),
        Setting("csat_field_ref", help="ref (or id) of a rating / opinion_scale question scored as CSAT 1-5"),
        Setting("ces_field_ref", help="ref (or id) of a rating / opinion_scale question scored as CES 1-7"),
        Setting("email_field", default="email", help="hidden field holding the respondent's email"),
        Setting("customer_id_field", default="customer_id", help="hidden field holding your customer number"),
        Setting("customer_id_is_crm_id", type=bool, default=False,
                help="treat the customer number as the CRM id (identity kind crm_id)"),
        Setting("crm_id_field", default="crm_id", help="hidden field holding the CRM contact id"),
        Setting("name_field", default="name", help="hidden field holding the respondent's name"),
        Setting("case_id_field", default="case_id", help="hidden field that marks a re-survey answer"),
        Setting("language_field", default="language", help="hidden field holding the respondent's language"),
        Setting("include_titles", type=bool, default=True, help="prefix each free-text answer with its question"),
        Setting("page_size", type=int, default=MAX_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE,
                help="responses per request (the Responses API allows at most 1000)"),
        Setting("completed", type=bool, default=True, help="pull only completed responses"),
        Setting("start_date", type=(str, dt.date), help="first pull starts here (a TOML date or ISO text), "
                                                        "instead of the form's whole history"),
        Setting("overlap_seconds", type=int, default=300, minimum=0, maximum=86_400,
                help="each pull re-reads this many seconds before the cursor (late-visible responses)"),
        Setting("fetch_definition", type=bool, default=True,
                help="read the form definition (GET /forms/{id}, forms:read) for titles of pulled answers"),
        Setting("resurvey_form_url", help="form link for re-surveys (default https://form.typeform.com/to/<form_id>)"),
    ]

    def __init__(self, instance: Instance, *, clock: Clock | None = None, session: requests.Session | None = None):
        super().__init__(instance, clock=clock, session=session)
        self.form_id = str(self.opt("form_id"))
        size = int(self.opt("page_size"))
        if not 1 <= size <= MAX_PAGE_SIZE:
            log.warning("%s: page_size %s outside 1-%s; using %s", instance.name, size, MAX_PAGE_SIZE,
                        min(max(size, 1), MAX_PAGE_SIZE))
        self.page_size = min(max(size, 1), MAX_PAGE_SIZE)
        self.mapper = ResponseMapper(MappingConfig(
            nps_field_ref=self.opt("nps_field_ref") or None,
            email_field=self.opt("email_field"),
            crm_id_field=self.opt("crm_id_field"),
            customer_id_field=self.opt("customer_id_field"),
            customer_id_is_crm_id=bool(self.opt("customer_id_is_crm_id")),
            name_field=self.opt("name_field"),
            case_id_field=self.opt("case_id_field"),
            language_field=self.opt("language_field"),
            include_titles=bool(self.opt("include_titles")),
            scale_fields=tuple((ref, scale) for scale in ("csat", "ces") if (ref := self.opt(f"{scale}_field_ref"))),
        ))
        self._definition: dict[str, Any] | None = None
        self._definition_read_at: float | None = None
        self._definition_lock = threading.Lock()

    # -- settings --------------------------------------------------------
    def opt(self, name: str) -> Any:
        """A setting's value, or its declared default (instances built by hand in tests lack keys)."""
        value = self.config.get(name)
        if value is None:
            value = next((s.default for s in self.all_settings() if s.name == name), None)
        return value

    def auth_headers(self) -> dict[str, str]:
        token = self.opt("token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def pull_start(self, cursor: str | None, since: dt.datetime | None) -> dt.datetime | None:
        """The ``since`` of a run: the backfill date, else cursor minus the overlap, else ``start_date``."""
        if since is not None:
            return since.astimezone(dt.UTC) if since.tzinfo else since.replace(tzinfo=dt.UTC)
        last = parse_time(cursor)
        if last is not None:
            return last - dt.timedelta(seconds=max(0, int(self.opt("overlap_seconds"))))
        start = self.opt("start_date")
        if isinstance(start, dt.datetime):  # TOML offset/local date-time
            return start.astimezone(dt.UTC) if start.tzinfo else start.replace(tzinfo=dt.UTC)
        if isinstance(start, dt.date):  # TOML date: midnight UTC
            return dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
        if start:
            when = parse_time(start if "T" in start else f"{start}T00:00:00Z")
            if when is None:
                raise FatalError(f"{self.instance.name}: start_date {start!r} is not an ISO date")
            return when
        return None

    # -- pulling ---------------------------------------------------------
    def streams(self) -> list[Stream]:
        if not self.opt("token"):
            log.info("%s: no token configured; webhook-only instance, nothing to pull", self.instance.name)
            return []
        return [ResponsesStream(self)]

    def refresh_definition(self) -> dict[str, Any] | None:
        """The form definition (titles, scale ranges), read at most once an hour.

        Best effort: a token without ``forms:read`` or an outage only costs the
        titles of pulled answers, never the pull.
        """
        if not self.opt("fetch_definition") or not self.opt("token"):
            return self._definition
        with self._definition_lock:
            now = self.clock.time()
            if self._definition_read_at is not None and now - self._definition_read_at < DEFINITION_TTL_SECONDS:
                return self._definition
            self._definition_read_at = now
            try:
                body = self.http.get(f"/forms/{quote(self.form_id, safe='')}").json()
            except (HttpError, ValueError) as exc:
                log.warning("%s: form definition not readable (%s); pulled answers get no question titles",
                            self.instance.name, getattr(exc, "status", None) or type(exc).__name__)
                return self._definition
            if isinstance(body, dict) and isinstance(body.get("fields"), list):
                self._definition = body
            return self._definition

    # -- mapping ---------------------------------------------------------
    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        payload = raw.payload
        if not isinstance(payload, Mapping):
            raise ValueError(f"Typeform raw event is a {type(payload).__name__}, not an object")
        if "event_type" in payload or "form_response" in payload:
            if payload.get("event_type") != "form_response" or not isinstance(payload.get("form_response"), Mapping):
                raise ValueError(f"Typeform event {payload.get('event_type')!r} is not a form_response")
            response = payload["form_response"]
            context = {"via": "webhook", "event_id": payload.get("event_id")}
        else:
            response = payload
            context = {"via": "api"}
        definition = response.get("definition")
        if not isinstance(definition, Mapping) or not definition:
            definition = self._definition
        if not response.get("form_id"):
            context["form_id"] = self.form_id
        return [self.mapper.map(response, definition, context={k: v for k, v in context.items() if v})]

    # -- webhooks --------------------------------------------------------
    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        if request.method != "POST":
            raise WebhookRejected(405, "Typeform delivers webhooks with POST")
        secret = self.opt("webhook_secret")
        if not secret:
            raise WebhookRejected(401, "this instance has no webhook_secret: set the same secret here and on "
                                       "the Typeform webhook (unsigned deliveries are never accepted)")
        webhooks.verify_hmac(secret, request.body, webhooks.header(request.headers, SIGNATURE_HEADER),
                             encoding="base64", prefix=SIGNATURE_PREFIX, header_name=SIGNATURE_HEADER)
        event = webhooks.json_body(request)
        if not isinstance(event, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        if event.get("event_type") != "form_response":
            raise WebhookRejected(400, f"event_type {event.get('event_type')!r} is not form_response")
        response = event.get("form_response")
        if not isinstance(response, dict):
            raise WebhookRejected(400, "form_response is missing or not an object")
        token = _token_of(response)
        if token is None:
            raise WebhookRejected(400, "form_response has no usable token")
        definition = response.get("definition")
        if definition is not None and not isinstance(definition, dict):
            raise WebhookRejected(400, "form_response.definition is not an object")
        form_id = response.get("form_id") or (definition or {}).get("id")
        if form_id and not isinstance(form_id, str):
            raise WebhookRejected(400, "form_response.form_id is not text")
        if form_id and form_id != self.form_id:
            raise WebhookRejected(400, f"form {form_id[:40]!r} is not this instance's form {self.form_id!r}")
        return WebhookResult(raw_events=[RawIn(payload=event, dedupe_key=token, kind="form_response")])

    # -- loop closure ----------------------------------------------------
    def resurvey_url(self, case_id: int | str, email: str | None = None, **hidden: Any) -> str:
        """Link to the re-survey form for a case, hidden fields pre-filled."""
        base = self.opt("resurvey_form_url") or f"https://form.typeform.com/to/{quote(self.form_id, safe='')}"
        cfg = self.mapper.config
        return build_resurvey_url(base, case_id, email, case_id_field=cfg.case_id_field,
                                  email_field=cfg.email_field, **hidden)

    def health(self) -> dict[str, Any]:
        mode = "pull + webhook" if self.opt("token") and self.opt("webhook_secret") else (
            "pull only" if self.opt("token") else "webhook only" if self.opt("webhook_secret") else "unconfigured")
        limit = self.config.get("rate_limit") or self.rate_limit
        return {"form_id": self.form_id, "mode": mode, "rate_limit": f"{limit[0]} requests / {limit[1]:g} s"}
