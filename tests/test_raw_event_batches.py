"""Webhook deliveries are stored pending and processed in batches: one drainer
thread per hub takes everything pending; a claim keeps two workers off the
same raw event; processing twice changes nothing; a crash leaves events
pending for replay.  Every acknowledged delivery ends as exactly one item."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import threading
import time

import pytest
from sqlalchemy import func, select

from hub.engine import raw_events
from hub.engine.scheduler import replay_pending
from hub.engine.waiting import wait_until
from hub.sdk import FakeClock
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from tests.conftest import fixture_path

SECRET = "whsec-batches"
DOCS = json.loads(fixture_path("typeform/webhook_form_response_docs_example.json").read_text())


def delivery(token: str) -> bytes:
    event = copy.deepcopy(DOCS)
    event["form_response"]["token"] = token
    return json.dumps(event).encode()


def typeform_hub(make_app, executor: str = "threads"):
    app = make_app(executor=executor, clock=FakeClock(dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp()),
                   sources={"nps": {"plugin": "survey_typeform", "form_id": "lT4Z3j", "token": "tok",
                                    "webhook_secret": SECRET, "base_url": "http://127.0.0.1:9"}})
    return app, app.extensions["hub"]


def send(client, token: str):
    body = delivery(token)
    r = post_webhook(client, "nps", body, {"Typeform-Signature": sign_hmac(SECRET, body)})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def statuses(hub) -> dict[str, int]:
    with hub.db.Session() as s:
        return dict(s.execute(select(m.RawEvent.status, func.count()).group_by(m.RawEvent.status)).all())


def items(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.FeedbackItem))


def pending_ids(hub) -> list[int]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.RawEvent.id).where(m.RawEvent.status == "pending").order_by(m.RawEvent.id)))


def test_deliveries_arriving_while_a_batch_runs_are_processed_together(make_app, monkeypatch):
    app, hub = typeform_hub(make_app)
    calls: list[int] = []
    first_running, release = threading.Event(), threading.Event()
    original = raw_events.process_raw_events

    def counting(hub_, source, ids, *args):
        calls.append(len(ids))
        if len(calls) == 1:
            first_running.set()
            assert release.wait(10)
        return original(hub_, source, ids, *args)

    monkeypatch.setattr(raw_events, "process_raw_events", counting)
    # The first batch is held before it touches the database; on SQLite a delivery would otherwise
    # wait for this process's writer turn, which the held batch keeps (that wait is the design).
    monkeypatch.setattr(raw_events, "one_writer", lambda db: contextlib.nullcontext())
    client = app.test_client()
    assert send(client, "t0") == {"ok": True, "stored": 1, "duplicates": 0}  # answered before processing
    assert first_running.wait(10)
    for i in range(1, 20):
        send(client, f"t{i}")
    assert statuses(hub) == {"pending": 20}  # acknowledged = stored, nothing processed in the request
    release.set()
    assert raw_events.drain(hub, 30)
    assert calls == [1, 19]  # the 19 that queued up behind the first batch: one pipeline run
    assert statuses(hub) == {"processed": 20} and items(hub) == 20


def test_a_batch_larger_than_the_batch_size_is_cut(make_app, monkeypatch):
    app, hub = typeform_hub(make_app, executor="inline")
    client = app.test_client()
    monkeypatch.setattr(raw_events, "enqueue", lambda *a: None)  # store only
    import hub.api.webhooks as webhooks

    monkeypatch.setattr(webhooks, "enqueue", lambda *a: None)
    for i in range(7):
        send(client, f"c{i}")
    calls: list[int] = []
    original = raw_events.process_raw_events
    monkeypatch.setattr(raw_events, "process_raw_events", lambda h, s, ids, *a: calls.append(len(ids)) or
                        original(h, s, ids, *a))
    batcher = raw_events.RawEventBatcher(hub, batch_size=3)
    batcher.add("nps", pending_ids(hub))
    assert batcher.drain(30)
    assert calls == [3, 3, 1] and items(hub) == 7


def test_redeliveries_are_duplicates_and_processing_twice_changes_nothing(make_app):
    app, hub = typeform_hub(make_app)
    client = app.test_client()
    send(client, "same")
    assert send(client, "same") == {"ok": True, "stored": 0, "duplicates": 1}
    assert raw_events.drain(hub, 30)
    with hub.db.Session() as s:
        (raw_id,) = s.scalars(select(m.RawEvent.id))
    # A second worker handed the same id (a redelivered task) finds it processed: nothing happens.
    again = raw_events.process_raw_events(hub, "nps", [raw_id])
    assert again == {"processed": 0, "skipped": 0, "failed": 0, "items": 0}
    assert statuses(hub) == {"processed": 1} and items(hub) == 1


def test_a_failed_batch_leaves_its_events_pending_for_replay(make_app, monkeypatch):
    app, hub = typeform_hub(make_app)
    original = raw_events.process_raw_events

    def crash(*_a, **_k):
        raise RuntimeError("worker died")

    monkeypatch.setattr(raw_events, "process_raw_events", crash)
    client = app.test_client()
    for i in range(3):
        send(client, f"p{i}")
    assert raw_events.drain(hub, 30)
    assert statuses(hub) == {"pending": 3} and items(hub) == 0
    monkeypatch.setattr(raw_events, "process_raw_events", original)
    hub.clock.now += 300
    assert replay_pending(hub) == 3
    assert statuses(hub) == {"processed": 3} and items(hub) == 3


def test_two_workers_never_process_the_same_raw_event(make_app, monkeypatch):
    """Worker A holds its claim (its plugin is slow); worker B, given the same
    ids, skips the locked rows (PostgreSQL) or waits for A's commit (SQLite's
    write lock) and then finds them processed: one item each, none failed."""
    app, hub = typeform_hub(make_app, executor="inline")
    import hub.api.webhooks as webhooks

    monkeypatch.setattr(webhooks, "enqueue", lambda *a: None)  # store only
    client = app.test_client()
    for i in range(5):
        send(client, f"w{i}")
    ids = pending_ids(hub)
    connector = hub.registry.connector("nps")
    normalize = connector.normalize
    claimed, release = threading.Event(), threading.Event()

    def slow_normalize(raw):
        if threading.current_thread().name == "worker-a":
            claimed.set()
            assert release.wait(10)
        return normalize(raw)

    monkeypatch.setattr(connector, "normalize", slow_normalize)
    results: dict[str, dict[str, int]] = {}
    a = threading.Thread(target=lambda: results.update(a=raw_events.process_raw_events(hub, "nps", ids)),
                         name="worker-a")
    a.start()
    assert claimed.wait(10)
    if hub.db.dialect == "postgresql":
        results["b"] = raw_events.process_raw_events(hub, "nps", ids)  # does not wait: the rows are locked
        release.set()
    else:
        b = threading.Thread(target=lambda: results.update(b=raw_events.process_raw_events(hub, "nps", ids)),
                             name="worker-b")
        b.start()
        release.set()
        b.join(30)
    a.join(30)
    assert results["a"] == {"processed": 5, "skipped": 0, "failed": 0, "items": 5}
    assert results["b"] == {"processed": 0, "skipped": 0, "failed": 0, "items": 0}
    assert statuses(hub) == {"processed": 5} and items(hub) == 5


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_every_acknowledged_delivery_is_one_item(make_app, executor):
    app, hub = typeform_hub(make_app, executor=executor)
    client = app.test_client()
    acknowledged = sum(send(client, f"a{i % 12}")["stored"] for i in range(20))  # 8 redeliveries among them
    assert raw_events.drain(hub, 30)
    assert acknowledged == 12 and items(hub) == 12 and statuses(hub) == {"processed": 12}


def test_with_worker_processing_the_web_only_stores_and_a_worker_drains_in_batches(make_app, monkeypatch):
    app = make_app(executor="threads", webhook_processing="worker",
                   clock=FakeClock(dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp()),
                   sources={"nps": {"plugin": "survey_typeform", "form_id": "lT4Z3j", "token": "tok",
                                    "webhook_secret": SECRET, "base_url": "http://127.0.0.1:9"}})
    hub = app.extensions["hub"]
    client = app.test_client()
    for i in range(5):
        send(client, f"d{i}")
    assert raw_events.drain(hub, 30)
    assert statuses(hub) == {"pending": 5} and items(hub) == 0  # nothing processed in the web process
    calls: list[int] = []
    original = raw_events.process_raw_events
    monkeypatch.setattr(raw_events, "process_raw_events", lambda h, s, ids, *a: calls.append(len(ids)) or
                        original(h, s, ids, *a))
    assert raw_events.drain_pending(hub, batch=2) == 5  # fresh ones too, oldest first, 2 at a time
    assert calls == [2, 2, 1] and statuses(hub) == {"processed": 5} and items(hub) == 5
    assert raw_events.drain_pending(hub) == 0


class Ticks:
    """raw_events' ``time`` for the test's thread: its clock moves only as the test's batches say,
    its sleeps are recorded, never slept (other threads, an earlier test's drainer, keep real time)."""

    def __init__(self):
        self.now, self.slept, self.thread = 0.0, [], threading.current_thread()

    def perf_counter(self) -> float:
        return self.now if threading.current_thread() is self.thread else time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if threading.current_thread() is not self.thread:
            return time.sleep(seconds)
        self.slept.append(round(seconds, 6))
        self.now += seconds


def _paced_worker(make_app, monkeypatch, pending: int, arrivals: int, dialect: str | None = "sqlite", **config):
    """A worker-mode hub with ``pending`` deliveries stored; each of its first ``arrivals``
    batches sees a new delivery come in meanwhile; each event takes 2 ms (of the lock on SQLite)."""
    app = make_app(executor="threads", webhook_processing="worker",
                   clock=FakeClock(dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp()),
                   sources={"nps": {"plugin": "survey_typeform", "form_id": "lT4Z3j", "token": "tok",
                                    "webhook_secret": SECRET, "base_url": "http://127.0.0.1:9"}}, **config)
    hub, client = app.extensions["hub"], app.test_client()
    if dialect and hub.db.dialect != dialect:
        pytest.skip(f"the batch sizes of {dialect}")
    for i in range(pending):
        send(client, f"p{i}")
    ticks, sizes = Ticks(), []
    monkeypatch.setattr(raw_events, "time", ticks)
    original = raw_events.process_raw_events

    def batch(h, source, ids, *a):
        if len(sizes) < arrivals:
            send(client, f"new{len(sizes)}")
        sizes.append(len(ids))
        ticks.now += 0.002 * len(ids)
        return original(h, source, ids, *a)

    monkeypatch.setattr(raw_events, "process_raw_events", batch)
    return hub, ticks, sizes


def test_the_sqlite_worker_works_a_backlog_no_delivery_contends_for_in_growing_batches(make_app, monkeypatch):
    hub, ticks, sizes = _paced_worker(make_app, monkeypatch, pending=60, arrivals=0)
    assert raw_events.drain_pending(hub) == 60
    assert sizes == [5, 10, 20, 25]  # doubling up to WORKER_SQLITE_BATCH_MAX
    assert ticks.slept == [0.03]  # only the first batch (deliveries may be waiting) left 3 x its 10 ms free
    assert statuses(hub) == {"processed": 60} and items(hub) == 60


def test_the_sqlite_worker_yields_the_lock_while_deliveries_keep_arriving(make_app, monkeypatch):
    hub, ticks, sizes = _paced_worker(make_app, monkeypatch, pending=12, arrivals=3)
    assert raw_events.drain_pending(hub) == 15
    assert sizes == [5, 5, 4, 1]  # small batches while the newest raw event keeps changing
    assert ticks.slept == [0.03, 0.03, 0.024, 0.006]  # after each: the lock free 3 x as long as it held it
    assert statuses(hub) == {"processed": 15} and items(hub) == 15


def test_the_postgresql_worker_leaves_the_cpu_to_deliveries_while_they_keep_arriving(make_app, monkeypatch):
    """On PostgreSQL the worker's database work runs in a server process its ``nice`` does not
    reach: while deliveries arrive it pauses 3 x each batch's time (at most WORKER_GAP_MAX)."""
    hub, ticks, sizes = _paced_worker(make_app, monkeypatch, pending=150, arrivals=1, dialect="postgresql")
    assert raw_events.drain_pending(hub) == 151
    assert sizes == [100, 51]  # BATCH: small batches are dear on PostgreSQL, and there is no lock to wait for
    assert ticks.slept == [0.6, 0.306]  # the second batch still began after a new delivery
    assert statuses(hub) == {"processed": 151} and items(hub) == 151


def test_worker_yield_zero_never_pauses(make_app, monkeypatch):
    """A worker on a machine of its own (``worker_yield = 0``) works back to back on either database."""
    hub, ticks, sizes = _paced_worker(make_app, monkeypatch, pending=40, arrivals=2, dialect=None, worker_yield=0)
    assert raw_events.drain_pending(hub) == 42
    assert ticks.slept == []
    assert sum(sizes) == 42 and statuses(hub) == {"processed": 42} and items(hub) == 42


def test_the_in_process_drainer_warms_up_once_before_its_first_batch(make_app, monkeypatch):
    app, hub = typeform_hub(make_app)
    order: list[str] = []
    monkeypatch.setattr(raw_events, "warm_up", lambda h: order.append("warm-up") or 0.0)
    original = raw_events.process_raw_events
    monkeypatch.setattr(raw_events, "process_raw_events",
                        lambda h, s, ids, *a: order.append("batch") or original(h, s, ids, *a))
    client = app.test_client()
    for round_ in range(2):  # the drainer thread ends in between and starts again
        send(client, f"w{round_}")
        assert raw_events.drain(hub, 30)
        assert wait_until(lambda: not raw_events.batcher(hub)._running, 30)  # its thread ended
    assert order == ["warm-up", "batch", "batch"] and items(hub) == 2
