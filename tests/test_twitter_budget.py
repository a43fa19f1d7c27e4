"""The monthly read budget's arithmetic (in-memory state store) and its ledger in the
hub's database (concurrent writers, restarts, the one-time import of an old ledger file)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from hub.engine.state_store import DatabaseStateBackend
from hub.sdk import FakeClock, StateStore
from hub.storage.database import Database
from plugins.twitter_webcare.budget import (
    USAGE_CAP_PROBE_SECONDS,
    ReadBudget,
    ReadBudgetExhausted,
    StateLedger,
    UsageCapExceeded,
    period_bounds,
)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize("now, day, start, end", [
    (utc(2027, 1, 15, 8), 1, utc(2027, 1, 1), utc(2027, 2, 1)),
    (utc(2027, 12, 31, 23), 1, utc(2027, 12, 1), utc(2028, 1, 1)),
    (utc(2027, 1, 10), 15, utc(2026, 12, 15), utc(2027, 1, 15)),  # before the reset day: last month's period
    (utc(2027, 1, 15), 15, utc(2027, 1, 15), utc(2027, 2, 15)),
    (utc(2027, 2, 28, 12), 28, utc(2027, 2, 28), utc(2027, 3, 28)),
])
def test_period_bounds(now, day, start, end):
    assert period_bounds(now, day) == (start, end)


def budget(store: StateStore, clock, amount=3100, legacy_file=None, **kw) -> ReadBudget:
    return ReadBudget(StateLedger(store, legacy_file), monthly_budget=amount, clock=clock, name="w", **kw)


@pytest.fixture
def store() -> StateStore:
    """The arithmetic needs no database: the SDK's in-memory store behaves the same."""
    return StateStore()


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def test_pacing_allows_a_day_ahead_of_the_linear_share(store):
    clock = FakeClock(utc(2027, 1, 11).timestamp())  # 10 of 31 days gone
    b = budget(store, clock)  # 100 posts a day
    assert b.allowance(b.now()) == pytest.approx(1100)
    b.record(1099)
    assert b.gate() is None
    b.record(1)
    reason = b.gate()
    assert reason and "pacing" in reason
    st = b.status()
    assert st.state == "pacing" and st.resumes_at > b.now()
    clock.now = st.resumes_at.timestamp()
    assert b.gate() is None  # the allowance caught up exactly when announced


def test_spent_budget_skips_until_the_next_period_and_stops_mid_run(store):
    clock = FakeClock(utc(2027, 1, 30).timestamp())
    b = budget(store, clock, amount=50)
    b.record(49)
    b.before_next_page()  # still room
    b.record(5)
    with pytest.raises(ReadBudgetExhausted):
        b.before_next_page()
    assert b.status().state == "spent" and b.status().resumes_at == utc(2027, 2, 1)
    clock.now = utc(2027, 2, 1, 0, 0, 1).timestamp()
    assert b.gate() is None and b.used() == 0


def test_no_budget_means_counting_only(store):
    b = budget(store, FakeClock(), amount=0)
    b.record(10_000)
    assert b.gate() is None and b.status().state == "unlimited" and b.used() == 10_000


def test_pacing_can_be_switched_off(store):
    b = budget(store, FakeClock(utc(2027, 1, 2).timestamp()), pacing=False)
    b.record(3000)
    assert b.gate() is None


def test_usage_cap_blocks_until_the_reset_day(store):
    clock = FakeClock(utc(2027, 1, 20).timestamp())
    b = budget(store, clock, amount=0, reset_day=25)
    until = b.mark_usage_capped("UsageCapExceeded; Usage cap exceeded: Monthly product cap")
    assert until == utc(2027, 1, 25)
    with pytest.raises(UsageCapExceeded, match="2027-01-25"):
        b.gate()
    clock.now = utc(2027, 1, 25, 0, 1).timestamp()
    assert b.gate() is None


def test_a_raised_plan_lifts_the_usage_cap_through_one_probe_per_interval(store):
    clock = FakeClock(utc(2027, 1, 10).timestamp())
    b = budget(store, clock, amount=0)
    b.mark_usage_capped("UsageCapExceeded")
    clock.sleep(USAGE_CAP_PROBE_SECONDS - 60)
    with pytest.raises(UsageCapExceeded, match="probe every 6 hours"):
        b.gate()
    clock.sleep(60)
    other_process = budget(store, clock, amount=0)
    assert b.gate() is None  # this run probes...
    with pytest.raises(UsageCapExceeded):
        other_process.gate()  # ...and only this one
    b.mark_usage_capped("UsageCapExceeded")  # the probe met the cap again: wait another interval
    with pytest.raises(UsageCapExceeded):
        b.gate()
    clock.sleep(USAGE_CAP_PROBE_SECONDS)
    assert b.gate() is None
    b.record(12)  # the probe read a page: the plan was raised
    assert b.status().state == "unlimited" and other_process.gate() is None


def test_ledger_survives_restarts_and_concurrent_writers(db):
    clock = FakeClock()
    # Four "processes": each its own connector state store on the same instance row.
    writers = [budget(StateStore(DatabaseStateBackend(db, "webcare")), clock) for _ in range(4)]
    threads = [threading.Thread(target=lambda b=b: [b.record(1) for _ in range(50)]) for b in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    restarted = budget(StateStore(DatabaseStateBackend(db, "webcare")), clock)
    assert restarted.used() == 200
    assert budget(StateStore(DatabaseStateBackend(db, "other")), clock).used() == 0  # per instance


def test_damaged_ledger_starts_a_fresh_count(store):
    store.set(StateLedger.KEY, "{not an object")
    b = budget(store, FakeClock())
    assert b.used() == 0
    b.record(3)
    assert b.used() == 3


def test_a_ledger_file_of_an_older_version_is_imported_once(db, tmp_path):
    folder = tmp_path
    clock = FakeClock(utc(2027, 1, 20).timestamp())
    (folder / "webcare.json").write_text('{"periods": {"2027-01-01": 1234}, "rate_limits": {}}')
    store = StateStore(DatabaseStateBackend(db, "webcare"))
    b = budget(store, clock, legacy_file=folder / "webcare.json")
    assert b.used() == 1234
    b.record(6)
    (folder / "webcare.json").write_text('{"periods": {"2027-01-01": 99999}}')  # never read again
    again = budget(StateStore(DatabaseStateBackend(db, "webcare")), clock, legacy_file=folder / "webcare.json")
    assert again.used() == 1240


def test_old_periods_are_pruned(store):
    clock = FakeClock(utc(2025, 1, 5).timestamp())
    b = budget(store, clock)
    for month in range(20):
        clock.now = utc(2025 + month // 12, month % 12 + 1, 5).timestamp()
        b.record(1)
    assert len(b.ledger.read()["periods"]) == ReadBudget.KEEP_PERIODS
