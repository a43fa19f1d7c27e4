"""The HubSpot CRM sink: a callback task on the customer's contact, once.

One ``push`` call handles one chunk (at most 100 follow-ups) in four steps:

1. **Contacts.** A customer whose HubSpot id the hub already knows is read by
   id (batch read, strongly consistent).  The others are created or found by
   e-mail in one ``contacts/batch/upsert`` with ``idProperty: "email"`` per
   hundred addresses (the e-mail is unique, so this is consistent at once -
   search lags behind writes - and takes one request instead of a search plus
   one create per new contact).  The contacts that existed already
   (``new: false``) are batch-read for the configured contact properties
   (owner, annual revenue, lifecycle stage...); new ones have none yet.  So
   100 follow-ups for new contacts cost 2 requests: the upsert and the task
   batch create.  With ``create_contacts`` off, contacts are batch-read by
   e-mail (``idProperty``) instead and none is created.
2. **Earlier attempts.** A follow-up pushed before (``attempts > 1``: a retry
   after a failure, or a row re-claimed after a worker died mid-push) may
   already have its task.  Each task carries a marker derived from the
   follow-up's idempotency key; the sink reads the contact's tasks back
   (associations + batch read, both strongly consistent - *not* task search,
   which can miss a task created seconds ago) and reuses a task with the
   marker instead of creating another.
3. **Create** the rest with ``tasks/batch/create`` (one call for the chunk).
   The POST is never blindly re-sent: it goes through a client without
   automatic retries; a 429 is re-sent after its ``Retry-After`` (refused
   requests create nothing), while a timeout, 5xx or dropped connection is
   followed by the marker lookup of step 2 and only the missing tasks are sent
   again.  Multi-status (207) answers are matched per task through
   ``objectWriteTraceId``; a 400 for the whole batch that names no input is
   bisected so one bad task cannot sink ninety-nine good ones.
4. **Results**: one :class:`PushResult` per follow-up, ``external_id`` = the
   HubSpot task id.

``sync_completed`` batch-reads the status of sent tasks; COMPLETED ones close
their follow-ups.  ``handle_webhook`` verifies HubSpot v3 signatures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from hub.sdk import (
    Clock,
    Completion,
    CrmSink,
    FatalError,
    FollowupView,
    HttpClient,
    HttpError,
    Instance,
    PushResult,
    RateBudget,
    RetriableError,
    Setting,
    TaskState,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
    parse_retry_after,
    webhooks,
)
from hub.sdk.connectors import ContactMatch, CustomerFact

from .content import find_marker, hs_timestamp, pick_owner, task_input, task_priority
from .ratelimit import DailyLimitReached, DailyQuota, header_int
from .signatures import SignatureError, verify_v1, verify_v3

log = logging.getLogger(__name__)

CONTACTS = "/crm/v3/objects/contacts"
CONTACTS_SEARCH = "/crm/v3/objects/contacts/search"
CONTACTS_BATCH_READ = "/crm/v3/objects/contacts/batch/read"
#: Create-or-update by a unique property (``idProperty: "email"``), 100 inputs per request.
CONTACTS_BATCH_UPSERT = "/crm/v3/objects/contacts/batch/upsert"
TASKS_BATCH_CREATE = "/crm/v3/objects/tasks/batch/create"
TASKS_BATCH_READ = "/crm/v3/objects/tasks/batch/read"
CONTACT_TASK_ASSOCIATIONS = "/crm/v4/associations/contacts/tasks/batch/read"
TASKS_BATCH_UPDATE = "/crm/v3/objects/tasks/batch/update"
TASKS_BATCH_ARCHIVE = "/crm/v3/objects/tasks/batch/archive"
CONTACTS_BATCH_UPDATE = "/crm/v3/objects/contacts/batch/update"
#: Permanently deletes a contact and its content (GDPR); by e-mail it also blocklists the address.
CONTACTS_GDPR_DELETE = "/crm/v3/objects/contacts/gdpr-delete"
CONTACTS_MERGE = "/crm/v3/objects/contacts/merge"
DEALS_SEARCH = "/crm/v3/objects/deals/search"
DEAL_CONTACT_ASSOCIATIONS = "/crm/v4/associations/deals/contacts/batch/read"
#: Search pages read per facts run (HubSpot's search stops at 10,000 hits; the cursor resumes).
FACT_PAGES = 100

#: Most ids or values HubSpot takes in one batch read / search IN filter.
BATCH_LIMIT = 100
#: Error categories that the same request will meet again (dead, not retried).
PERMANENT_CATEGORIES = frozenset({"VALIDATION_ERROR"})
#: Consecutive failures of unknown outcome (timeout, 5xx) before a push gives
#: the rest back to the outbox, whose backoff is kinder during an outage.
TRANSIENT_TRIES = 2
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")

_PUSH_FIELDS = {f.name for f in dataclasses.fields(PushResult)}


@dataclass(frozen=True)
class Contact:
    id: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomerUpdate:
    """What HubSpot told us about a customer, for the hub's customer record.

    The sink sees frozen views, not the database, so it cannot store these
    itself; they ride on the :class:`PushResult` as soon as the core's
    ``PushResult`` has the fields (``identities``, ``customer_value``,
    ``customer_attributes``), and are kept in ``HubSpotSink.last_customer_updates``
    meanwhile.
    """

    customer_id: int
    crm_id: str
    value: float | None
    attributes: dict[str, Any]


def existing_contact_id(error_body: Any) -> str | None:
    """The id in HubSpot's 409 "Contact already exists. Existing ID: N" answer."""
    message = error_body.get("message", "") if isinstance(error_body, dict) else str(error_body or "")
    match = _EXISTING_ID.search(message)
    return match.group(1) if match else None


