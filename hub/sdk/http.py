"""The one HTTP client every plugin uses (on ``requests``).

It gives each connector, without per-plugin code:

* timeouts on every request;
* retries for 429, 5xx, timeouts and connection errors, honouring
  ``Retry-After`` (seconds or HTTP date) and otherwise jittered exponential
  backoff (via ``tenacity``);
* a per-instance rate budget (token bucket) plus a "blocked until" time that
  a plugin sets from vendor headers such as ``x-rate-limit-reset``;
* pagination with loop detection (a page token seen twice stops the run)
  and a ``has_more`` answer apart from the token (:mod:`hub.sdk.pagination`);
* errors split into :class:`RetriableError` (try again later),
  :class:`RateLimitedError` (try again after a known wait) and
  :class:`FatalError` (fix the configuration or the request);
* a ``validate`` hook per client or per request that classifies each
  response: the default, :meth:`HttpClient.check_status`, goes by the HTTP
  status; a plugin whose vendor codes errors in the body (Graph answers
  throttling as HTTP 400 with ``error.code`` 4, 17, 32 or 613) overrides
  ``validate_response`` on its connector or stream instead of the client;
* no server-side request forgery: every connection goes to a public address
  or one the :class:`~hub.sdk.addresses.OutboundPolicy` allows
  (``http.allowed_private_hosts``), checked on the address actually connected
  to, after DNS (a name that resolves to 10.x at request time is refused, also
  when it was public a minute earlier); redirects are followed only on the
  same scheme, host and port.

Time goes through a :class:`Clock` so tests use :class:`FakeClock` and never sleep.
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from hub import __version__
from hub.sdk.addresses import STRICT, OutboundPolicy, address_of
from hub.sdk.clock import Clock, FakeClock  # noqa: F401  (re-exported for plugins)
from hub.sdk.pagination import Page, Paginator

log = logging.getLogger(__name__)

#: How many of a run's latest page tokens :meth:`HttpClient.pages` remembers to tell a loop
#: (an API handing out a token it gave before).  Bounded, so a backfill of a million
#: one-record pages keeps kilobytes, not every token it ever saw; a loop longer than
#: this still ends at ``max_pages``.
LOOP_WINDOW = 10_000


class RecentTokens:
    """The last ``limit`` page tokens added, for ``token in recent`` in constant time and memory."""

    def __init__(self, limit: int = LOOP_WINDOW):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._order: deque[str] = deque()
        self._set: set[str] = set()

    def __contains__(self, token: object) -> bool:
        return token in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, token: str) -> None:
        if token in self._set:
            return
        self._set.add(token)
        self._order.append(token)
        if len(self._order) > self.limit:
            self._set.discard(self._order.popleft())


RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpError(Exception):
    def __init__(self, message: str, status: int | None = None, body: Any = None, response=None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.response = response


class RetriableError(HttpError):
    """Temporary: the same request may succeed later (outage, 429, timeout)."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after
        #: False when the request's caller chose not to retry this status itself.
        self.retry_here = True


class RateLimitedError(RetriableError):
    """The vendor asks us to slow down; ``retry_after`` seconds is the wait it wants.

    Raised from a ``validate_response`` hook; besides retrying after the wait,
    the client pauses every request of the instance (its rate budget) until then.
    """


class FatalError(HttpError):
    """Permanent: retrying the same request will not help (4xx, bad config)."""


class PaginationLoopError(FatalError):
    """The API handed back a page token it had already given: stop, don't spin."""


