"""The fault suite (``make chaos``): the hub under duplicate storms, kill -9, outages,
429 storms, poisoned events and a database restart, counted end to end.

Every scenario sends a known set of deliveries or follow-ups through the real
parts - the hub's HTTP webhook endpoint, real ``feedback-hub`` subprocesses,
the HubSpot emulator over HTTP - then counts what arrived where it should:

* ``delivered``: items stored (webhooks) or callback tasks in the CRM (follow-ups);
* ``duplicates``: a second item for one delivery, a second task for one follow-up;
* ``lost``: a delivery acknowledged (or a follow-up created) that never arrived.

A table is printed; the exit status is 1 when any row has a duplicate or a loss.
``--database-url postgresql+psycopg://...`` runs on PostgreSQL (an empty
database it may fill; the restart is then ``pg_terminate_backend``); SQLite
(default, a temporary file) gets its file locked for a while instead.
``--scale`` multiplies the sizes.  ``tests/test_chaos.py`` runs it small
(``pytest -m chaos``), outside ``make test``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.engine.dispatch import dispatch  # noqa: E402
from hub.engine.raw_events import store_raw  # noqa: E402
from hub.engine.scheduler import replay_pending  # noqa: E402
from hub.sdk import Clock, FakeClock, RawIn  # noqa: E402
from hub.sdk.testing import LiveServer, migrated_sqlite, sign_hmac, start_hub  # noqa: E402
from hub.storage import models as m  # noqa: E402
from hub.storage.migrate import upgrade  # noqa: E402
from plugins.crm_hubspot.content import find_marker  # noqa: E402
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app  # noqa: E402
from plugins.twitter_webcare.emulator import XEmulator  # noqa: E402
from plugins.twitter_webcare.mapping import RAW_V1  # noqa: E402
from plugins.twitter_webcare.webhook import SIGNATURE_HEADER  # noqa: E402

TOKEN = "pat-chaos"
SECRET = "chaos-consumer-secret"
BRAND = "2244994945"
ANGRY = "Al drie weken geen internet. Belachelijk, ik zeg mijn abonnement op!"


@dataclass
class Row:
    scenario: str
    sent: int
    delivered: int
    duplicates: int
    lost: int
    note: str = ""


# -- one hub, its database and its HubSpot ------------------------------------------------
class World:
    def __init__(self, workdir: Path, database_url: str | None, *, clock=None, portal_kwargs=None, **config):
        self.workdir = workdir
        self.database_url = database_url or migrated_sqlite(workdir / f"hub-{random.randrange(1 << 30)}.db")
        if database_url:
            _reset_postgres(database_url)
        self.clock = clock or FakeClock(time.time())
        self.portal = HubSpotState(clock=self.clock, token=TOKEN, **(portal_kwargs or {}))
        self.crm = LiveServer(make_emulator_app(self.portal))
        self.config = {
            "sinks": {"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": self.crm.url,
                                  "timeout": [2, 1]}},
            "routing": {"followups": "hubspot", "unreachable": "local"},
            "sources": {"webcare": {"plugin": "twitter_webcare", "bearer_token": "tok", "user_id": BRAND,
                                    "base_url": "http://127.0.0.1:9", "consumer_secret": SECRET}},
            "dispatch": {"batch_size": 10, "max_attempts": 8, "alert_after_seconds": 900,
                         "backoff_base_seconds": 30, "backoff_max_seconds": 3600, "claim_timeout_seconds": 1},
            **config,
        }
        self.running = start_hub(database_url=self.database_url, clock=self.clock, load_entry_points=True,
                                 **self.config)
        self.app, self.hub = self.running.app, self.running.hub
        self.x = XEmulator(clock=self.clock, populate=False)
        self.users = [self.x.add_user(str(700000 + i), f"klant_{i}", f"Klant {i}", 100 + i) for i in range(50)]
        self._token = None

    def close(self):
        self.running.close()
        self.crm.stop()

    # feedback in
    def detractors(self, n: int, prefix: str) -> None:
        """n angry survey answers through the API: n cases, n follow-ups to HubSpot."""
        client = self.app.test_client()
        headers = self.running.auth_headers()
        for i in range(n):
            r = client.post("/api/v1/feedback", headers=headers, json={
                "external_id": f"{prefix}-{i}", "channel": "survey", "nps": 1, "text": ANGRY,
                "customer": {"email": f"{prefix}-{i}@example.nl", "name": f"Klant {i}"},
                "occurred_at": self.clock.utcnow().isoformat()})
            assert r.status_code == 201, r.get_data(as_text=True)

    def posts(self, n: int) -> list[Any]:
        return [self.x.post(random.choice(self.users), f"@acme storing nummer {i}, {ANGRY}") for i in range(n)]

    @staticmethod
    def body(posts) -> bytes:
        return json.dumps({"for_user_id": BRAND, "tweet_create_events": [p.v1() for p in posts]}).encode()

    def site_file(self) -> Path:
        cfg = {"database_url": self.database_url, "executor": "inline",
               "http": {"allowed_private_hosts": ["127.0.0.1"]}, **self.config}
        path = self.workdir / f"site-{random.randrange(1 << 30)}.toml"
        path.write_text(_toml(cfg))
        return path

    # counting
    def item_counts(self, external_ids: list[str]) -> tuple[int, int, int]:
        with self.hub.db.Session() as s:
            stored = Counter(s.scalars(select(m.FeedbackItem.external_id).where(m.FeedbackItem.source == "webcare")))
        delivered = sum(1 for e in external_ids if stored[e])
        duplicates = sum(max(0, n - 1) for n in stored.values())
        return delivered, duplicates, len(external_ids) - delivered

    def followup_counts(self) -> tuple[int, int, int, int]:
        """(follow-ups, delivered, duplicates, lost): HubSpot tasks per follow-up, by its marker."""
        tasks = Counter(find_marker(t["properties"].get("hs_task_body")) for t in self.portal.all_tasks())
        with self.hub.db.Session() as s:
            rows = s.execute(select(m.Followup.idempotency_key, m.Followup.sink, m.Followup.status)).all()
        delivered = duplicates = lost = 0
        for key, sink, status in rows:
            n = tasks[key] if sink == "hubspot" else int(status in ("sent", "done"))
            delivered += n > 0
            duplicates += max(0, n - 1)
            lost += n == 0
        return len(rows), delivered, duplicates, lost


def _toml(cfg: dict[str, Any], prefix: str = "") -> str:
    flat = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    tables = [_toml(v, f"{prefix}{k}.") for k, v in cfg.items() if isinstance(v, dict)]
    head = f"[{prefix[:-1]}]\n" if prefix else ""
    return head + "\n".join(flat) + "\n" + "".join(tables)


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine)
    tables = ", ".join(f'"{t.name}"' for t in m.Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


def _send(url: str, body: bytes, tries: int = 60) -> int:
    """POST like a webhook sender: signed, re-sent until a 2xx (X retries failed deliveries)."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_hmac(SECRET, body)}
    for attempt in range(tries):
        try:
            r = requests.post(url, data=body, headers=headers, timeout=30)
            if r.status_code < 300:
                return attempt + 1
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"delivery never acknowledged after {tries} tries")


