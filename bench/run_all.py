"""``make bench``: every benchmark in a quick mode, then one summary table.

    .venv/bin/python bench/run_all.py                  # all, quick
    .venv/bin/python bench/run_all.py --only ingest typeform_backfill
    .venv/bin/python bench/run_all.py --full           # each script's own (long) defaults
    .venv/bin/python bench/run_all.py --list           # the registry, and whether each can run here

Each script runs in its own interpreter (a fresh heap and start-up, as a user
runs it) and ends with a ``BENCH {json}`` line (bench/README.md); the table
shows each line's figure, its baseline measured in the same run, the ratio,
the goal and pass/fail.  A script whose prerequisite is missing (PostgreSQL
not reachable, no ``wrk``) is skipped with the reason; a script without a
BENCH line or with a non-zero exit is an error.  The exit status is 1 when any
bench failed its goal or errored, so CI can see it; skipped ones do not count.

The registry below names each script's quick arguments and prerequisites.
A new bench script adds one ``Bench(...)`` line here; scripts in bench/ that
are not registered are listed at the end, so none is forgotten silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFIX = "BENCH "
PG_URL = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> str | None:
    """None when a TCP connection to the URL's host opens within a second, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return f"{host}:{port} not reachable ({exc.strerror or exc})"


def needs_postgres() -> str | None:
    why = _reachable(PG_URL, 5432)
    return f"PostgreSQL {why} (set HUB_BENCH_PG_URL)" if why else None


def needs_redis() -> str | None:
    why = _reachable(REDIS_URL, 6379)
    return f"Redis {why} (set HUB_BENCH_REDIS_URL)" if why else None