class BlockedDestinationError(RetriableError):
    """The target is a private, loopback or link-local address the policy does not allow.

    Not retried by the client (the same address stays refused), but retriable
    in kind: the fix is ``http.allowed_private_hosts`` or the ``base_url``, not
    the request, so a follow-up that met it waits for the fix instead of dying.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.retry_here = False


class RedirectRefusedError(FatalError):
    """A redirect to another scheme, host or port (it would carry our credentials elsewhere)."""


# -- where connections may go (SSRF) -------------------------------------------
_default_policy: OutboundPolicy = STRICT


def default_policy() -> OutboundPolicy:
    """The policy of clients built without one (public hosts only, unless widened)."""
    return _default_policy


def set_default_policy(policy: OutboundPolicy) -> OutboundPolicy:
    """Replace the default policy (test suites allow their 127.0.0.1 servers); returns the old one.

    The hub itself never relies on it: each instance's client gets the
    policy of the hub's configuration (see the registry).
    """
    global _default_policy
    previous, _default_policy = _default_policy, policy
    return previous


class _CheckedConnectionMixin:
    """Resolve, check every address, then connect to a checked address - never resolve twice.

    Checking the name first and letting the socket resolve it again would let
    a DNS answer that changes in between (rebinding) reach a private address.
    TLS still verifies the certificate against the host name (``self.host``).
    """

    policy: OutboundPolicy = STRICT

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port
        try:
            infos = socket.getaddrinfo(host, port, urllib3_connection.allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        allowed = [a for a in addresses if self.policy.refusal(self.host, a) is None]
        if not allowed:
            raise BlockedDestinationError(self.policy.refusal(self.host, addresses[0]) if addresses
                                          else f"{self.host}: no address")
        error: OSError | None = None
        for address in allowed:
            try:
                sock = urllib3_connection.create_connection(
                    (address, port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options)
            except TimeoutError as e:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from e
            except OSError as e:
                error = e
                continue
            return sock
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error


def _checked_pool_classes(policy: OutboundPolicy) -> dict[str, type]:
    """urllib3 pool classes whose connections check ``policy`` (a class attribute:
    urllib3 builds connections itself and keys its pools on known arguments only)."""
    plain = type("CheckedHTTPConnection", (_CheckedConnectionMixin, HTTPConnection), {"policy": policy})
    tls = type("CheckedHTTPSConnection", (_CheckedConnectionMixin, HTTPSConnection), {"policy": policy})
    return {"http": type("CheckedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("CheckedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": tls})}


class CheckedAdapter(HTTPAdapter):
    """A ``requests`` adapter that connects only where ``policy`` allows."""

    __attrs__ = [*HTTPAdapter.__attrs__, "policy"]

    def __init__(self, policy: OutboundPolicy, **kwargs: Any):
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _checked_pool_classes(self.policy)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # A literal address is refused before anything is sent; through a
        # proxy (which resolves names itself) the name is resolved and checked
        # here, the best that can be done without seeing the proxy's connection.
        host = urlsplit(request.url or "").hostname or ""
        proxied = bool(requests.utils.select_proxy(request.url or "", kwargs.get("proxies") or {}))
        for address in _addresses(host, resolve=proxied):
            reason = self.policy.refusal(host, address)
            if reason:
                raise BlockedDestinationError(reason)
        return super().send(request, *args, **kwargs)


def _addresses(host: str, *, resolve: bool) -> list[str]:
    if address_of(host) is not None:
        return [host]
    if not resolve or not host:
        return []
    try:
        return [info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]
    except socket.gaierror:
        return []  # the proxy will answer that the name is unknown


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _refuse_cross_origin_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Response hook (runs for every hop): a redirect off this scheme, host and port is an error."""
    if not response.is_redirect:
        return
    target = requests.compat.urljoin(response.url, response.headers.get("Location", ""))
    if _origin(target) != _origin(response.url):
        response.close()
        raise RedirectRefusedError(f"redirect from {_origin_text(response.url)} to {_origin_text(target)} "
                                   "not followed (only redirects on the same scheme, host and port are)",
                                   response.status_code, None, response)


