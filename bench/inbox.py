"""Inbox render time with a large SQLite database (issue 6: < 300 ms at 100k items).

Builds a database of N generated items (default 100,000) through the real
batch pipeline (identities, scoring, cases, follow-ups), signs in with the
Flask test client and times ``GET /`` and a few filtered views over several
runs.  Prints the median (and the slowest) of each.

    .venv/bin/python bench/inbox.py                 # 100k items, temporary database
    .venv/bin/python bench/inbox.py --db /tmp/b.db  # keep (and reuse) the database
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "bench", "bench-password-1"
VIEWS = [
    ("/", "default view: open cases + new feedback, worst first"),
    ("/?channel=social", "channel filter"),
    ("/?category=detractor&language=en", "category + language"),
    ("/?status=all&page=20", "everything, page 20"),
    ("/?q=storing", "free-text search"),
    ("/inbox/updates.json?after=0", "live-update poll (worst case: from id 0)"),
]


def build(app, n: int, batch: int) -> None:
    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk.contracts import parse_feedback
    from hub.sdk.demo_data import generate_feedback

    hub = app.extensions["hub"]
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(2026)
    t0 = time.perf_counter()
    objs = generate_feedback(rng, n, start=now - dt.timedelta(days=365), end=now, people=max(100, n // 4),
                             prefix="bench")
    pipeline = Pipeline(hub)
    for start in range(0, n, batch):
        entries = [Entry(parse_feedback(o)[1]) for o in objs[start:start + batch]]
        with hub.db.session() as s:
            pipeline.ingest(s, "bench", entries, now)
        done = min(n, start + batch)
        print(f"\r  ingested {done:,}/{n:,} items ({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)


def login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.status_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--db", help="SQLite file to build once and reuse")
    parser.add_argument("--explain", action="store_true", help="print SQLite's plan for the default inbox query")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    db_path = Path(args.db) if args.db else workdir / "hub.db"
    os.environ["HUB_INSTANCE_PATH"] = str(workdir / "instance")
    from sqlalchemy import func, select

    from hub.app import create_app
    from hub.engine.accounts import create_user
    from hub.storage import models as m
    from hub.storage.migrate import upgrade

    app = create_app({"database_url": f"sqlite:///{db_path}", "executor": "inline"}, load_entry_points=False)
    hub = app.extensions["hub"]
    upgrade(hub.db.engine)
    with hub.db.Session() as s:
        have = s.scalar(select(func.count()).select_from(m.FeedbackItem)) or 0
    if have < args.items:
        print(f"building {args.items:,} items in {db_path} ...", file=sys.stderr)
        build(app, args.items - have, args.batch)
    with hub.db.session() as s:
        create_user(s, USER, PASSWORD, "agent")
        items = s.scalar(select(func.count()).select_from(m.FeedbackItem))
        cases = s.scalar(select(func.count()).select_from(m.Case))
    with hub.db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"database: {items:,} feedback items, {cases:,} cases ({db_path.stat().st_size / 1e6:.0f} MB)")

    client = app.test_client()
    login(client)
    if args.explain:
        from hub.web.inbox import C, F, InboxFilters, _base

        q = InboxFilters().apply(_base(), USER).order_by(F.risk.desc(), C.sla_due_at.asc().nulls_last(),
                                                         F.id.desc()).limit(50)
        sql = str(q.compile(hub.db.engine, compile_kwargs={"literal_binds": True}))
        with hub.db.engine.connect() as conn:
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql):
                print("  plan:", row[-1])

    print(f"{'view':<44} {'median':>9} {'max':>9}")
    for url, label in VIEWS:
        client.get(url)  # warm the caches (templates, filter menus, SQLite pages)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            resp = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200, (url, resp.status_code)
        print(f"{label:<44} {statistics.median(times):>7.1f}ms {max(times):>7.1f}ms   GET {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
