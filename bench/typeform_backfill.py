"""Backfill N emulated Typeform responses through the real connector and report
time and memory.

    .venv/bin/python bench/typeform_backfill.py                 # 50,000 responses, pages of 1,000
    .venv/bin/python bench/typeform_backfill.py --responses 3000 --page-size 500

What runs is what ``feedback-hub backfill nps --since 2024-12-31`` runs: the
core's page loop (``hub.engine.pulls.pull``) over the Typeform connector, talking real
HTTP to the emulator on a loopback port, into a fresh SQLite database (or
``--database-url``).  The Typeform rate budget (2 requests/s) is on, on the
wall clock.

Memory is the process's resident set (``VmRSS``) sampled after every committed
page, and its peak (``VmHWM``); the emulator serves from the same process, so
its page building is included.  "Flat" means the RSS after the last page is
about what it was after the first few: nothing grows with the number of
responses, only with the page size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.app import create_app  # noqa: E402
from hub.engine.pulls import pull  # noqa: E402
from hub.sdk import Clock  # noqa: E402
from hub.storage import models as m  # noqa: E402
from hub.storage.migrate import upgrade  # noqa: E402
from plugins.survey_typeform import TypeformEmulator  # noqa: E402


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def run(responses: int = 50_000, page_size: int = 1000, *, database_url: str | None = None,
        clock: Clock | None = None) -> dict[str, Any]:
    """Backfill ``responses`` emulated answers, then pull again; returns the figures."""
    workdir = tempfile.mkdtemp(prefix="typeform-bench-")
    emu = TypeformEmulator(responses=responses, start=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), step_seconds=600,
                           token="bench-token")
    emu_app = flask.Flask("typeform-emulator")
    emu_app.register_blueprint(emu.blueprint())
    server = make_server("127.0.0.1", 0, emu_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = create_app({
            "database_url": database_url or f"sqlite:///{workdir}/hub.db",
            "executor": "inline",
            "instance_path": workdir,
            "sources": {"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "bench-token",
                                "page_size": page_size, "base_url": f"http://127.0.0.1:{server.server_port}"}},
        }, clock=clock)
        hub = app.extensions["hub"]
        upgrade(hub.db.engine)
        samples: list[float] = []
        start_rss = rss_mb()
        started = time.perf_counter()
        report = pull(hub, "nps", since=dt.datetime(2024, 12, 31, tzinfo=dt.UTC),
                      progress=lambda records, created: samples.append(rss_mb()))
        elapsed = time.perf_counter() - started
        with hub.db.Session() as s:
            items = s.scalar(select(func.count()).select_from(m.FeedbackItem))
            distinct = s.scalar(select(func.count(func.distinct(m.FeedbackItem.external_id))))
            raws = s.scalar(select(func.count()).select_from(m.RawEvent))
            cursor = s.scalar(select(m.ConnectorState.cursor).where(m.ConnectorState.instance == "nps"))
        rerun = pull(hub, "nps")
        hub.db.dispose()
    finally:
        server.shutdown()
        server.server_close()
    settle = samples[min(4, len(samples) - 1)] if samples else start_rss
    return {
        "responses": responses, "page_size": page_size, "pages": report.pages, "records": report.records,
        "new_items": report.new_items, "items": items, "distinct_external_ids": distinct, "raw_events": raws,
        "cursor": cursor, "newest_submitted_at": dt.datetime.fromtimestamp(
            emu.submitted_ts(responses - 1), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rerun_records": rerun.records, "rerun_new_items": rerun.new_items,
        "seconds": round(elapsed, 1), "responses_per_second": round(report.records / elapsed) if elapsed else None,
        "rss_start_mb": round(start_rss, 1), "rss_after_page_5_mb": round(settle, 1),
        "rss_end_mb": round(samples[-1], 1) if samples else None,
        "rss_growth_after_page_5_mb": round((samples[-1] - settle), 1) if samples else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_samples_mb": [round(x, 1) for x in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per page
    result = run(args.responses, args.page_size, database_url=args.database_url)
    samples = result.pop("rss_samples_mb")
    print(json.dumps(result, indent=2))
    step = max(1, len(samples) // 10)
    shown = sorted({*range(0, len(samples), step), len(samples) - 1}) if samples else []
    print("RSS after page (MB):", ", ".join(f"#{i + 1}: {samples[i]}" for i in shown))


if __name__ == "__main__":
    main()
