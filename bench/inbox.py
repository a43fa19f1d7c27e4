"""Inbox and API query time at a million items, against the same views without migration 0011.

Issue 17's goal: p95 under 50 ms per view at 1,000,000 items, on SQLite and
PostgreSQL.  The run prints p50/p95 of each view (inbox views, customer
timeline, API list) twice, in the same run and on the same rows:

``before``
    the database at revision 0010 (no 0011 indexes, no full-text index) with
    the statistics the hub had before 0011 (none on SQLite: it never ran
    ANALYZE; on PostgreSQL those of an ANALYZE, as autovacuum makes them);
    a view slower than a second there is timed fewer times;
``after``
    the same database upgraded to head (the upgrade's duration is printed too).

and their ratio (before p95 / after p95).

How the million is built (fast, same distributions as the real pipeline):
a sample (``--sample``, default 50,000) goes through the real batch pipeline
(identities, scoring, cases, follow-ups) from the generated demo feed; the
rest are copies of the sample made in SQL (``INSERT ... SELECT``), each copy
with its own customers, identities (values suffixed, so still unique), cases,
follow-ups and items (ids offset, external ids suffixed).  Copies keep each
row's times, texts, scores and links, so channel, risk, text, case and
customer distributions are the sample's, with N/sample times as many rows per
day.  1,000,000 items take ~1-2 minutes on SQLite instead of ~4 through the
pipeline.

    .venv/bin/python bench/inbox.py --items 1000000 --db /tmp/inbox-1m.db
    .venv/bin/python bench/inbox.py --items 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/hub_bench_inbox
    .venv/bin/python bench/inbox.py --items 100000 --no-baseline   # quick look
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
GOAL_MS = 50.0
#: CPU ms per request of the last timed pass, by view label.
CPU: dict[str, list[float]] = {}
#: A request's queries are stopped after this long (the views before 0011 can take hours).
CAP_SECONDS = 10.0
_deadline: list[float] = [0.0]
#: Views stopped at the cap (their figures are the cap: a lower bound).
CAPPED: set[str] = set()
#: A word in ~1 in 10 items (Dutch "outage"), and one in none.
HIT, MISS = "storing", "qzxwvk"
#: (label, URL); {customer} is the customer with the most items, {token} an API token.
VIEWS = [
    ("default inbox (to do)", "/"),
    ("channel filter", "/?channel=social"),
    ("channel filter, all feedback", "/?view=feedback&channel=social"),
    ("text search hit", f"/?q={HIT}"),
    ("text search hit, all feedback", f"/?view=feedback&q={HIT}"),
    ("text search miss", f"/?q={MISS}"),
    ("text search miss, all feedback", f"/?view=feedback&q={MISS}"),
    ("risk + channel", "/?risk=high&channel=social"),
    ("risk + channel, all feedback", "/?view=feedback&risk=high&channel=social"),
    ("category + language", "/?category=detractor&language=en"),
    ("customer timeline", "/customers/{customer}"),
    ("API list with filters", "/api/v1/feedback?channel=social&min_risk=70&limit=50"),
    ("API list, text search", f"/api/v1/feedback?q={HIT}&limit=50"),
    ("page 20 (everything)", "/?status=all&page=20"),
    ("live-update poll", "/inbox/updates.json?after={recent}"),
]
#: Tables a copy duplicates, parents first, with the columns that get an id offset.
COPIED = [
    ("customer", {"id": "customer", "merged_into_id": "customer"}),
    ("identity", {"id": "identity", "customer_id": "customer"}),
    ("case", {"id": "case", "customer_id": "customer"}),
    ("feedback_item", {"id": "feedback_item", "customer_id": "customer", "case_id": "case"}),
    ("followup", {"id": "followup", "case_id": "case"}),
]
#: Unique text columns: suffixed per copy.
SUFFIXED = {"customer": ("ref",), "identity": ("value", "match_key"), "feedback_item": ("external_id",),
            "followup": ("idempotency_key",)}


def downgrade(engine, revision: str) -> None:
    from alembic import command

    from hub.storage.migrate import alembic_config

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_sample(hub, n: int, batch: int, now: dt.datetime) -> None:
    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk.contracts import parse_feedback
    from hub.sdk.demo_data import generate_feedback

    rng = random.Random(2026)
    t0 = time.perf_counter()
    objs = generate_feedback(rng, n, start=now - dt.timedelta(days=365), end=now, people=max(100, n // 4),
                             prefix="bench")
    pipeline = Pipeline(hub)
    for start in range(0, n, batch):
        entries = [Entry(parse_feedback(o)[1]) for o in objs[start:start + batch]]
        with hub.db.session() as s:
            pipeline.ingest(s, "bench", entries, now)
    log(f"  pipeline: {n:,} items in {time.perf_counter() - t0:.1f} s")


def copy_sample(hub, copies: int) -> None:
    """``copies`` more copies of every row of :data:`COPIED` (see the module docstring)."""
    from sqlalchemy import func, insert, literal, select

    from hub.storage.models import Base

    tables = Base.metadata.tables
    t0 = time.perf_counter()
    with hub.db.engine.connect() as conn:
        top = {name: conn.scalar(select(func.max(tables[name].c.id))) or 0 for name, _ in COPIED}
        base = {name: conn.scalar(select(func.min(tables[name].c.id))) or 0 for name, _ in COPIED}
        conn.rollback()
    span = {name: top[name] - base[name] + 1 for name in top}
    for k in range(1, copies + 1):
        with hub.db.engine.begin() as conn:
            for name, offsets in COPIED:
                table = tables[name]
                cols = []
                for col in table.columns:
                    if col.name in offsets:
                        cols.append((col + span[offsets[col.name]] * k).label(col.name))
                    elif col.name in SUFFIXED.get(name, ()):
                        # customer.ref is 32 characters: keep it that long.
                        cols.append((func.substr(col, 1, 24) + literal(f"{k:08d}")).label(col.name)
                                    if name == "customer" else (col + literal(f"~{k}")).label(col.name))
                    else:
                        cols.append(col)
                src = select(*cols).where(table.c.id.between(base[name], top[name]))
                conn.execute(insert(table).from_select([c.name for c in table.columns], src))
        log(f"  copy {k}/{copies} ({time.perf_counter() - t0:.0f} s)")
    if hub.db.dialect == "postgresql":
        # Copies carry explicit ids: move the sequences past them.
        with hub.db.engine.begin() as conn:
            for name, _ in COPIED:
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                                     f"(SELECT max(id) FROM \"{name}\"))")


def login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.status_code


def forget_statistics(hub) -> None:
    """The state before 0011 on SQLite: the hub never ran ANALYZE, so no sqlite_stat1.

    PostgreSQL gets ``ANALYZE`` instead, the statistics autovacuum gives it
    sooner or later: without them, right after the bulk copy, the planner
    scans every item per case (one baseline view ran over 12 minutes)."""
    if hub.db.dialect == "postgresql":
        with hub.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    if hub.db.dialect != "sqlite":
        return
    with hub.db.engine.begin() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
            conn.exec_driver_sql("DELETE FROM sqlite_stat1")
    hub.db.engine.dispose()  # connections load the statistics when they open


def cap_queries(hub) -> None:
    """Stop any statement after :data:`CAP_SECONDS` of its request (SQLite: a progress
    handler; PostgreSQL: statement_timeout), so one pathological plan cannot stall the run."""
    from sqlalchemy import event

    @event.listens_for(hub.db.engine, "connect")
    def _cap(dbapi_conn, _record):
        if hub.db.dialect == "sqlite":
            dbapi_conn.set_progress_handler(lambda: int(0 < _deadline[0] < time.monotonic()), 10_000)
        else:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {int(CAP_SECONDS * 1000)}")
            dbapi_conn.commit()

    hub.db.engine.dispose()


def percentile(times: list[float], p: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def time_views(app, hub, runs: int, params: dict[str, str], token: str) -> dict[str, list[float]]:
    """Wall-clock ms per request of each view; the CPU ms of this process go to ``CPU``
    (a figure that a loaded machine inflates less: the database runs in-process)."""
    client = app.test_client()
    login(client)
    out: dict[str, list[float]] = {}
    for label, url in VIEWS:
        url = url.format(**params)
        headers = {"Authorization": f"Bearer {token}"} if url.startswith("/api/") else {}
        t0 = time.perf_counter()
        _deadline[0] = time.monotonic() + CAP_SECONDS
        try:
            status = client.get(url, headers=headers).status_code  # warm the caches (templates, database pages)
        except Exception:  # noqa: BLE001 - an app that propagates errors: the statement was stopped
            status = 500
        _deadline[0] = 0.0
        if status == 500:  # stopped at the cap
            CAPPED.add(label)
            out[label], CPU[label] = [CAP_SECONDS * 1000], [CAP_SECONDS * 1000]
            log(f"  {label}: stopped after {CAP_SECONDS:.0f} s")
            continue
        # A view that takes seconds (before the indexes) is timed fewer times.
        many = runs if time.perf_counter() - t0 < 1.0 else max(3, runs // 4)
        times, cpu = [], []
        for _ in range(many):
            t0, c0 = time.perf_counter(), time.process_time()
            resp = client.get(url, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert resp.status_code == 200, (url, resp.status_code)
        out[label] = times
        CPU[label] = cpu
    return out


def report(before: dict[str, list[float]] | None, after: dict[str, list[float]]) -> bool:
    head = f"{'view':<32} {'p50':>8} {'p95':>8} {'cpu p95':>8}"
    if before:
        head += f" {'before p50':>11} {'before p95':>11} {'ratio':>7}"
    print(head)
    for label, url in VIEWS:
        a = after[label]
        line = f"{label:<32} {statistics.median(a):>6.1f}ms {percentile(a, 95):>6.1f}ms {percentile(CPU[label], 95):>6.1f}ms"
        if before:
            b = before[label]
            line += (f" {statistics.median(b):>9.1f}ms {percentile(b, 95):>9.1f}ms"
                     f" {percentile(b, 95) / percentile(a, 95):>6.1f}x")
        if before and label in CAPPED:
            line += "  (before: stopped at the cap, a lower bound)"
        print(line + f"   {url}")
    every = [t for times in after.values() for t in times]
    worst = max(percentile(t, 95) for t in after.values())
    cpu = [t for times in CPU.values() for t in times]
    line = f"{'overall':<32} {statistics.median(every):>6.1f}ms {percentile(every, 95):>6.1f}ms {percentile(cpu, 95):>6.1f}ms"
    if before:
        old = [t for times in before.values() for t in times]
        line += (f" {statistics.median(old):>9.1f}ms {percentile(old, 95):>9.1f}ms"
                 f" {percentile(old, 95) / percentile(every, 95):>6.1f}x")
    print(line)
    ok = worst < GOAL_MS
    print(f"worst view p95 {worst:.1f} ms: {'under' if ok else 'OVER'} the {GOAL_MS:.0f} ms goal")
    worst_cpu = max(percentile(t, 95) for t in CPU.values())
    print(f"worst view cpu p95 {worst_cpu:.1f} ms (this process's CPU per request: what a loaded machine "
          f"inflates least)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=50_000, help="items built through the real pipeline")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--db", help="SQLite file to build once and reuse")
    parser.add_argument("--database-url", help="a database to build in (PostgreSQL: an empty one you created)")
    parser.add_argument("--no-baseline", action="store_true", help="time the indexed views only")
    parser.add_argument("--build-only", action="store_true", help="build the database, time nothing")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    url = args.database_url or f"sqlite:///{Path(args.db) if args.db else workdir / 'hub.db'}"
    os.environ["HUB_INSTANCE_PATH"] = str(workdir / "instance")
    from sqlalchemy import func, select

    from hub.app import create_app, settle_for_serving
    from hub.engine.accounts import create_token, create_user
    from hub.storage import models as m
    from hub.storage.database import make_engine
    from hub.storage.migrate import upgrade
    from hub.storage.search import index_new_items, refresh_statistics

    app = create_app({"database_url": url, "executor": "inline"}, load_entry_points=False)
    hub = app.extensions["hub"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    baseline = not args.no_baseline
    upgrade(hub.db.engine, "0010" if baseline else "head")
    if baseline:
        downgrade(hub.db.engine, "0010")  # a database reused from an earlier run is at head
    with hub.db.Session() as s:
        have = s.scalar(select(func.count()).select_from(m.FeedbackItem)) or 0
    if have < args.items:
        if have:
            raise SystemExit(f"the database holds {have:,} items, fewer than --items: start from an empty one")
        sample = min(args.sample, args.items)
        log(f"building {args.items:,} items: {sample:,} through the pipeline, the rest copied ...")
        build_sample(hub, sample, args.batch, now)
        copy_sample(hub, args.items // sample - 1)
    with hub.db.session() as s:
        if s.scalar(select(m.User.id).where(m.User.username == USER)) is None:
            create_user(s, USER, PASSWORD, "agent")
        token = create_token(s, "bench", "read")
    with hub.db.Session() as s:
        items = s.scalar(select(func.count()).select_from(m.FeedbackItem))
        cases = s.scalar(select(func.count()).select_from(m.Case))
        F = m.FeedbackItem
        customer = s.scalar(select(F.customer_id).where(F.customer_id.is_not(None)).group_by(F.customer_id)
                            .order_by(func.count().desc()).limit(1))
        recent = (s.scalar(select(func.max(F.id))) or 0) - 100
    if args.build_only:
        return 0
    settle_for_serving(app)  # as a web node does once its app is built (gunicorn.conf.py)
    params = {"customer": str(customer), "recent": str(recent)}
    print(f"database: {hub.db.dialect}, {items:,} feedback items, {cases:,} cases")

    before = None
    cap_queries(hub)
    if baseline:
        forget_statistics(hub)
        before = time_views(app, hub, args.runs, params, token)
        t0 = time.perf_counter()
        hub.db.engine.dispose()
        # An engine of its own: the views' connections stop any statement after the cap,
        # and building the trigram indexes of a million rows takes longer.
        migrating = make_engine(url)
        upgrade(migrating)
        log(f"  migration to head (indexes, full-text index, ANALYZE): {time.perf_counter() - t0:.1f} s")
        refresh_statistics(migrating)  # as the scheduler's statistics job keeps them
        migrating.dispose()
        # A web node starts after `db upgrade`: this one looked for the text indexes
        # before the migration made them, and would go on without them.
        app = create_app({"database_url": url, "executor": "inline"}, load_entry_points=False)
        hub = app.extensions["hub"]
        cap_queries(hub)
        settle_for_serving(app)
    else:
        # The copies went in by INSERT ... SELECT, outside an ingest batch: take them
        # into SQLite's text index as the scheduler's statistics job would (else a
        # search reads every copied row by LIKE, above the index's mark).
        with hub.db.session() as s:
            index_new_items(s)
        refresh_statistics(hub.db.engine)
    after = time_views(app, hub, args.runs, params, token)
    return 0 if report(before, after) else 1


if __name__ == "__main__":
    sys.exit(main())
