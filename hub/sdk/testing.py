"""The plugin author's testing kit: a pytest plugin that comes with feedback-hub.

Installing feedback-hub registers this module with pytest (entry point
``pytest11: feedback_hub``), so a plugin's own test suite gets these fixtures
without copying anything out of the hub's tests:

``make_hub(plugins=..., sources=..., sinks=..., **config) -> RunningHub``
    a hub app on a fresh, migrated SQLite database under ``tmp_path``, with the
    inline executor (webhook processing and jobs run before the call returns)
    and the ``fake_clock`` as its clock.  :class:`RunningHub` gives ``app``,
    ``hub``, ``client`` and ``clock``, plus ``pull``, ``dispatch``,
    ``sync_completed``, ``post_webhook`` and the ``/api/v1`` answers
    (``feedback()``, ``cases()``) to assert on.
``fake_clock``
    a :class:`~hub.sdk.clock.FakeClock` at :data:`FAKE_NOW`; ``sleep`` advances
    it instantly and is recorded in ``clock.sleeps`` (retry waits, budgets).
``live_server(wsgi_app) -> base_url``
    serves any WSGI app (an emulator, a :class:`FakeVendor`) on a loopback port,
    so the connector talks real HTTP through ``requests``.
``fake_vendor``
    a :class:`FakeVendor` already served: declare routes with canned replies
    (pages, 429 with ``Retry-After``, error bodies) and assert on the requests
    it recorded, without writing a Flask app.

And two plain helpers for signed webhooks: :func:`sign_hmac` (hex or base64,
any prefix) and :func:`post_webhook`.

Import rule: like all of :mod:`hub.sdk` this module imports nothing of the
engine, storage, API, web UI or CLI at module level.  It is the one part of the
SDK that needs a *running* hub, so the functions that start or drive one import
the public app factory (``hub.create_app``), the migrations and the engine's job
functions lazily, inside the function (see :func:`_core`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hub.sdk.clock import FakeClock

__all__ = [
    "FAKE_NOW", "LOOPBACK_TEST_HOSTS", "FakeVendor", "LiveServer", "RecordedRequest", "Reply", "RunningHub", "migrated_sqlite",
    "post_webhook", "sign_hmac", "start_hub",
]

#: "Now" of the ``fake_clock`` fixture, so a kit-built hub never reads the wall clock.
FAKE_NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
#: Where the kit's servers listen; hubs and clients the kit builds may reach them
#: (``http.allowed_private_hosts``), everything else private stays refused.
LOOPBACK_TEST_HOSTS = ("127.0.0.1",)


# -- signed webhooks ---------------------------------------------------------------
def sign_hmac(secret: str | bytes, body: str | bytes, algo: str = "sha256", encoding: str = "base64",
              prefix: str | None = None) -> str:
    """The signature a vendor would send for ``body``: HMAC of the exact bytes.

    ``encoding`` is ``"base64"`` (Typeform, X's CRC) or ``"hex"`` (GitHub,
    Meta); ``prefix`` defaults to ``"<algo>="`` (``sha256=``), pass ``""`` for
    a bare digest.  Written independently of the SDK's verifier on purpose: a
    test's oracle should not share code with what it checks.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    data = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key, data, getattr(hashlib, algo)).digest()
    if encoding == "base64":
        text = base64.b64encode(digest).decode()
    elif encoding == "hex":
        text = digest.hex()
    else:
        raise ValueError(f"encoding must be 'base64' or 'hex', not {encoding!r}")
    return (f"{algo}=" if prefix is None else prefix) + text


def post_webhook(client, instance: str, body: bytes | str | Mapping[str, Any] | list,
                 headers: Mapping[str, str] | None = None, *, method: str = "POST",
                 query: Mapping[str, str] | None = None):
    """Send ``body`` to ``/webhooks/<instance>`` through a Flask test client.

    ``body`` goes out byte for byte; a dict or list is JSON-encoded first (sign
    a dict by encoding it yourself, so the signature covers the same bytes).
    ``Content-Type`` defaults to ``application/json``.
    """
    if isinstance(body, Mapping | list):
        body = json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    return client.open(f"/webhooks/{instance}", method=method, data=body, headers=sent,
                       query_string=dict(query or {}))


