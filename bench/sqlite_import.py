"""SQLite import benchmark: ``feedback-hub import`` of N generated items vs raw executemany.

Measures, in one run on this machine:

1. hub: :func:`hub.engine.importer.import_file` (the code behind
   ``feedback-hub import FILE --source NAME``) of N items generated as in
   ``bench/ingest.py`` into a fresh SQLite file, timing each 10,000;
2. baseline: ``sqlite3.executemany`` of *the very rows the hub wrote* (every
   row of raw_event, customer, identity, case, followup, feedback_item, read
   back from the hub's database) into a fresh database of the same schema,
   1,000 rows per transaction (``bench/ingest.py``'s baseline).

Prints items/s of each, the ratio hub/raw (goal >= 0.5) and the seconds of
each 10k (flat: the last within 1.5x the first).

    python bench/sqlite_import.py [--items 100000]
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

from ingest import run_baseline, write_input  # noqa: E402
from pg_import import Laps  # noqa: E402


def run_hub(db_path: Path, input_path: Path) -> tuple[float, int, Laps]:
    os.environ["HUB_INSTANCE_PATH"] = str(db_path.parent / "instance")
    from hub.app import create_app
    from hub.engine.importer import import_file
    from hub.storage.migrate import upgrade

    app = create_app({"database_url": f"sqlite:///{db_path}", "executor": "inline"}, load_entry_points=False)
    hub = app.extensions["hub"]
    upgrade(hub.db.engine)
    laps = Laps()
    start = time.perf_counter()
    report = import_file(hub, input_path, "bench", progress=laps)
    elapsed = time.perf_counter() - start
    hub.db.dispose()
    assert not report.bad, report.bad[:3]
    return elapsed, report.created, laps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
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
        cpu = time.process_time()
        hub_s, created, laps = run_hub(hub_db, input_path)
        cpu = time.process_time() - cpu
        print("baseline: sqlite3.executemany of the same rows ...", flush=True)
        base_s, rows = run_baseline(hub_db, empty_db)
    hub_rate, base_rate = created / hub_s, created / base_s
    print(f"hub import:   {created:,} items in {hub_s:.1f} s = {hub_rate:,.0f} items/s "
          f"({created / cpu:,.0f} per CPU second)")
    print(f"raw sqlite3:  {rows:,} rows ({created:,} items) in {base_s:.1f} s = {base_rate:,.0f} items/s")
    print(laps.report())
    print(f"ratio hub/raw: {hub_rate / base_rate:.3f}  (goal >= 0.5)")
    print("BENCH " + json.dumps({  # bench/README.md: the summary's line
        "name": "sqlite_import", "value": round(hub_rate), "unit": "items/s", "baseline": round(base_rate),
        "ratio": round(hub_rate / base_rate, 3), "baseline_is": "sqlite3 executemany of the same rows",
        "goal": "ratio >= 0.5", "pass": hub_rate / base_rate >= 0.5, "items": created}))


if __name__ == "__main__":
    main()
