"""Ingest benchmark: `feedback-hub import` of N generated items vs raw sqlite3.

Measures, in one run on this machine:

1. hub: the import path (parse + validate each line, raw event, dedupe,
   identity, scoring hooks, cases, planner, outbox) into a fresh SQLite file;
2. baseline: ``sqlite3.executemany`` inserting *the same rows* the hub wrote
   (every row of raw_event, customer, identity, case, followup, feedback_item,
   read back from the hub's database) into a fresh database of the same schema.

Prints items/s of each and the ratio hub/baseline (target, later: >= 0.30).

    python bench/ingest.py [--items 100000]

Against an older checkout (say the tree before a change, with its own
virtualenv), in alternating runs so both see the same machine load:

    git worktree add /tmp/before <commit>
    python bench/ingest.py --items 20000 --rounds 3 \
        --before /tmp/before --before-python /tmp/before-venv/bin/python

prints each run's items/s and the medians' ratio (this tree / before).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.sdk.demo_data import generate_feedback  # noqa: E402

TABLES = ["raw_event", "customer", "identity", "case", "followup", "feedback_item"]


def write_input(path: Path, n: int) -> None:
    end = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    items = generate_feedback(random.Random(42), n, start=end - dt.timedelta(days=60), end=end,
                              people=n // 4, prefix="bench")
    with path.open("w") as fh:
        for obj in items:
            fh.write(json.dumps(obj) + "\n")


def run_hub(db_path: Path, input_path: Path) -> tuple[float, int]:
    os.environ["HUB_INSTANCE_PATH"] = str(db_path.parent / "instance")
    from hub.app import create_app
    from hub.engine.importer import import_file
    from hub.storage.migrate import upgrade

    app = create_app({"database_url": f"sqlite:///{db_path}", "executor": "inline"}, load_entry_points=False)
    hub = app.extensions["hub"]
    upgrade(hub.db.engine)
    start = time.perf_counter()
    report = import_file(hub, input_path, "bench")
    elapsed = time.perf_counter() - start
    hub.db.dispose()
    assert not report.bad, report.bad[:3]
    return elapsed, report.created


def run_baseline(hub_db: Path, empty_db: Path) -> tuple[float, int]:
    """executemany of the very rows the hub stored, into an empty copy of the schema."""
    src = sqlite3.connect(hub_db)
    rows = {t: src.execute(f'SELECT * FROM "{t}"').fetchall() for t in TABLES}
    cols = {t: len(src.execute(f'SELECT * FROM "{t}" LIMIT 0').description) for t in TABLES}
    src.close()
    dst = sqlite3.connect(empty_db)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    dst.execute("PRAGMA foreign_keys=ON")
    start = time.perf_counter()
    batch = 1000  # the hub commits every 1,000 lines too
    for t in TABLES:  # foreign-key order
        marks = ", ".join("?" * cols[t])
        for offset in range(0, len(rows[t]), batch):
            dst.executemany(f'INSERT INTO "{t}" VALUES ({marks})', rows[t][offset : offset + batch])
            dst.commit()
    elapsed = time.perf_counter() - start
    total = sum(len(r) for r in rows.values())
    dst.close()
    return elapsed, total


#: Run in a fresh process with the interpreter of the tree being measured: loads that
#: tree's own bench/ingest.py and times its run_hub, in wall-clock and in CPU seconds
#: (the CPU figure is what stays comparable on a machine others are using too).
_RUNNER = """
import importlib.util, pathlib, sys, tempfile, time
root, items = pathlib.Path(sys.argv[1]), int(sys.argv[2])
spec = importlib.util.spec_from_file_location("tree_bench", root / "bench" / "ingest.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    bench.write_input(tmp / "items.jsonl", items)
    cpu = time.process_time()
    wall, created = bench.run_hub(tmp / "hub.db", tmp / "items.jsonl")
    print(created, wall, time.process_time() - cpu)
"""


def one_run(python: str, root: Path, items: int) -> tuple[float, float]:
    """(items/s by the wall clock, items/s per CPU second) of the import of the tree at ``root``."""
    out = subprocess.run([python, "-c", _RUNNER, str(root), str(items)], cwd=root, capture_output=True,
                         text=True, check=True).stdout.split()
    created, wall, cpu = int(out[-3]), float(out[-2]), float(out[-1])
    return created / wall, created / cpu


def compare(args) -> None:
    """Alternate runs of this tree and ``--before``; print every figure and the medians."""
    here, before = [], []
    for n in range(args.rounds):
        before.append(one_run(args.before_python, Path(args.before), args.items))
        here.append(one_run(sys.executable, ROOT, args.items))
        print(f"round {n + 1}: before {before[-1][0]:,.0f} items/s ({before[-1][1]:,.0f} per CPU s), "
              f"this tree {here[-1][0]:,.0f} items/s ({here[-1][1]:,.0f} per CPU s)", flush=True)
    for k, what in ((0, "items/s"), (1, "items per CPU second")):
        mid_here = statistics.median(r[k] for r in here)
        mid_before = statistics.median(r[k] for r in before)
        print(f"median {what}: before {mid_before:,.0f}, this tree {mid_here:,.0f}, "
              f"ratio {mid_here / mid_before:.3f}  (within 10 %: >= 0.90)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--before", help="another checkout to compare with, in alternating runs")
    parser.add_argument("--before-python", default=sys.executable, help="the interpreter of --before's virtualenv")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.before:
        compare(args)
        return
    from hub.storage.database import make_engine
    from hub.storage.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        input_path = tmp_path / "items.jsonl"
        print(f"generating {args.items:,} items ...", flush=True)
        write_input(input_path, args.items)
        hub_db, empty_db = tmp_path / "hub.db", tmp_path / "baseline.db"
        engine = make_engine(f"sqlite:///{empty_db}")
        upgrade(engine)
        engine.dispose()
        print("importing through the hub ...", flush=True)
        hub_s, created = run_hub(hub_db, input_path)
        print("baseline: sqlite3.executemany of the same rows ...", flush=True)
        base_s, rows = run_baseline(hub_db, empty_db)
    hub_rate = created / hub_s
    base_rate = created / base_s
    print(f"hub import:   {created:,} items in {hub_s:.1f} s = {hub_rate:,.0f} items/s")
    print(f"raw sqlite3:  {rows:,} rows ({created:,} items) in {base_s:.1f} s = {base_rate:,.0f} items/s")
    print(f"ratio hub/raw: {hub_rate / base_rate:.3f}  (target later: >= 0.30)")
    print("BENCH " + json.dumps({"name": "ingest", "value": round(hub_rate), "unit": "items/s", "baseline": round(base_rate),
                                 "ratio": round(hub_rate / base_rate, 3), "goal": "ratio >= 0.30",
                                 "pass": hub_rate / base_rate >= 0.30}))  # bench/README.md: the summary's line


if __name__ == "__main__":
    main()
