"""Backfill N emulated Typeform responses through the real connector and report
time and memory.

    .venv/bin/python bench/typeform_backfill.py                 # 50,000 responses, pages of 1,000
    .venv/bin/python bench/typeform_backfill.py --responses 3000 --page-size 500
    .venv/bin/python bench/typeform_backfill.py --responses 550000 --rate-limit off
    .venv/bin/python bench/typeform_backfill.py --responses 60000 --rate-limit off --trace-memory
    .venv/bin/python bench/typeform_backfill.py --quick          # make bench: 20,000, rate limit off

What runs is what ``feedback-hub backfill nps --since 2024-12-31`` runs: the
core's page loop (``hub.engine.pulls.pull``) over the Typeform connector, talking real
HTTP to the emulator on a loopback port, into a fresh SQLite database (or
``--database-url``).  The Typeform rate budget (2 requests/s) is on, on the
wall clock, unless ``--rate-limit off``: then the instance's ``rate_limit``
is set so high that it never waits (a benchmark-only setting, to measure the
hub rather than Typeform's budget; at 2 requests/s 550 pages take >= 275 s).

Memory is the process's resident set (``VmRSS``) sampled after every committed
page, and its peak (``VmHWM``); the emulator serves from the same process, so
its page building is included.  "Flat" means the RSS after the last page is
about what it was after the first few: nothing grows with the number of
responses, only with the page size (goal: under 10 MB of growth after page 5).

Speed is timed per page: the rate of the first 10 % of the pages against
that of the last 10 % (``late_vs_early_rate``; steady is about 1.0, goal >= 0.8),
on the wall clock and in the process's CPU time (``late_vs_early_cpu_rate``:
what the code costs per page, whatever else the machine runs meanwhile; the
emulator's thread is in it too).  The goal is judged on the CPU figure, as on
a shared machine the wall-clock one measures the neighbours as much as the hub.

``--trace-memory`` takes tracemalloc snapshots after page 5 and after the
last page and prints the source lines whose allocations grew the most in
between (slow: a diagnostic run, not a timing run).  The emulator's own
frames (``plugins/survey_typeform/emulator.py``, werkzeug, flask) show as such,
so its growth is told apart from the hub's.

The last line is the machine-readable ``BENCH {...}`` line of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import json
import logging
import resource
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.app import create_app  # noqa: E402
from hub.engine.progress import Progress  # noqa: E402
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


def _sqlite_memory_used() -> Callable[[], int] | None:
    """SQLite's own heap (``sqlite3_memory_used``: page caches, statements), which tracemalloc cannot see."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return lib.sqlite3_memory_used
    except (OSError, AttributeError):
        return None


SQLITE_MEMORY_USED = _sqlite_memory_used()


def rss_parts_mb() -> dict[str, float]:
    """VmRSS split: anonymous (heaps), file-backed (libraries, mapped files), shared memory (SQLite's -shm),
    and the share of the heap that is SQLite's own."""
    parts = {key: round((_status_kb(key) or 0) / 1024, 1) for key in ("RssAnon", "RssFile", "RssShmem")}
    if SQLITE_MEMORY_USED is not None:
        parts["sqlite_heap"] = round(SQLITE_MEMORY_USED() / 2**20, 1)
    parts["python_heap"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1) if tracemalloc.is_tracing() else None
    parts["python_blocks"] = sys.getallocatedblocks()  # live Python objects' blocks: grows only if they pile up
    return parts


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


#: ``--rate-limit off``: a budget the run never reaches (benchmark only).
UNLIMITED = [1_000_000, 1.0]
SETTLE_PAGE = 5  # growth is measured from this page on (the first pages warm caches)


def _rate_ratio(page_times: list[float], page_records: list[int]) -> tuple[float | None, float | None, float | None]:
    """Records/s of the first and the last 10 % of the (full) pages, and last/first."""
    full = [(t, r) for t, r in zip(page_times, page_records, strict=True) if r]
    if len(full) < 10:
        return None, None, None
    k = max(1, len(full) // 10)

    def rate(part):
        return sum(r for _, r in part) / sum(t for t, _ in part)

    early, late = rate(full[:k]), rate(full[-k:])
    return round(early), round(late), round(late / early, 3)


def _rate_per_chunk(page_times: list[float], page_cpu: list[float], page_records: list[int],
                    chunk: int = 50_000) -> list[dict[str, Any]]:
    """Responses per wall and per CPU second over each successive ``chunk`` responses (how speed drifts)."""
    out: list[dict[str, Any]] = []
    recs = wall = cpu = 0.0
    upto = 0
    for t, c, r in zip(page_times, page_cpu, page_records, strict=True):
        recs, wall, cpu, upto = recs + r, wall + t, cpu + c, upto + r
        if recs >= chunk:
            out.append({"upto": upto, "per_s": round(recs / wall) if wall else None,
                        "per_cpu_s": round(recs / cpu) if cpu else None})
            recs = wall = cpu = 0.0
    if recs:
        out.append({"upto": upto, "per_s": round(recs / wall) if wall else None,
                    "per_cpu_s": round(recs / cpu) if cpu else None})
    return out


def _top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 15) -> list[str]:
    stats = after.compare_to(before, "lineno")
    return [f"{s.size_diff / 1024:+9.1f} kB {s.count_diff:+7d} blocks  {s.traceback[0].filename}:"
            f"{s.traceback[0].lineno}" for s in stats[:limit]]


