"""CRM drain benchmark: N follow-ups for new contacts through the HubSpot sink (issue 17).

The bundled HubSpot emulator serves on loopback at its real limit (100
requests per rolling 10 s, wall clock); a fresh database (SQLite by default,
``--database-url`` for a PostgreSQL server: a scratch database is created on
it and dropped after) holds N pending follow-ups, each for a customer HubSpot
does not know yet.  The outbox is drained by 1 dispatcher and then by 2:

* SQLite: 2 threads of one hub (one sink object: one budget);
* PostgreSQL: 2 processes, each its own hub, sharing the budget through the
  database (``--redis-url``: through Redis).

Printed per run: tasks/s, the hub's CPU seconds (the machine may be shared), requests used, 429s, duplicates (HubSpot tasks per
follow-up other than one), the most requests in any 10 s, and the ratio of
tasks/s to the ceiling: 100 requests per 10 s at 2 requests per 100 tasks
(one contacts upsert, one task batch create) = 500 tasks/s.  The goal is a
ratio >= 0.8 with 0 x 429 and 0 duplicates.

    python bench/crm_drain.py [--followups 10000] [--dispatchers 1 2]
    python bench/crm_drain.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

A rolling window lets the first 100 requests go at once, so a short run
(fewer than ~5,000 follow-ups) can beat the steady-state ceiling; the
window-bound line shows the best any client could do for the run's requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "pat-bench-00000000-0000-0000-0000-000000000000"
OWNERS = ["41488296", "64492917", "77405866"]
LIMIT, WINDOW = 100, 10.0
CEILING = LIMIT / WINDOW * 100 / 2  # tasks/s at 2 requests per 100 tasks


# -- the database -------------------------------------------------------------------
class ScratchDatabase:
    """A fresh database per run: a SQLite file, or a database created on the PostgreSQL server."""

    def __init__(self, server_url: str | None, tag: str):
        self.server_url, self.admin = server_url, None
        if server_url is None:
            self.dir = tempfile.mkdtemp(prefix="crm_drain_")
            self.url = f"sqlite:///{self.dir}/hub.db"
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        base = make_url(server_url)
        self.name = f"hub_bench_crm_{os.getpid()}_{tag}"
        self.admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is None:
            return
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def hub_config(db_url: str, emulator_url: str, redis_url: str | None, limit: int = LIMIT,
               unshared: bool = False) -> dict:
    cfg = {"database_url": db_url, "executor": "inline",
           "sinks": {"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": emulator_url,
                                 "owners": OWNERS, "rate_limit": [limit, WINDOW]}},
           "routing": {"followups": "hubspot"}, "http": {"allowed_private_hosts": ["127.0.0.1"]},
           "dispatch": {"batch_size": 100}}
    if unshared:  # each process its own budget: what the hub did before the budgets were shared
        cfg["rate_limits"] = {"backend": "memory"}
    elif redis_url:
        cfg["rate_limits"] = {"redis_url": redis_url, "key_prefix": f"bench:crm:{uuid.uuid4().hex[:8]}"}
    return cfg


def make_hub(cfg: dict, instance_dir: str):
    os.environ["HUB_INSTANCE_PATH"] = instance_dir
    from hub.app import create_app

    return create_app(cfg, load_entry_points=True).extensions["hub"]


def seed(hub, n: int) -> None:
    """N customers HubSpot does not know, each with an e-mail, a detractor case and a pending follow-up."""
    from sqlalchemy import insert

    from hub.storage import models as m
    from hub.storage.migrate import upgrade

    upgrade(hub.db.engine)
    now = hub.clock.utcnow()
    rows = range(1, n + 1)
    with hub.db.engine.begin() as conn:
        conn.execute(insert(m.Customer), [{"id": i, "ref": uuid.uuid4().hex, "name": f"Nieuwe Klant{i}",
                                           "attributes": {}, "created_at": now} for i in rows])
        conn.execute(insert(m.Identity), [{"id": i, "customer_id": i, "kind": "email",
                                           "value": f"nieuw{i}@bench.example", "confidence": 1.0,
                                           "created_at": now} for i in rows])
        conn.execute(insert(m.Case), [{"id": i, "customer_id": i, "status": "new", "priority": "high", "risk": 80,
                                       "opened_at": now, "updated_at": now, "control": False, "version": 0}
                                      for i in rows])
        conn.execute(insert(m.FeedbackItem), [{"id": i, "source": "bench", "external_id": f"resp-{i}",
                                               "channel": "survey", "occurred_at": now, "received_at": now,
                                               "text": "Al drie weken geen internet.", "nps": 2, "score": 2,
                                               "scale": "nps", "risk": 80, "risk_reasons": [], "extra": {},
                                               "customer_id": i, "case_id": i} for i in rows])
        conn.execute(insert(m.Followup), [{"id": i, "case_id": i, "sink": "hubspot",
                                           "idempotency_key": f"bench-{i}", "due_at": now + dt.timedelta(hours=4),
                                           "status": "pending", "attempts": 0, "next_attempt_at": now,
                                           "created_at": now} for i in rows])
    if hub.db.dialect == "postgresql":
        with hub.db.engine.begin() as conn:
            for table in ("customer", "identity", "case", "feedback_item", "followup"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), {n})")
            conn.exec_driver_sql("ANALYZE")


def drain(hub) -> int:
    """Dispatch until nothing is due; the follow-ups sent."""
    from hub.engine.dispatch import dispatch

    sent = 0
    while True:
        report = dispatch(hub)
        sent += report.sent
        if report.claimed == 0:
            return sent


def _process_dispatcher(cfg: dict, instance_dir: str, go, out) -> None:
    hub = make_hub(cfg, instance_dir)
    _ = hub.registry.sink("hubspot").http  # build the client (and its shared budget) before the clock starts
    out.put(("ready", 0))
    go.wait()
    cpu = time.process_time()
    sent = drain(hub)
    out.put(("sent", (sent, time.process_time() - cpu)))
    hub.db.dispose()


# -- the emulator, in a process of its own (HubSpot's work is not the hub's CPU) -------------------
def _serve_emulator(out, limit: int) -> None:
    import logging

    from werkzeug.serving import make_server

    from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    portal = HubSpotState(token=TOKEN, owners=OWNERS, requests_per_10s=limit)
    server = make_server("127.0.0.1", 0, make_emulator_app(portal), threaded=True)
    out.put(server.server_port)
    server.serve_forever()


class Emulator:
    def __init__(self, limit: int = LIMIT):
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        self.proc = ctx.Process(target=_serve_emulator, args=(out, limit), daemon=True)
        self.proc.start()
        self.url = f"http://127.0.0.1:{out.get(timeout=60)}"

    def get(self, path: str) -> dict:
        import requests

        return requests.get(f"{self.url}{path}", timeout=60).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# -- one run ---------------------------------------------------------------------------------
def run(n: int, dispatchers: int, server_url: str | None, redis_url: str | None, limit: int = LIMIT,
        unshared: bool = False) -> dict:
    server = Emulator(limit)
    db = ScratchDatabase(server_url, f"d{dispatchers}")
    instance_dir = tempfile.mkdtemp(prefix="crm_drain_instance_")
    cfg = hub_config(db.url, server.url, redis_url, limit, unshared)
    try:
        hub = make_hub(cfg, instance_dir)
        seed(hub, n)
        if db.admin is None:  # SQLite: threads of one hub share its sink and budget
            _ = hub.registry.sink("hubspot").http  # the client and its budget, before the clock starts
            counts: list[int] = []
            cpu, start = time.process_time(), time.perf_counter()
            threads = [threading.Thread(target=lambda: counts.append(drain(hub))) for _ in range(dispatchers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            sent = sum(counts)
        else:  # PostgreSQL: processes, each its own hub, sharing the budget through the database (or Redis)
            ctx = multiprocessing.get_context("spawn")
            go, out = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_process_dispatcher, args=(cfg, instance_dir, go, out))
                     for _ in range(dispatchers)]
            for p in procs:
                p.start()
            for _ in procs:
                assert out.get(timeout=120)[0] == "ready"
            start = time.perf_counter()
            go.set()
            answers = [out.get(timeout=3600)[1] for _ in procs]
            elapsed = time.perf_counter() - start
            sent, cpu = sum(a[0] for a in answers), sum(a[1] for a in answers)
            for p in procs:
                p.join(30)
        hub.db.dispose()
        from plugins.crm_hubspot.content import find_marker

        state, tasks = server.get("/_control/state"), server.get("/_control/tasks")["results"]
    finally:
        server.stop()
        db.drop()
    per_key: dict[str, int] = {}
    for task in tasks:
        key = find_marker(task["properties"].get("hs_task_body"))
        per_key[key] = per_key.get(key, 0) + 1
    # Duplicates: tasks beyond one per follow-up, and follow-ups without a task.
    duplicates = sum(c - 1 for c in per_key.values() if c > 1) + (n - len(per_key))
    requests = state["requests"]
    windows = max(0, -(-requests // limit) - 1)
    return {"dispatchers": dispatchers, "sent": sent, "seconds": elapsed, "tasks_per_s": sent / elapsed, "cpu": cpu,
            "requests": requests, "rate_limited": state["rate_limited"], "duplicates": duplicates,
            "tasks": len(tasks), "max_in_10s": state["max_requests_in_10s"], "window_bound_s": windows * WINDOW}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--followups", type=int, default=10_000)
    ap.add_argument("--dispatchers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--database-url", default=None, help="a PostgreSQL server URL (a scratch database is made)")
    ap.add_argument("--redis-url", default=None, help="share the budget through Redis instead of the database")
    ap.add_argument("--limit", type=int, default=LIMIT,
                    help="the emulator's requests per 10 s (lower: the budget, not the hub, sets the pace)")
    ap.add_argument("--unshared", action="store_true",
                    help="each dispatcher process its own budget (rate_limits.backend = memory), for comparison")
    args = ap.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the emulator's access log
    backend = "SQLite" if not args.database_url else "PostgreSQL" + (
        " + unshared budgets" if args.unshared else " + Redis budget" if args.redis_url else "")
    ceiling = args.limit / WINDOW * 100 / 2
    print(f"CRM drain: {args.followups:,} follow-ups for new contacts, HubSpot emulator at {args.limit} requests "
          f"per {WINDOW:g} s, {backend}; ceiling {ceiling:.0f} tasks/s (2 requests per 100 tasks)")
    ok, results = True, []
    for d in args.dispatchers:
        r = run(args.followups, d, args.database_url, args.redis_url, args.limit, args.unshared)
        ratio = r["tasks_per_s"] / ceiling
        print(f"  {d} dispatcher{'s' if d > 1 else ' '}: {r['sent']:,} sent in {r['seconds']:.1f} s = "
              f"{r['tasks_per_s']:.0f} tasks/s, ratio to ceiling {ratio:.2f}; requests {r['requests']} "
              f"({r['requests'] / max(1, r['sent']) * 100:.1f} per 100 tasks), 429s {r['rate_limited']}, "
              f"duplicates {r['duplicates']}, most in any 10 s {r['max_in_10s']}; "
              f"window-bound {r['window_bound_s']:.0f} s; hub CPU {r['cpu']:.1f} s "
              f"({r['sent'] / max(r['cpu'], 1e-9):.0f} tasks per CPU second)")
        r["ratio"], r["ok"] = ratio, r["sent"] == args.followups and r["rate_limited"] == 0 and r["duplicates"] == 0
        results.append(r)
        ok &= r["ok"]
    database = "postgresql" if args.database_url else "sqlite"
    for r in results:  # the machine-readable lines (bench/README.md), after every other line
        print("BENCH " + json.dumps({
            "name": f"crm_drain_{database}_{r['dispatchers']}", "value": round(r["tasks_per_s"]), "unit": "tasks/s",
            "baseline": round(ceiling), "ratio": round(r["ratio"], 3), "ratio_is": "tasks/s / emulator ceiling",
            "goal": "ratio >= 0.8, 0 x 429, 0 duplicates", "pass": r["ok"] and r["ratio"] >= 0.8,
            "rate_limited": r["rate_limited"], "duplicates": r["duplicates"], "requests": r["requests"],
            "tasks_per_cpu_second": round(r["sent"] / max(r["cpu"], 1e-9)), "database": database}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
