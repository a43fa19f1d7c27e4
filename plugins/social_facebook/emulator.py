"""A local stand-in for the Graph API of one Facebook Page, for the sandbox,
``run --demo`` and the tests.

It behaves like Graph where the connector can get it wrong:

* ``GET /{page_id}/feed`` newest first, ``since``/``until`` (Unix seconds, on
  the post's ``updated_time``), ``limit`` (1-100), ``after``/``before`` opaque
  cursors, ``fields`` honoured (only what is asked comes back; an unknown
  field is Graph's code 100 error) including nested
  ``comments.filter(stream).limit(n){...}`` with their own ``paging``;
* ``GET /{post_id}/comments`` oldest first with the same paging;
* ``paging.cursors`` on every page, the last one too, ``paging.next`` only
  while there is more (the has-more signal);
* the Page token as ``Authorization: Bearer`` or ``?access_token=``; a wrong or
  expired one is Graph's code 190 error (HTTP 400), after :meth:`expire_token`
  too;
* ``X-App-Usage`` on every answer (calls in the last hour against
  ``hourly_calls``), any answer injectable (:meth:`inject`: code 4, 17, 32,
  613 throttling, 100...);
* feed webhooks signed ``X-Hub-Signature-256`` with the app secret
  (:meth:`deliver`), for add, edited and remove.

Posts and comments are generated from :mod:`hub.sdk.demo_data` (the demo's
Dutch and English customers); :meth:`tick` adds new comments so demo pulls
keep finding some.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import flask
import requests

from hub.sdk import Clock
from hub.sdk.demo_data import POSTS, TEXTS, generate_people

from .webhook import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

DEMO_PAGE_ID = "104857600123456"
DEMO_PAGE_NAME = "Acme"
DEMO_PAGE_TOKEN = "demo-facebook-page-token"
DEMO_APP_SECRET = "demo-facebook-app-secret"
DEMO_VERIFY_TOKEN = "demo-facebook-verify-token"

POST_FIELDS = frozenset({"id", "message", "created_time", "updated_time", "permalink_url", "from", "comments"})
COMMENT_FIELDS = frozenset({"id", "message", "created_time", "permalink_url", "from", "parent"})


def graph_time(when: float) -> str:
    """Graph's time format: ``2026-11-19T10:00:00+0000``."""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def graph_error(code: int, message: str, *, subcode: int | None = None, kind: str = "OAuthException",
                transient: bool | None = None) -> dict[str, Any]:
    """Graph's error body (the shape of the documented and recorded fixtures)."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient is not None:
        error["is_transient"] = transient
    error["fbtrace_id"] = "AemuLat0rTrace"
    return {"error": error}


def throttling(code: int = 4) -> dict[str, Any]:
    messages = {4: "(#4) Application request limit reached", 17: "(#17) User request limit reached",
                32: "(#32) Page request limited reached",
                613: "(#613) Calls to this api have exceeded the rate limit."}
    return graph_error(code, messages.get(code, f"(#{code}) request limit reached"), transient=True)


def token_expired() -> dict[str, Any]:
    return graph_error(190, "Error validating access token: Session has expired on Monday, 19-Jun-23 06:29:46 PDT. "
                            "The current time is Tuesday, 04-Jul-23 02:11:32 PDT.", subcode=463)


def _cursor(kind: str, item_id: str) -> str:
    return base64.b64encode(f"{kind}:{item_id}".encode()).decode()


def _uncursor(value: str, kind: str) -> str:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except ValueError:
        text = ""
    prefix = f"{kind}:"
    if not text.startswith(prefix):
        raise ValueError("cursor")
    return text[len(prefix):]


def split_fields(spec: str) -> dict[str, str]:
    """Top-level fields of a Graph ``fields`` parameter -> their modifiers and nested fields.

    >>> split_fields("id,from{id,name},comments.limit(2){id,message}")
    {'id': '', 'from': '{id,name}', 'comments': '.limit(2){id,message}'}
    """
    out: dict[str, str] = {}
    depth, start = 0, 0
    for i, ch in enumerate(spec + ","):
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        elif ch == "," and depth == 0:
            part = spec[start:i].strip()
            start = i + 1
            if part:
                name = re.match(r"[a-z_]+", part)
                key = name.group(0) if name else part
                out[key] = part[len(key):]
    return out


class FieldError(ValueError):
    def __init__(self, name: str, node: str):
        super().__init__(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node})")


class GraphEmulator:
    """One emulated Page with its feed, comments and webhook deliveries."""

    def __init__(self, *, page_id: str = DEMO_PAGE_ID, page_name: str = DEMO_PAGE_NAME,
                 page_token: str = DEMO_PAGE_TOKEN, app_secret: str = DEMO_APP_SECRET, clock: Clock | None = None,
                 seed: int = 2026, hourly_calls: int = 200):
        self.page_id = page_id
        self.page = {"id": page_id, "name": page_name}
        self.page_token = page_token
        self.app_secret = app_secret
        self.clock = clock or Clock()
        self.rng = random.Random(seed)
        self.people = [{"id": str(7_000_000_000_000_000 + i * 7919), "name": p.name, "language": p.language}
                       for i, p in enumerate(generate_people(self.rng, 60))]
        self.posts: list[dict[str, Any]] = []  # newest last; each with its "comments" list
        self.hourly_calls = hourly_calls
        self.usage_override: dict[str, Any] | None = None
        self.requests: list[dict[str, Any]] = []
        self._injected: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._calls: deque[float] = deque()
        self._expired = False
        self._next_id = 1000
        self._lock = threading.RLock()

    # -- content ------------------------------------------------------------------
    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id * 1_000_003)

    def add_post(self, author: dict[str, Any] | None, text: str, *, at: float | None = None) -> dict[str, Any]:
        """A post on the Page's feed by ``author`` (None: the Page itself)."""
        with self._lock:
            when = self.clock.time() if at is None else at
            post_id = f"{self.page_id}_{self._id()}"
            post = {"id": post_id, "message": text, "created_time": when, "updated_time": when,
                    "from": dict(author or self.page), "comments": [],
                    "permalink_url": f"https://www.facebook.com/{self.page_id}/posts/{post_id.split('_')[1]}"}
            self.posts.append(post)
            return post

    def add_comment(self, post: dict[str, Any], author: dict[str, Any] | None, text: str, *,
                    at: float | None = None, parent: dict[str, Any] | None = None) -> dict[str, Any]:
        """A comment under ``post`` (a reply when ``parent`` is a comment); bumps the post's ``updated_time``."""
        with self._lock:
            when = self.clock.time() if at is None else at
            comment_id = f"{post['id'].split('_')[1]}_{self._id()}"
            comment = {"id": comment_id, "message": text, "created_time": when, "from": dict(author or self.page),
                       "permalink_url": f"{post['permalink_url']}?comment_id={comment_id.split('_')[1]}",
                       "post_id": post["id"]}
            if parent is not None:
                comment["parent"] = {"id": parent["id"]}
            post["comments"].append(comment)
            post["updated_time"] = max(post["updated_time"], when)
            return comment

    def person(self, language: str | None = None) -> dict[str, Any]:
        crowd = [p for p in self.people if language is None or p["language"] == language]
        chosen = self.rng.choice(crowd)
        return {"id": chosen["id"], "name": chosen["name"], "language": chosen["language"]}

    def opinion(self, language: str) -> str:
        if self.rng.random() < 0.4:
            return self.rng.choice(POSTS[language]).replace("@acme ", "")
        mood = self.rng.choice(["detractor", "detractor", "passive", "promoter"])
        return self.rng.choice(TEXTS[language][mood])

    def seed_demo(self, hours: float = 30.0) -> None:
        """The Page's announcements with customers' comments (one long thread that pages), and visitor posts."""
        now = self.clock.time()
        notices = ["Gepland onderhoud vannacht tussen 01:00 en 05:00. / Planned maintenance tonight, 01:00-05:00.",
                   "Onze nieuwe app staat live! / Our new app is live!",
                   "Storing in regio Utrecht: we werken aan een oplossing. / Outage around Utrecht: we're on it."]
        for n, text in enumerate(notices):
            at = now - hours * 3600 * (len(notices) - n) / len(notices)
            post = self.add_post(None, text, at=at)
            for k in range(14 if n == len(notices) - 1 else 4):
                who = self.person()
                comment = self.add_comment(post, _author(who), self.opinion(who["language"]), at=at + 60 * (k + 1))
                if k == 1:
                    self.add_comment(post, None, "Sorry voor het ongemak, we sturen u een DM. / Sorry, we'll DM you.",
                                     at=at + 60 * (k + 1) + 30, parent=comment)
        for k in range(4):
            who = self.person()
            self.add_post(_author(who), self.opinion(who["language"]), at=now - 3600 * (k + 1) - 600)

    def tick(self) -> list[dict[str, Any]]:
        """New activity: one or two comments on recent posts, now and then a visitor post."""
        with self._lock:
            made = []
            if not self.posts:
                self.seed_demo()
            for _ in range(self.rng.randint(1, 2)):
                who = self.person()
                if self.rng.random() < 0.2:
                    made.append(self.add_post(_author(who), self.opinion(who["language"])))
                else:
                    post = self.rng.choice(self.posts[-4:])
                    made.append(self.add_comment(post, _author(who), self.opinion(who["language"])))
            return made

    def find(self, item_id: str) -> dict[str, Any] | None:
        for post in self.posts:
            if post["id"] == item_id:
                return post
            for comment in post["comments"]:
                if comment["id"] == item_id:
                    return comment
        return None

    # -- test controls --------------------------------------------------------------
    def inject(self, status: int, body: Any, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """The next ``times`` API answers are ``status``/``body`` (e.g. :func:`throttling`)."""
        with self._lock:
            for _ in range(times):
                self._injected.append((status, body, dict(headers or {})))

    def expire_token(self) -> None:
        """From now on the Page token is refused with code 190 (subcode 463)."""
        self._expired = True

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if path is None or r["path"] == path]

    # -- webhooks -------------------------------------------------------------------
    def change_value(self, item: dict[str, Any], verb: str = "add") -> dict[str, Any]:
        """The ``value`` of a feed change as Graph sends it for a post or comment."""
        is_comment = "post_id" in item
        value: dict[str, Any] = {"from": {"id": item["from"]["id"], "name": item["from"]["name"]},
                                 "item": "comment" if is_comment else "status", "verb": verb,
                                 "created_time": int(item["created_time"]),
                                 "post_id": item["post_id"] if is_comment else item["id"]}
        if is_comment:
            value["comment_id"] = item["id"]
            value["parent_id"] = (item.get("parent") or {}).get("id") or item["post_id"]
        if verb != "remove":
            value["message"] = item["message"]
        if not is_comment:
            value["published"] = 1
        return value

    def delivery(self, values: list[dict[str, Any]]) -> bytes:
        entry = {"id": self.page_id, "time": int(self.clock.time()),
                 "changes": [{"field": "feed", "value": v} for v in values]}
        return json.dumps({"object": "page", "entry": [entry]}).encode()

    def deliver(self, url: str, values: list[dict[str, Any]], *, secret: str | None = None,
                timeout: float = 10.0) -> requests.Response:
        """POST a signed feed delivery of ``values`` to the hub's webhook ``url``."""
        body = self.delivery(values)
        return requests.post(url, data=body, timeout=timeout, headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: sign(secret or self.app_secret, body)})

    # -- the API --------------------------------------------------------------------
    def _usage(self) -> dict[str, int]:
        if self.usage_override is not None:
            return dict(self.usage_override)
        now = self.clock.time()
        while self._calls and self._calls[0] <= now - 3600:
            self._calls.popleft()
        pct = min(100, round(100 * len(self._calls) / max(1, self.hourly_calls)))
        return {"call_count": pct, "total_cputime": max(0, pct - 5), "total_time": max(0, pct - 3)}

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> flask.Response:
        response = flask.jsonify(body)
        response.status_code = status
        response.headers["X-App-Usage"] = json.dumps(self._usage())
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def handle(self, path: str, serve: Callable[[dict[str, str]], dict[str, Any]]) -> flask.Response:
        req = flask.request
        args = dict(req.args.items())
        with self._lock:
            self.requests.append({"path": path, "args": args, "headers": dict(req.headers)})
            self._calls.append(self.clock.time())
            if self._injected:
                status, body, headers = self._injected.popleft()
                return self._answer(status, body, headers)
            auth = req.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else args.get("access_token")
            if not token:
                return self._answer(400, graph_error(2500, "An active access token must be used to query "
                                                           "information about the current user."))
            if self._expired:
                return self._answer(400, token_expired())
            if token != self.page_token:
                return self._answer(400, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
            try:
                return self._answer(200, serve(args))
            except FieldError as exc:
                return self._answer(400, graph_error(100, str(exc)))
            except ValueError as exc:
                return self._answer(400, graph_error(100, f"(#100) Invalid parameter: {exc}"))

    def _limit(self, args: dict[str, str], default: int = 25) -> int:
        text = args.get("limit", str(default))
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise ValueError("limit")
        return int(text)

    def _page_of(self, items: list[dict[str, Any]], args: dict[str, str], kind: str, limit: int,
                 render: Callable[[dict[str, Any]], dict[str, Any]], next_base: str | None) -> dict[str, Any]:
        start = 0
        if args.get("after"):
            after = _uncursor(args["after"], kind)
            ids = [i["id"] for i in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        chunk = items[start:start + limit]
        out: dict[str, Any] = {"data": [render(i) for i in chunk]}
        if chunk:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(kind, chunk[0]["id"]),
                                                  "after": _cursor(kind, chunk[-1]["id"])}}
            if start + limit < len(items) and next_base:
                query = {k: v for k, v in args.items() if k != "after"}
                query["after"] = paging["cursors"]["after"]
                paging["next"] = next_base + "?" + "&".join(
                    f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in query.items())
            out["paging"] = paging
        return out

    def _render_comment(self, comment: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in fields or {"id": "", "message": "", "created_time": "", "from": ""}:
            if name not in COMMENT_FIELDS:
                raise FieldError(name, "Comment")
            if name == "created_time":
                out[name] = graph_time(comment[name])
            elif name == "from":
                out[name] = {k: comment["from"][k] for k in ("id", "name")}
            elif name in comment:
                out[name] = comment[name]
        return out

    def _render_post(self, post: dict[str, Any], fields: dict[str, str], base: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, modifiers in (fields or {"id": "", "message": "", "created_time": ""}).items():
            if name not in POST_FIELDS:
                raise FieldError(name, "Post")
            if name in ("created_time", "updated_time"):
                out[name] = graph_time(post[name])
            elif name == "from":
                out[name] = {k: post["from"][k] for k in ("id", "name")}
            elif name == "comments":
                limit = re.search(r"\.limit\((\d+)\)", modifiers)
                nested = re.search(r"\{(.*)\}$", modifiers)
                inner = split_fields(nested.group(1)) if nested else {}
                edge = self._page_of(self._comments(post, "filter(stream)" in modifiers), {},
                                     "comment", int(limit.group(1)) if limit else 25,
                                     lambda c, inner=inner: self._render_comment(c, inner),
                                     f"{base}/{post['id']}/comments")
                if edge["data"]:
                    out[name] = edge
            else:
                out[name] = post[name]
        return out

    @staticmethod
    def _comments(post: dict[str, Any], stream: bool) -> list[dict[str, Any]]:
        comments = sorted(post["comments"], key=lambda c: (c["created_time"], c["id"]))
        return comments if stream else [c for c in comments if "parent" not in c]

    def feed(self, args: dict[str, str], base: str) -> dict[str, Any]:
        fields = split_fields(args.get("fields", ""))
        since, until = (float(args[k]) if args.get(k, "").isdigit() else None for k in ("since", "until"))
        for key in ("since", "until"):
            if key in args and not args[key].isdigit():
                raise ValueError(key)
        posts = sorted(self.posts, key=lambda p: (p["created_time"], p["id"]), reverse=True)
        posts = [p for p in posts if (since is None or p["updated_time"] >= since)
                 and (until is None or p["created_time"] <= until)]
        return self._page_of(posts, args, "post", self._limit(args),
                             lambda p: self._render_post(p, fields, base), f"{base}/{self.page_id}/feed")

    def comments(self, post_id: str, args: dict[str, str], base: str) -> dict[str, Any]:
        post = next((p for p in self.posts if p["id"] == post_id), None)
        if post is None:
            raise ValueError("post id")
        fields = split_fields(args.get("fields", ""))
        return self._page_of(self._comments(post, args.get("filter") == "stream"), args, "comment",
                             self._limit(args), lambda c: self._render_comment(c, fields),
                             f"{base}/{post_id}/comments")

    def blueprint(self) -> flask.Blueprint:
        bp = flask.Blueprint(f"facebook_emulator_{id(self)}", __name__)

        def root(suffix: str) -> str:
            # The API root as the caller reached it (a prefix such as /_sandbox/facebook kept), for next links.
            url = flask.request.base_url
            return url[: -len(suffix)] if url.endswith(suffix) else url

        @bp.get("/")
        def index():
            return flask.jsonify(page=self.page, posts=len(self.posts),
                                 comments=sum(len(p["comments"]) for p in self.posts))

        @bp.get("/<page_id>/feed")
        def feed(page_id: str):
            if page_id != self.page_id:
                return self._answer(400, graph_error(100, f"(#100) Unsupported get request. Object with ID "
                                                          f"'{page_id[:40]}' does not exist", kind="GraphMethodException"))
            return self.handle(flask.request.path, lambda args: self.feed(args, root(f"/{page_id}/feed")))

        @bp.get("/<post_id>/comments")
        def comments(post_id: str):
            return self.handle(flask.request.path,
                               lambda args: self.comments(post_id, args, root(f"/{post_id}/comments")))

        @bp.post("/_control/tick")
        def control_tick():
            return flask.jsonify(made=[i["id"] for i in self.tick()])

        return bp


def _author(person: dict[str, Any]) -> dict[str, Any]:
    return {"id": person["id"], "name": person["name"]}


def demo_tick(emu: GraphEmulator, instance: str, webhook_share: float = 0.5) -> Callable[[str, str], None]:
    """The demo's periodic job: new comments, about half of them also pushed as signed
    webhooks (the hub stores each once), and now and then a customer editing one."""

    def tick(base_url: str, hub_url: str) -> None:
        made = emu.tick()
        values = [emu.change_value(i) for i in made if emu.rng.random() < webhook_share]
        visitors = [c for p in emu.posts for c in p["comments"] if c["from"]["id"] != emu.page_id]
        if visitors and emu.rng.random() < 0.1:
            edited = emu.rng.choice(visitors[-10:])
            edited["message"] += " (edit: nog steeds niet opgelost / still not fixed)"
            values.append(emu.change_value(edited, "edited"))
        if values:
            try:
                emu.deliver(f"{hub_url}/webhooks/{instance}", values)
            except requests.RequestException as exc:  # the hub may still be starting
                log.info("facebook emulator: webhook delivery to %s failed: %s", hub_url, exc)

    return tick
