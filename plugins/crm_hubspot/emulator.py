"""A local HubSpot CRM (v3 objects, v4 associations) for the sandbox, the demo and tests.

Enough of HubSpot to run the sink's real code against: contacts (search,
create, read, batch read, batch upsert by e-mail), tasks (create, batch create, batch read, search,
update), contact->task associations and owners, with HubSpot's answer and
error shapes (copied from the captured payloads in ``tests/fixtures/hubspot``),
its rate-limit headers, a rolling 10-second window and a search limit that
answer 429 when exceeded, and search that may lag behind writes, as HubSpot's
does.

Tests and demo drive it through ``/_control/...`` (or the :class:`HubSpotState`
object directly): complete a task, make the next N requests fail, answer 429
or time out (the work is done first, then the answer is held back - the case
that makes exactly-once hard), seed contacts, read the request log.

``POST /crm/v3/objects/contacts/batch/upsert`` follows HubSpot's reference
(https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts
and the contacts guide's "upsert" section): inputs of ``{"idProperty",
"id", "properties", "objectWriteTraceId"}``, at most 100; ``email`` as the
unique id property (matched case-insensitively); each result is the contact
with the properties written plus the defaults and ``"new": true|false``;
200 when every input succeeded, 207 with ``errors`` (``context.ids`` and
``context.objectWriteTraceId`` naming the input) when some did not; a batch
that is malformed as a whole (duplicate ids, a property that is not unique,
too many inputs) is a 400 and writes nothing.

Time comes from a :class:`hub.sdk.http.Clock`; tests hand the same ``FakeClock``
to the emulator and to the hub, so window arithmetic on both sides agrees
without anyone sleeping.
"""

from __future__ import annotations

import copy
import datetime as dt
import fnmatch
import itertools
import json
import math
import random
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import flask
import requests

from hub.sdk import Clock, Emulator

WINDOW_SECONDS = 10.0
DEMO_TOKEN = "pat-demo-00000000-0000-0000-0000-000000000000"
DEMO_OWNERS = ("41488296", "64492917", "77405866")
TASK_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
TASK_PRIORITIES = ("NONE", "LOW", "MEDIUM", "HIGH")
TASK_TYPES = ("EMAIL", "CALL", "TODO")
CONTACT_DEFAULTS = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
TASK_DEFAULTS = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
DEAL_DEFAULTS = ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
                 "hs_object_id", "pipeline")
