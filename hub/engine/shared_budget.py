"""Rate budgets every process of the hub shares (issue 15).

A vendor counts requests per account, not per process: two dispatchers with a
:class:`~hub.sdk.http.RollingWindowBudget` each spend twice the portal's limit
and meet 429s.  Here a budget keeps its state where every process sees it:

* **Redis** (``rate_limits.redis_url``, or ``broker_url`` when it is
  ``redis://``): a sorted set of send times per budget, taken from by one Lua
  script (atomic on the server: check the block, drop old sends, count, add);
* **PostgreSQL** (no Redis): one ``rate_budget`` row per budget holding the
  window's send times, taken from under ``SELECT ... FOR UPDATE``;
* otherwise (SQLite, embedded): the in-process budget, one per name, so the
  plugin objects of one process still share it.

A budget is a rolling window (at most ``requests`` sends in *any* window of
``per_seconds``: what HubSpot counts) or, when the plugin asks for one, a token
bucket (a burst of ``requests``, then one send per ``per_seconds / requests``),
kept as one "theoretical arrival time" (GCRA, the same arithmetic as a bucket).
``block_until`` (a 429's Retry-After) is stored with the budget, so every
sharer waits it out, not only the process that met the 429.

Time is the injected clock's (tests use a FakeClock); across machines that
is each node's wall clock, so keep them in NTP sync - the ``margin`` added to
every wait absorbs the usual few milliseconds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.sdk.clock import Clock
from hub.sdk.http import RateBudget, RollingWindowBudget

if TYPE_CHECKING:
    from hub.storage.database import Database

log = logging.getLogger(__name__)

#: Builds a budget: (name, requests, per_seconds, clock, rolling=True) -> budget.
BudgetProvider = Callable[..., RateBudget]


class _SharedWindow(RateBudget):
    """A rolling-window (or, ``rolling=False``, token-bucket) budget whose ``_take`` /
    ``block_until`` go to a shared store."""

    def __init__(self, name: str, requests_: int, per_seconds: float, clock: Clock | None = None,
                 margin: float = 0.05, rolling: bool = True):
        super().__init__(requests_, per_seconds, clock=clock)
        self.name = name
        self.limit = int(requests_)
        self.window = float(per_seconds)
        self.margin = margin
        self.rolling = rolling
        #: Token bucket as GCRA: one send per ``interval``, ``tolerance`` ahead of time allowed (the burst).
        self.interval = self.window / self.limit
        self.tolerance = (self.limit - 1) * self.interval

    # RateBudget.acquire holds self._lock around _take: threads of one process
    # queue here, processes meet in the store.
    def _take(self, now: float) -> float | None:
        return self._take_shared(now)

    def acquire(self) -> float:
        waited = 0.0
        while True:
            now = self.clock.time()
            with self._lock:
                delay = self._take_shared(now)
            if delay is None:
                return waited
            delay = max(delay, 0.001)  # a tiny wait must still move a fake clock
            self.clock.sleep(delay)
            waited += delay

    def _take_shared(self, now: float) -> float | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def in_window(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


# -- Redis ------------------------------------------------------------------------
#: KEYS[1] sends (sorted set), KEYS[2] blocked-until; ARGV now, window, limit, margin, member, ttl ms.
#: Returns -1 when the send is taken, else the seconds to wait (as a string: Lua numbers become integers).
_TAKE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then
  return tostring(blocked - now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return '-1'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now + margin)
"""
#: KEYS[1] theoretical arrival time, KEYS[2] blocked-until; ARGV now, interval, tolerance, ttl ms (token bucket).
_TAKE_BUCKET = """
local now = tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then
  return tostring(blocked - now)
end
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local ahead = tat - now - tonumber(ARGV[3])
if ahead > 1e-9 then
  return tostring(ahead)
end
redis.call('SET', KEYS[1], tostring(tat + tonumber(ARGV[2])), 'PX', ARGV[4])
return '-1'
"""
#: KEYS[1] blocked-until; ARGV until, ttl ms: keeps the later of the stored and the new time.
_BLOCK = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class RedisWindowBudget(_SharedWindow):
    """The window in Redis: ``<prefix>:<name>:sent`` (sorted set) and ``<prefix>:<name>:blocked``."""

    def __init__(self, client: Any, name: str, requests_: int, per_seconds: float, clock: Clock | None = None,
                 prefix: str = "hub:rate", margin: float = 0.05, rolling: bool = True):
        super().__init__(name, requests_, per_seconds, clock=clock, margin=margin, rolling=rolling)
        self.client = client
        self.sent_key, self.blocked_key = f"{prefix}:{name}:sent", f"{prefix}:{name}:blocked"
        self.tat_key = f"{prefix}:{name}:tat"
        self._take_script = client.register_script(_TAKE)
        self._bucket_script = client.register_script(_TAKE_BUCKET)
        self._block_script = client.register_script(_BLOCK)
        self._ttl_ms = int(self.window * 2000) + 1000

    def _take_shared(self, now: float) -> float | None:
        if not self.rolling:
            answer = float(self._bucket_script(keys=[self.tat_key, self.blocked_key], args=[
                repr(now), repr(self.interval), repr(self.tolerance), self._ttl_ms]))
            return None if answer < 0 else answer
        member = f"{now:.6f}:{uuid.uuid4().hex[:12]}"
        answer = float(self._take_script(keys=[self.sent_key, self.blocked_key],
                                         args=[repr(now), repr(self.window), self.limit, repr(self.margin),
                                               member, self._ttl_ms]))
        return None if answer < 0 else answer

    def block_until(self, when: float) -> None:
        ttl = max(1000, int((when - self.clock.time()) * 1000) + self._ttl_ms)
        self._block_script(keys=[self.blocked_key], args=[repr(float(when)), ttl])

    def in_window(self) -> int:
        now = self.clock.time()
        return int(self.client.zcount(self.sent_key, f"({now - self.window!r}", "+inf"))