def _settle(w: World, rounds: int = 200, step: float = 3600.0) -> None:
    """Let the scheduler's jobs catch up: replays of pending raw events, dispatch until nothing is due."""
    for _ in range(rounds):
        replay_pending(w.hub, older_than_seconds=0)
        dispatch(w.hub)
        with w.hub.db.Session() as s:
            waiting = s.scalar(select(func.count()).select_from(m.Followup).where(
                m.Followup.status.in_(("pending", "failed", "sending"))))
        if not waiting:
            return
        w.clock.sleep(step)


# -- the scenarios ---------------------------------------------------------------------------
def duplicate_storm(workdir: Path, db: str | None, scale: int) -> Row:
    """Each delivery sent five times, concurrently, over HTTP, in random order."""
    w = World(workdir, db, executor="threads", executor_workers=4)
    server = LiveServer(w.app)
    try:
        posts = w.posts(40 * scale)
        bodies = [w.body([p]) for p in posts for _ in range(5)]
        random.shuffle(bodies)
        url = f"{server.url}/webhooks/webcare"
        threads = [threading.Thread(target=lambda part: [_send(url, b) for b in part], args=(bodies[i::8],))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        w.hub.executor.shutdown()
        replay_pending(w.hub, older_than_seconds=0)
        delivered, dups, lost = w.item_counts([p.id for p in posts])
        return Row("duplicate delivery storm (5x, 8 senders)", len(posts), delivered, dups, lost,
                   f"{len(bodies)} requests")
    finally:
        server.stop()
        w.close()


def _cli(site: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HUB_CONFIG": str(site), "PYTHONUNBUFFERED": "1"}
    env.pop("HUB_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "hub.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _started_worker(site: Path) -> subprocess.Popen:
    """A `feedback-hub worker` (replays and the dispatcher's loop) that has finished starting up."""
    proc = _cli(site, "worker", "--interval", "0.2")
    line = proc.stdout.readline()  # "worker running" once the app is built
    if "worker running" not in line:
        proc.kill()
        raise RuntimeError(f"worker did not start: {line!r}")
    return proc


def _kill(procs: list[subprocess.Popen]) -> int:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
    return len(procs)


def kill_dispatchers(workdir: Path, db: str | None, scale: int) -> Row:
    """Dispatcher processes (`feedback-hub worker`) killed with SIGKILL mid-push, then started again."""
    w = World(workdir, db, clock=Clock())  # subprocesses and the CRM's rate window run on real time
    try:
        n = 60 * scale
        w.detractors(n, "kd")
        # Slow answers: the task is created, the answer comes late - where a kill hurts most.
        w.portal.inject("timeout", count=10 ** 6, delay=0.3, path="batch/create")
        site = w.site_file()
        kills = orphaned = 0
        for _ in range(5):
            procs = [_started_worker(site)]
            time.sleep(random.uniform(0.3, 2.0))  # a chunk of 10 takes >= 0.3 s: mid-push
            kills += _kill(procs)
            with w.hub.db.Session() as s:  # claims the killed process held: pushes it never finished
                orphaned += s.scalar(select(func.count()).select_from(m.Followup).where(m.Followup.status == "sending"))
            time.sleep(1.1)  # past claim_timeout_seconds: the killed claims are free again
        _, before_last, _, _ = w.followup_counts()
        w.portal.faults.clear()
        last = _started_worker(site)
        deadline = time.time() + 120
        while w.followup_counts()[1] < n and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)  # a second look: a duplicate would show now
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=30)
        total, delivered, dups, lost = w.followup_counts()
        return Row("kill -9 of dispatchers", total, delivered, dups, lost,
                   f"{kills} dispatchers killed, {orphaned} claims orphaned mid-push, {before_last} of {n} "
                   "pushed before the last start")
    finally:
        w.close()


def kill_workers(workdir: Path, db: str | None, scale: int) -> Row:
    """Two `feedback-hub worker` processes on acknowledged (pending) deliveries, killed at random."""
    w = World(workdir, db, clock=Clock())
    try:
        posts = w.posts(200 * scale)
        raws = [RawIn(payload={"for_user_id": BRAND, "tweet": p.v1()}, dedupe_key=p.id, kind=RAW_V1) for p in posts]
        with w.hub.db.session() as s:  # what the webhook stored before its 2xx
            store_raw(s, "webcare", raws, w.clock.utcnow() - dt.timedelta(minutes=5))
        site = w.site_file()
        kills = 0
        # A replay is one transaction: kills at random times after start-up land before,
        # in (rolled back) or after it, or in the dispatch of the follow-ups it made.
        for _ in range(4):
            procs = [_started_worker(site) for _ in range(2)]
            time.sleep(random.uniform(0.2, 3.0))
            kills += _kill(procs)
        interrupted = _pending(w)
        last = _started_worker(site)  # then one runs until the backlog is gone
        deadline = time.time() + 120
        while _pending(w) and time.time() < deadline:
            time.sleep(0.5)
        last.send_signal(signal.SIGTERM)
        last.wait(timeout=30)
        delivered, dups, lost = w.item_counts([p.id for p in posts])
        return Row("kill -9 of workers (2 at a time)", len(posts), delivered, dups, lost,
                   f"{kills} workers killed, {interrupted} left pending by them")
    finally:
        w.close()


def _pending(w: World) -> int:
    with w.hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.RawEvent).where(m.RawEvent.status == "pending"))