# -- a real HTTP server on loopback ---------------------------------------------------
class LiveServer:
    """Serve a WSGI app on ``127.0.0.1`` and a free port, in a daemon thread."""

    def __init__(self, wsgi_app):
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- a scripted vendor API ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Reply:
    """One canned answer: JSON (or raw ``body`` bytes/text), status and headers."""

    status: int = 200
    json: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | str | None = None

    def response(self) -> Response:
        if self.body is not None:
            return Response(self.body, status=self.status, headers=dict(self.headers))
        payload = "" if self.json is None and self.status == 204 else json.dumps(self.json)
        return Response(payload, status=self.status, headers=dict(self.headers), content_type="application/json")


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """What a :class:`FakeVendor` received (headers as a case-insensitive copy)."""

    method: str
    path: str
    args: dict[str, str]
    headers: Headers  # look-ups ignore case, as HTTP does
    body: bytes
    #: Values of the route's ``<placeholders>``.
    path_params: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[RecordedRequest], Reply]


class _Script:
    """The replies of one route: a handler, a fixed reply, or a sequence."""

    def __init__(self, replies: list[Reply] | None, handler: Handler | None, repeat_last: bool):
        self.replies = replies
        self.handler = handler
        self.repeat_last = repeat_last
        self.served = 0

    def next_scripted(self) -> Reply | None:
        """The next reply of a sequence (the caller holds the vendor's lock)."""
        assert self.replies is not None
        if self.served < len(self.replies):
            reply = self.replies[self.served]
        elif self.repeat_last and self.replies:
            reply = self.replies[-1]
        else:
            return None
        self.served += 1
        return reply


