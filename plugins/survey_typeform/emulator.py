"""A local Typeform: Responses API, form definition and signed webhooks.

Used by ``feedback-hub sandbox``, by demo mode (``run --demo``) and by the
tests.  It behaves like the documented API where our connector depends on it:

* ``GET /forms/<form_id>/responses`` with ``page_size`` (default 25, max
  1000), ``since``/``until`` (inclusive, ISO to the second or Unix seconds),
  ``before``/``after`` (exclusive response tokens; they switch to processing
  order and refuse ``sort``), ``completed`` and ``sort=submitted_at,asc|desc``;
  the body is ``{total_items, page_count, items}`` with no next-page cursor;
* ``GET /forms/<form_id>`` (the definition, as the Create API returns it);
* Bearer auth (the scheme word is case-insensitive) with Typeform's
  ``{code, description}`` error bodies; unknown forms give ``FORM_NOT_FOUND``;
* failures on demand: ``fail_next(count, status, retry_after)`` (or
  ``POST /_control/fail``) makes the next requests answer 429/5xx.

Responses are generated, not stored: response *i* is a pure function of the
seed and *i* (its token even encodes *i*), so the emulator holds 50,000 or
5 million responses in the same few kilobytes and serves any page without
materialising the others.  Only responses added while running (``add_response``,
the demo ``tick``) are kept, as small override dicts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import flask
import requests

from hub.sdk import Clock
from hub.sdk.demo_data import SOCIAL_CROWD, Person, category, generate_nps, generate_opinion, generate_people

from .connector import SIGNATURE_HEADER, sign
from .mapping import format_time, parse_time

log = logging.getLogger(__name__)

DEMO_FORM_ID = "u6nXL7"
DEMO_INSTANCE = "nps_survey"
DEMO_TOKEN = "tfp_demo_emulator_token"
DEMO_WEBHOOK_SECRET = "demo-typeform-webhook-secret"

AUTH_FAILED = {"code": "AUTHENTICATION_FAILED",
               "description": "Authentication credentials not found on the Request Headers"}

FIELDS: list[dict[str, Any]] = [
    {"id": "nPsQ7rEc0mMd", "ref": "nps_recommend", "type": "nps",
     "title": "Hoe waarschijnlijk is het dat u Acme aanbeveelt aan vrienden of collega's? / "
              "How likely are you to recommend Acme to a friend or colleague?",
     "properties": {"steps": 11, "start_at_one": False}},
    {"id": "rEaS0nL0ng01", "ref": "nps_reason", "type": "long_text",
     "title": "Wat is de belangrijkste reden voor uw score? / What is the main reason for your score?",
     "properties": {}},
    {"id": "t0p1cCh01ce1", "ref": "topic", "type": "multiple_choice",
     "title": "Waar ging uw laatste contact met ons over? / What was your last contact with us about?",
     "properties": {"choices": [{"label": t} for t in ("Factuur / Invoice", "Storing / Outage",
                                                        "Installatie / Installation", "App", "Anders / Other")]}},
    {"id": "cAllBaCkMa1l", "ref": "callback_email", "type": "email",
     "title": "Mogen we contact met u opnemen? Laat uw e-mailadres achter. / "
              "May we contact you? Leave your email address.",
     "properties": {}},
]
HIDDEN = ["email", "customer_id", "language", "case_id"]
USER_AGENTS = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "mobile", "touch"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
     "Mobile Safari/537.36", "mobile", "touch"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
     "Safari/537.36", "other", "default"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Safari/605.1.15", "other", "default"),
]


def _error(status: int, code: str, description: str, details: list | None = None):
    body: dict[str, Any] = {"code": code, "description": description}
    if details:
        body["details"] = details
    return flask.jsonify(body), status


def _parse_when(value: str, name: str) -> float:
    """``since``/``until``: Unix seconds or ISO 8601 UTC to the second."""
    if value.isdigit():
        return float(value)
    when = parse_time(value if value.endswith("Z") or "+" in value else value + "Z")
    if when is None:
        raise ValueError(f"{name} must be Unix seconds or ISO 8601 (2020-03-20T14:00:59)")
    return when.timestamp()


class TypeformEmulator:
    """State of one emulated Typeform account with one form."""

    def __init__(self, *, form_id: str = DEMO_FORM_ID, responses: int = 400,
                 start: dt.datetime | None = None, step_seconds: int = 600, seed: int = 2026,
                 token: str | None = None, webhook_secret: str | None = None, clock: Clock | None = None,
                 people: int = 2000):
        """``responses`` generated ones, ``step_seconds`` apart on average, from ``start``.

        ``token``/``webhook_secret`` default to ``$TYPEFORM_TOKEN`` /
        ``$TYPEFORM_WEBHOOK_SECRET`` (read when used) or the demo values, so
        the demo works whichever values the hub's config resolves.
        """
        if step_seconds < 2:
            raise ValueError("step_seconds must be at least 2")
        self.form_id = form_id
        self.count = responses
        self.step = int(step_seconds)
        self.clock = clock or Clock()
        if start is None:  # end "now": the demo shows recent feedback
            start = dt.datetime.fromtimestamp(self.clock.time() - responses * self.step, dt.UTC)
        self.start = int(start.timestamp())
        self.seed = seed
        self._token = token
        self._secret = webhook_secret
        self.people: list[Person] = generate_people(random.Random(seed), people)
        self._live: list[dict[str, Any]] = []  # responses added while running (overrides)
        self._faults: deque[tuple[int, float | None] | None] = deque()
        self.requests: deque[dict[str, Any]] = deque(maxlen=5000)
        self._lock = threading.Lock()
        self._rng = random.Random(seed + 1)

    # -- credentials -----------------------------------------------------
    @property
    def api_token(self) -> str:
        return self._token or os.environ.get("TYPEFORM_TOKEN") or DEMO_TOKEN

    @property
    def webhook_secret(self) -> str:
        return self._secret or os.environ.get("TYPEFORM_WEBHOOK_SECRET") or DEMO_WEBHOOK_SECRET

    # -- the data set ----------------------------------------------------
    @property
    def total(self) -> int:
        return self.count + len(self._live)

    def submitted_ts(self, i: int) -> int:
        """Submission time of response ``i``; strictly increasing in ``i``."""
        if i < self.count:
            jitter = int.from_bytes(hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=4).digest()) % self.step
            return self.start + i * self.step + jitter
        return self._live[i - self.count]["submitted_ts"]

    def token_of(self, i: int) -> str:
        """32 characters like Typeform's; the first 8 hex digits are ``i``."""
        return f"{i:08x}" + hashlib.sha256(f"{self.seed}:{i}".encode()).hexdigest()[:24]

    def index_of(self, token: str) -> int | None:
        try:
            i = int(token[:8], 16)
        except ValueError:
            return None
        return i if 0 <= i < self.total and self.token_of(i) == token else None

    def add_response(self, *, nps: int | None = None, text: str | None = None, email: str | None = None,
                     language: str | None = None, hidden: dict[str, str] | None = None,
                     submitted_at: dt.datetime | None = None) -> str:
        """Add a response submitted now (or later than every other); returns its token.

        Unset values are generated like any other response.
        """
        with self._lock:
            when = int(submitted_at.timestamp()) if submitted_at else int(self.clock.time())
            last = self.submitted_ts(self.total - 1) if self.total else when - 1
            override = {k: v for k, v in (("nps", nps), ("text", text), ("email", email), ("language", language),
                                          ("hidden", hidden)) if v is not None}
            self._live.append({"submitted_ts": max(when, last + 1), **override})
            return self.token_of(self.total - 1)

    def response(self, i: int) -> dict[str, Any]:
        """Response ``i`` as a Responses-API item."""
        rng = random.Random(f"{self.seed}:{i}")
        over = self._live[i - self.count] if i >= self.count else {}
        pidx = rng.randrange(len(self.people))
        if i % 40 == 7:
            # Every 40th answer comes from the demo's social-media crowd (hub.sdk.demo_data
            # SOCIAL_CROWD), so survey answers and posts of one person meet in the hub.
            pidx = (i // 40) % min(SOCIAL_CROWD, len(self.people))
        person = self.people[pidx]
        lang = over.get("language") or person.language
        nps = over["nps"] if "nps" in over else generate_nps(rng)
        submitted = self.submitted_ts(i)
        token = self.token_of(i)
        answers: list[dict[str, Any]] = [_answer(FIELDS[0], "number", nps)]
        wants_reason = rng.random() < (0.55 if category(nps) == "promoter" else 0.9)
        opinion = generate_opinion(rng, lang, nps)
        if "text" in over:
            answers.append(_answer(FIELDS[1], "text", over["text"]))
        elif wants_reason:
            answers.append(_answer(FIELDS[1], "text", opinion))
        choices = FIELDS[2]["properties"]["choices"]
        answers.append(_answer(FIELDS[2], "choice", {"label": rng.choice(choices)["label"]}))
        email = over.get("email") or person.email
        if rng.random() < 0.35 or "email" in over:
            answers.append(_answer(FIELDS[3], "email", email))
        agent, platform, browser = rng.choice(USER_AGENTS)
        hidden = {"email": email, "customer_id": f"K{100000 + pidx}", "language": lang, "name": person.name,
                  **over.get("hidden", {})}
        return {
            "landing_id": token,
            "token": token,
            "response_id": token,
            "landed_at": format_time(dt.datetime.fromtimestamp(submitted - rng.randint(40, 900), dt.UTC)),
            "submitted_at": format_time(dt.datetime.fromtimestamp(submitted, dt.UTC)),
            "metadata": {"user_agent": agent, "platform": platform,
                         "referer": f"https://acme.typeform.com/to/{self.form_id}", "network_id": token[8:18],
                         "browser": browser},
            "hidden": hidden,
            "calculated": {"score": 0},
            "answers": answers,
        }

    def definition(self) -> dict[str, Any]:
        return {"id": self.form_id, "title": "Klanttevredenheid / Customer satisfaction (NPS)", "type": "quiz",
                "settings": {"language": "nl", "is_public": True},
                "hidden": list(HIDDEN), "fields": FIELDS,
                "_links": {"display": f"https://acme.typeform.com/to/{self.form_id}"}}

    def webhook_event(self, i: int) -> dict[str, Any]:
        """Response ``i`` as Typeform's ``form_response`` webhook delivers it."""
        item = self.response(i)
        form_response = {
            "form_id": self.form_id, "token": item["token"], "landed_at": item["landed_at"],
            "submitted_at": item["submitted_at"], "hidden": item["hidden"], "calculated": item["calculated"],
            "definition": {"id": self.form_id, "title": self.definition()["title"],
                           "fields": [{k: f[k] for k in ("id", "ref", "type", "title", "properties")} for f in FIELDS]},
            "answers": item["answers"],
            "ending": {"id": "DefaultTyScreen", "ref": "default_tys"},
        }
        event_id = hashlib.sha256(f"event:{item['token']}".encode()).hexdigest()[:26].upper()
        return {"event_id": event_id, "event_type": "form_response", "form_response": form_response}

    # -- queries ---------------------------------------------------------
    def _first_at_or_after(self, ts: float) -> int:
        lo, hi = 0, self.total
        while lo < hi:
            mid = (lo + hi) // 2
            if self.submitted_ts(mid) < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def query(self, args: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a Responses-API query: (status, body)."""
        details = []
        try:
            page_size = int(args.get("page_size", "25"))
            if not 1 <= page_size <= 1000:
                raise ValueError
        except ValueError:
            details.append({"code": "INVALID_PARAMETER", "field": "page_size",
                            "description": "page_size must be an integer between 1 and 1000"})
            page_size = 25
        lo, hi = 0, self.total  # half-open index range, in processing (= submission) order
        try:
            if "since" in args:
                lo = max(lo, self._first_at_or_after(_parse_when(args["since"], "since")))
            if "until" in args:
                hi = min(hi, self._first_at_or_after(_parse_when(args["until"], "until") + 1))
        except ValueError as exc:
            details.append({"code": "INVALID_PARAMETER", "description": str(exc)})
        for name in ("before", "after"):
            if name in args:
                idx = self.index_of(args[name])
                if idx is None:
                    details.append({"code": "INVALID_PARAMETER", "field": name,
                                    "description": f"{name} must be a response token of this form"})
                elif name == "before":
                    hi = min(hi, idx)
                else:
                    lo = max(lo, idx + 1)
        descending = True
        if "sort" in args:
            if "before" in args or "after" in args:
                details.append({"code": "INVALID_PARAMETER", "field": "sort",
                                "description": "sort cannot be combined with before or after"})
            field, _, direction = args["sort"].partition(",")
            if field not in ("submitted_at", "landed_at") or direction not in ("asc", "desc"):
                details.append({"code": "INVALID_PARAMETER", "field": "sort",
                                "description": "sort must be {field},{asc|desc}"})
            descending = direction != "asc"
        elif "after" in args and "before" not in args:
            descending = False  # walking forward from a token
        completed = args.get("completed", "true").lower()
        if completed not in ("true", "false"):
            details.append({"code": "INVALID_PARAMETER", "field": "completed",
                            "description": "completed must be true or false"})
        if details:
            return 400, {"code": "VALIDATION_ERROR", "description": "Invalid request", "details": details}
        if completed == "false":  # every emulated response is complete
            lo, hi = 0, 0
        total = max(0, hi - lo)
        picked = range(hi - 1, max(lo, hi - page_size) - 1, -1) if descending else range(lo, min(hi, lo + page_size))
        return 200, {"total_items": total, "page_count": math.ceil(total / page_size),
                     "items": [self.response(i) for i in picked]}

    # -- faults and webhooks ---------------------------------------------
    def fail_next(self, count: int = 1, status: int = 429, retry_after: float | None = None, *,
                  after: int = 0) -> None:
        """Make ``count`` API requests answer ``status`` (with ``Retry-After``),
        once ``after`` more requests went through normally."""
        with self._lock:
            self._faults.extend([None] * after + [(status, retry_after)] * count)

    def _take_fault(self) -> tuple[int, float | None] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def deliver(self, url: str, token: str | None = None, *, secret: str | None = None,
                timeout: float = 10.0) -> requests.Response:
        """POST response ``token`` (default: the newest) as a signed webhook to ``url``."""
        i = self.index_of(token) if token else self.total - 1
        if i is None or i < 0:
            raise KeyError(f"no response {token!r}")
        body = json.dumps(self.webhook_event(i), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "Typeform Webhooks",
                   SIGNATURE_HEADER: sign(secret or self.webhook_secret, body)}
        return requests.post(url, data=body, headers=headers, timeout=timeout)

    def tick(self, base_url: str, hub_url: str, instance: str = DEMO_INSTANCE) -> list[str]:
        """Demo mode: one or two people answer the survey now; Typeform posts their webhooks."""
        tokens = [self.add_response() for _ in range(self._rng.randint(1, 2))]
        for token in tokens:
            try:
                resp = self.deliver(f"{hub_url.rstrip('/')}/webhooks/{instance}", token)
                if resp.status_code >= 300:
                    log.warning("typeform emulator: hub answered %s to webhook %s", resp.status_code, token)
            except requests.RequestException as exc:  # the hub may still be starting
                log.warning("typeform emulator: webhook %s not delivered: %s", token, exc)
        return tokens

    # -- HTTP ------------------------------------------------------------
    def blueprint(self, name: str = "typeform_emulator") -> flask.Blueprint:
        bp = flask.Blueprint(name, __name__)
        emu = self

        def _authorized() -> bool:
            scheme, _, value = flask.request.headers.get("Authorization", "").partition(" ")
            return scheme.lower() == "bearer" and value.strip() == emu.api_token

        def _api(handler: Callable[[str], Any]) -> Callable[[str], Any]:
            def wrapped(form_id: str):
                arrived = emu.clock.time()
                fault = emu._take_fault()
                if fault is not None:
                    status, retry_after = fault
                    resp = flask.Response(b"", status=status)
                    if retry_after is not None:
                        resp.headers["Retry-After"] = str(int(math.ceil(retry_after)))
                elif not _authorized():
                    resp = flask.make_response(flask.jsonify(AUTH_FAILED), 401)
                elif form_id != emu.form_id:
                    resp = flask.make_response(*_error(404, "FORM_NOT_FOUND", f"Non existing form with uid {form_id}"))
                else:
                    resp = flask.make_response(handler(form_id))
                emu.requests.append({"at": arrived, "method": flask.request.method, "path": flask.request.path,
                                     "params": flask.request.args.to_dict(), "status": resp.status_code})
                return resp

            wrapped.__name__ = handler.__name__
            return wrapped

        @bp.get("/")
        def index():
            return flask.jsonify(emulator="typeform", form_id=emu.form_id, responses=emu.total,
                                 endpoints=["GET /forms/<form_id>/responses", "GET /forms/<form_id>",
                                            "POST /_control/fail", "POST /_control/responses",
                                            "POST /_control/deliver", "GET /_control/requests"])

        def responses(form_id: str):
            status, body = emu.query(flask.request.args.to_dict())
            return flask.jsonify(body), status

        def form(form_id: str):
            return flask.jsonify(emu.definition())

        bp.add_url_rule("/forms/<form_id>/responses", view_func=_api(responses), methods=["GET"])
        bp.add_url_rule("/forms/<form_id>", view_func=_api(form), methods=["GET"])

        @bp.post("/_control/fail")
        def control_fail():
            data = flask.request.get_json(silent=True) or {}
            emu.fail_next(int(data.get("count", 1)), int(data.get("status", 429)), data.get("retry_after"),
                          after=int(data.get("after", 0)))
            return flask.jsonify(ok=True, pending=len(emu._faults))

        @bp.post("/_control/responses")
        def control_responses():
            data = flask.request.get_json(silent=True) or {}
            count = max(1, min(int(data.pop("count", 1)), 1000))
            allowed = {k: data[k] for k in ("nps", "text", "email", "language", "hidden") if k in data}
            return flask.jsonify(tokens=[emu.add_response(**allowed) for _ in range(count)])

        @bp.post("/_control/deliver")
        def control_deliver():
            data = flask.request.get_json(silent=True) or {}
            hub_url = str(data.get("hub_url", ""))
            if not hub_url.startswith(("http://", "https://")):
                return _error(400, "VALIDATION_ERROR", "hub_url (http or https) is required")
            url = f"{hub_url.rstrip('/')}/webhooks/{data.get('instance', DEMO_INSTANCE)}"
            try:
                resp = emu.deliver(url, data.get("token"))
            except KeyError as exc:
                return _error(404, "RESPONSE_NOT_FOUND", str(exc))
            except requests.RequestException as exc:
                return _error(502, "DELIVERY_FAILED", str(exc))
            return flask.jsonify(status=resp.status_code, body=resp.text[:2000])

        @bp.get("/_control/requests")
        def control_requests():
            return flask.jsonify(requests=list(emu.requests)[-200:])

        return bp


def _answer(field: dict[str, Any], kind: str, value: Any) -> dict[str, Any]:
    return {"field": {"id": field["id"], "type": field["type"], "ref": field["ref"]}, "type": kind, kind: value}


_demo: TypeformEmulator | None = None
_demo_lock = threading.Lock()


def demo_emulator() -> TypeformEmulator:
    """The process-wide emulator the sandbox and demo mode share (made on first use)."""
    global _demo
    with _demo_lock:
        if _demo is None:
            _demo = TypeformEmulator(responses=400, step_seconds=int(60 * 86400 / 400))
        return _demo


def demo_config(base_url: str, hub_url: str) -> dict[str, Any]:
    """The demo's ``[sources.nps_survey]`` table, pointed at the emulator."""
    return {"sources": {DEMO_INSTANCE: {
        "plugin": "survey_typeform",
        "form_id": DEMO_FORM_ID,
        "token": "env:TYPEFORM_TOKEN",
        "webhook_secret": "env:TYPEFORM_WEBHOOK_SECRET",
        "base_url": base_url,
    }}}