OPERATORS = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
             "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_ts(value: Any) -> float | None:
    text = str(value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return int(text) / 1000
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def error_body(category: str, message: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's error shape (CONTRACTS.md §2.6; fixtures error_401/404/409)."""
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category, **extra}


def rate_limit_body(policy: str, portal_id: int) -> dict[str, Any]:
    """The 429 body, shaped like fixture ``error_429_secondly_limit.json``."""
    what = {"SECONDLY": "secondly", "TEN_SECONDLY_ROLLING": "ten_secondly_rolling", "DAILY": "daily"}[policy]
    return {"status": "error", "message": f"You have reached your {what} limit.", "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()), "groupName": f"publicapi:private-app-{what}:{portal_id}",
            "policyName": policy, "requestId": uuid.uuid4().hex}


def _validation(name: str, error: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": error, "name": name}


@dataclass
class Fault:
    """An injected misbehaviour for the next ``count`` matching requests.

    kind ``error``: answer ``status`` (default 500) without doing the work;
    ``rate_limit``: answer 429 with ``Retry-After: retry_after``;
    ``timeout``: do the work, then hold the answer back ``delay`` seconds
    (real time: the client's socket timeout is what must fire).
    ``path``: only requests whose path contains it (e.g. ``batch/create``).
    """

    kind: str
    count: int = 1
    status: int = 500
    delay: float = 1.5
    retry_after: float | None = 10.0
    path: str | None = None
    body: dict[str, Any] | None = None
    policy: str = "TEN_SECONDLY_ROLLING"


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    at: float
    inputs: int = 0
    retry_after: float | None = None


@dataclass
class _Record:
    obj: dict[str, Any]
    indexed_at: float  # when search starts to see it
    extra: dict[str, Any] = field(default_factory=dict)


class HubSpotState:
    """The emulated portal: objects, associations, limits, faults, request log."""

    def __init__(self, *, clock: Clock | None = None, token: str | None = None, requests_per_10s: int = 100,
                 search_per_second: int = 5, daily_limit: int = 250_000, search_lag_seconds: float = 0.0,
                 owners: tuple[str, ...] | list[str] = (), portal_id: int = 62515, max_batch: int = 100,
                 other_app_load: int = 0):
        self.clock = clock or Clock()
        self.token = token
        self.requests_per_10s = requests_per_10s
        self.search_per_second = search_per_second
        self.daily_limit = daily_limit
        self.search_lag_seconds = search_lag_seconds
        self.owners = [str(o) for o in owners]
        self.portal_id = portal_id
        self.max_batch = max_batch
        #: Requests another private app of the account makes after each of ours
        #: (the limit is per account): they use up the window behind our back.
        self.other_app_load = other_app_load
        self.lock = threading.RLock()
        self.reset()

    # -- data ---------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.contacts: dict[str, _Record] = {}
            #: (contact count when built, lower-cased e-mail -> contact id); see _contact_by_email.
            self._email_index: tuple[int, dict[str, str]] | None = None
            self.tasks: dict[str, _Record] = {}
            self.archived: dict[str, _Record] = {}
            self.task_contacts: dict[str, list[str]] = {}
            self.faults: deque[Fault] = deque()
            self.log: list[LoggedRequest] = []
            self._window: deque[float] = deque()
            self._search_window: deque[float] = deque()
            self._daily_used = 0
            self._contact_ids = itertools.count(51_000_000_001)
            #: GDPR deletions received: {"objectId", "idProperty", "contact_id" (None: blocklisted only)}.
            self.gdpr_deleted: list[dict[str, Any]] = []
            #: E-mail addresses a GDPR delete blocklisted (no contact may be created with them).
            self.blocklist: set[str] = set()
            #: Contact merges received: {"primary", "merged"} (the merged contact is gone, its tasks moved).
            self.merged: list[dict[str, str]] = []
            self._task_ids = itertools.count(88_000_000_001)
            #: Deals (lifecycle facts: closed won / lost) and their contacts.
            self.deals: dict[str, _Record] = {}
            self.deal_contacts: dict[str, list[str]] = {}
            self._deal_ids = itertools.count(19_000_000_001)

    def _next_id(self, counter, table: dict) -> str:
        while True:
            candidate = str(next(counter))
            if candidate not in table:
                return candidate

    def add_contact(self, email: str | None = None, *, properties: dict[str, Any] | None = None,
                    contact_id: str | None = None, searchable: bool = True) -> dict[str, Any]:
        """Seed a contact.  ``searchable=False``: created "just now", search does not see it yet."""
        with self.lock:
            now = self.clock.time()
            cid = str(contact_id) if contact_id else self._next_id(self._contact_ids, self.contacts)
            props = {"email": email, **{k: (None if v is None else str(v)) for k, v in (properties or {}).items()}}
            props.update({"hs_object_id": cid, "createdate": _iso(now), "lastmodifieddate": _iso(now)})
            obj = {"id": cid, "properties": props, "createdAt": _iso(now), "updatedAt": _iso(now), "archived": False}
            lag = 0.0 if searchable else max(self.search_lag_seconds, 3600.0)
            fresh = self._email_index is not None and self._email_index[0] == len(self.contacts)
            self.contacts[cid] = _Record(obj, indexed_at=now + lag)
            if fresh:  # keep the index in step (rebuilding it per new contact would be quadratic)
                self._email_index[1].setdefault(str(email or "").lower(), cid)
                self._email_index = (len(self.contacts), self._email_index[1])
            return copy.deepcopy(obj)

    def add_deal(self, properties: dict[str, Any], contact_ids: list[str] | tuple[str, ...] = (),
                 deal_id: str | None = None) -> dict[str, Any]:
        """Seed a deal associated with ``contact_ids``; modified "now" (the clock's time)."""
        with self.lock:
            now = self.clock.time()
            did = str(deal_id) if deal_id else self._next_id(self._deal_ids, self.deals)
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.update({"hs_object_id": did, "createdate": _iso(now), "hs_lastmodifieddate": _iso(now)})
            obj = {"id": did, "properties": props, "createdAt": _iso(now), "updatedAt": _iso(now), "archived": False}
            self.deals[did] = _Record(obj, indexed_at=now + self.search_lag_seconds)
            self.deal_contacts[did] = [str(c) for c in contact_ids]
            return copy.deepcopy(obj)

    def update_deal(self, deal_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        """Change a deal's properties (e.g. ``dealstage`` to ``closedwon``); modified now."""
        with self.lock:
            rec = self.deals[str(deal_id)]
            now = _iso(self.clock.time())
            rec.obj["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
            rec.obj["properties"]["hs_lastmodifieddate"] = now
            rec.obj["updatedAt"] = now
            return copy.deepcopy(rec.obj)

    def load(self, kind: str, obj: dict[str, Any]) -> None:
        """Store a captured object (fixture) as is; ``objectType`` (a Pipedream addition) is dropped."""
        obj = {k: v for k, v in copy.deepcopy(obj).items() if k != "objectType"}
        with self.lock:
            (self.contacts if kind == "contacts" else self.tasks)[str(obj["id"])] = _Record(obj, 0.0)

    def find_contact_by_email(self, email: str) -> dict[str, Any] | None:
        rec = self._contact_by_email(email)
        return copy.deepcopy(rec.obj) if rec is not None else None

    def _contact_by_email(self, email: str) -> _Record | None:
        """The contact with ``email`` (case-insensitive), through an index: a batch upsert of
        100 addresses in a portal of 10,000 contacts must not scan it 100 times."""
        wanted = (email or "").lower()
        with self.lock:
            index = self._email_index
            if index is None or index[0] != len(self.contacts):  # contacts added or removed behind our back
                index = self._email_index = (len(self.contacts), self._build_email_index())
            rec = self.contacts.get(index[1].get(wanted, ""))
            if rec is not None and str(rec.obj["properties"].get("email") or "").lower() == wanted:
                return rec
            if rec is not None:  # an e-mail changed in place: rebuild once and ask again
                self._email_index = None
                return self._contact_by_email(email)
        return None

    def _build_email_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for cid, rec in self.contacts.items():
            index.setdefault(str(rec.obj["properties"].get("email") or "").lower(), cid)  # the oldest wins
        return index

    def forget_email_index(self) -> None:
        """Call after changing a contact's ``email`` property in place."""
        with self.lock:
            self._email_index = None

    def task(self, task_id: str) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(self.tasks[str(task_id)].obj)
            obj["associations"] = {"contacts": list(self.task_contacts.get(str(task_id), []))}
            return obj

    def all_tasks(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.task(t) for t in self.tasks]

    def complete_task(self, task_id: str, at: float | None = None) -> dict[str, Any]:
        with self.lock:
            rec = self.tasks[str(task_id)]
            when = _iso(self.clock.time() if at is None else at)
            rec.obj["properties"].update({"hs_task_status": "COMPLETED", "hs_task_completion_date": when,
                                          "hs_lastmodifieddate": when})
            rec.obj["updatedAt"] = when
            return copy.deepcopy(rec.obj)

    def update_task(self, task_id: str, properties: dict[str, Any]) -> list[dict[str, Any]]:
        """Validate and apply a property update (PATCH or batch update); returns the problems, if any."""
        props = {k: (None if v is None else str(v)) for k, v in (properties or {}).items()}
        problems = []
        if "hs_timestamp" in props and _parse_ts(props["hs_timestamp"]) is None:
            problems.append(_validation("hs_timestamp", "INVALID_DATE", "hs_timestamp must be ISO-8601 or epoch ms"))
        for name, allowed in (("hs_task_status", TASK_STATUSES), ("hs_task_priority", TASK_PRIORITIES),
                              ("hs_task_type", TASK_TYPES)):
            if props.get(name) is not None and props[name] not in allowed:
                problems.append(_validation(name, "INVALID_OPTION",
                                            f"{props[name]!r} was not one of the allowed options: {list(allowed)}"))
        owner = props.get("hubspot_owner_id")
        if owner and self.owners and owner not in self.owners:
            problems.append(_validation("hubspot_owner_id", "INVALID_OWNER_ID", f"{owner} is not a valid owner id"))
        if problems:
            return problems
        with self.lock:
            if props.get("hs_task_status") == "COMPLETED" and \
                    self.tasks[task_id].obj["properties"].get("hs_task_status") != "COMPLETED":
                self.complete_task(task_id)
            rec = self.tasks[task_id]
            now = _iso(self.clock.time())
            rec.obj["properties"].update({k: v for k, v in props.items()
                                          if k != "hs_task_status" or v != "COMPLETED"})
            rec.obj["properties"]["hs_lastmodifieddate"] = now
            rec.obj["updatedAt"] = now
        return []

    def archive_task(self, task_id: str) -> bool:
        """Archive (HubSpot's delete): gone from reads and associations, kept in ``archived``."""
        with self.lock:
            rec = self.tasks.pop(str(task_id), None)
            if rec is None:
                return False
            rec.obj["archived"] = True
            self.archived[str(task_id)] = rec
            self.task_contacts.pop(str(task_id), None)
            return True

    def reschedule_task(self, task_id: str, when: dt.datetime) -> None:
        """An agent moves the task in HubSpot (tests: a change made in the CRM)."""
        self.update_task(str(task_id), {"hs_timestamp": when.astimezone(dt.UTC).isoformat(timespec="milliseconds")
                                        .replace("+00:00", "Z")})

    def reassign_task(self, task_id: str, owner: str) -> None:
        self.update_task(str(task_id), {"hubspot_owner_id": owner})

    def inject(self, kind: str, count: int = 1, **kwargs: Any) -> Fault:
        if kind not in ("error", "rate_limit", "timeout"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(kind=kind, count=count, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests_to(self, path_part: str, method: str = "POST", status: int | None = None) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.log if path_part in r.path and r.method == method
                    and (status is None or r.status == status)]

    def max_in_window(self, window: float = WINDOW_SECONDS) -> int:
        """Most admitted API requests in any rolling window (the measured load)."""
        with self.lock:
            times = sorted(r.at for r in self.log if r.status != 429 and r.status != 401)
        best, start = 0, 0
        for end, t in enumerate(times):
            while times[start] <= t - window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- limits ---------------------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path is None or fault.path in path:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def admit(self, is_search: bool) -> tuple[str, float] | None:
        """Count a request; return (policy, retry_after) when a limit refuses it."""
        with self.lock:
            now = self.clock.time()
            if self._daily_used >= self.daily_limit:
                midnight = dt.datetime.combine(dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1),
                                               dt.time(), dt.UTC)
                return "DAILY", midnight.timestamp() - now
            for window, span in ((self._window, WINDOW_SECONDS), (self._search_window, 1.0)):
                while window and window[0] <= now - span:
                    window.popleft()
            if len(self._window) >= self.requests_per_10s:
                return "TEN_SECONDLY_ROLLING", self._window[0] + WINDOW_SECONDS - now
            if is_search and len(self._search_window) >= self.search_per_second:
                return "SECONDLY", self._search_window[0] + 1.0 - now
            self._window.append(now)
            if is_search:
                self._search_window.append(now)
            self._daily_used += 1
            return None

    def remaining(self) -> int:
        with self.lock:
            now = self.clock.time()
            return max(0, self.requests_per_10s - sum(1 for t in self._window if t > now - WINDOW_SECONDS))

    # -- object helpers -------------------------------------------------------
    def _view(self, rec: _Record, wanted: list[str] | None, defaults: tuple[str, ...]) -> dict[str, Any]:
        obj = copy.deepcopy(rec.obj)
        if wanted is not None:
            names = list(dict.fromkeys([*defaults, *wanted]))
            obj["properties"] = {n: rec.obj["properties"].get(n) for n in names}
        return obj

    def create_task(self, properties: dict[str, Any], associations: list[dict[str, Any]],
                    trace_id: str | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Validate and store one task; returns (object, validation problems)."""
        props = {k: (None if v is None else str(v)) for k, v in (properties or {}).items()}
        problems = []
        if _parse_ts(props.get("hs_timestamp")) is None:
            problems.append(_validation("hs_timestamp", "REQUIRED", "hs_timestamp is required (ISO-8601 or epoch ms)"))
        for name, allowed in (("hs_task_status", TASK_STATUSES), ("hs_task_priority", TASK_PRIORITIES),
                              ("hs_task_type", TASK_TYPES)):
            if props.get(name) is not None and props[name] not in allowed:
                problems.append(_validation(name, "INVALID_OPTION",
                                            f"{props[name]!r} was not one of the allowed options: {list(allowed)}"))
        owner = props.get("hubspot_owner_id")
        if owner and self.owners and owner not in self.owners:
            problems.append(_validation("hubspot_owner_id", "INVALID_OWNER_ID", f"{owner} is not a valid owner id"))
        contacts = []
        for assoc in associations or []:
            target = str((assoc.get("to") or {}).get("id", ""))
            types = assoc.get("types") or []
            if not any(t.get("associationTypeId") == 204 and t.get("associationCategory") == "HUBSPOT_DEFINED"
                       for t in types):
                problems.append(_validation("associations", "INVALID_ASSOCIATION_TYPE",
                                            "only task->contact (HUBSPOT_DEFINED 204) is emulated"))
            elif target not in self.contacts:
                problems.append(_validation("associations", "OBJECT_NOT_FOUND", f"contact {target} does not exist"))
            else:
                contacts.append(target)
        if problems:
            return None, problems
        with self.lock:
            now = self.clock.time()
            tid = self._next_id(self._task_ids, self.tasks)
            props.setdefault("hs_task_status", "NOT_STARTED")
            props.update({"hs_object_id": tid, "hs_createdate": _iso(now), "hs_lastmodifieddate": _iso(now)})
            obj = {"id": tid, "properties": props, "createdAt": _iso(now), "updatedAt": _iso(now), "archived": False}
            self.tasks[tid] = _Record(obj, indexed_at=now + self.search_lag_seconds)
            self.task_contacts[tid] = contacts
            out = copy.deepcopy(obj)
        if trace_id:
            out["objectWriteTraceId"] = trace_id
        return out, []

    def upsert_contact(self, email: str, properties: dict[str, Any]
                       ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Create or update the contact with ``email`` (batch upsert's one input); (object + ``new``, problems)."""
        props = {k: (None if v is None else str(v)) for k, v in (properties or {}).items() if k != "email"}
        problems = []
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email or ""):
            problems.append(_validation("email", "INVALID_EMAIL", f"Email address {email} is invalid"))
        elif email in self.blocklist:
            problems.append(_validation("email", "INVALID_EMAIL", "Email address was GDPR-deleted and is blocklisted"))
        owner = props.get("hubspot_owner_id")
        if owner and self.owners and owner not in self.owners:
            problems.append(_validation("hubspot_owner_id", "INVALID_OWNER_ID", f"{owner} is not a valid owner id"))
        if problems:
            return None, problems
        with self.lock:
            found = self.find_contact_by_email(email)
            if found is None:
                obj = self.add_contact(email, properties=props)
                self.contacts[obj["id"]].indexed_at = self.clock.time() + self.search_lag_seconds
                written, new = obj, True
            else:
                rec = self.contacts[found["id"]]
                now = _iso(self.clock.time())
                rec.obj["properties"].update({**props, "lastmodifieddate": now})
                rec.obj["updatedAt"] = now
                written, new = rec.obj, False
            # The answer carries what was written and the defaults, not every property of the contact.
            names = {*CONTACT_DEFAULTS, *props}
            view = copy.deepcopy({**written, "properties": {k: v for k, v in written["properties"].items()
                                                            if k in names}})
        return {**view, "new": new}, []

    def contact_tasks(self, contact_id: str) -> list[str]:
        with self.lock:
            return [t for t, cs in self.task_contacts.items() if contact_id in cs]

    # -- demo -----------------------------------------------------------------
    @classmethod
    def demo(cls, clock: Clock | None = None) -> HubSpotState:
        """A portal with the demo's seeded customers, most of them known, two thirds owned."""
        from hub.sdk.demo_data import generate_people

        state = cls(clock=clock, owners=DEMO_OWNERS)
        # The demo's first feed draws its crowd with Random(7); seed most of those people.
        for i, person in enumerate(generate_people(random.Random(7), 150)[:110]):
            first, _, last = person.name.partition(" ")
            props = {"firstname": first, "lastname": last, "annualrevenue": person.value,
                     "lifecyclestage": "customer"}
            if i % 3:
                props["hubspot_owner_id"] = DEMO_OWNERS[i % len(DEMO_OWNERS)]
            state.add_contact(person.email, properties=props)
        return state

    def tick(self, fraction: float = 0.25, min_age: float = 20.0, rng: random.Random | None = None) -> list[str]:
        """Demo: agents complete a share of the open tasks older than ``min_age`` seconds."""
        rng = rng or random.Random()
        now = self.clock.time()
        with self.lock:
            candidates = [tid for tid, rec in self.tasks.items()
                          if rec.obj["properties"].get("hs_task_status") != "COMPLETED"
                          and (_parse_ts(rec.obj["createdAt"]) or now) <= now - min_age]
        done = [t for t in candidates if rng.random() < fraction]
        for tid in done:
            self.complete_task(tid)
        return done


# -- search -------------------------------------------------------------------
class SearchError(ValueError):
    pass


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^\w@.+-]+", text.lower()) if t]


def _matches(value: Any, flt: dict[str, Any]) -> bool:
    op = flt.get("operator", "EQ")
    if op not in OPERATORS:
        raise SearchError(f"unknown operator {op!r}")
    if op == "HAS_PROPERTY":
        return value not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return value in (None, "")
    values = value if isinstance(value, list) else ([] if value in (None, "") else [value])
    texts = [str(v).lower() for v in values]
    if op in ("IN", "NOT_IN"):
        wanted = [str(v).lower() for v in flt.get("values") or []]
        hit = any(t in wanted for t in texts)
        return hit if op == "IN" else not hit
    target = str(flt.get("value", "")).lower()
    if op == "EQ":
        return target in texts
    if op == "NEQ":
        return target not in texts
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        hit = any(fnmatch.fnmatchcase(tok, target) for t in texts for tok in _tokens(t))
        return hit if op == "CONTAINS_TOKEN" else not hit

    def num(x: Any) -> Any:
        try:
            return float(x)
        except (TypeError, ValueError):
            ts = _parse_ts(x)
            return ts * 1000 if ts is not None else str(x)

    if not texts:
        return False
    left = num(values[0])
    try:
        if op == "BETWEEN":
            return num(flt.get("value")) <= left <= num(flt.get("highValue"))
        right = num(flt.get("value"))
        return {"LT": left < right, "LTE": left <= right, "GT": left > right, "GTE": left >= right}[op]
    except TypeError:
        return False


def search(state: HubSpotState, kind: str, request: dict[str, Any]) -> dict[str, Any]:
    groups = request.get("filterGroups") or []
    if len(groups) > 5:
        raise SearchError("at most 5 filterGroups are allowed")
    if sum(len(g.get("filters") or []) for g in groups) > 25 or any(len(g.get("filters") or []) > 10 for g in groups):
        raise SearchError("at most 10 filters per group and 25 in total are allowed")
    limit = int(request.get("limit", 10))
    if not 0 < limit <= 200:
        raise SearchError("limit must be between 1 and 200")
    offset = int(request.get("after") or 0)
    table = {"contacts": state.contacts, "deals": state.deals}.get(kind, state.tasks)
    defaults = {"contacts": CONTACT_DEFAULTS, "deals": DEAL_DEFAULTS}.get(kind, TASK_DEFAULTS)
    now = state.clock.time()
    with state.lock:
        visible = [(tid, rec) for tid, rec in table.items() if rec.indexed_at <= now and not rec.obj.get("archived")]

        def value_of(tid: str, rec: _Record, name: str) -> Any:
            if name == "associations.contact" and kind == "tasks":
                return state.task_contacts.get(tid, [])
            if name == "hs_object_id":
                return tid
            return rec.obj["properties"].get(name)

        hits = [(tid, rec) for tid, rec in visible
                if not groups or any(all(_matches(value_of(tid, rec, f.get("propertyName", "")), f)
                                         for f in g.get("filters") or []) for g in groups)]
        hits.sort(key=lambda pair: (len(pair[0]), pair[0]))
        wanted = request.get("properties")
        page = [state._view(rec, list(wanted) if wanted else [], defaults) for _, rec in hits[offset : offset + limit]]
    body: dict[str, Any] = {"total": len(hits), "results": page}
    if offset + limit < len(hits):
        body["paging"] = {"next": {"after": str(offset + limit), "link": f"?after={offset + limit}"}}
    return body


# -- the blueprint ---------------------------------------------------------------
def association_targets(ids: list[str], *, type_id: int) -> list[dict[str, Any]]:
    """The ``to`` list of a v4 association answer (``typeId`` 203 contact->task, 3 deal->contact)."""
    return [{"toObjectId": int(i), "associationTypes": [
        {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]} for i in ids]


def associations_read(state: HubSpotState, request: dict[str, Any], plural: str, known: Any,
                      targets_of: Any, *, type_id: int) -> tuple[dict[str, Any], int]:
    """``POST /crm/v4/associations/<from>/<to>/batch/read``: 200, or 207 naming the unknown ids."""
    results, missing = [], []
    for item in request.get("inputs") or []:
        oid = str(item.get("id", ""))
        if oid not in known:
            missing.append(oid)
            continue
        results.append({"from": {"id": oid}, "to": association_targets(targets_of(oid), type_id=type_id)})
    body: dict[str, Any] = {"status": "COMPLETE", "results": results,
                            "startedAt": _iso(state.clock.time()), "completedAt": _iso(state.clock.time())}
    if not missing:
        return body, 200
    body.update(numErrors=1, errors=[{"status": "error", "category": "OBJECT_NOT_FOUND",
                                      "message": f"No {plural} found with the given ids",
                                      "context": {"fromObjectId": missing}}])
    return body, 207


def make_blueprint(state: HubSpotState | None = None, name: str = "hubspot_emulator") -> flask.Blueprint:
    """The emulator's routes over ``state`` (a demo portal when None)."""
    state = state or HubSpotState.demo()
    bp = flask.Blueprint(name, __name__)
    bp.hubspot_state = state  # type: ignore[attr-defined]

    def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
        resp = flask.Response(json.dumps(body), status=status, mimetype="application/json")
        for key, value in (headers or {}).items():
            resp.headers[key] = value
        return resp

    def batch_reply(results: list, errors: list, ok: int = 200, **times: str) -> flask.Response:
        """A batch endpoint's answer: ``ok``, or 207 with the errors per input."""
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, **times,
                                "completedAt": _iso(state.clock.time())}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
            return reply(body, 207)
        return reply(body, ok)

    def payload() -> dict[str, Any]:
        data = flask.request.get_json(silent=True)
        if not isinstance(data, dict):
            flask.abort(reply(error_body("VALIDATION_ERROR", "Invalid input JSON on line 1"), 400))
        return data

    def is_control() -> bool:
        return "/_control/" in flask.request.path

    @bp.before_request
    def gate():
        if is_control():
            return None
        flask.g.hubspot_at = state.clock.time()
        auth = flask.request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token or (state.token is not None and token != state.token):
            return reply(error_body(
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports both API Key and OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"),
                401)
        fault = state._take_fault(flask.request.path)
        if fault is not None:
            if fault.kind == "error":
                body = fault.body or error_body("INTERNAL_ERROR" if fault.status >= 500 else "VALIDATION_ERROR",
                                                "internal error" if fault.status >= 500 else "injected error")
                return reply(body, fault.status)
            if fault.kind == "rate_limit":
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                return reply(rate_limit_body(fault.policy, state.portal_id), 429, headers)
            flask.g.hubspot_delay = fault.delay
        refused = state.admit(flask.request.path.endswith("/search"))
        if refused is not None:
            policy, wait = refused
            return reply(rate_limit_body(policy, state.portal_id), 429, {"Retry-After": str(max(1, math.ceil(wait)))})
        return None

    @bp.after_request
    def account(resp: flask.Response) -> flask.Response:
        if is_control():
            return resp
        path = flask.request.path
        if not path.endswith("/search") and resp.status_code != 401:
            # Search answers carry no rate-limit headers (CONTRACTS.md §2.7).
            resp.headers["X-HubSpot-RateLimit-Max"] = str(state.requests_per_10s)
            resp.headers["X-HubSpot-RateLimit-Remaining"] = str(state.remaining())
            resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(WINDOW_SECONDS * 1000))
            resp.headers["X-HubSpot-RateLimit-Daily"] = str(state.daily_limit)
            resp.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, state.daily_limit - state._daily_used))
        data = flask.request.get_json(silent=True) if flask.request.is_json else None
        inputs = len(data.get("inputs") or []) if isinstance(data, dict) else 0
        retry_after = resp.headers.get("Retry-After")
        with state.lock:
            state.log.append(LoggedRequest(flask.request.method, path, resp.status_code,
                                           getattr(flask.g, "hubspot_at", state.clock.time()), inputs,
                                           float(retry_after) if retry_after else None))
            for _ in range(state.other_app_load):
                state.admit(False)
        delay = getattr(flask.g, "hubspot_delay", 0.0)
        if delay:
            time.sleep(delay)  # the work is done; the answer comes too late for the client
        return resp

    # -- contacts ---------------------------------------------------------------
    def not_found(kind: str, ident: str) -> flask.Response:
        return reply(error_body("OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                                context={"id": [ident]}), 404)

    @bp.post("/crm/v3/objects/contacts/search")
    def contacts_search():
        try:
            return reply(search(state, "contacts", payload()))
        except (SearchError, ValueError, TypeError) as exc:
            return reply(error_body("VALIDATION_ERROR", f"There was a problem with the request. {exc}"), 400)

    @bp.post("/crm/v3/objects/tasks/search")
    def tasks_search():
        try:
            return reply(search(state, "tasks", payload()))
        except (SearchError, ValueError, TypeError) as exc:
            return reply(error_body("VALIDATION_ERROR", f"There was a problem with the request. {exc}"), 400)

    @bp.post("/crm/v3/objects/deals/search")
    def deals_search():
        try:
            return reply(search(state, "deals", payload()))
        except (SearchError, ValueError, TypeError) as exc:
            return reply(error_body("VALIDATION_ERROR", f"There was a problem with the request. {exc}"), 400)

    @bp.post("/crm/v4/associations/deals/contacts/batch/read")
    def deal_contacts_batch_read():
        return reply(*associations_read(state, payload(), "deals", state.deals,
                                        lambda did: state.deal_contacts.get(did, []), type_id=3))

    @bp.post("/_control/deals")
    def control_deal():
        data = flask.request.get_json(silent=True) or {}
        if data.get("id") and str(data["id"]) in state.deals:
            return reply(state.update_deal(str(data["id"]), data.get("properties") or {}))
        return reply(state.add_deal(data.get("properties") or {}, data.get("contact_ids") or [], data.get("id")), 201)

    @bp.post("/crm/v3/objects/contacts")
    def contact_create():
        props = dict(payload().get("properties") or {})
        email = str(props.get("email") or "").strip()
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            problems = [_validation("email", "INVALID_EMAIL", f"Email address {email} is invalid")]
            return reply(error_body("VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}"), 400)
        if email and email.lower() in state.blocklist:
            problems = [_validation("email", "INVALID_EMAIL", "Email address was GDPR-deleted and is blocklisted")]
            return reply(error_body("VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}"), 400)
        if email:
            existing = state.find_contact_by_email(email)
            if existing is not None:
                return reply(error_body("CONFLICT", f"Contact already exists. Existing ID: {existing['id']}"), 409)
        props.pop("email", None)
        with state.lock:
            obj = state.add_contact(email.lower() or None, properties=props)
            state.contacts[obj["id"]].indexed_at = state.clock.time() + state.search_lag_seconds
        return reply(obj, 201)

    @bp.post("/crm/v3/objects/contacts/batch/upsert")
    def contacts_batch_upsert():
        inputs = payload().get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
            return reply(error_body("VALIDATION_ERROR", "inputs must be a non-empty list of objects"), 400)
        if len(inputs) > state.max_batch:
            return reply(error_body("VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds {state.max_batch}"), 400)
        not_unique = sorted({str(i.get("idProperty")) for i in inputs if i.get("idProperty") not in ("email",)})
        if not_unique:
            return reply(error_body("VALIDATION_ERROR", f"Unable to perform update/upsert by non-unique 0-1 property "
                                    f"{not_unique[0]}" if not_unique[0] != "None" else
                                    "idProperty is required to upsert contacts"), 400)
        ids = [str(i.get("id") or "").strip().lower() for i in inputs]
        duplicates = sorted({x for x in ids if ids.count(x) > 1})
        if duplicates:
            return reply(error_body("VALIDATION_ERROR", f"Duplicate IDs found in batch input: {duplicates}"), 400)
        started = _iso(state.clock.time())
        results, errors = [], []
        for item, email in zip(inputs, ids, strict=True):
            obj, problems = state.upsert_contact(email, item.get("properties") or {})
            trace = item.get("objectWriteTraceId")
            if obj is not None:
                if trace:
                    obj["objectWriteTraceId"] = trace
                results.append(obj)
                continue
            context: dict[str, Any] = {"ids": [str(item.get("id") or "")]}
            if trace:
                context["objectWriteTraceId"] = [trace]
            errors.append({"status": "error", "category": "VALIDATION_ERROR",
                           "message": f"Property values were not valid: {json.dumps(problems)}",
                           "errors": [{"message": p["message"], "code": p["error"],
                                       "context": {"propertyName": [p["name"]]}} for p in problems],
                           "context": context})
        return batch_reply(results, errors, startedAt=started)

    @bp.post("/crm/v3/objects/contacts/gdpr-delete")
    def contact_gdpr_delete():
        """Permanently delete a contact (and its tasks); 204.  By e-mail
        (``idProperty``) an unknown address is blocklisted instead, as HubSpot does."""
        data = payload()
        ident, by = str(data.get("objectId") or "").strip(), data.get("idProperty")
        if not ident or by not in (None, "email", "hs_object_id"):
            return reply(error_body("VALIDATION_ERROR", "objectId is required; idProperty may be email"), 400)
        with state.lock:
            found = state.find_contact_by_email(ident) if by == "email" else (
                state.contacts[ident].obj if ident in state.contacts else None)
            if found is None and by != "email":
                return not_found("contact", ident)
            cid = found["id"] if found else None
            if cid is not None:
                for task_id in state.contact_tasks(cid):
                    state.tasks.pop(task_id, None)
                    state.task_contacts.pop(task_id, None)
                del state.contacts[cid]
            if by == "email":
                state.blocklist.add(ident.lower())
            state.gdpr_deleted.append({"objectId": ident, "idProperty": by, "contact_id": cid})
        return flask.Response(status=204)

    @bp.post("/crm/v3/objects/contacts/merge")
    def contact_merge():
        """Merge ``objectIdToMerge`` into ``primaryObjectId``: the primary keeps its id and
        takes the other's tasks and the properties it lacks; answers the primary (200)."""
        data = payload()
        primary, other = str(data.get("primaryObjectId") or ""), str(data.get("objectIdToMerge") or "")
        if not primary or not other or primary == other:
            return reply(error_body("VALIDATION_ERROR", "primaryObjectId and objectIdToMerge must be two contact ids"),
                         400)
        with state.lock:
            for ident in (primary, other):
                if ident not in state.contacts:
                    return not_found("contact", ident)
            keep, gone = state.contacts[primary].obj, state.contacts.pop(other).obj
            props = keep.setdefault("properties", {})
            for key, value in (gone.get("properties") or {}).items():
                if value not in (None, "") and props.get(key) in (None, ""):
                    props[key] = value
            for contacts in state.task_contacts.values():
                if other in contacts:
                    contacts[:] = list(dict.fromkeys(primary if c == other else c for c in contacts))
            state.merged.append({"primary": primary, "merged": other})
        return reply(keep)

    @bp.get("/crm/v3/objects/contacts/<ident>")
    def contact_read(ident: str):
        wanted = [p for p in flask.request.args.get("properties", "").split(",") if p]
        if flask.request.args.get("idProperty") == "email":
            obj = state.find_contact_by_email(ident)
            rec = state.contacts.get(obj["id"]) if obj else None
        else:
            rec = state.contacts.get(ident)
        if rec is None:
            return not_found("contact", ident)
        return reply(state._view(rec, wanted, CONTACT_DEFAULTS))

    @bp.patch("/crm/v3/objects/contacts/<ident>")
    def contact_update(ident: str):
        rec = state.contacts.get(ident)
        if rec is None:
            return not_found("contact", ident)
        with state.lock:
            rec.obj["properties"].update({k: (None if v is None else str(v))
                                          for k, v in (payload().get("properties") or {}).items()})
            rec.obj["updatedAt"] = _iso(state.clock.time())
            state.forget_email_index()  # the e-mail may have changed
        return reply(state._view(rec, None, CONTACT_DEFAULTS))

    def batch_read(kind: str):
        data = payload()
        table = state.contacts if kind == "contacts" else state.tasks
        defaults = CONTACT_DEFAULTS if kind == "contacts" else TASK_DEFAULTS
        inputs = data.get("inputs") or []
        if len(inputs) > state.max_batch:
            return reply(error_body("VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds {state.max_batch}"), 400)
        wanted = list(data.get("properties") or [])
        started = _iso(state.clock.time())
        results, missing = [], []
        for item in inputs:
            ident = str(item.get("id", ""))
            if data.get("idProperty") == "email" and kind == "contacts":
                found = state.find_contact_by_email(ident)
                ident = found["id"] if found else ident
            rec = table.get(ident)
            if rec is None:
                missing.append(str(item.get("id", "")))
            else:
                results.append(state._view(rec, wanted, defaults))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": _iso(state.clock.time())}
        if missing:
            body["numErrors"] = 1
            body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": f"Could not get some {kind[:-1].upper()} objects, they may be deleted or "
                                          "not exist. Check that ids are valid.",
                               "context": {"ids": missing}}]
            return reply(body, 207)
        return reply(body)

    @bp.post("/crm/v3/objects/contacts/batch/read")
    def contacts_batch_read():
        return batch_read("contacts")

    # -- tasks ------------------------------------------------------------------
    @bp.post("/crm/v3/objects/tasks")
    def task_create():
        data = payload()
        obj, problems = state.create_task(data.get("properties") or {}, data.get("associations") or [],
                                          data.get("objectWriteTraceId"))
        if problems:
            return reply(error_body("VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}",
                                    errors=[{"message": p["message"], "code": p["error"],
                                             "context": {"propertyName": [p["name"]]}} for p in problems]), 400)
        return reply(obj, 201)

    @bp.post("/crm/v3/objects/tasks/batch/create")
    def tasks_batch_create():
        data = payload()
        inputs = data.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return reply(error_body("VALIDATION_ERROR", "inputs must be a non-empty list"), 400)
        if len(inputs) > state.max_batch:
            return reply(error_body("VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds {state.max_batch}"), 400)
        started = _iso(state.clock.time())
        requested = _iso(flask.g.get("hubspot_at", state.clock.time()))
        results, errors = [], []
        for item in inputs:
            trace = item.get("objectWriteTraceId")
            obj, problems = state.create_task(item.get("properties") or {}, item.get("associations") or [], trace)
            if obj is not None:
                results.append(obj)
                continue
            err = {"status": "error", "category": "VALIDATION_ERROR",
                   "message": f"Property values were not valid: {json.dumps(problems)}",
                   "errors": [{"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
                              for p in problems]}
            if trace:
                err["context"] = {"objectWriteTraceId": [trace]}
            errors.append(err)
        return batch_reply(results, errors, 201, requestedAt=requested, startedAt=started)

    @bp.post("/crm/v3/objects/tasks/batch/read")
    def tasks_batch_read():
        return batch_read("tasks")

    @bp.get("/crm/v3/objects/tasks/<ident>")
    def task_read(ident: str):
        rec = state.tasks.get(ident)
        if rec is None:
            return not_found("task", ident)
        wanted = [p for p in flask.request.args.get("properties", "").split(",") if p]
        return reply(state._view(rec, wanted or None, TASK_DEFAULTS))

    @bp.patch("/crm/v3/objects/tasks/<ident>")
    def task_update(ident: str):
        rec = state.tasks.get(ident)
        if rec is None:
            return not_found("task", ident)
        props = payload().get("properties") or {}
        if props.get("hs_task_status") == "COMPLETED":
            state.complete_task(ident)
        with state.lock:
            rec.obj["properties"].update({k: (None if v is None else str(v)) for k, v in props.items()
                                          if k != "hs_task_status" or v != "COMPLETED"})
            rec.obj["updatedAt"] = _iso(state.clock.time())
        return reply(state._view(rec, None, TASK_DEFAULTS))

    @bp.post("/crm/v3/objects/tasks/batch/update")
    def tasks_batch_update():
        data = payload()
        inputs = data.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return reply(error_body("VALIDATION_ERROR", "inputs must be a non-empty list"), 400)
        if len(inputs) > state.max_batch:
            return reply(error_body("VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds {state.max_batch}"), 400)
        started = _iso(state.clock.time())
        results, missing, errors = [], [], []
        for item in inputs:
            ident = str(item.get("id", ""))
            if ident not in state.tasks:
                missing.append(ident)
                continue
            problems = state.update_task(ident, item.get("properties") or {})
            if problems:
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": f"Property values were not valid: {json.dumps(problems)}",
                               "context": {"ids": [ident]}})
                continue
            results.append(state._view(state.tasks[ident], None, TASK_DEFAULTS))
        if missing:
            errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": "Could not get some TASK objects, they may be deleted or not exist.",
                           "context": {"ids": missing}})
        return batch_reply(results, errors, startedAt=started)

    @bp.post("/crm/v3/objects/tasks/batch/archive")
    def tasks_batch_archive():
        inputs = payload().get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return reply(error_body("VALIDATION_ERROR", "inputs must be a non-empty list"), 400)
        for item in inputs:
            state.archive_task(str(item.get("id", "")))
        return flask.Response(status=204)  # HubSpot answers 204, also for ids that are gone already

    @bp.post("/crm/v3/objects/contacts/batch/update")
    def contacts_batch_update():
        inputs = payload().get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return reply(error_body("VALIDATION_ERROR", "inputs must be a non-empty list"), 400)
        results, missing = [], []
        for item in inputs:
            rec = state.contacts.get(str(item.get("id", "")))
            if rec is None:
                missing.append(str(item.get("id", "")))
                continue
            with state.lock:
                rec.obj["properties"].update({k: (None if v is None else str(v))
                                              for k, v in (item.get("properties") or {}).items()})
                rec.obj["updatedAt"] = _iso(state.clock.time())
                state.forget_email_index()  # the e-mail may have changed
            results.append(state._view(rec, None, CONTACT_DEFAULTS))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            body.update(numErrors=1, errors=[{"status": "error", "category": "OBJECT_NOT_FOUND",
                                              "message": "Could not get some CONTACT objects", "context": {"ids": missing}}])
            return reply(body, 207)
        return reply(body)

    # -- associations and owners --------------------------------------------------
    def assoc_to(task_ids: list[str]) -> list[dict[str, Any]]:
        return association_targets(task_ids, type_id=203)

    @bp.post("/crm/v4/associations/contacts/tasks/batch/read")
    def contact_tasks_batch_read():
        return reply(*associations_read(state, payload(), "contacts", state.contacts, state.contact_tasks,
                                        type_id=203))

    @bp.get("/crm/v4/objects/contacts/<cid>/associations/tasks")
    def contact_tasks(cid: str):
        if cid not in state.contacts:
            return not_found("contact", cid)
        return reply({"results": assoc_to(state.contact_tasks(cid))})

    @bp.get("/crm/v3/owners")
    def owners():
        return reply({"results": [{"id": o, "email": f"owner{o}@example.nl", "type": "PERSON", "archived": False}
                                  for o in state.owners]})

    # -- control API (tests, demo) ------------------------------------------------
    @bp.get("/_control/state")
    def control_state():
        with state.lock:
            return reply({"contacts": len(state.contacts), "tasks": len(state.tasks),
                          "open_tasks": sum(1 for r in state.tasks.values()
                                            if r.obj["properties"].get("hs_task_status") != "COMPLETED"),
                          "requests": len(state.log), "rate_limited": sum(1 for r in state.log if r.status == 429),
                          "max_requests_in_10s": state.max_in_window(), "faults": len(state.faults)})

    @bp.get("/_control/tasks")
    def control_tasks():
        return reply({"results": state.all_tasks()})

    @bp.post("/_control/tasks/<ident>/complete")
    def control_complete(ident: str):
        if ident not in state.tasks:
            return not_found("task", ident)
        return reply(state.complete_task(ident))

    @bp.post("/_control/contacts")
    def control_contact():
        data = flask.request.get_json(silent=True) or {}
        obj = state.add_contact(data.get("email"), properties=data.get("properties") or {},
                                contact_id=data.get("id"), searchable=data.get("searchable", True))
        return reply(obj, 201)

    @bp.post("/_control/faults")
    def control_faults():
        data = dict(flask.request.get_json(silent=True) or {})
        kind = data.pop("kind", "error")
        allowed = {"count", "status", "delay", "retry_after", "path", "body", "policy"}
        try:
            fault = state.inject(kind, **{k: v for k, v in data.items() if k in allowed})
        except (ValueError, TypeError) as exc:
            return reply(error_body("VALIDATION_ERROR", str(exc)), 400)
        return reply({"kind": fault.kind, "count": fault.count, "path": fault.path}, 201)

    @bp.get("/_control/requests")
    def control_requests():
        with state.lock:
            return reply({"results": [r.__dict__ for r in state.log]})

    @bp.post("/_control/tick")
    def control_tick():
        data = flask.request.get_json(silent=True) or {}
        return reply({"completed": state.tick(float(data.get("fraction", 0.25)), float(data.get("min_age", 20.0)))})

    @bp.post("/_control/reset")
    def control_reset():
        state.reset()
        return reply({"ok": True})

    return bp


def make_emulator_app(state: HubSpotState, prefix: str = "") -> flask.Flask:
    """A Flask app serving only the emulator (tests hand it to ``live_server``)."""
    app = flask.Flask("hubspot_emulator")
    app.register_blueprint(make_blueprint(state), url_prefix=prefix or None)
    return app


def demo_config(base_url: str, hub_url: str) -> dict[str, Any]:
    return {"sinks": {"hubspot": {"plugin": "crm_hubspot", "token": "env:HUBSPOT_TOKEN", "base_url": base_url,
                                  "owners": list(DEMO_OWNERS)}},
            "routing": {"followups": "hubspot"}}


def demo_tick(base_url: str, hub_url: str) -> None:
    """Demo: agents work through their HubSpot tasks, so loops visibly close."""
    requests.post(f"{base_url}/_control/tick", json={"fraction": 0.3, "min_age": 30}, timeout=5)


def hubspot_emulator() -> Emulator:
    return Emulator(
        name="hubspot",
        blueprint=make_blueprint,
        demo_config=demo_config,
        demo_env={"HUBSPOT_TOKEN": DEMO_TOKEN},
        tick=demo_tick,
        description="HubSpot CRM v3: contacts, call tasks, associations, rate limits (control API: /_control/)",
    )