def _progress_log() -> logging.Logger:
    logger = logging.getLogger("bench.typeform_backfill")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def run(responses: int = 50_000, page_size: int = 1000, *, database_url: str | None = None,
        clock: Clock | None = None, rate_limit: bool = True, trace_memory: bool = False,
        progress_seconds: float = 30.0) -> dict[str, Any]:
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
            "http": {"allowed_private_hosts": ["127.0.0.1"]},  # the emulator is on loopback
            "sources": {"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "bench-token",
                                "page_size": page_size, "base_url": f"http://127.0.0.1:{server.server_port}",
                                **({} if rate_limit else {"rate_limit": UNLIMITED})}},
        }, clock=clock)
        hub = app.extensions["hub"]
        upgrade(hub.db.engine)
        samples: list[float] = []
        page_times: list[float] = []
        page_cpu: list[float] = []
        page_records: list[int] = []
        snapshots: list[tracemalloc.Snapshot] = []
        if trace_memory:
            tracemalloc.start()
        start_rss = rss_mb()
        parts: list[dict[str, float]] = []
        started = last = time.perf_counter()
        last_cpu = time.process_time()

        def on_page(records: int, created: int) -> None:
            nonlocal last, last_cpu
            now, cpu = time.perf_counter(), time.process_time()
            page_times.append(now - last)
            page_cpu.append(cpu - last_cpu)
            page_records.append(records)
            samples.append(rss_mb())
            if len(samples) == SETTLE_PAGE:
                parts.append(rss_parts_mb())
            if trace_memory and len(samples) == SETTLE_PAGE:
                snapshots.append(tracemalloc.take_snapshot())
            shown(records, created)
            last, last_cpu = time.perf_counter(), time.process_time()  # the sampling itself is not the hub's time

        # The hub's own progress line on stderr (the stdout stays the figures), with Typeform's total.
        shown = Progress("backfill nps", interval=progress_seconds, terminal=False, logger=_progress_log())
        on_page.add_total = shown.add_total  # type: ignore[attr-defined]
        report = pull(hub, "nps", since=dt.datetime(2024, 12, 31, tzinfo=dt.UTC), progress=on_page)
        shown.close()
        elapsed = time.perf_counter() - started
        parts.append(rss_parts_mb())
        growth: list[str] = []
        if trace_memory:
            if snapshots:
                growth = _top_growth(snapshots[0], tracemalloc.take_snapshot())
            tracemalloc.stop()
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
        shutil.rmtree(workdir, ignore_errors=True)  # a 550k run leaves ~2 GB of SQLite behind otherwise
    settle = samples[min(SETTLE_PAGE - 1, len(samples) - 1)] if samples else start_rss
    early, late, ratio = _rate_ratio(page_times, page_records)
    early_cpu, late_cpu, cpu_ratio = _rate_ratio(page_cpu, page_records)
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
        "rss_growth_parts_mb": {k: round(parts[-1][k] - parts[0][k], 1) for k in parts[0] if parts[0][k] is not None}
        if len(parts) > 1 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rate_limit": "on" if rate_limit else "off",
        "early_pages_per_second": early, "late_pages_per_second": late, "late_vs_early_rate": ratio,
        "early_pages_per_cpu_second": early_cpu, "late_pages_per_cpu_second": late_cpu,
        "late_vs_early_cpu_rate": cpu_ratio,
        "rate_per_50k": _rate_per_chunk(page_times, page_cpu, page_records,
                                        chunk=50_000 if responses >= 100_000 else max(1000, responses // 10)),
        "rss_samples_mb": [round(x, 1) for x in samples],
        "memory_growth_by_line": growth,
    }


def bench_line(name: str, value: Any, unit: str, *, goal: str, ok: bool, ratio: float | None = None,
               baseline: Any = None, extra: dict[str, Any] | None = None) -> None:
    """The machine-readable last line ``bench/run_all.py`` reads (convention: bench/README.md)."""
    print("BENCH " + json.dumps({"name": name, "value": value, "unit": unit, "baseline": baseline,
                                 "ratio": ratio, "goal": goal, "pass": ok, **(extra or {})}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on",
                        help="off: no Typeform budget of 2 requests/s (benchmark only; measures the hub)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="print the lines whose allocations grew after page 5 (tracemalloc; slow)")
    parser.add_argument("--quick", action="store_true", help="make bench: 20,000 responses, rate limit off")
    args = parser.parse_args()
    if args.quick:
        args.responses, args.rate_limit = 20_000, "off"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per page
    result = run(args.responses, args.page_size, database_url=args.database_url,
                 rate_limit=args.rate_limit == "on", trace_memory=args.trace_memory)
    samples = result.pop("rss_samples_mb")
    growth = result.pop("memory_growth_by_line")
    print(json.dumps(result, indent=2))
    step = max(1, len(samples) // 10)
    shown = sorted({*range(0, len(samples), step), len(samples) - 1}) if samples else []
    print("RSS after page (MB):", ", ".join(f"#{i + 1}: {samples[i]}" for i in shown))
    if growth:
        print(f"allocations grown between page {SETTLE_PAGE} and the last page (tracemalloc):")
        print("\n".join("  " + line for line in growth))
    growth_mb, steady = result["rss_growth_after_page_5_mb"], result["late_vs_early_cpu_rate"]
    bench_line("typeform_backfill", growth_mb, "MB RSS growth after page 5",
               goal="< 10 MB and late/early CPU rate >= 0.8",
               ok=growth_mb is not None and growth_mb < 10 and steady is not None and steady >= 0.8,
               ratio=steady, baseline=result["early_pages_per_cpu_second"],
               extra={"responses": result["responses"], "responses_per_second": result["responses_per_second"],
                      "rate_limit": result["rate_limit"],
                      "ratio_is": "late / early pages' responses per CPU second",
                      "baseline_is": "early pages' responses per CPU second",
                      "wall_late_vs_early_rate": result["late_vs_early_rate"]})


if __name__ == "__main__":
    main()