# -- PostgreSQL -----------------------------------------------------------------------
class DatabaseWindowBudget(_SharedWindow):
    """The window in the ``rate_budget`` row named ``name``, changed under ``SELECT ... FOR UPDATE``.

    One short transaction per send: the row lock makes every process's
    check-and-add one step, so the count never passes the limit.
    """

    def __init__(self, db: Database, name: str, requests_: int, per_seconds: float, clock: Clock | None = None,
                 margin: float = 0.05, rolling: bool = True):
        super().__init__(name, requests_, per_seconds, clock=clock, margin=margin, rolling=rolling)
        self.db = db
        self._ensure_row()

    def _ensure_row(self) -> None:
        from hub.storage import models as m
        from hub.storage.database import insert_ignore

        with self.db.session() as s:
            s.execute(insert_ignore(s, m.RateBudgetRow.__table__).values(name=self.name, sent=[], blocked_until=0.0,
                                                                         tat=0.0))

    def _locked(self, s):
        from hub.storage import models as m

        q = select(m.RateBudgetRow).where(m.RateBudgetRow.name == self.name)
        if self.db.dialect == "postgresql":
            q = q.with_for_update()
        return s.scalars(q).one()

    def _take_shared(self, now: float) -> float | None:
        with self.db.session() as s:
            row = self._locked(s)
            if row.blocked_until > now:
                return row.blocked_until - now
            if not self.rolling:  # token bucket: the theoretical arrival time
                tat = max(row.tat, now)
                if tat - now - self.tolerance > 1e-9:
                    return tat - now - self.tolerance
                row.tat = tat + self.interval
                return None
            sent = [t for t in row.sent if t > now - self.window]
            if len(sent) < self.limit:
                row.sent = [*sent, now]  # a new list: the JSON column is not mutation-tracked
                return None
            if len(sent) != len(row.sent):
                row.sent = sent
            return min(sent) + self.window - now + self.margin

    def block_until(self, when: float) -> None:
        with self.db.session() as s:
            row = self._locked(s)
            row.blocked_until = max(row.blocked_until, float(when))

    def in_window(self) -> int:
        from hub.storage import models as m

        now = self.clock.time()
        with self.db.Session() as s:
            sent = s.scalars(select(m.RateBudgetRow.sent).where(m.RateBudgetRow.name == self.name)).first() or []
        return sum(1 for t in sent if t > now - self.window)


