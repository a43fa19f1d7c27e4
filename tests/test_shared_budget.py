"""Rate budgets shared by every process (hub.engine.shared_budget, issue 15).

Two budgets with the same name - two threads, two processes - together never
send more than N in any window, and a 429's Retry-After blocks every sharer.
The logic runs on an injected clock; the two-process tests need real time
(each process has its own clock), kept to a short window.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from hub.engine.shared_budget import DatabaseWindowBudget, RedisWindowBudget, SharedBudgets, redis_url_of
from hub.sdk.clock import Clock, FakeClock
from hub.sdk.http import RollingWindowBudget

REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
PG_URL = os.environ.get("HUB_TEST_DATABASE_URL")


def _redis():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


@pytest.fixture
def redis_client():
    client = _redis()
    prefix = f"test:crmbatch:{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@pytest.fixture(scope="module")
def pg_db():
    """A scratch database of our own with the migrated schema (skip without HUB_TEST_DATABASE_URL)."""
    if not PG_URL:
        pytest.skip("HUB_TEST_DATABASE_URL not set")
    from sqlalchemy.engine import make_url

    from hub.storage.database import Database
    from hub.storage.migrate import upgrade

    base = make_url(PG_URL)
    name = f"hub_crmbatch_budget_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade(db.engine)
    yield db
    db.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Shared:
    """One of the backends, as a factory of same-named budgets on a clock."""

    def __init__(self, kind: str, request):
        self.kind = kind
        self.name = f"t{uuid.uuid4().hex[:8]}:http"
        if kind == "redis":
            self.client, self.prefix = request.getfixturevalue("redis_client")
        elif kind == "database":
            self.db = request.getfixturevalue("pg_db")

    def budget(self, limit: int, window: float, clock: Clock, margin: float = 0.0, rolling: bool = True):
        if self.kind == "redis":
            return RedisWindowBudget(self.client, self.name, limit, window, clock=clock, prefix=self.prefix,
                                     margin=margin, rolling=rolling)
        return DatabaseWindowBudget(self.db, self.name, limit, window, clock=clock, margin=margin, rolling=rolling)


@pytest.fixture(params=["redis", "database"])
def shared(request):
    return _Shared(request.param, request)


# -- logic, on a fake clock ----------------------------------------------------------
def test_two_budgets_of_one_name_share_the_window(shared):
    clock = FakeClock()
    a, b = shared.budget(5, 10.0, clock), shared.budget(5, 10.0, clock)
    sent = []
    for i in range(12):
        (a if i % 2 else b).acquire()
        sent.append(clock.time())
    assert _max_in_window(sent, 10.0) == 5
    assert sent[5] - sent[0] == pytest.approx(10.0)  # the sixth waited for the first to leave the window
    assert a.in_window() == b.in_window() == 2


def test_a_shared_token_bucket_bursts_then_keeps_its_rate(shared):
    clock = FakeClock()
    a, b = shared.budget(2, 1.0, clock, rolling=False), shared.budget(2, 1.0, clock, rolling=False)
    sent = []
    for i in range(8):
        (a if i % 2 else b).acquire()
        sent.append(clock.time())
    assert sent[1] == sent[0]  # a burst of two
    assert [round(y - x, 6) for x, y in zip(sent[1:], sent[2:], strict=False)] == [0.5] * 6  # then 2 per second


def test_a_block_from_one_sharer_holds_the_other(shared):
    clock = FakeClock()
    a, b = shared.budget(100, 10.0, clock), shared.budget(100, 10.0, clock)
    start = clock.time()
    a.block_until(start + 7)  # a 429 said Retry-After: 7
    a.block_until(start + 3)  # an earlier end never shortens the block
    assert b.acquire() == pytest.approx(7)
    assert clock.time() - start == pytest.approx(7)


def test_threads_never_exceed_the_limit(shared):
    clock = Clock()
    limit, window = 8, 1.0
    budgets = [shared.budget(limit, window, clock, margin=0.02) for _ in range(2)]
    sent: list[float] = []
    lock = threading.Lock()

    def record(now: float) -> None:
        with lock:
            sent.append(now)

    for b in budgets:
        _record_takes(b, record)

    def run(budget):
        for _ in range(10):
            budget.acquire()

    threads = [threading.Thread(target=run, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(sent) == 20
    assert _max_in_window(sent, window) <= limit


def _child(kind: str, target: str, prefix: str, name: str, limit: int, window: float, count: int, out) -> None:
    if kind == "redis":
        import redis

        budget = RedisWindowBudget(redis.Redis.from_url(target), name, limit, window, prefix=prefix, margin=0.02)
    else:
        from hub.storage.database import Database

        budget = DatabaseWindowBudget(Database(target), name, limit, window, margin=0.02)
    _record_takes(budget, out.put)
    for _ in range(count):
        budget.acquire()


def _record_takes(budget, record) -> None:
    """Note the time of every send the budget allowed, on the budget's own clock (not after
    returning: a process descheduled between the two would blur the measurement)."""
    take = budget._take_shared

    def recorded(now: float):
        wait = take(now)
        if wait is None:
            record(now)
        return wait

    budget._take_shared = recorded


def test_two_processes_never_exceed_the_limit(shared):
    limit, window, each = 6, 1.0, 9
    target = REDIS_URL if shared.kind == "redis" else shared.db.engine.url.render_as_string(hide_password=False)
    # fork, not spawn: a child starts in milliseconds (the budget is built in the child, after the fork).
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(shared.kind, target, getattr(shared, "prefix", ""), shared.name,
                                              limit, window, each, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = [out.get(timeout=20) for _ in range(2 * each)]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert _max_in_window(times, window) <= limit
    # And they did share it: 18 sends at 6 per second take two windows at least.
    assert max(times) - min(times) >= 2 * window - 0.1


# -- choosing the backend ----------------------------------------------------------
def test_sqlite_keeps_the_in_process_budget_one_per_name(tmp_path):
    from hub.storage.database import Database

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    budgets = SharedBudgets.from_config({}, db)
    assert budgets.backend == "memory"
    one = budgets.budget("hubspot:http", 100, 10, FakeClock())
    assert isinstance(one, RollingWindowBudget) and budgets.budget("hubspot:http", 100, 10) is one
    assert budgets.budget("hubspot:search", 4, 1) is not one


def test_a_redis_broker_url_is_reused_and_rate_limits_redis_url_wins():
    assert redis_url_of({"broker_url": "redis://h:6379/2"}) == "redis://h:6379/2"
    assert redis_url_of({"broker_url": "amqp://guest@h//"}) is None
    assert redis_url_of({"broker_url": "redis://h/2", "rate_limits": {"redis_url": "redis://r/5"}}) == "redis://r/5"
    assert SharedBudgets(redis_url="redis://r/5").backend == "redis"
    with pytest.raises(ValueError, match="redis_url"):
        SharedBudgets(backend="redis")


def test_the_hub_gives_its_plugins_shared_budgets_on_postgresql(pg_db, tmp_path, monkeypatch):
    from hub.app import create_app

    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    url = pg_db.engine.url.render_as_string(hide_password=False)
    apps = [create_app(config={"database_url": url, "sinks": {"hubspot": {
        "plugin": "crm_hubspot", "token": "pat-x", "base_url": "http://127.0.0.1:9"}},
        "routing": {"followups": "hubspot"}, "http": {"allowed_private_hosts": ["127.0.0.1"]}},
        load_entry_points=True) for _ in range(2)]
    sinks = [a.extensions["hub"].registry.sink("hubspot") for a in apps]
    budgets = [s.http.budget for s in sinks]
    assert all(isinstance(b, DatabaseWindowBudget) and b.name == "hubspot:http" for b in budgets)
    budgets[0].block_until(time.time() + 60)
    with pg_db.Session() as s:
        blocked = s.execute(text("SELECT blocked_until FROM rate_budget WHERE name = 'hubspot:http'")).scalar()
    assert blocked > time.time() + 50  # where the other hub's budget reads it
    for a in apps:
        a.extensions["hub"].db.dispose()