def needs_tool(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if shutil.which(name) else f"`{name}` not installed"

    check.__name__ = f"needs_{name}"
    return check


def needs_module(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if importlib.util.find_spec(name) else f"Python package {name} not installed"

    check.__name__ = f"needs_{name}"
    return check


@dataclass(frozen=True)
class Bench:
    """One registered bench script: its quick arguments and what it needs."""

    name: str
    script: str
    quick: tuple[str, ...] = ()
    needs: tuple[Callable[[], str | None], ...] = ()
    #: Seconds before a quick run is stopped (and counted as an error).
    timeout: float = 900.0
    #: Arguments added in both modes (e.g. the PostgreSQL URL the script needs).
    always: tuple[str, ...] = field(default=())

    def missing(self) -> str | None:
        if not (HERE / self.script).exists():
            return f"{self.script} not in bench/ (yet)"
        for check in self.needs:
            why = check()
            if why:
                return why
        return None


#: Every bench ``make bench`` runs, quick mode first.  chaos.py and soak.py are
#: fault and soak suites with their own targets (make chaos, make soak), not timings.
REGISTRY: tuple[Bench, ...] = (
    Bench("startup", "startup.py", ("--runs", "3")),
    Bench("scoring", "scoring.py", ("--items", "5000")),
    Bench("ingest", "ingest.py", ("--items", "5000")),
    Bench("sqlite_import", "sqlite_import.py", ("--items", "5000")),
    Bench("pg_import", "pg_import.py", ("--items", "5000"), needs=(needs_postgres,), always=("--url", PG_URL)),
    Bench("pg_import_workers", "pg_import.py", ("--items", "5000", "--workers", "2"), needs=(needs_postgres,),
          always=("--url", PG_URL)),
    Bench("typeform_backfill", "typeform_backfill.py", ("--quick",)),
    Bench("inbox", "inbox.py", ("--items", "20000", "--sample", "5000", "--runs", "5")),
    Bench("webhooks", "webhooks.py", ("--seconds", "3"), needs=(needs_tool("wrk"), needs_module("gunicorn"))),
    Bench("crm_drain", "crm_drain.py", ("--followups", "1000")),
)
NOT_TIMINGS = {"run_all.py", "chaos.py", "soak.py"}


@dataclass
class Outcome:
    bench: Bench
    status: str  # pass, FAIL, skipped, ERROR
    lines: list[dict] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0


def bench_lines(stdout: str) -> list[dict]:
    """The ``BENCH {json}`` lines of a script's output (a script may report several figures)."""
    found = []
    for line in stdout.splitlines():
        if line.startswith(PREFIX):
            try:
                value = json.loads(line[len(PREFIX):])
            except ValueError:
                continue
            if isinstance(value, dict) and "name" in value:
                found.append(value)
    return found


def run_one(bench: Bench, *, full: bool, echo: bool) -> Outcome:
    why = bench.missing()
    if why:
        return Outcome(bench, "skipped", note=why)
    cmd = [sys.executable, str(HERE / bench.script), *(() if full else bench.quick), *bench.always]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=None if full else bench.timeout)
    except subprocess.TimeoutExpired:
        return Outcome(bench, "ERROR", note=f"stopped after {bench.timeout:.0f} s", seconds=bench.timeout)
    seconds = time.perf_counter() - started
    if echo:
        sys.stdout.write(proc.stdout)
        sys.stdout.flush()
    lines = bench_lines(proc.stdout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no error output)"])[-1]
        return Outcome(bench, "ERROR", lines, note=f"exit {proc.returncode}: {tail[:160]}", seconds=seconds)
    if not lines:
        return Outcome(bench, "ERROR", note="no BENCH line in its output (bench/README.md)", seconds=seconds)
    ok = all(line.get("pass") is True for line in lines)
    return Outcome(bench, "pass" if ok else "FAIL", lines, seconds=seconds)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(outcomes: list[Outcome]) -> str:
    head = ("bench", "figure", "baseline", "ratio", "goal", "result")
    rows: list[tuple[str, ...]] = []
    for o in outcomes:
        if not o.lines:
            rows.append((o.bench.name, "-", "-", "-", "-", f"{o.status}: {o.note}" if o.note else o.status))
            continue
        for line in o.lines:
            result = "pass" if line.get("pass") is True else "FAIL"
            if o.status == "ERROR":
                result = f"ERROR: {o.note}"
            name = line["name"] if line["name"] == o.bench.name else f"{o.bench.name}: {line['name']}"
            rows.append((name, f"{_cell(line.get('value'))} {line.get('unit', '')}".strip(),
                         _cell(line.get("baseline")), _cell(line.get("ratio")), _cell(line.get("goal")), result))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head) - 1)]
    out = []
    for r in (head, tuple("-" * w for w in widths) + ("------",), *rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(out)


def unregistered() -> list[str]:
    known = {b.script for b in REGISTRY} | NOT_TIMINGS
    return sorted(p.name for p in HERE.glob("*.py") if p.name not in known and not p.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these benches only")
    parser.add_argument("--full", action="store_true", help="each script's own defaults (long runs)")
    parser.add_argument("--list", action="store_true", help="show the registry and what can run here")
    parser.add_argument("--quiet", action="store_true", help="only the summary, not each script's output")
    args = parser.parse_args(argv)
    chosen = [b for b in REGISTRY if not args.only or b.name in args.only]
    unknown = sorted(set(args.only or ()) - {b.name for b in REGISTRY})
    if unknown:
        parser.error(f"no bench named {', '.join(unknown)} (registered: {', '.join(b.name for b in REGISTRY)})")
    if args.list:
        for b in chosen:
            why = b.missing()
            print(f"{b.name:<18} {b.script:<22} quick: {' '.join(b.quick) or '-':<42} "
                  f"{'runs here' if why is None else 'skipped: ' + why}")
        return 0
    outcomes = []
    for b in chosen:
        print(f"== {b.name}: {b.script} {' '.join(() if args.full else b.quick)}", flush=True)
        outcome = run_one(b, full=args.full, echo=not args.quiet)
        outcomes.append(outcome)
        print(f"== {b.name}: {outcome.status} in {outcome.seconds:.0f} s" + (f" ({outcome.note})" if outcome.note
                                                                            else ""), flush=True)
    print()
    print(table(outcomes))
    extra = unregistered()
    if extra:
        print(f"\nnot registered in bench/run_all.py (not run): {', '.join(extra)}")
    return 1 if any(o.status in ("FAIL", "ERROR") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