# -- choosing the backend ---------------------------------------------------------------
def redis_url_of(cfg: Any) -> str | None:
    """``rate_limits.redis_url``, else a ``redis://`` broker_url, else None (secrets resolved)."""
    from hub.config import resolve_secret

    section = cfg.get("rate_limits") or {}
    url = section.get("redis_url")
    key = "rate_limits.redis_url"
    if not url and str(cfg.get("broker_url") or "").startswith(("redis://", "rediss://", "env:", "file:")):
        url, key = cfg.get("broker_url"), "broker_url"
    url = resolve_secret(url, cfg, key) if url else None
    return url if url and str(url).startswith(("redis://", "rediss://", "unix://")) else None


class SharedBudgets:
    """The hub's budget provider: one budget object per name and process, backed as configured.

    ``backend`` is ``auto`` (Redis when a Redis URL is configured, else the
    database on PostgreSQL, else in process), ``redis``, ``database`` or
    ``memory``.
    """

    def __init__(self, *, backend: str = "auto", redis_url: str | None = None, db: Database | None = None,
                 prefix: str = "hub:rate"):
        if backend == "auto":
            backend = "redis" if redis_url else "database" if db is not None and db.dialect == "postgresql" \
                else "memory"
        if backend == "redis" and not redis_url:
            raise ValueError("rate_limits.backend = \"redis\" needs rate_limits.redis_url (or a redis:// broker_url)")
        if backend == "database" and db is None:
            raise ValueError("rate_limits.backend = \"database\" needs the hub's database")
        self.backend = backend
        self.redis_url = redis_url
        self.db = db
        self.prefix = prefix
        self._redis: Any = None
        self._budgets: dict[str, RateBudget] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any, db: Database | None) -> SharedBudgets:
        section = cfg.get("rate_limits") or {}
        return cls(backend=section.get("backend", "auto"), redis_url=redis_url_of(cfg), db=db,
                   prefix=section.get("key_prefix") or "hub:rate")

    def _client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        return self._redis

    def budget(self, name: str, requests_: int, per_seconds: float, clock: Clock | None = None,
               rolling: bool = True) -> RateBudget:
        """The budget called ``name`` (e.g. ``"hubspot:http"``): the same object for the same name."""
        key = f"{name}|{int(requests_)}|{float(per_seconds)}|{rolling}"
        with self._lock:
            found = self._budgets.get(key)
            if found is None:
                found = self._budgets[key] = self._build(name, int(requests_), float(per_seconds), clock or Clock(),
                                                         rolling)
            return found

    __call__ = budget

    def _build(self, name: str, requests_: int, per_seconds: float, clock: Clock, rolling: bool) -> RateBudget:
        if self.backend == "redis":
            return RedisWindowBudget(self._client(), name, requests_, per_seconds, clock=clock, prefix=self.prefix,
                                     rolling=rolling)
        if self.backend == "database":
            return DatabaseWindowBudget(self.db, name, requests_, per_seconds, clock=clock, rolling=rolling)
        return (RollingWindowBudget if rolling else RateBudget)(requests_, per_seconds, clock=clock)

    def describe(self) -> str:
        return {"redis": "Redis", "database": "the database", "memory": "this process"}[self.backend]


__all__ = ["BudgetProvider", "DatabaseWindowBudget", "RedisWindowBudget", "SharedBudgets", "redis_url_of"]