def crm_outage_day(workdir: Path, db: str | None, scale: int) -> Row:
    """HubSpot answers 503 to everything for a simulated day; the dispatcher runs every 15 minutes."""
    w = World(workdir, db)
    try:
        n = 50 * scale
        w.detractors(n, "out")
        w.portal.inject("error", count=10 ** 9, status=503)
        for _ in range(96):
            dispatch(w.hub)
            w.clock.sleep(900)
        with w.hub.db.Session() as s:
            dead = s.scalar(select(func.count()).select_from(m.Followup).where(m.Followup.status == "dead"))
        w.portal.faults.clear()
        _settle(w)
        total, delivered, dups, lost = w.followup_counts()
        return Row("CRM outage for a simulated day", total, delivered, dups, lost + dead,
                   f"{dead} dead during the outage")
    finally:
        w.close()


def rate_limit_storm(workdir: Path, db: str | None, scale: int) -> Row:
    """429 storms: injected 429s with Retry-After, and a CRM window of 4 requests per 10 s."""
    w = World(workdir, db, portal_kwargs={"requests_per_10s": 4})
    try:
        n = 50 * scale
        w.detractors(n, "rl")
        w.portal.inject("rate_limit", count=200, retry_after=30)
        _settle(w, rounds=2000, step=15)
        limited = sum(1 for r in w.portal.log if r.status == 429)
        total, delivered, dups, lost = w.followup_counts()
        return Row("429 storms", total, delivered, dups, lost, f"{limited} answers were 429")
    finally:
        w.close()


