"""A local stand-in for the X API v2 (mentions + recent search) for the
sandbox, ``run --demo`` and the tests.

It behaves like the real API where a connector can get it wrong:

* Bearer auth (401 problem body otherwise);
* ``since_id``/``until_id`` exclusive, ``start_time`` inclusive, newest first;
  opaque ``meta.next_token`` (``pagination_token`` on mentions, ``next_token``
  or ``pagination_token`` on search); ``max_results`` bounds 5-100 (mentions)
  and 10-100 (search) answered with X's 400 problem bodies;
* only the requested ``tweet.fields``/``user.fields`` come back, authors only
  with ``expansions=author_id``;
* ``x-rate-limit-limit/-remaining/-reset`` on every answer, a per-endpoint
  window (default 450 per 15 min) that ends in ``429 Too Many Requests``;
  tests can spend a window, inject any answer, or set a monthly post cap that
  ends in ``429 UsageCapExceeded``;
* recent search reaches 7 days back and understands the usual operators.

Posts are generated with :mod:`hub.sdk.demo_data` (the same Dutch and English
customers the rest of the demo uses): complaints, questions, praise, links,
an angry four-post thread, a viral complaint from an account with a quarter
million followers, retweets and quotes of it, and the brand's own replies.
``tick()`` adds new posts so demo pulls keep finding some.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
import requests

from hub.sdk import Clock
from hub.sdk.demo_data import POSTS, SOCIAL_CROWD, TEXTS, demo_people, generate_people

from .mapping import SNOWFLAKE_EPOCH_MS
from .search_query import PostView, QueryError, compile_query
from .webhook import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

DEMO_BEARER_TOKEN = "demo-x-bearer-token"
DEMO_CONSUMER_SECRET = "demo-x-consumer-secret"
BRAND_ID = "2244994945"
BRAND_HANDLE = "acme"
SEARCH_DAYS = 7
TOKEN_PREFIX = "7140d"

PROBLEM_INVALID = "https://api.twitter.com/2/problems/invalid-request"
TOO_MANY_REQUESTS = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
USAGE_CAPPED = {"account_id": "emulator", "product_name": "standard-basic", "title": "UsageCapExceeded",
                "period": "Monthly", "scope": "Product", "detail": "Usage cap exceeded: Monthly product cap",
                "type": "https://api.twitter.com/2/problems/usage-capped"}

TWEET_FIELDS = frozenset({"created_at", "lang", "conversation_id", "in_reply_to_user_id", "referenced_tweets",
                          "public_metrics", "author_id", "entities", "edit_history_tweet_ids", "source",
                          "possibly_sensitive", "reply_settings"})
USER_FIELDS = frozenset({"public_metrics", "username", "name", "created_at", "description", "verified",
                         "protected", "location", "url", "profile_image_url"})


def invalid_request(parameter: str, value: Any, message: str) -> dict[str, Any]:
    """X's 400 body shape (see the real ``error_400_*`` fixtures)."""
    return {"errors": [{"parameters": {parameter: [str(value)]}, "message": message}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
            "type": PROBLEM_INVALID}


def _v2_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


@dataclass
class XUser:
    id: str
    username: str
    name: str
    followers: int
    following: int = 180
    tweet_count: int = 1200
    listed: int = 2
    language: str = "nl"

    def v2(self, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "username": self.username}
        if "public_metrics" in fields:
            out["public_metrics"] = {"followers_count": self.followers, "following_count": self.following,
                                     "tweet_count": self.tweet_count, "listed_count": self.listed,
                                     "like_count": self.tweet_count // 3}
        if "verified" in fields:
            out["verified"] = False
        if "protected" in fields:
            out["protected"] = False
        return out

    def v1(self) -> dict[str, Any]:
        return {"id": int(self.id), "id_str": self.id, "name": self.name, "screen_name": self.username,
                "followers_count": self.followers, "friends_count": self.following,
                "statuses_count": self.tweet_count, "listed_count": self.listed, "protected": False,
                "verified": False, "lang": None}


@dataclass
class XPost:
    id: str
    author: XUser
    text: str
    created_at: dt.datetime
    lang: str | None
    conversation_id: str
    in_reply_to: XPost | None = None
    quoted: XPost | None = None
    retweeted: XPost | None = None
    urls: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)

    @property
    def referenced(self) -> list[dict[str, str]]:
        refs = []
        if self.retweeted:
            refs.append({"type": "retweeted", "id": self.retweeted.id})
        if self.quoted:
            refs.append({"type": "quoted", "id": self.quoted.id})
        if self.in_reply_to:
            refs.append({"type": "replied_to", "id": self.in_reply_to.id})
        return refs

    def view(self) -> PostView:
        return PostView(
            text=self.text, author=self.author.username.lower(), lang=self.lang,
            mentions=frozenset(m["username"].lower() for m in self.mentions),
            reply_to=self.in_reply_to.author.username.lower() if self.in_reply_to else None,
            is_retweet=self.retweeted is not None, is_reply=self.in_reply_to is not None,
            is_quote=self.quoted is not None, conversation_id=self.conversation_id, has_links=bool(self.urls))

    def v2(self, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"edit_history_tweet_ids": [self.id], "id": self.id, "text": self.text}
        if "author_id" in fields:
            out["author_id"] = self.author.id
        if "created_at" in fields:
            out["created_at"] = _v2_time(self.created_at)
        if "lang" in fields and self.lang:
            out["lang"] = self.lang
        if "conversation_id" in fields:
            out["conversation_id"] = self.conversation_id
        if "in_reply_to_user_id" in fields and self.in_reply_to:
            out["in_reply_to_user_id"] = self.in_reply_to.author.id
        if "referenced_tweets" in fields and self.referenced:
            out["referenced_tweets"] = self.referenced
        if "public_metrics" in fields:
            out["public_metrics"] = {"retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0,
                                     "bookmark_count": 0, "impression_count": 0, **self.metrics}
        if "entities" in fields and (self.urls or self.mentions):
            ents: dict[str, Any] = {}
            if self.mentions:
                ents["mentions"] = self.mentions
            if self.urls:
                ents["urls"] = self.urls
            out["entities"] = ents
        return out

    def v1(self) -> dict[str, Any]:
        """The v1.1 shape the Account Activity API delivers."""
        indices = lambda e: [e["start"], e["end"]]  # noqa: E731
        entities = {
            "hashtags": [], "symbols": [],
            "urls": [{"url": u["url"], "expanded_url": u["expanded_url"], "display_url": u["display_url"],
                      "indices": indices(u)} for u in self.urls],
            "user_mentions": [{"screen_name": m["username"], "name": m["username"], "id": int(m["id"]),
                               "id_str": m["id"], "indices": indices(m)} for m in self.mentions if m.get("id")],
        }
        out: dict[str, Any] = {
            "created_at": self.created_at.strftime("%a %b %d %H:%M:%S +0000 %Y"),
            "id": int(self.id), "id_str": self.id, "text": self.text, "truncated": False,
            "in_reply_to_status_id": int(self.in_reply_to.id) if self.in_reply_to else None,
            "in_reply_to_status_id_str": self.in_reply_to.id if self.in_reply_to else None,
            "in_reply_to_user_id_str": self.in_reply_to.author.id if self.in_reply_to else None,
            "in_reply_to_screen_name": self.in_reply_to.author.username if self.in_reply_to else None,
            "user": self.author.v1(), "is_quote_status": self.quoted is not None,
            "quote_count": self.metrics.get("quote_count", 0), "reply_count": self.metrics.get("reply_count", 0),
            "retweet_count": self.metrics.get("retweet_count", 0),
            "favorite_count": self.metrics.get("like_count", 0),
            "entities": entities, "lang": self.lang or "und",
            "timestamp_ms": str(int(self.created_at.timestamp() * 1000)),
        }
        if self.quoted:
            out["quoted_status_id_str"] = self.quoted.id
            out["quoted_status"] = self.quoted.v1()
        if self.retweeted:
            out["retweeted_status"] = self.retweeted.v1()
        if len(self.text) > 140:  # long posts arrive truncated with the full text aside
            out["truncated"] = True
            out["text"] = self.text[:116] + "… https://t.co/more"
            out["extended_tweet"] = {"full_text": self.text, "entities": entities}
        return out


@dataclass
class _Window:
    start: float
    used: int = 0


class XEmulator:
    """State and behaviour of the emulated API (one per sandbox / test)."""

    def __init__(self, *, clock: Clock | None = None, bearer_token: str = DEMO_BEARER_TOKEN,
                 limits: dict[str, int] | None = None, window_seconds: int = 900,
                 monthly_cap: int | None = None, seed: int = 7, populate: bool = True):
        self.clock = clock or Clock()
        self.bearer_token = bearer_token
        self.limits = {"mentions": 450, "search": 450, **(limits or {})}
        self.window_seconds = window_seconds
        self.monthly_cap = monthly_cap
        self.posts_served = 0
        self.rng = random.Random(seed)
        self.users: dict[str, XUser] = {}
        self.posts: list[XPost] = []  # ascending id
        self.requests: list[dict[str, Any]] = []  # what connectors asked, for tests
        self.injected: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self._windows: dict[str, _Window] = {}
        self._seq = itertools.count()
        self._last_id = 0
        self._lock = threading.RLock()
        self._link = itertools.count(1)
        self.brand = self.add_user(BRAND_ID, BRAND_HANDLE, "Acme Klantenservice", followers=48_210)
        self.crowd: list[XUser] = []
        if populate:
            self.seed_demo()

    # -- building the world --------------------------------------------------------
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def add_user(self, user_id: str, username: str, name: str, followers: int, language: str = "nl") -> XUser:
        user = XUser(user_id, username, name, followers, language=language)
        self.users[user_id] = user
        return user

    def _new_id(self, when: dt.datetime) -> str:
        ms = int(when.timestamp() * 1000)
        candidate = ((ms - SNOWFLAKE_EPOCH_MS) << 22) | (next(self._seq) % 4096)
        self._last_id = max(candidate, self._last_id + 1)
        return str(self._last_id)

    def _mentions_in(self, text: str) -> list[dict[str, Any]]:
        by_handle = {u.username.lower(): u for u in self.users.values()}
        out = []
        for m in re.finditer(r"(?<!\w)@(\w{1,15})", text):
            user = by_handle.get(m.group(1).lower())
            ent = {"start": m.start(), "end": m.end(), "username": m.group(1)}
            if user:
                ent["id"] = user.id
            out.append(ent)
        return out

    def post(self, author: XUser, text: str, *, at: dt.datetime | None = None, lang: str | None = None,
             reply_to: XPost | None = None, quote: XPost | None = None, retweet: XPost | None = None,
             link: str | None = None, metrics: dict[str, int] | None = None) -> XPost:
        """Publish a post (ids grow with time, like snowflakes)."""
        with self._lock:
            at = at or self.now()
            if retweet is not None:
                text = f"RT @{retweet.author.username}: {retweet.text}"
                lang = retweet.lang
            elif reply_to is not None and not text.startswith("@"):
                # X prefills a reply with the people it answers ("Replying to"):
                # the parent's author (unless it is a self-thread) and whom it mentioned.
                handles: list[str] = []
                for h in [reply_to.author.username, *(m["username"] for m in reply_to.mentions)]:
                    if h.lower() != author.username.lower() and h.lower() not in map(str.lower, handles):
                        handles.append(h)
                text = " ".join([*(f"@{h}" for h in handles), text])
            urls = []
            targets = [link] if link else []
            if quote is not None:
                targets.append(f"https://x.com/{quote.author.username}/status/{quote.id}")
            for target in targets:
                short = f"https://t.co/{_base36(10_000_000 + next(self._link) * 7919)}"
                text = f"{text} {short}"
                urls.append({"start": len(text) - len(short), "end": len(text), "url": short,
                             "expanded_url": target, "display_url": target.split("://", 1)[-1][:26]})
            post_id = self._new_id(at)
            conv = reply_to.conversation_id if reply_to is not None else post_id
            p = XPost(id=post_id, author=author, text=text, created_at=at, lang=lang or author.language,
                      conversation_id=conv, in_reply_to=reply_to, quoted=quote, retweeted=retweet, urls=urls,
                      mentions=self._mentions_in(text), metrics=dict(metrics or {}))
            self.posts.append(p)
            if retweet is not None:
                retweet.metrics["retweet_count"] = retweet.metrics.get("retweet_count", 0) + 1
            if reply_to is not None:
                reply_to.metrics["reply_count"] = reply_to.metrics.get("reply_count", 0) + 1
            return p

    def thread(self, author: XUser, texts: list[str], *, start: dt.datetime | None = None,
               gap: dt.timedelta = dt.timedelta(minutes=3)) -> list[XPost]:
        """Several posts by one author, each answering the previous (a thread)."""
        start = start or self.now() - gap * len(texts)
        posts: list[XPost] = []
        for i, text in enumerate(texts):
            posts.append(self.post(author, text, at=start + gap * i, reply_to=posts[-1] if posts else None))
        return posts

    def seed_demo(self, n: int = 30, hours: float = 6.0) -> None:
        """A morning of webcare traffic, ending now."""
        rng = self.rng
        generate_people(rng, SOCIAL_CROWD)  # drawn as before, so the posts below stay as they were
        # The demo's social crowd: the survey's first respondents (hub.sdk.demo_data), so a
        # person's tweets and survey answers meet in the hub as one customer.
        people = demo_people(SOCIAL_CROWD)
        for i, person in enumerate(people):
            followers = int(rng.lognormvariate(5, 1.6)) + 3
            self.crowd.append(self.add_user(str(1_400_000_000 + i * 7_777), person.handle,
                                            person.social_name or person.name, followers, person.language))
        viral = self.add_user("98765432", "mark_rutgers", "Mark Rutgers", followers=251_400, language="nl")
        angry = self.add_user("55501234", "sanne_boos", "Sanne Bakker", followers=1_450, language="nl")
        now = self.now()
        # the scenarios webcare teams care about come in the last hour, after
        # the ordinary traffic (ids grow with time, as X's snowflakes do)
        t0 = now - dt.timedelta(minutes=50)
        start = now - dt.timedelta(hours=max(hours, 1.5))
        span = (t0 - start).total_seconds()
        for when in sorted(start + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(n)):
            self.random_post(when)
        big = self.post(viral, f"@{BRAND_HANDLE} Al twee dagen geen internet in heel Amersfoort en jullie "
                        "klantenservice is onbereikbaar. Schandalig. Ik ga overstappen!", at=t0,
                        metrics={"like_count": 2_310, "quote_count": 48})
        for j, fan in enumerate(self.crowd[:2]):
            self.post(fan, "", retweet=big, at=t0 + dt.timedelta(minutes=2 + j))
        self.post(self.crowd[2], "Herkenbaar, hier in Leusden ook. @acme los dit op", quote=big,
                  at=t0 + dt.timedelta(minutes=5), lang="nl")
        self.thread(angry, [
            f"@{BRAND_HANDLE} Al drie weken storing en niemand belt terug. Belachelijk. Ik ga overstappen!",
            "Vanochtend weer 40 minuten in de wacht gestaan. Waardeloze service.",
            "En nu zegt de monteur dat hij pas volgende week kan komen?! Ik zeg mijn abonnement op.",
            "Als dit vrijdag niet opgelost is gaat het naar de Geschillencommissie.",
        ], start=t0 + dt.timedelta(minutes=10), gap=dt.timedelta(minutes=4))
        self.post(self.brand, "Wat vervelend, Sanne! We sturen je een DM om dit vandaag nog op te lossen. ^Lisa "
                  "van Acme", reply_to=self.posts[-1], at=t0 + dt.timedelta(minutes=30))
        self.post(self.brand, "Storing in regio Amersfoort: onze monteurs zijn ter plaatse. Excuses voor het "
                  "ongemak! Volg de status op de Acme storingspagina.", link="https://www.acme.example/storingen",
                  at=t0 + dt.timedelta(minutes=35))
        self.post(self.crowd[3], "@acme 😡😡😡", at=t0 + dt.timedelta(minutes=38), lang="und")

    def random_post(self, when: dt.datetime | None = None) -> XPost:
        """One generated post: complaint, question, praise, a thread reply, a retweet or a brand reply."""
        rng = self.rng
        person = rng.choice(self.crowd) if self.crowd else self.brand
        lang = person.language
        roll = rng.random()
        recent = [p for p in self.posts[-30:] if p.author is not self.brand and not p.retweeted]
        if roll < 0.08 and recent:
            target = rng.choice(recent)
            return self.post(rng.choice(self.crowd), "", retweet=target, at=when)
        if roll < 0.14 and recent:
            target = rng.choice(recent)
            reply = "Wat vervelend! Kun je ons een DM sturen? ^Acme" if target.lang == "nl" else \
                "Sorry to hear that! Please send us a DM. ^Acme"
            return self.post(self.brand, reply, reply_to=target, at=when, lang=target.lang)
        if roll < 0.22 and recent:
            target = rng.choice(recent)
            words = rng.choice(TEXTS[target.author.language]["detractor"])
            return self.post(target.author, words, reply_to=target, at=when)
        if roll < 0.50:
            text = f"@{BRAND_HANDLE} " + rng.choice(TEXTS[lang]["detractor"])
        elif roll < 0.75:
            text = rng.choice(POSTS[lang])
        elif roll < 0.92:
            text = f"@{BRAND_HANDLE} " + rng.choice(TEXTS[lang]["promoter"])
        else:
            text = f"@{BRAND_HANDLE} " + rng.choice(TEXTS[lang]["passive"])
        link = "https://www.acme.example/help/storing" if rng.random() < 0.1 else None
        return self.post(person, text, at=when, link=link, metrics={"like_count": rng.randint(0, 12)})

    def tick(self, n: int | None = None) -> list[XPost]:
        """New posts since the last tick (the demo calls it every few seconds)."""
        with self._lock:
            count = n if n is not None else self.rng.choice([0, 1, 1, 2, 3])
            return [self.random_post() for _ in range(count)]

    # -- knobs for tests ------------------------------------------------------------
    def spend_window(self, endpoint: str) -> None:
        """The current window of ``endpoint`` is used up: the next call gets 429."""
        with self._lock:
            window = self._window(endpoint)
            window.used = self.limits[endpoint]

    def inject(self, endpoint: str, status: int, body: Any, *, times: int = 1,
               headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` calls to ``endpoint`` (or ``*``) with this."""
        with self._lock:
            self.injected.setdefault(endpoint, []).extend([(status, body, headers or {})] * times)

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if endpoint is None or r["endpoint"] == endpoint]

    # -- serving ------------------------------------------------------------------
    def _window(self, endpoint: str) -> _Window:
        now = self.clock.time()
        window = self._windows.get(endpoint)
        if window is None or now >= window.start + self.window_seconds:
            window = self._windows[endpoint] = _Window(start=now)
        return window

    def _respond(self, endpoint: str, status: int, body: Any, extra: dict[str, str] | None = None) -> flask.Response:
        window = self._window(endpoint)
        limit = self.limits[endpoint]
        resp = flask.Response(json.dumps(body), status=status, mimetype="application/json")
        resp.headers["x-rate-limit-limit"] = str(limit)
        resp.headers["x-rate-limit-remaining"] = str(max(0, limit - window.used))
        resp.headers["x-rate-limit-reset"] = str(int(window.start + self.window_seconds))
        resp.headers["api-version"] = "2.0-emulator"
        for k, v in (extra or {}).items():
            resp.headers[k] = v
        return resp

    def handle(self, endpoint: str, args: dict[str, str], auth: str | None,
               select: Callable[[dict[str, str]], list[XPost] | dict[str, Any]]) -> flask.Response:
        with self._lock:
            log_entry: dict[str, Any] = {"endpoint": endpoint, "params": dict(args), "at": self.clock.time()}
            self.requests.append(log_entry)

            def done(status: int, body: Any, extra: dict[str, str] | None = None) -> flask.Response:
                log_entry["status"] = status
                return self._respond(endpoint, status, body, extra)

            if auth != f"Bearer {self.bearer_token}":
                return done(401, UNAUTHORIZED)
            window = self._window(endpoint)
            if window.used >= self.limits[endpoint]:
                return done(429, TOO_MANY_REQUESTS)
            window.used += 1
            for key in (endpoint, "*"):
                if self.injected.get(key):
                    status, body, headers = self.injected[key].pop(0)
                    return done(status, body, headers)
            if self.monthly_cap is not None and self.posts_served >= self.monthly_cap:
                return done(429, USAGE_CAPPED)
            result = select(args)
            if isinstance(result, dict):
                # invalid parameters are a 400 problem; a missing resource is
                # a 200 whose body holds only ``errors`` (as X answers)
                return done(400 if result.get("title") == "Invalid Request" else 200, result)
            return done(200, self._page(result, args, endpoint, log_entry))

    def _page(self, candidates: list[XPost], args: dict[str, str], endpoint: str,
              log_entry: dict[str, Any]) -> dict[str, Any]:
        size = int(args.get("max_results") or 10)
        page = candidates[:size]
        self.posts_served += len(page)
        log_entry["returned"] = [p.id for p in page]
        if not page:
            return {"meta": {"result_count": 0}}
        tweet_fields = set(filter(None, (args.get("tweet.fields") or "").split(",")))
        user_fields = set(filter(None, (args.get("user.fields") or "").split(",")))
        body: dict[str, Any] = {"data": [p.v2(tweet_fields) for p in page]}
        if "author_id" in (args.get("expansions") or "").split(","):
            authors: dict[str, XUser] = {}
            for p in page:
                authors.setdefault(p.author.id, p.author)
            body["includes"] = {"users": [u.v2(user_fields) for u in authors.values()]}
        meta: dict[str, Any] = {"newest_id": page[0].id, "oldest_id": page[-1].id, "result_count": len(page)}
        if len(candidates) > size:
            meta["next_token"] = TOKEN_PREFIX + _base36(int(page[-1].id))
        body["meta"] = meta
        return body

    def _common(self, args: dict[str, str], low: int, token_names: tuple[str, ...], horizon: dt.datetime | None
                ) -> tuple[Callable[[XPost], bool], dict[str, Any] | None]:
        """Filters shared by both endpoints, or a 400 body."""
        raw_max = args.get("max_results", "10")
        if not raw_max.isdigit() or not low <= int(raw_max) <= 100:
            return (lambda p: False), invalid_request(
                "max_results", raw_max, f"The `max_results` query parameter value [{raw_max}] is not between "
                f"{low} and 100")
        checks: list[Callable[[XPost], bool]] = []
        for name in ("since_id", "until_id"):
            value = args.get(name)
            if value is None:
                continue
            if not re.fullmatch(r"[0-9]{1,19}", value):
                return (lambda p: False), invalid_request(
                    name, value, f"The `{name}` query parameter value [{value}] does not match ^[0-9]{{1,19}}$")
            if name == "since_id" and horizon is not None:
                created = dt.datetime.fromtimestamp(((int(value) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000, dt.UTC)
                if created < horizon:
                    return (lambda p: False), invalid_request(
                        name, value, f"Invalid 'since_id':'{value}'. 'since_id' must be a tweet id created after "
                        f"{_v2_time(horizon)}.")
            bound = int(value)
            checks.append((lambda p, b=bound: int(p.id) > b) if name == "since_id"
                          else (lambda p, b=bound: int(p.id) < b))
        for name in ("start_time", "end_time"):
            value = args.get(name)
            if value is None:
                continue
            try:
                when = _parse_time(value)
            except ValueError:
                return (lambda p: False), invalid_request(name, value, f"Invalid '{name}':'{value}'.")
            if name == "start_time" and horizon is not None and when < horizon:
                return (lambda p: False), invalid_request(
                    name, value, f"Invalid 'start_time':'{value}'. 'start_time' must be on or after "
                    f"{_v2_time(horizon)}")
            checks.append((lambda p, w=when: p.created_at >= w) if name == "start_time"
                          else (lambda p, w=when: p.created_at < w))
        token = next((args[n] for n in token_names if args.get(n)), None)
        if token is not None:
            name = next(n for n in token_names if args.get(n))
            try:
                if not token.startswith(TOKEN_PREFIX):
                    raise ValueError
                anchor = int(token[len(TOKEN_PREFIX):], 36)
            except ValueError:
                return (lambda p: False), invalid_request(
                    name, token, f"The `{name}` query parameter value [{token}] is not valid")
            checks.append(lambda p, a=anchor: int(p.id) < a)
        if horizon is not None:
            checks.append(lambda p: p.created_at >= horizon)
        return (lambda p: all(c(p) for c in checks)), None

    def mentions(self, user_id: str, args: dict[str, str]) -> list[XPost] | dict[str, Any]:
        keep, problem = self._common(args, 5, ("pagination_token",), None)
        if problem:
            return problem
        user = self.users.get(user_id)
        if user is None:
            return {"errors": [{"value": user_id, "detail": f"Could not find user with id: [{user_id}].",
                                "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                                "resource_id": user_id, "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        handle = user.username.lower()
        hits = [p for p in reversed(self.posts) if p.author is not user and keep(p)
                and (any(m["username"].lower() == handle for m in p.mentions)
                     or (p.in_reply_to is not None and p.in_reply_to.author is user))]
        return hits

    def search(self, args: dict[str, str]) -> list[XPost] | dict[str, Any]:
        query = args.get("query")
        if not query:
            return invalid_request("query", "", "The `query` query parameter can not be empty")
        if len(query) > 512:
            return invalid_request("query", query, f"The `query` query parameter value [{query}] is longer than "
                                   "512 characters")
        try:
            matcher = compile_query(query)
        except QueryError as exc:
            return invalid_request("query", query, str(exc))
        horizon = self.now() - dt.timedelta(days=SEARCH_DAYS)
        keep, problem = self._common(args, 10, ("next_token", "pagination_token"), horizon)
        if problem:
            return problem
        return [p for p in reversed(self.posts) if keep(p) and matcher(p.view())]

    # -- Account Activity deliveries -------------------------------------------------
    def aaa_payload(self, posts: list[XPost], for_user_id: str = BRAND_ID) -> dict[str, Any]:
        return {"for_user_id": for_user_id, "tweet_create_events": [p.v1() for p in posts]}

    def deliver(self, url: str, posts: list[XPost], secret: str = DEMO_CONSUMER_SECRET,
                timeout: float = 5.0) -> requests.Response:
        """POST a signed Account Activity delivery to a hub webhook URL."""
        body = json.dumps(self.aaa_payload(posts)).encode()
        return requests.post(url, data=body, timeout=timeout,
                             headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)})

    # -- the Flask face ---------------------------------------------------------------
    def blueprint(self) -> flask.Blueprint:
        bp = flask.Blueprint("x_emulator", __name__)
        emu = self

        def auth() -> str | None:
            return flask.request.headers.get("Authorization")

        @bp.get("/2/users/<user_id>/mentions")
        def mentions(user_id: str):
            return emu.handle("mentions", flask.request.args.to_dict(), auth(),
                              lambda args: emu.mentions(user_id, args))

        @bp.get("/2/tweets/search/recent")
        def search():
            return emu.handle("search", flask.request.args.to_dict(), auth(), emu.search)

        @bp.get("/")
        def index():
            return flask.jsonify(
                emulator="X API v2 (mentions, recent search)",
                bearer_token_hint="Authorization: Bearer " + emu.bearer_token,
                brand={"id": emu.brand.id, "username": emu.brand.username},
                endpoints=["GET 2/users/<id>/mentions", "GET 2/tweets/search/recent",
                           "POST _emulator/tick", "POST _emulator/spend/<mentions|search>", "GET _emulator/posts"],
                posts=len(emu.posts))

        @bp.post("/_emulator/tick")
        def tick():
            n = flask.request.args.get("n", type=int)
            return flask.jsonify(added=[p.id for p in emu.tick(n if n is not None else 1)])

        @bp.post("/_emulator/spend/<endpoint>")
        def spend(endpoint: str):
            if endpoint not in emu.limits:
                flask.abort(404)
            emu.spend_window(endpoint)
            return flask.jsonify(spent=endpoint)

        @bp.get("/_emulator/posts")
        def posts():
            return flask.jsonify(posts=[{"id": p.id, "author": p.author.username, "text": p.text,
                                         "created_at": _v2_time(p.created_at)} for p in reversed(emu.posts)])

        return bp


def demo_tick(emu: XEmulator, instance: str = "webcare", webhook_share: float = 0.5) -> Callable[[str, str], None]:
    """The demo's periodic job: new posts, and now and then the same post pushed
    through the Account Activity webhook too (the hub stores it once)."""

    def tick(base_url: str, hub_url: str) -> None:
        new = emu.tick()
        mentions = [p for p in new if p.author is not emu.brand]
        if mentions and emu.rng.random() < webhook_share:
            try:
                emu.deliver(f"{hub_url}/webhooks/{instance}", mentions[:1])
            except requests.RequestException as exc:  # the hub may still be starting
                log.info("x emulator: webhook delivery to %s failed: %s", hub_url, exc)

    return tick