def _origin_text(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def guard_session(session: requests.Session, policy: OutboundPolicy) -> requests.Session:
    """Make ``session`` connect only where ``policy`` allows and refuse cross-origin redirects.

    Mounted over any adapter the session had: a client never talks unchecked.
    """
    if getattr(session, "hub_policy", None) is policy:
        return session  # already guarded (a second client sharing the session keeps its pools)
    adapter = CheckedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if _refuse_cross_origin_redirect not in session.hooks["response"]:
        session.hooks["response"].append(_refuse_cross_origin_redirect)
    session.max_redirects = 5
    session.hub_policy = policy  # type: ignore[attr-defined]  (a client sharing the session keeps it)
    return session


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


#: Called with (client name, seconds) after a request waited for its rate budget:
#: the core's metrics count waits here (hub.engine.metrics), whatever the budget's kind.
BUDGET_WAIT_HOOKS: list[Callable[[str, float], None]] = []


class RateBudget:
    """Token bucket: at most ``requests`` per ``per_seconds``, shared by threads.

    ``block_until(t)`` pauses every request of the instance until Unix time
    ``t`` - used when a vendor says the window is spent.
    """

    def __init__(self, requests_: int, per_seconds: float, clock: Clock | None = None):
        if requests_ <= 0 or per_seconds <= 0:
            raise ValueError("rate budget needs positive requests and period")
        self.capacity = float(requests_)
        self.rate = requests_ / per_seconds
        self.clock = clock or Clock()
        self.tokens = self.capacity
        self.updated = self.clock.time()
        self.blocked_until = 0.0
        self._lock = threading.Lock()

    def block_until(self, when: float) -> None:
        with self._lock:
            self.blocked_until = max(self.blocked_until, when)

    def _take(self, now: float) -> float | None:
        """Take a request's share at ``now``: None when taken, else seconds to wait."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate

    def acquire(self) -> float:
        """Wait until a request may go (budget and blocks); returns seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock.time()
                delay = self.blocked_until - now if now < self.blocked_until else self._take(now)
                if delay is None:
                    return waited
            # At least 1 ms: a tiny refill wait must still move a fake clock.
            delay = max(delay, 0.001)
            self.clock.sleep(delay)
            waited += delay


class RollingWindowBudget(RateBudget):
    """At most ``requests_`` sends in *any* window of ``per_seconds``.

    A token bucket lets a full burst through and then refills continuously,
    so right after a burst it allows more requests inside the same window -
    exactly what vendors that count in a rolling window (HubSpot's
    ``TEN_SECONDLY_ROLLING``) refuse.  ``margin`` is added to every wait: our
    send time and the vendor's receive time differ by the network latency.
    """

    def __init__(self, requests_: int, per_seconds: float, clock: Clock | None = None, margin: float = 0.05):
        super().__init__(requests_, per_seconds, clock=clock)
        self.limit = int(requests_)
        self.window = float(per_seconds)
        self.margin = margin
        self.sent: deque[float] = deque()

    def _take(self, now: float) -> float | None:
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            self.sent.append(now)
            return None
        return self.sent[0] + self.window - now + self.margin

    def in_window(self) -> int:
        """Requests sent in the current window (for health output)."""
        with self._lock:
            now = self.clock.time()
            return sum(1 for t in self.sent if t > now - self.window)


class HttpClient:
    """Shared ``requests`` client for one configured instance."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "http",
        headers: dict[str, str] | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 120.0,
        budget: RateBudget | None = None,
        clock: Clock | None = None,
        session: requests.Session | None = None,
        on_response: Callable[[requests.Response], float | None] | None = None,
        max_pages: int = 100_000,
        validate: Callable[[requests.Response], None] | None = None,
        policy: OutboundPolicy | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock or (budget.clock if budget else Clock())
        self.budget = budget
        self.session = session or requests.Session()
        #: Where this client may connect; a shared session keeps the policy it was guarded with.
        self.policy = policy or getattr(self.session, "hub_policy", None) or default_policy()
        guard_session(self.session, self.policy)
        self.session.headers.update({"User-Agent": f"feedback-hub/{__version__}", "Accept": "application/json"})
        if headers:
            self.session.headers.update(headers)
        self.on_response = on_response
        self.max_pages = max_pages
        #: Classifies every response (raise to refuse it); default: :meth:`check_status`.
        self.validate = validate or self.check_status
        self.requests_sent = 0

    # -- single request -------------------------------------------------
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def check_status(self, response: requests.Response) -> None:
        """The default response rules: pass 1xx-3xx, raise for 4xx/5xx.

        408, 425, 429 and 5xx raise :class:`RetriableError` (with the wait of
        a ``Retry-After`` header, seconds or HTTP date); any other 4xx raises
        :class:`FatalError`.  A plugin's ``validate_response`` usually handles
        its vendor's special cases and then calls this for the rest.
        """
        if response.status_code < 400:
            return
        body = _body(response)
        request = response.request
        method = request.method if request is not None else "?"
        # The path only: a query may carry a token (Graph's access_token).
        message = (f"{self.name}: {method} {urlsplit(response.url).path or '/'} -> HTTP {response.status_code}: "
                   f"{_short(body)}")
        if response.status_code in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.time())
            raise RetriableError(message, response.status_code, body, response, retry_after=retry_after)
        raise FatalError(message, response.status_code, body, response)

    def _send_once(self, method: str, path: str, retry_timeouts: bool, retry_statuses: frozenset[int],
                   validate: Callable[[requests.Response], None] | None = None, **kwargs) -> requests.Response:
        if self.budget:
            waited = self.budget.acquire()
            if waited:
                for hook in BUDGET_WAIT_HOOKS:
                    hook(self.name, waited)
        self.requests_sent += 1
        timeout = kwargs.pop("timeout", None) or self.timeout
        try:
            resp = self.session.request(method, self.url(path), timeout=timeout, **kwargs)
        except requests.Timeout as exc:
            if retry_timeouts:
                raise RetriableError(f"{self.name}: {method} {_path_only(path)} timed out") from exc
            raise FatalError(f"{self.name}: {method} {_path_only(path)} timed out (not retried: not idempotent)"
                             ) from exc
        except requests.ConnectionError as exc:
            raise RetriableError(f"{self.name}: {method} {_path_only(path)} connection failed: {exc}") from exc
        wait_until = self.on_response(resp) if self.on_response else None
        if wait_until and self.budget:
            self.budget.block_until(wait_until)
        try:
            (validate or self.validate)(resp)
        except RetriableError as exc:
            now = self.clock.time()
            if exc.retry_after is None and wait_until:
                exc.retry_after = max(0.0, wait_until - now)
            if isinstance(exc, RateLimitedError) and exc.retry_after and self.budget:
                self.budget.block_until(now + exc.retry_after)
            if exc.status in RETRY_STATUSES and exc.status not in retry_statuses:
                exc.retry_here = False  # retriable in kind, not retried here (the caller's choice)
            raise
        except FatalError as exc:
            if exc.status not in retry_statuses:
                raise
            # The caller asked to retry this status (e.g. a 409 while the vendor settles).
            raise RetriableError(str(exc), exc.status, exc.body, exc.response,
                                 retry_after=parse_retry_after(resp.headers.get("Retry-After"), self.clock.time())
                                 ) from exc
        return resp

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            return exc.retry_after
        # Full jitter: spreads retries of many instances after a shared outage.
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def request(self, method: str, path: str, *, retry_timeouts: bool = True,
                retry_statuses: frozenset[int] = RETRY_STATUSES,
                validate: Callable[[requests.Response], None] | None = None, **kwargs) -> requests.Response:
        """Send with retries; returns a response ``validate`` accepted or raises HttpError.

        ``kwargs`` go to ``requests`` (``params``, ``json``, ``headers``,
        ``timeout``...; a ``timeout`` here replaces the client's for this
        request).  ``validate(response)`` (default: the client's ``validate``,
        normally :meth:`check_status`) raises :class:`RetriableError`,
        :class:`RateLimitedError` or :class:`FatalError` for a response that
        must not be used; retriable ones are retried here.

        For a non-idempotent POST pass ``retry_timeouts=False`` and e.g.
        ``retry_statuses=frozenset({429})``: a timeout or a 5xx may mean the
        vendor did the work, so the caller checks before sending it again.
        Statuses not retried still raise :class:`RetriableError` (5xx) so the
        caller can decide.
        """
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, RetriableError) and e.retry_here),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self.clock.sleep,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "%s: retrying in %.1fs after: %s", self.name, s.next_action.sleep, s.outcome.exception()
            ),
        )
        return retrying(self._send_once, method, path, retry_timeouts, retry_statuses, validate, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    # -- pagination -----------------------------------------------------
    def paginate(
        self,
        method: str,
        path: str,
        *,
        params_for: Callable[[str | None], dict[str, Any]],
        parse: Callable[[requests.Response], list[Any]],
        paginator: Paginator,
        options_for: Callable[[str | None], dict[str, Any]] | None = None,
        start_token: str | None = None,
        **kwargs,
    ) -> Iterator[tuple[requests.Response, list[Any]]]:
        """Yield (response, records) page by page until the paginator says stop.

        ``params_for(token)`` builds each page's query (token None on the
        first page, or ``start_token`` when resuming); ``options_for(token)``
        gives per-request ``requests`` options (headers, timeout, json...).
        After each page the run stops when ``paginator.has_more`` is False or
        ``paginator.next_token`` is None; a token seen twice raises
        :class:`PaginationLoopError`.  For a paginator whose tokens are URLs
        (``token_is_url``) the next pages are those URLs, without
        ``params_for`` parameters, and only on this client's host.  To
        resume a run, pass the token of the page to fetch first as
        ``start_token`` (:meth:`pages` yields each page with its token).
        """
        for page in self.pages(method, path, params_for=params_for, parse=parse, paginator=paginator,
                               options_for=options_for, start_token=start_token, **kwargs):
            yield page.response, page.records

    def pages(
        self,
        method: str,
        path: str,
        *,
        params_for: Callable[[str | None], dict[str, Any]],
        parse: Callable[[requests.Response], list[Any]],
        paginator: Paginator,
        options_for: Callable[[str | None], dict[str, Any]] | None = None,
        start_token: str | None = None,
        **kwargs,
    ) -> Iterator[Page]:
        """Like :meth:`paginate`, yielding :class:`~hub.sdk.pagination.Page` objects (with their token).

        This is the loop the core's pulls run (:mod:`hub.engine.pulls`), for
        streams and child streams alike; a client subclass that wraps whole
        runs (a read budget checked before the first request and counted per
        page) overrides this method and calls ``super().pages(...)``.

        .. code-block:: python

            for page in client.pages("GET", "/items", params_for=lambda t: {"cursor": t} if t else {},
                                     parse=lambda r: r.json()["items"],
                                     paginator=BodyTokenPaginator("next_cursor", has_more_path="has_more")):
                print(page.number, page.token, len(page.records))
        """
        seen = RecentTokens(LOOP_WINDOW)
        token = start_token
        for number in range(1, self.max_pages + 1):
            options = {**kwargs, **(options_for(token) if options_for else {})}
            extra_params = options.pop("params", None) or {}
            if token is not None and paginator.token_is_url:
                target, params = self._same_origin(token), extra_params or None
            else:
                target, params = path, {**params_for(token), **extra_params}
            resp = self.request(method, target, params=params, **options)
            page = Page(resp, parse(resp), token, number)
            yield page
            token = paginator.next_token(page) if paginator.has_more(page) else None
            if not token:
                return
            if token in seen:
                # A next-page URL may carry credentials in its query (Graph's access_token): path only.
                shown = _path_only(token) if paginator.token_is_url else token[:80]
                raise PaginationLoopError(f"{self.name}: {path} returned page token {shown!r} twice")
            seen.add(token)
        raise PaginationLoopError(f"{self.name}: {path} exceeded {self.max_pages} pages")

    def _same_origin(self, url: str) -> str:
        """A next-page URL, refused unless it is on this client's host (our token goes with it)."""
        target, base = urlsplit(self.url(url)), urlsplit(self.base_url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise FatalError(f"{self.name}: next-page link to {target.scheme}://{target.netloc} is not on "
                             f"{base.scheme}://{base.netloc}; not following it (it would carry our credentials)")
        return target.geturl()


def _path_only(path: str) -> str:
    return urlsplit(path).path or path


def _body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:2000]


def _short(body: Any) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text[:1000]