def poisoned_events(workdir: Path, db: str | None, scale: int) -> Row:
    """Good deliveries mixed with poison (lone surrogates, NUL, wrong types, deep nesting) in one batch."""
    w = World(workdir, db)
    try:
        good = w.posts(60 * scale)
        poison = []
        for i, p in enumerate(w.posts(12 * scale)):
            t = p.v1()
            kind = i % 4
            if kind == 0:
                t["text"] = "\ud800 storing " + "x" * 10
            elif kind == 1:
                t["text"] = "storing\x00 nul"
            elif kind == 2:
                t["user"] = "not an object"
            else:
                nested: Any = "deep"
                for _ in range(200):
                    nested = {"a": nested}
                t["entities"] = nested
            poison.append(RawIn(payload={"for_user_id": BRAND, "tweet": t}, dedupe_key=p.id, kind=RAW_V1))
        raws = [RawIn(payload={"for_user_id": BRAND, "tweet": p.v1()}, dedupe_key=p.id, kind=RAW_V1) for p in good]
        mixed = raws + poison
        random.shuffle(mixed)
        with w.hub.db.session() as s:
            store_raw(s, "webcare", mixed, w.clock.utcnow())
        replay_pending(w.hub, older_than_seconds=0)
        delivered, dups, lost = w.item_counts([p.id for p in good])
        with w.hub.db.Session() as s:
            states = Counter(s.scalars(select(m.RawEvent.status).where(m.RawEvent.dedupe_key.in_(
                [r.dedupe_key for r in poison]))))
            pending = s.scalar(select(func.count()).select_from(m.RawEvent).where(m.RawEvent.status == "pending"))
        return Row("poisoned events in the batch", len(good), delivered, dups, lost + pending,
                   f"poison: {dict(states)}")
    finally:
        w.close()


def database_restart(workdir: Path, db: str | None, scale: int) -> Row:
    """Deliveries while the database goes away for a while (SQLite: file locked; PostgreSQL: backends killed)."""
    w = World(workdir, db, executor="threads", executor_workers=2)
    server = LiveServer(w.app)
    try:
        posts = w.posts(40 * scale)
        url = f"{server.url}/webhooks/webcare"
        stop = threading.Event()
        struck: list[int] = []
        disruptor = threading.Thread(target=_disrupt, args=(w.database_url, stop, struck), daemon=True)
        disruptor.start()
        tries = [_send(url, w.body([p])) for p in posts]
        stop.set()
        disruptor.join()
        w.hub.executor.shutdown()
        replay_pending(w.hub, older_than_seconds=0)
        delivered, dups, lost = w.item_counts([p.id for p in posts])
        what = "file locked" if w.database_url.startswith("sqlite") else "backends terminated"
        return Row(f"database restart ({what})", len(posts), delivered, dups, lost,
                   f"{sum(struck)} {'lock periods' if 'locked' in what else 'backends terminated'}, "
                   f"{sum(t > 1 for t in tries)} deliveries re-sent")
    finally:
        server.stop()
        w.close()


def _disrupt(url: str, stop: threading.Event, struck: list[int]) -> None:
    if url.startswith("sqlite"):
        # Hold the write lock for a while, twice: writers wait (busy timeout) or fail and are re-sent.
        for _ in range(2):
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            struck.append(1)
            time.sleep(1.5)
            conn.execute("COMMIT")
            conn.close()
            time.sleep(0.5)
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        while not stop.is_set():
            killed = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all()
            struck.append(sum(1 for (ok,) in killed if ok))
            time.sleep(0.3)
    admin.dispose()


SCENARIOS: list[Callable[[Path, str | None, int], Row]] = [
    duplicate_storm, kill_dispatchers, kill_workers, crm_outage_day, rate_limit_storm, poisoned_events,
    database_restart]


def run(scale: int = 1, database_url: str | None = None, only: list[str] | None = None) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="hub-chaos-") as tmp:
        for scenario in SCENARIOS:
            if only and scenario.__name__ not in only:
                continue
            started = time.time()
            row = scenario(Path(tmp), database_url, scale)
            row.note = f"{row.note}; {time.time() - started:.0f} s".lstrip("; ")
            rows.append(row)
            print(f"  {row.scenario}: delivered {row.delivered}/{row.sent}, duplicates {row.duplicates}, "
                  f"lost {row.lost}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[Row]) -> str:
    head = ("scenario", "sent", "delivered", "duplicates", "lost", "notes")
    cells = [head] + [(r.scenario, str(r.sent), str(r.delivered), str(r.duplicates), str(r.lost), r.note)
                      for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("HUB_CHAOS_DATABASE_URL"))
    parser.add_argument("--only", nargs="*", help="scenario function names")
    args = parser.parse_args()
    # The faults are the point: their warnings (retries, outages, poison) would drown the table.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    rows = run(args.scale, args.database_url, args.only)
    print(table(rows))
    return 1 if any(r.duplicates or r.lost for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