def _chunks(values: list, size: int = BATCH_LIMIT) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, (last.strip() or None)


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, requests.Timeout)


def _error_message(err: dict[str, Any]) -> str:
    category = err.get("category") or err.get("errorType") or "ERROR"
    return f"HubSpot {category}: {err.get('message', 'no message')}"


class HubSpotSink(CrmSink):
    """Callback tasks in HubSpot (private app token)."""

    plugin_name = "crm_hubspot"
    description = "HubSpot CRM: a CALL task on the customer's contact per follow-up"
    default_base_url = "https://api.hubapi.com"
    batch_size = 100
    #: Private app, Free/Starter: 100 requests per rolling 10 s.  Override per
    #: instance with ``rate_limit = [190, 10]`` (Professional/Enterprise).
    rate_limit = (100, 10.0)
    settings: ClassVar[list[Setting]] = [
        Setting("token", secret=True, required=True, help="private app access token (pat-...)"),
        Setting("owners", type=list, default=[], help="owner ids for round-robin when the contact has no owner"),
        Setting("contact_properties", type=list, default=["annualrevenue", "lifecyclestage", "hubspot_owner_id"],
                help="contact properties read into the customer record"),
        Setting("value_property", default="annualrevenue", help="contact property holding the yearly value"),
        Setting("owner_property", default="hubspot_owner_id", help="contact property naming the contact's owner"),
        Setting("create_contacts", type=bool, default=True, help="create a contact when none has the e-mail"),
        Setting("daily_limit", type=int, default=250_000, minimum=1,
                help="requests per day (Free/Starter 250,000; Professional 650,000; Enterprise 1,000,000)"),
        Setting("account_timezone", default="UTC", help="the daily limit resets at midnight here"),
        Setting("search_rate_limit", type=list, default=[4, 1.0], minimum=0.001,
                help="[requests, seconds] for search calls (HubSpot's search limit is lower than the rest)"),
        Setting("client_secret", secret=True, default=None, help="app client secret: verifies webhook signatures"),
        Setting("webhook_url", default=None, help="public URL HubSpot posts to, when a proxy rewrites it"),
        Setting("legacy_signatures", type=bool, default=False, help="also accept v1 signatures (no replay guard)"),
        Setting("gdpr_delete", type=bool, default=False,
                help="a GDPR erase in the hub also GDPR-deletes the HubSpot contact (needs the crm.objects.contacts.write scope)"),
        Setting("contact_lookup", type=bool, default=False,
                help="the hub looks customers up by e-mail or phone (contact search) to link their CRM id and handles"),
        Setting("handle_properties", type=list, default=["twitterhandle:x_handle"],
                help="contact properties holding social handles, as property:identity kind"),
        Setting("merge_contacts", type=bool, default=False,
                help="merging two customers in the hub merges their HubSpot contacts too (contacts/merge)"),
        Setting("nps_property", default="", help="contact property the case's latest NPS is written to (empty: none)"),
        Setting("risk_property", default="", help="contact property the case's risk (0-100) is written to (empty: none)"),
        Setting("case_link_property", default="", help="contact property the link to the case is written to (empty: none)"),
        Setting("deal_facts", type=bool, default=False,
                help="read closed deals as customer facts: won = renewed, lost = churned (needs crm.objects.deals.read)"),
        Setting("deal_stage_property", default="dealstage", help="deal property holding the stage"),
        Setting("deal_close_property", default="closedate", help="deal property holding when it closed"),
        Setting("won_stages", type=list, default=["closedwon"], help="deal stages that mean the customer renewed"),
        Setting("lost_stages", type=list, default=["closedlost"], help="deal stages that mean the customer churned"),
    ]

    def __init__(self, instance: Instance, *, clock: Clock | None = None, session: requests.Session | None = None):
        super().__init__(instance, clock=clock, session=session)
        cfg = dict(instance.settings)
        if isinstance(cfg.get("timeout"), list):  # TOML has no tuples; requests wants (connect, read)
            cfg["timeout"] = tuple(cfg["timeout"])
        self.config = cfg
        self.owners = [str(o) for o in cfg.get("owners") or []]
        self.value_property: str = cfg.get("value_property") or "annualrevenue"
        self.owner_property: str = cfg.get("owner_property") or "hubspot_owner_id"
        self.contact_properties = [str(p) for p in cfg.get("contact_properties") or []]
        self._search_budget: RateBudget | None = None
        self.daily = DailyQuota(int(cfg.get("daily_limit") or 250_000), self.clock, cfg.get("account_timezone") or "UTC")
        self._create_client: HttpClient | None = None
        #: customer id -> what the last push learned (until the core stores it).
        self.last_customer_updates: dict[int, CustomerUpdate] = {}
        #: Task ids a webhook reported COMPLETED (until the core can act on them).
        self.completed_hints: set[str] = set()

    # -- HTTP plumbing ----------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.get('token', '')}"}

    def http_budget(self) -> RateBudget:
        """HubSpot counts in a rolling window per account: shared by every process of the hub."""
        limit = self.config.get("rate_limit") or self.rate_limit
        return self.rate_budget(int(limit[0]), float(limit[1]), rolling=True)

    @property
    def search_budget(self) -> RateBudget:
        """Search's own, lower limit (on top of the general one), shared like it."""
        if self._search_budget is None:
            search = self.config.get("search_rate_limit") or [4, 1.0]
            self._search_budget = self.rate_budget(int(search[0]), float(search[1]), "search", rolling=True)
        return self._search_budget

    def rate_limit_wait(self, response: requests.Response) -> float | None:
        """Pause the instance when HubSpot says the window (or the day) is spent."""
        self.daily.count()
        headers = response.headers
        now = self.clock.time()
        if response.status_code == 429:
            try:
                policy = (response.json() or {}).get("policyName")
            except ValueError:
                policy = None
            if policy == "DAILY":
                self.daily.exhaust()
                raise DailyLimitReached("HubSpot daily API limit reached (429 DAILY)", self.daily.seconds_to_reset())
            after = parse_retry_after(headers.get("Retry-After"), now)
            if after is None:  # HubSpot documents no Retry-After for API clients: wait out the window
                interval = header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
                after = interval / 1000 if interval else (1.0 if policy == "SECONDLY" else 10.0)
            return now + after
        if header_int(headers, "X-HubSpot-RateLimit-Daily-Remaining") == 0:
            self.daily.exhaust()
        remaining = header_int(headers, "X-HubSpot-RateLimit-Remaining")
        if remaining is not None and remaining <= 0:
            # Other private apps of the account share this window; our own
            # count cannot know them, the header does.
            interval = header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000
            return now + interval / 1000
        return None

    @property
    def create_http(self) -> HttpClient:
        """Client for task creation: same session and budget, no automatic retries.

        A batch create that timed out or got a 5xx may have created tasks;
        re-sending it blindly (what the shared client does for 5xx) would
        duplicate them.  The sink decides what to re-send after a lookup.
        """
        if self._create_client is None:
            shared = self.http
            self._create_client = HttpClient(
                shared.base_url, name=f"{self.instance.name}:create", timeout=shared.timeout, max_retries=0,
                budget=shared.budget, clock=self.clock, session=shared.session, on_response=self.rate_limit_wait,
            )
        return self._create_client

    def _search(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.search_budget.acquire()  # search's own limit, on top of the general one
        return self.http.post(path, json=body).json()

    # -- push -------------------------------------------------------------
    def push(self, followups: list[FollowupView]) -> list[PushResult]:
        try:
            self.daily.check()
            return self._push(followups)
        except DailyLimitReached as exc:
            raise RetriableError(str(exc), retry_after=exc.retry_after) from exc
        except FatalError as exc:
            if exc.status in (401, 403):
                # A wrong token or a missing scope is fixed in the config; the
                # follow-ups must still be there when it is.
                raise RetriableError(f"{exc} (check the private app token and its scopes)", exc.status,
                                     exc.body) from exc
            raise

    def _push(self, followups: list[FollowupView]) -> list[PushResult]:
        self.last_customer_updates = {}
        results: dict[int, PushResult] = {}
        contacts, failures = self.resolve_contacts(followups)
        for fid, (error, retriable) in failures.items():
            results[fid] = PushResult(fid, ok=False, error=error, retriable=retriable)
        updates: dict[int, CustomerUpdate] = {}
        for f in followups:
            if f.id in contacts and f.customer is not None:
                updates[f.id] = self._customer_update(f.customer.id, contacts[f.id])
                self.last_customer_updates[f.customer.id] = updates[f.id]
        ready = [f for f in followups if f.id in contacts]
        earlier = [f for f in ready if f.attempts > 1]
        if earlier:
            for fid, task_id in self.find_existing_tasks(earlier, contacts).items():
                results[fid] = PushResult(fid, ok=True, external_id=task_id)
        todo = {}
        for f in ready:
            if f.id not in results:
                contact = contacts[f.id]
                # The calling team's owner (from the hub's [teams]) first, then the contact's, then round-robin.
                owner = f.crm_owner or pick_owner(f, contact.properties.get(self.owner_property), self.owners)
                todo[f.idempotency_key] = (f, task_input(f, contact.id, owner))
        results.update(self._create_tasks(todo, contacts))
        self._write_contacts([(contacts[f.id].id, f) for f in ready if results[f.id].ok])
        return [self._with_update(results[f.id], updates.get(f.id)) for f in followups]

    def _customer_update(self, customer_id: int, contact: Contact) -> CustomerUpdate:
        props = contact.properties
        attrs = {name: props.get(name) for name in self.contact_properties if name in props}
        return CustomerUpdate(customer_id, contact.id, _float(props.get(self.value_property)), attrs)

    @staticmethod
    def _with_update(result: PushResult, update: CustomerUpdate | None) -> PushResult:
        """Attach the customer facts where the core's PushResult can carry them."""
        if update is None:
            return result
        extra: dict[str, Any] = {}
        if "identities" in _PUSH_FIELDS:
            extra["identities"] = (("crm_id", update.crm_id),)
        if "customer_value" in _PUSH_FIELDS and update.value is not None:
            extra["customer_value"] = update.value
        if "customer_attributes" in _PUSH_FIELDS:
            extra["customer_attributes"] = {"hubspot": dict(update.attributes)}
        return dataclasses.replace(result, **extra) if extra else result

    # -- contacts ---------------------------------------------------------
    def _contact_properties(self) -> list[str]:
        wanted = ["email", "firstname", "lastname", self.owner_property, self.value_property, *self.contact_properties]
        return list(dict.fromkeys(wanted))

    def resolve_contacts(
        self, followups: list[FollowupView]
    ) -> tuple[dict[int, Contact], dict[int, tuple[str, bool]]]:
        """follow-up id -> contact, and follow-up id -> (error, retriable) for the rest."""
        props = self._contact_properties()
        contacts: dict[int, Contact] = {}
        failures: dict[int, tuple[str, bool]] = {}
        by_crm: dict[str, list[FollowupView]] = {}
        for f in followups:
            if f.customer is not None and f.customer.crm_id:
                by_crm.setdefault(str(f.customer.crm_id).strip(), []).append(f)
        if by_crm:
            known = self.read_contacts(list(by_crm), props)
            for crm_id, group in by_crm.items():
                for f in group:
                    if crm_id in known:
                        contacts[f.id] = known[crm_id]
        by_email: dict[str, list[FollowupView]] = {}
        for f in followups:
            if f.id in contacts:
                continue
            email = (f.customer.email or "").strip().lower() if f.customer is not None else ""
            if email:
                by_email.setdefault(email, []).append(f)
            elif f.customer is not None and f.customer.crm_id:
                failures[f.id] = (f"HubSpot contact {f.customer.crm_id} not found and no e-mail to look up", False)
            else:
                failures[f.id] = ("customer has no e-mail address or HubSpot id: no contact to put the call on", False)
        found: dict[str, Contact] = {}
        if by_email and self.config.get("create_contacts", True):
            found, errors = self.upsert_contacts(list(by_email), by_email, props)
            for email, error in errors.items():
                for f in by_email[email]:
                    failures[f.id] = error
        elif by_email:
            found = self.read_contacts_by_email(list(by_email), props)
        for email, group in by_email.items():
            for f in group:
                if email in found:
                    contacts[f.id] = found[email]
                elif f.id not in failures:
                    failures[f.id] = (f"no HubSpot contact has e-mail {email} (create_contacts is off)", False)
        return contacts, failures

    def read_contacts(self, ids: list[str], props: list[str]) -> dict[str, Contact]:
        """Batch read by id; ids HubSpot does not know are simply absent."""
        out: dict[str, Contact] = {}
        for chunk in _chunks(ids):
            body = self.http.post(CONTACTS_BATCH_READ, json={
                "properties": props, "inputs": [{"id": i} for i in chunk]}).json()
            for obj in body.get("results", []):
                out[str(obj["id"])] = Contact(str(obj["id"]), dict(obj.get("properties") or {}))
        return out

    def read_contacts_by_email(self, emails: list[str], props: list[str]) -> dict[str, Contact]:
        """Lower-cased e-mail -> contact, batch read by ``idProperty: "email"`` (consistent, unlike search)."""
        out: dict[str, Contact] = {}
        for chunk in _chunks(emails):
            body = self.http.post(CONTACTS_BATCH_READ, json={
                "properties": props, "idProperty": "email", "inputs": [{"id": e} for e in chunk]}).json()
            for obj in body.get("results", []):
                email = str((obj.get("properties") or {}).get("email") or "").lower()
                if email:
                    out[email] = Contact(str(obj["id"]), dict(obj.get("properties") or {}))
        return out

    def _upsert_input(self, email: str, by_email: dict[str, list[FollowupView]]) -> dict[str, Any]:
        customer = by_email[email][0].customer
        first, last = _split_name(customer.name if customer else None)
        properties = {"email": email}
        if first:
            properties["firstname"] = first
        if last:
            properties["lastname"] = last
        # The e-mail is the trace id: a 207's errors name their input by it.
        return {"idProperty": "email", "id": email, "properties": properties, "objectWriteTraceId": email}

    def upsert_contacts(
        self, emails: list[str], by_email: dict[str, list[FollowupView]], props: list[str]
    ) -> tuple[dict[str, Contact], dict[str, tuple[str, bool]]]:
        """Create or find the contacts of ``emails`` with ``contacts/batch/upsert`` (100 per request).

        Idempotent (the e-mail is the key), so the shared client retries
        timeouts, 5xx and 429s itself.  Errors are per input (207, named by
        trace id or id); a 400 for the whole batch that names no input is
        bisected, so one bad address cannot sink ninety-nine good ones.  The
        contacts that existed already are read for ``props`` (one batch read
        per hundred); the answer of an upsert carries only what was written.
        """
        found: dict[str, Contact] = {}
        existing: dict[str, str] = {}
        errors: dict[str, tuple[str, bool]] = {}
        queue = [chunk for chunk in _chunks(emails)]
        for _ in range(2 * len(emails) + 4):  # bisection costs at most ~2n requests
            if not queue:
                break
            chunk = queue.pop(0)
            try:
                body = self.http.post(CONTACTS_BATCH_UPSERT, json={
                    "inputs": [self._upsert_input(e, by_email) for e in chunk]}).json()
            except FatalError as exc:
                if exc.status in (401, 403) or isinstance(exc, DailyLimitReached):
                    raise
                queue[:0] = self._upsert_rejected(exc, chunk, errors)
                continue
            for obj in body.get("results") or []:
                email = str(obj.get("objectWriteTraceId") or (obj.get("properties") or {}).get("email") or "").lower()
                if email not in chunk:
                    continue
                found[email] = Contact(str(obj["id"]), dict(obj.get("properties") or {}))
                if not obj.get("new"):
                    existing[email] = str(obj["id"])
            for email, error in self._attribute_inputs(body.get("errors") or [], chunk).items():
                errors.setdefault(email, error)
            for email in chunk:
                if email not in found and email not in errors:
                    errors[email] = ("HubSpot's upsert answer did not include this contact", True)
        for email in emails:
            if email not in found and email not in errors:
                errors[email] = ("HubSpot refused every smaller batch of contacts", True)
        if existing:
            known = self.read_contacts(sorted(set(existing.values())), props)
            for email, contact_id in existing.items():
                if contact_id in known:
                    found[email] = known[contact_id]
        return found, errors

    @staticmethod
    def _attribute_inputs(errors: list[Any], chunk: list[str]) -> dict[str, tuple[str, bool]]:
        """Errors naming their inputs (``context.objectWriteTraceId`` or ``context.ids``)."""
        out: dict[str, tuple[str, bool]] = {}
        for err in errors:
            if not isinstance(err, dict):
                continue
            context = err.get("context") or {}
            named = [*(context.get("objectWriteTraceId") or []), *(context.get("ids") or [])]
            for email in (str(n).lower() for n in named):
                if email in chunk:
                    out[email] = (f"creating the contact failed: {_error_message(err)}",
                                  err.get("category") not in PERMANENT_CATEGORIES)
        return out

    def _upsert_rejected(self, exc: FatalError, chunk: list[str], errors: dict[str, tuple[str, bool]]
                         ) -> list[list[str]]:
        """A 4xx for the whole upsert: nothing was written.  Returns the chunks to send again."""
        body = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body or exc)}
        named = self._attribute_inputs([body, *(body.get("errors") or [])], chunk)
        errors.update(named)
        rest = [e for e in chunk if e not in named]
        if not rest:
            return []
        if named:
            return [rest]
        if len(rest) > 1:
            half = len(rest) // 2
            return [rest[:half], rest[half:]]
        errors[rest[0]] = (f"creating the contact failed: {_error_message(body)}",
                           body.get("category") not in PERMANENT_CATEGORIES and (exc.status or 0) >= 500)
        return []

    # -- tasks ------------------------------------------------------------
    def contact_task_ids(self, contact_ids: Iterable[str]) -> set[str]:
        """Ids of every task associated with the contacts (v4 associations)."""
        task_ids: set[str] = set()
        for chunk in _chunks(sorted(set(contact_ids))):
            inputs: list[dict[str, str]] = [{"id": c} for c in chunk]
            for _page in range(50):
                if not inputs:
                    break
                body = self.http.post(CONTACT_TASK_ASSOCIATIONS, json={"inputs": inputs}).json()
                inputs = []
                for res in body.get("results", []):
                    task_ids.update(str(to["toObjectId"]) for to in res.get("to", []))
                    after = ((res.get("paging") or {}).get("next") or {}).get("after")
                    if after:
                        inputs.append({"id": str(res["from"]["id"]), "after": str(after)})
        return task_ids

    def find_existing_tasks(self, followups: list[FollowupView], contacts: dict[int, Contact]) -> dict[int, str]:
        """follow-up id -> id of a task that already carries its marker."""
        wanted = {f.idempotency_key: f for f in followups}
        task_ids = self.contact_task_ids(contacts[f.id].id for f in followups if f.id in contacts)
        found: dict[int, str] = {}
        # Oldest first, so that duplicates left by older software resolve to the first task.
        for chunk in _chunks(sorted(task_ids, key=lambda t: (len(t), t))):
            body = self.http.post(TASKS_BATCH_READ, json={
                "properties": ["hs_task_body", "hs_task_subject"], "inputs": [{"id": t} for t in chunk]}).json()
            for obj in sorted(body.get("results", []), key=lambda o: (len(str(o["id"])), str(o["id"]))):
                key = find_marker((obj.get("properties") or {}).get("hs_task_body"))
                if key in wanted and wanted[key].id not in found:
                    found[wanted[key].id] = str(obj["id"])
        return found

    def _create_tasks(self, todo: dict[str, tuple[FollowupView, dict]], contacts: dict[int, Contact]
                      ) -> dict[int, PushResult]:
        results: dict[int, PushResult] = {}
        pending = dict(todo)
        queue: list[list[str]] = [list(todo)] if todo else []
        transient_left = TRANSIENT_TRIES
        # Bisection of a rejected batch costs at most ~2n requests.
        for _ in range(2 * len(todo) + 4):
            if not queue:
                break
            keys = [k for k in queue.pop(0) if k in pending]
            if not keys:
                continue
            try:
                resp = self.create_http.request("POST", TASKS_BATCH_CREATE, retry_timeouts=False,
                                                json={"inputs": [pending[k][1] for k in keys]})
            except DailyLimitReached:
                raise
            except HttpError as exc:
                if exc.status in (401, 403):
                    raise
                if exc.status == 429:
                    # Refused before any work; the budget now holds us until Retry-After.
                    queue.insert(0, keys)
                    continue
                if isinstance(exc, RetriableError) or _timed_out(exc):
                    # Unknown outcome: HubSpot may have created some of them.
                    log.warning("%s: task batch create failed (%s); looking tasks up before re-sending",
                                self.instance.name, exc)
                    transient_left -= 1
                    try:
                        found = self.find_existing_tasks([pending[k][0] for k in keys], contacts)
                    except HttpError as lookup_exc:
                        log.warning("%s: lookup after failed create failed too: %s", self.instance.name, lookup_exc)
                        break
                    for k in keys:
                        f = pending[k][0]
                        if f.id in found:
                            results[f.id] = PushResult(f.id, ok=True, external_id=found[f.id])
                            del pending[k]
                    if transient_left <= 0:
                        break
                    queue.insert(0, keys)
                    continue
                self._rejected(exc, keys, pending, results, queue)
                continue
            self._apply_batch_answer(resp.json(), keys, pending, results)
        for f, _input in pending.values():
            results[f.id] = PushResult(f.id, ok=False, retriable=True, error=(
                "HubSpot did not confirm the task (timeout or outage); the next attempt looks it up before creating"))
        return results

    @staticmethod
    def _attribute(errors: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[str, bool]]:
        """Errors that name their input (``context.objectWriteTraceId``)."""
        out: dict[str, tuple[str, bool]] = {}
        for err in errors:
            if not isinstance(err, dict):
                continue
            for key in (err.get("context") or {}).get("objectWriteTraceId") or []:
                if key in keys:
                    out[key] = (_error_message(err), err.get("category") not in PERMANENT_CATEGORIES)
        return out

    def _rejected(self, exc: HttpError, keys: list[str], pending: dict, results: dict[int, PushResult],
                  queue: list[list[str]]) -> None:
        """A 4xx for the whole batch: nothing was created."""
        body = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body or exc)}
        named = self._attribute([body, *(body.get("errors") or [])], keys)
        for key, (error, retriable) in named.items():
            f = pending.pop(key)[0]
            results[f.id] = PushResult(f.id, ok=False, error=error, retriable=retriable)
        rest = [k for k in keys if k in pending]
        if not rest:
            return
        if named or len(rest) > 1:
            # The culprits are named (send the others again) or unknown (halve).
            if named:
                queue.insert(0, rest)
            else:
                half = len(rest) // 2
                queue[:0] = [rest[:half], rest[half:]]
            return
        f = pending.pop(rest[0])[0]
        permanent = body.get("category") in PERMANENT_CATEGORIES or (exc.status or 0) in (400, 404, 409, 422)
        results[f.id] = PushResult(f.id, ok=False, error=_error_message(body), retriable=not permanent)

    def _apply_batch_answer(self, body: dict[str, Any], keys: list[str], pending: dict,
                            results: dict[int, PushResult]) -> None:
        """201 (all created) or 207 (some failed): one outcome per input."""
        for obj in body.get("results", []):
            key = obj.get("objectWriteTraceId") or find_marker((obj.get("properties") or {}).get("hs_task_body"))
            if key in pending and key in keys:
                f = pending.pop(key)[0]
                results[f.id] = PushResult(f.id, ok=True, external_id=str(obj["id"]))
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        for key, (error, retriable) in self._attribute(errors, keys).items():
            if key in pending:
                f = pending.pop(key)[0]
                results[f.id] = PushResult(f.id, ok=False, error=error, retriable=retriable)
        unexplained = [k for k in keys if k in pending]
        if unexplained:
            # Not confirmed, not refused by name: retry; the lookup guards against a duplicate.
            message = "; ".join(_error_message(e) for e in errors) or "HubSpot's answer did not include this task"
            for key in unexplained:
                f = pending.pop(key)[0]
                results[f.id] = PushResult(f.id, ok=False, error=message, retriable=True)

    # -- completion -------------------------------------------------------
    def sync_completed(self, followups: list[FollowupView]) -> list[Completion]:
        """Batch-read the status of sent tasks; COMPLETED ones are reported."""
        return [Completion(t.followup_id, outcome=None, completed_at=t.completed_at)
                for t in self.task_states(followups) if t.completed]

    # -- two-way sync: changes made in the hub ------------------------------
    def update(self, followups: list[FollowupView]) -> list[PushResult]:
        """Re-planned or escalated: the same task gets the new ``hs_timestamp`` (and priority, owner)."""
        def props(f: FollowupView) -> dict[str, str]:
            out = {"hs_timestamp": hs_timestamp(f.due_at), "hs_task_priority": task_priority(f)}
            if f.crm_owner:
                out["hubspot_owner_id"] = f.crm_owner
            return out

        return self._guarded(lambda: self._batch_update(followups, props, contacts=True))

    def complete(self, followups: list[FollowupView]) -> list[PushResult]:
        """Contacted or resolved in the hub: ``hs_task_status = COMPLETED``."""
        return self._guarded(lambda: self._batch_update(followups, lambda f: {"hs_task_status": "COMPLETED"},
                                                        contacts=True))

    def cancel(self, followups: list[FollowupView]) -> list[PushResult]:
        """Closed without a callback: the task is archived (HubSpot keeps it restorable for 90 days)."""
        def archive() -> list[PushResult]:
            ids = [str(f.external_id) for f in followups if f.external_id]
            for chunk in _chunks(ids):
                self.http.post(TASKS_BATCH_ARCHIVE, json={"inputs": [{"id": t} for t in chunk]})  # 204, also for gone ones
            return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

        return self._guarded(archive)

    def task_states(self, followups: list[FollowupView]) -> list[TaskState]:
        """Due time, owner and status of sent tasks, as HubSpot holds them now (batch read)."""
        self.daily.check()
        by_task = {str(f.external_id): f for f in followups if f.external_id}
        out: list[TaskState] = []
        for chunk in _chunks(sorted(by_task)):
            body = self.http.post(TASKS_BATCH_READ, json={
                "properties": ["hs_timestamp", "hubspot_owner_id", "hs_task_status", "hs_task_completion_date"],
                "inputs": [{"id": t} for t in chunk]}).json()
            for obj in body.get("results", []):
                f = by_task.get(str(obj.get("id")))
                if f is None:
                    continue
                props = obj.get("properties") or {}
                done = props.get("hs_task_status") == "COMPLETED"
                when = (_parse_time(props.get("hs_task_completion_date")) or _parse_time(obj.get("updatedAt"))
                        if done else None)
                out.append(TaskState(f.id, due_at=_parse_time(props.get("hs_timestamp")),
                                     owner=props.get("hubspot_owner_id") or None, completed=done, completed_at=when))
                if done:
                    self.completed_hints.discard(str(obj["id"]))
        return out

    def _guarded(self, call) -> list[PushResult]:
        """The daily limit and a wrong token are outages here too (the change waits, never dies)."""
        try:
            self.daily.check()
            return call()
        except DailyLimitReached as exc:
            raise RetriableError(str(exc), retry_after=exc.retry_after) from exc
        except FatalError as exc:
            if exc.status in (401, 403):
                raise RetriableError(f"{exc} (check the private app token and its scopes)", exc.status,
                                     exc.body) from exc
            raise

    def _batch_update(self, followups: list[FollowupView], props, contacts: bool) -> list[PushResult]:
        """``tasks/batch/update`` (idempotent: absolute values); a task deleted in HubSpot is refused for good."""
        results: dict[int, PushResult] = {}
        by_task = {str(f.external_id): f for f in followups if f.external_id}
        for f in followups:
            if not f.external_id:
                results[f.id] = PushResult(f.id, ok=False, error="no HubSpot task to change", retriable=False)
        for chunk in _chunks(sorted(by_task)):
            body = self.http.post(TASKS_BATCH_UPDATE, json={
                "inputs": [{"id": t, "properties": props(by_task[t])} for t in chunk]}).json()
            for obj in body.get("results", []):
                f = by_task.get(str(obj.get("id")))
                if f is not None:
                    results[f.id] = PushResult(f.id, ok=True, external_id=str(obj["id"]))
            for err in body.get("errors") or []:
                missing = (err.get("context") or {}).get("ids") or []
                for t in missing:
                    if str(t) in by_task:
                        f = by_task[str(t)]
                        results[f.id] = PushResult(f.id, ok=False, retriable=err.get("category") != "OBJECT_NOT_FOUND",
                                                   error=f"{_error_message(err)} (task {t})")
        for f in followups:
            results.setdefault(f.id, PushResult(f.id, ok=False, error="HubSpot's answer did not include this task"))
        if contacts:
            self._write_contacts([(f.customer.crm_id, f) for f in followups
                                  if results[f.id].ok and f.customer is not None and f.customer.crm_id])
        return [results[f.id] for f in followups]

    def contact_facts(self, f: FollowupView) -> dict[str, str]:
        """The case's NPS, risk and link under the configured contact property names."""
        facts: dict[str, str] = {}
        nps = next((i.nps for i in f.items if i.nps is not None), None)
        if self.config.get("nps_property") and nps is not None:
            facts[self.config["nps_property"]] = str(nps)
        if self.config.get("risk_property"):
            facts[self.config["risk_property"]] = str(f.case.risk)
        if self.config.get("case_link_property") and f.case_url:
            facts[self.config["case_link_property"]] = f.case_url
        return facts

    def _write_contacts(self, pairs: list[tuple[str, FollowupView]]) -> None:
        """``contacts/batch/update`` with each contact's case facts (nothing when no property is configured).

        Best effort: a failure here must not undo a task that exists; the next
        update or completion writes the facts again.
        """
        inputs = {str(cid): self.contact_facts(f) for cid, f in pairs if cid}
        inputs = {cid: props for cid, props in inputs.items() if props}
        for chunk in _chunks(sorted(inputs)):
            try:
                self.http.post(CONTACTS_BATCH_UPDATE, json={
                    "inputs": [{"id": cid, "properties": inputs[cid]} for cid in chunk]})
            except HttpError as exc:
                if exc.status in (401, 403):
                    raise
                log.warning("%s: writing case facts to contacts failed: %s", self.instance.name, exc)

    # -- GDPR -------------------------------------------------------------
    def erases_people(self) -> bool:
        return bool(self.config.get("gdpr_delete"))

    def erase_person(self, identities: list[tuple[str, str]]) -> None:
        """``POST /crm/v3/objects/contacts/gdpr-delete`` for the person the hub erased.

        By the contact id when the hub learned it (exact), else by each e-mail
        address (``idProperty=email``; HubSpot then also blocklists an address
        it has no contact for).  HubSpot answers 204; a contact id it does not
        know (404) was deleted before, which is what we want.
        """
        crm_ids = [v for k, v in identities if k == "crm_id" and _is_object_id(v)]
        bodies = [{"objectId": v} for v in crm_ids] or [
            {"objectId": v, "idProperty": "email"} for k, v in identities if k == "email" and v]
        try:
            self.daily.check()
            for body in bodies:
                try:
                    self.http.post(CONTACTS_GDPR_DELETE, json=body)
                except FatalError as exc:
                    if exc.status != 404:
                        raise
        except DailyLimitReached as exc:
            raise RetriableError(str(exc), retry_after=exc.retry_after) from exc
        except FatalError as exc:
            if exc.status in (401, 403):  # fixed in the config; the erasure must still happen then
                raise RetriableError(f"{exc} (check the private app token and its scopes)", exc.status) from exc
            raise

    # -- identity: contact look-up and merge ---------------------------------
    def looks_up_contacts(self) -> bool:
        return bool(self.config.get("contact_lookup"))

    def _handle_properties(self) -> list[tuple[str, str]]:
        pairs = [str(p).split(":", 1) for p in self.config.get("handle_properties") or []]
        return [(p[0], p[1]) for p in pairs if len(p) == 2 and p[0] and p[1]]

    def lookup_contact(self, *, email: str | None = None, phone: str | None = None) -> ContactMatch | None:
        """One contact search: e-mail EQ, or phone / mobile phone EQ (filter groups are ORed); the oldest wins."""
        groups = [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}] if email else []
        if phone:
            groups += [{"filters": [{"propertyName": prop, "operator": "EQ", "value": phone}]}
                       for prop in ("phone", "mobilephone")]
        if not groups:
            return None
        handles = self._handle_properties()
        props = ["email", "phone", "mobilephone", "firstname", "lastname", *(p for p, _ in handles)]
        body = self._search(CONTACTS_SEARCH, {
            "filterGroups": groups, "properties": props, "limit": 1,
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]})
        results = body.get("results") or []
        if not results:
            return None
        obj = results[0]
        p = obj.get("properties") or {}
        name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x) or None
        return ContactMatch(id=str(obj["id"]), name=name,
                            handles=tuple((kind, str(p[prop])) for prop, kind in handles if p.get(prop)))

    def merges_contacts(self) -> bool:
        return bool(self.config.get("merge_contacts"))

    # -- customer facts: closed deals ----------------------------------------------
    def reads_customer_facts(self) -> bool:
        return bool(self.config.get("deal_facts"))

    def customer_facts(self, cursor: str | None) -> tuple[list[CustomerFact], str | None]:
        """Deals in a won or lost stage modified since ``cursor`` (epoch ms of hs_lastmodifieddate).

        GTE, not GT: deals modified in the same millisecond as the last one read are
        not lost; the one read again is recorded once by the core (its ``record``).
        """
        stage_prop = self.config.get("deal_stage_property") or "dealstage"
        close_prop = self.config.get("deal_close_property") or "closedate"
        won = {str(x) for x in self.config.get("won_stages") or []}
        lost = {str(x) for x in self.config.get("lost_stages") or []}
        if not won | lost:
            return [], cursor
        request: dict[str, Any] = {
            "filterGroups": [{"filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": cursor or "0"},
                {"propertyName": stage_prop, "operator": "IN", "values": sorted(won | lost)}]}],
            "properties": [stage_prop, close_prop, "hs_lastmodifieddate"],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], "limit": BATCH_LIMIT}
        deals: list[dict[str, Any]] = []
        for _page in range(FACT_PAGES):
            body = self._search(DEALS_SEARCH, request)
            deals.extend(body.get("results") or [])
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
            request = {**request, "after": after}
        contacts = self.deal_contacts([str(d["id"]) for d in deals])
        facts, newest = [], int(cursor) if cursor and cursor.isdigit() else None
        for deal in deals:
            props = deal.get("properties") or {}
            stage, modified = props.get(stage_prop), _parse_time(props.get("hs_lastmodifieddate"))
            if modified is not None:
                ms = int(modified.timestamp() * 1000)
                newest = ms if newest is None else max(newest, ms)
            closed = _parse_time(props.get(close_prop))
            # An expected close date in the future is no fact yet: the stage change is.
            when = min(x for x in (closed, modified) if x is not None) if closed or modified else self.clock.utcnow()
            is_won = stage in won
            facts.append(CustomerFact(record=f"deal:{deal['id']}:{stage}", moment="deal_won" if is_won else "deal_lost",
                                      occurred_at=when, contact_ids=tuple(contacts.get(str(deal["id"]), ())),
                                      kind="renewed" if is_won else "churned"))
        return facts, (str(newest) if newest is not None else cursor)

    def deal_contacts(self, deal_ids: list[str]) -> dict[str, list[str]]:
        """Deal id -> its contacts' ids (v4 associations, a hundred deals per request)."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(deal_ids):
            body = self.http.post(DEAL_CONTACT_ASSOCIATIONS, json={"inputs": [{"id": i} for i in chunk]}).json()
            for row in body.get("results") or []:
                out[str(row["from"]["id"])] = [str(t["toObjectId"]) for t in row.get("to") or []]
        return out

    def merge_contacts(self, primary_id: str, other_id: str) -> None:
        """``POST /crm/v3/objects/contacts/merge``: ``other_id`` becomes part of ``primary_id``."""
        self.daily.check()
        self.http.post(CONTACTS_MERGE, json={"primaryObjectId": str(primary_id), "objectIdToMerge": str(other_id)})

    # -- webhooks ---------------------------------------------------------
    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Verify a HubSpot webhook delivery and note completed tasks.

        Sink webhooks cannot hand raw events to the core, and completing a
        follow-up is the core's job (``complete_followups``); so the task ids
        are returned (and kept in ``completed_hints``) for the core to act on
        once ``WebhookResult`` can carry them.  The scheduled completion sync
        closes the same follow-ups meanwhile.
        """
        secret = self.config.get("client_secret")
        if not secret:
            raise WebhookRejected(404, f"instance {self.instance.name!r} has no client_secret for webhooks")
        headers = request.headers
        try:
            if headers.get("X-HubSpot-Signature-v3") is not None or not self.config.get("legacy_signatures"):
                verify_v3(secret, request.method, self.config.get("webhook_url") or request.url, request.body,
                          headers.get("X-HubSpot-Request-Timestamp"), headers.get("X-HubSpot-Signature-v3"),
                          now_ms=self.clock.time() * 1000)
            elif (headers.get("X-HubSpot-Signature-Version") or "v1").lower() == "v1":
                verify_v1(secret, request.body, headers.get("X-HubSpot-Signature"))
            else:
                raise SignatureError("only v3 (and, when enabled, v1) signatures are accepted")
        except SignatureError as exc:
            raise WebhookRejected(401, str(exc)) from exc
        events = webhooks.json_body(request.body or b"[]")  # 400 when not JSON or absurdly nested
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list):
            raise WebhookRejected(400, "expected a JSON array of events")
        completed = sorted({
            str(e["objectId"]) for e in events
            if isinstance(e, dict) and _is_object_id(e.get("objectId")) and e.get("propertyName") == "hs_task_status"
            and e.get("propertyValue") == "COMPLETED"
        })
        self.completed_hints.update(completed)
        result = WebhookResult(status=200, body={"ok": True, "events": len(events), "completed_tasks": completed})
        if hasattr(result, "completed_external_ids"):
            result.completed_external_ids = completed
        return result


def _is_object_id(value: Any) -> bool:
    """A HubSpot object id: a positive integer (or its digits), at most 19 digits (what task ids are)."""
    if isinstance(value, bool):
        return False
    text = str(value) if isinstance(value, int | str) else ""
    return text.isascii() and text.isdigit() and len(text) <= 19