class FakeVendor:
    """A vendor API stand-in from declarations; a WSGI app (serve it with ``live_server``).

    .. code-block:: python

        vendor = FakeVendor()
        vendor.route("GET", "/v1/items", pages=[{"items": [...], "next": "p2"}, {"items": []}])
        vendor.route("GET", "/v1/items/<item_id>", json={"id": 1})         # the same reply every time
        vendor.route("POST", "/v1/tasks", replies=[Reply(429, headers={"Retry-After": "7"}), Reply(201, {"id": 9})])
        base_url = live_server(vendor)
        ...
        assert [r.args.get("cursor") for r in vendor.calls("GET", "/v1/items")] == [None, "p2"]

    A sequence (``pages`` = 200 JSON bodies, ``replies`` = any :class:`Reply`)
    is served in order; a request past its end gets **HTTP 418** with a JSON
    ``error`` naming the route, and lands in :attr:`unexpected`, so a connector
    asking one page too many fails loudly (``repeat_last=True`` serves the last
    reply forever instead).  ``handler=fn`` computes each reply from the
    :class:`RecordedRequest`.  Unknown paths get 404 and land in
    :attr:`unexpected` too.  Routes may be added while the server runs.
    """

    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.unexpected: list[RecordedRequest] = []
        self.url: str | None = None  # set by the ``fake_vendor`` fixture
        self._map = Map()
        self._scripts: dict[str, _Script] = {}
        self._lock = threading.Lock()

    def route(self, method: str, path: str, *, pages: Sequence[Any] | None = None,
              replies: Sequence[Reply] | None = None, json: Any = None, status: int = 200,
              headers: Mapping[str, str] | None = None, handler: Handler | None = None,
              repeat_last: bool = False) -> FakeVendor:
        """Declare what ``method path`` answers (werkzeug rule syntax: ``/items/<id>``).  Returns self."""
        given = [x is not None for x in (pages, replies, handler)]
        if sum(given) > 1:
            raise ValueError("give one of pages=, replies= or handler=")
        if pages is not None:
            script = _Script([Reply(200, page) for page in pages], None, repeat_last)
        elif replies is not None:
            script = _Script(list(replies), None, repeat_last)
        elif handler is not None:
            script = _Script(None, handler, False)
        else:
            script = _Script([Reply(status, json, dict(headers or {}))], None, True)
        endpoint = f"{method.upper()} {path}"
        with self._lock:
            if endpoint in self._scripts:
                raise ValueError(f"route {endpoint} is declared twice")
            self._scripts[endpoint] = script
            self._map.add(Rule(path, methods=[method.upper()], endpoint=endpoint))
        return self

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those of one method and/or concrete path."""
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method.upper()) and (path is None or r.path == path)]

    def _answer(self, request: Request) -> Response:
        with self._lock:
            adapter = self._map.bind_to_environ(request.environ)
            try:
                endpoint, params = adapter.match()
            except HTTPException as exc:
                endpoint, params = None, {}
                status = exc.code or 404
            recorded = RecordedRequest(request.method, request.path, dict(request.args.items()),
                                       Headers(request.headers), request.get_data(), dict(params))
            self.requests.append(recorded)
            if endpoint is None:
                self.unexpected.append(recorded)
                return Reply(status, {"error": f"fake vendor: no route for {request.method} {request.path}"}).response()
            script = self._scripts[endpoint]
            if script.handler is None:  # the live server is threaded: take sequence replies in turn
                reply = script.next_scripted()
                if reply is None:
                    self.unexpected.append(recorded)
        if script.handler is not None:
            reply = script.handler(recorded)  # outside the lock: a handler may be slow or call calls()
        if reply is None:
            return Reply(418, {"error": f"fake vendor: no more replies scripted for {endpoint} "
                                        f"({len(script.replies or [])} given)"}).response()
        return reply.response()

    def __call__(self, environ, start_response):
        return self._answer(Request(environ))(environ, start_response)


# -- a running hub ------------------------------------------------------------------
def _core() -> SimpleNamespace:
    """The hub's engine, imported on first use.

    WHY lazily: :mod:`hub.sdk` is the plugin API and must not depend on the
    engine at import time (plugins import it, and a test enforces the rule).
    The testing kit is the one place in the SDK that needs a running hub, so it
    reaches the core only here, when a test actually starts or drives one.
    """
    import hub
    from hub.engine.accounts import create_token
    from hub.engine.completion import sync_completions
    from hub.engine.dispatch import dispatch
    from hub.engine.pulls import pull
    from hub.storage import models
    from hub.storage.database import make_engine
    from hub.storage.migrate import upgrade

    return SimpleNamespace(create_app=hub.create_app, create_token=create_token, dispatch=dispatch, pull=pull,
                           sync_completions=sync_completions, models=models, make_engine=make_engine,
                           upgrade=upgrade)


def migrated_sqlite(path: Path) -> str:
    """Create a SQLite database at ``path`` with every migration applied; returns its URL."""
    core = _core()
    url = f"sqlite:///{path}"
    engine = core.make_engine(url)
    try:
        core.upgrade(engine)
    finally:
        engine.dispose()
    return url


@dataclasses.dataclass
class RunningHub:
    """A hub app built for a test, and the few ways a plugin test drives it.

    ``hub`` is the app's engine state (``app.extensions["hub"]``): reach the
    configured plugin objects with ``hub.registry.connector(name)`` /
    ``hub.registry.sink(name)``.  Results are best asserted through the public
    ``/api/v1`` answers (:meth:`feedback`, :meth:`cases`, :meth:`api_get`),
    which do not change when the hub's tables do.
    """

    app: Any
    hub: Any
    client: Any
    clock: FakeClock
    _token: str | None = None

    # driving the jobs the scheduler would run
    def pull(self, instance: str, *, since: dt.datetime | None = None):
        """One pull of ``instance`` (a backfill from ``since``); returns the report
        (``pages``, ``records``, ``new_items``, ``duplicates``, ``failed``)."""
        return _core().pull(self.hub, instance, since=since)

    def dispatch(self, *, ignore_schedule: bool = True):
        """Push pending follow-ups to their sinks; returns the report (``sent``, ``retried``,
        ``dead``, ``errors``).

        By default even follow-ups planned for a later slot go (the planner puts
        callbacks in business hours).  Each is pushed at most once per call, so a
        test sees a failed push as ``retried`` and decides when the next attempt
        happens by calling again.
        """
        return _core().dispatch(self.hub, ignore_schedule=ignore_schedule)

    def sync_completed(self) -> int:
        """Ask every sink which sent follow-ups are completed; returns how many closed."""
        return _core().sync_completions(self.hub)

    def post_webhook(self, instance: str, body, headers: Mapping[str, str] | None = None, **kwargs):
        """:func:`post_webhook` with this hub's client."""
        return post_webhook(self.client, instance, body, headers, **kwargs)

    # reading results through the API
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer`` headers of an API token of this hub (made once)."""
        if self._token is None:
            with self.hub.db.session() as s:
                self._token = _core().create_token(s, "testing-kit")
        return {"Authorization": f"Bearer {self._token}"}

    def api_get(self, path: str, **params: Any) -> Any:
        """JSON of ``GET /api/v1<path>``; fails the test on a non-200 answer."""
        r = self.client.get(f"/api/v1{path}", query_string=params, headers=self.auth_headers())
        assert r.status_code == 200, f"GET /api/v1{path} -> {r.status_code}: {r.get_data(as_text=True)[:500]}"
        return r.get_json()

    def api_post(self, path: str, json: Any):
        """``POST /api/v1<path>`` with a JSON body; returns the response (status unchecked)."""
        return self.client.post(f"/api/v1{path}", json=json, headers=self.auth_headers())

    def feedback(self, **filters: Any) -> list[dict[str, Any]]:
        """Every stored item as the API shows it, oldest first (filters as in ``GET /api/v1/feedback``)."""
        return list(reversed(list(self._all("/feedback", filters))))

    def cases(self, **filters: Any) -> list[dict[str, Any]]:
        """Every case as the API shows it (with its ``followup``), oldest first."""
        return list(reversed(list(self._all("/cases", filters))))

    def _all(self, path: str, filters: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.api_get(path, limit=200, **filters, **({"cursor": cursor} if cursor else {}))
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def stream_state(self, instance: str, stream: str = "default") -> dict[str, Any]:
        """The saved state of one stream: ``cursor``, ``last_error``, ``items_total``..."""
        from sqlalchemy import select

        m = _core().models
        with self.hub.db.Session() as s:
            row = s.scalars(select(m.ConnectorState).filter_by(instance=instance, stream=stream)).first()
            if row is None:
                return {}
            return {c.name: getattr(row, c.name) for c in m.ConnectorState.__table__.columns}

    def close(self) -> None:
        self.hub.executor.shutdown()
        self.hub.db.dispose()


def start_hub(*, database_url: str, plugins: Iterable[Any] = (), clock: FakeClock | None = None,
              load_entry_points: bool = False, **config: Any) -> RunningHub:
    """Build a hub app on an existing, migrated database (the fixtures' common core).

    ``config`` overrides the configuration (``sources={...}``, ``sinks={...}``,
    ``routing={...}``, any core key); the executor is ``inline`` unless given.
    Only ``plugins`` (modules or objects with ``@hookimpl`` functions) are
    registered besides the core's defaults, unless ``load_entry_points`` is
    true: a test says which plugins it runs.  Call :meth:`RunningHub.close`.
    """
    clock = clock or FakeClock(FAKE_NOW.timestamp())
    # Test vendors listen on loopback, which the hub refuses by default (SSRF):
    # allowed here unless the test passes an ``http`` table of its own.
    settings = {"database_url": database_url, "executor": "inline",
                "http": {"allowed_private_hosts": list(LOOPBACK_TEST_HOSTS)}, **config}
    app = _core().create_app(settings, plugins=tuple(plugins), clock=clock, load_entry_points=load_entry_points)
    app.testing = True
    return RunningHub(app=app, hub=app.extensions["hub"], client=app.test_client(), clock=clock)


# -- the pytest plugin ------------------------------------------------------------------
@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at :data:`FAKE_NOW`; hubs from ``make_hub`` use it."""
    return FakeClock(FAKE_NOW.timestamp())


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], str]]:
    """``live_server(wsgi_app) -> base URL``; every server stops after the test.

    While it runs, clients built without a policy may reach ``127.0.0.1``
    (:func:`hub.sdk.http.set_default_policy`): the servers listen there.
    """
    from hub.sdk.http import default_policy, set_default_policy

    previous = set_default_policy(default_policy().widened(LOOPBACK_TEST_HOSTS))
    servers: list[LiveServer] = []

    def start(wsgi_app) -> str:
        srv = LiveServer(wsgi_app)
        servers.append(srv)
        return srv.url

    yield start
    for srv in servers:
        srv.stop()
    set_default_policy(previous)


