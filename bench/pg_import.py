"""PostgreSQL import benchmark: ``feedback-hub import`` of N generated items vs COPY.

Measures, in one run on this machine:

1. hub: :func:`hub.engine.importer.import_file` (the code behind
   ``feedback-hub import FILE --source NAME``) of N items generated as in
   ``bench/ingest.py`` into a scratch PostgreSQL database, timing each 10,000;
2. baseline: ``COPY ... FROM STDIN`` of *the very rows the hub wrote* (every
   row of raw_event, customer, identity, case, followup, feedback_item, read
   back as Python values) into a second scratch database of the same schema.

Prints items/s of each, the ratio hub/COPY (goal >= 0.30, and >= 5,000
items/s) and the seconds of each 10k (flat: the last within 1.5x the first).

    python bench/pg_import.py [--items 100000] [--workers 2] [--url postgresql+psycopg://postgres@127.0.0.1:5432]

The scratch databases (``hub_ingest_bench_<pid>_*``) are dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import TABLES, write_input  # noqa: E402

STEP = 10_000


class Laps:
    """Seconds per ``step`` items, from the importer's progress callback."""

    def __init__(self, step: int = STEP):
        self.step, self.done, self.laps = step, 0, []
        self._start = self._lap = time.perf_counter()

    def __call__(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.done // self.step > before // self.step:
            now = time.perf_counter()
            self.laps.append(now - self._lap)
            self._lap = now

    def report(self) -> str:
        laps = " ".join(f"{s:.1f}" for s in self.laps)
        flat = self.laps[-1] / self.laps[0] if len(self.laps) > 1 else 1.0
        return f"seconds per {self.step:,}: {laps}  (last/first {flat:.2f}; flat: <= 1.5)"


def scratch_db(base: str, name: str):
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base}/{name}"


def drop_db(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_hub(url: str, input_path: Path, instance: Path, workers: int = 1) -> tuple[float, int, Laps]:
    os.environ["HUB_INSTANCE_PATH"] = str(instance)
    from functools import partial

    from hub.app import create_app
    from hub.engine.importer import import_file
    from hub.storage.migrate import upgrade

    make_app = partial(create_app, {"database_url": url, "executor": "inline"}, load_entry_points=False)
    app = make_app()
    hub = app.extensions["hub"]
    upgrade(hub.db.engine)
    laps = Laps()
    start = time.perf_counter()
    report = import_file(hub, input_path, "bench", progress=laps, workers=workers, make_app=make_app)
    elapsed = time.perf_counter() - start
    hub.db.dispose()
    assert not report.bad, report.bad[:3]
    return elapsed, report.created, laps


def run_copy(hub_url: str, empty_url: str) -> tuple[float, int]:
    """COPY of the very rows the hub stored, into an empty copy of the schema (one transaction)."""
    import psycopg

    def dsn(url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql://")

    with psycopg.connect(dsn(hub_url)) as src:
        rows = {t: src.execute(f'SELECT * FROM "{t}" ORDER BY id').fetchall() for t in TABLES}
        cols = {t: [d.name for d in src.execute(f'SELECT * FROM "{t}" LIMIT 0').description] for t in TABLES}
    total = sum(len(r) for r in rows.values())
    with psycopg.connect(dsn(empty_url)) as dst:
        start = time.perf_counter()
        with dst.cursor() as cur:
            for t in TABLES:  # foreign-key order
                names = ", ".join(f'"{c}"' for c in cols[t])
                with cur.copy(f'COPY "{t}" ({names}) FROM STDIN') as copy:
                    for row in rows[t]:
                        copy.write_row([psycopg.types.json.Jsonb(v) if isinstance(v, dict | list) else v
                                        for v in row])
        dst.commit()
        elapsed = time.perf_counter() - start
    return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1,
                        help="import processes (feedback-hub import --workers); their start-up is timed too")
    parser.add_argument("--url", default=os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
                        help="server URL without a database name")
    args = parser.parse_args()
    from hub.storage.database import make_engine
    from hub.storage.migrate import upgrade

    names = [f"hub_ingest_bench_{os.getpid()}_hub", f"hub_ingest_bench_{os.getpid()}_copy"]
    try:
        hub_url, copy_url = (scratch_db(args.url, n) for n in names)
        engine = make_engine(copy_url)
        upgrade(engine)
        engine.dispose()
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            input_path = tmp_path / "items.jsonl"
            print(f"generating {args.items:,} items ...", flush=True)
            write_input(input_path, args.items)
            print("importing through the hub ...", flush=True)
            cpu = time.process_time()
            hub_s, created, laps = run_hub(hub_url, input_path, tmp_path / "instance", args.workers)
            cpu = time.process_time() - cpu  # this process only: with --workers, the parent's
        print("baseline: COPY of the same rows ...", flush=True)
        copy_s, rows = run_copy(hub_url, copy_url)
    finally:
        for n in names:
            drop_db(args.url, n)
    hub_rate, copy_rate = created / hub_s, created / copy_s
    per_cpu = f" ({created / cpu:,.0f} per CPU second of this process)" if args.workers == 1 else ""
    print(f"hub import ({args.workers} process{'es' if args.workers > 1 else ''}): {created:,} items in {hub_s:.1f} s "
          f"= {hub_rate:,.0f} items/s{per_cpu}")
    print(f"COPY:        {rows:,} rows ({created:,} items) in {copy_s:.1f} s = {copy_rate:,.0f} items/s")
    print(laps.report())
    print(f"ratio hub/COPY: {hub_rate / copy_rate:.3f}  (goal >= 0.30, and >= 5,000 items/s)")
    ratio = hub_rate / copy_rate
    print("BENCH " + json.dumps({  # bench/README.md: the summary's line
        "name": "pg_import" if args.workers == 1 else f"pg_import_{args.workers}_workers", "value": round(hub_rate),
        "unit": "items/s", "baseline": round(copy_rate), "ratio": round(ratio, 3), "baseline_is": "COPY of the same rows",
        "goal": "ratio >= 0.30 and >= 5,000 items/s (100,000 items)", "pass": ratio >= 0.30 and hub_rate >= 5000,
        "items": created, "workers": args.workers}))


if __name__ == "__main__":
    main()