@pytest.fixture
def fake_vendor(live_server) -> FakeVendor:
    """A :class:`FakeVendor` served on loopback; its base URL is ``fake_vendor.url``."""
    vendor = FakeVendor()
    vendor.url = live_server(vendor)
    return vendor


@pytest.fixture(scope="session")
def hub_sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, made once per session and copied for each hub (migrations are slow)."""
    path = tmp_path_factory.mktemp("hub-template") / "hub.db"
    migrated_sqlite(path)
    return path


@pytest.fixture
def make_hub(hub_sqlite_template, tmp_path, fake_clock, monkeypatch) -> Iterator[Callable[..., RunningHub]]:
    """Factory: ``make_hub(plugins=[my_plugin], sources={...}, sinks={...}, **config) -> RunningHub``.

    Each hub gets its own copy of a migrated SQLite database under
    ``tmp_path``, the inline executor and ``fake_clock`` (pass ``clock=`` for
    another).  No site file leaks in, nor installed entry points unless
    ``load_entry_points=True``.  Hubs are closed after the test.
    """
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    hubs: list[RunningHub] = []

    def factory(plugins: Iterable[Any] = (), *, clock: FakeClock | None = None, load_entry_points: bool = False,
                **config: Any) -> RunningHub:
        path = tmp_path / f"hub-{len(hubs)}.db"
        shutil.copy(hub_sqlite_template, path)
        running = start_hub(database_url=f"sqlite:///{path}", plugins=plugins, clock=clock or fake_clock,
                            load_entry_points=load_entry_points, **config)
        hubs.append(running)
        return running

    yield factory
    for running in hubs:
        running.close()
