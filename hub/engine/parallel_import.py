"""``feedback-hub import FILE --source NAME --workers N`` on PostgreSQL: the file in N processes, by customer.

Why: one import process alternates between its own Python work (~160 us an
item: validation, language, scoring, identity) and waiting for the server
(~100 us an item), so each waits for the other: 100,000 items at ~3,800/s.
Threads of one process share one interpreter lock (two: ~4,200/s); processes
each have their own, and the server works for one while another computes
(two on a 2-core machine: 5,200-5,600/s, start-up included).

The parent reads the file once, while the workers start: malformed lines are
reported here with their numbers; every other line goes as it is, in bounded
chunks, to the worker that its customer's first identity (the first identity
field of the input contract it gives, e-mail first, lower-cased) hashes to, in
file order.  So all lines of one customer, as the file names them, are
ingested by one worker in their order: the same customer, repeat contacts and
cases as one process makes.  A person whose lines name different identities
(an e-mail in one, only a phone in another) may meet in two workers at once:
the pipeline runs a batch that met another's rows (or deadlocked with it)
again, so they still end as one customer, but which line counts as the earlier
contact then depends on timing.  Each worker is a real import
(:func:`hub.engine.importer.import_records`) of its share, with its own
connections and statistics refreshes; what it finds wrong is reported by the
file's own line numbers.

SQLite has one writer: workers would only wait for each other, so there it is
refused.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hub.engine.importer import ImportReport, decode_line, importable, read_records
from hub.sdk.contracts import CUSTOMER_INPUT_FIELDS, InputError

#: The customer fields that say who someone is (the input contract's, but the name), in its order.
IDENTITY_FIELDS = tuple(name for name in CUSTOMER_INPUT_FIELDS if name != "name")
#: Seconds between looks at the workers while none reports.
POLL_SECONDS = 1.0


def partition_key(obj: Any) -> str:
    """What decides a line's worker: its customer's first identity, else its external id."""
    customer = obj.get("customer") if isinstance(obj, dict) else None
    if isinstance(customer, dict):
        for name in IDENTITY_FIELDS:
            value = customer.get(name)
            if value:
                return f"{name}:{str(value).strip().lower()}"
    return f"item:{obj.get('external_id')}" if isinstance(obj, dict) else f"line:{obj!r}"


def worker_of(obj: Any, workers: int) -> int:
    return zlib.crc32(partition_key(obj).encode("utf-8", "surrogatepass")) % workers


#: Lines a worker is sent at a time, and chunks held for it at most (memory stays flat).
CHUNK = 1000
QUEUED_CHUNKS = 4


def _lines(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(number, decoded object or InputError, the JSON line to send) for each data line:
    a JSONL line as it is (no encoding again), a CSV row as JSON."""
    if path.suffix.lower() == ".csv":
        for number, obj, _clean in read_records(path):
            yield number, obj, None if isinstance(obj, InputError) else json.dumps(obj)
        return
    with path.open("r", encoding="utf-8", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                _, obj, _clean = decode_line(number, line)
                yield number, obj, None if isinstance(obj, InputError) else line


def _records(inbox: Any) -> Iterator[tuple[int, Any, bool]]:
    """A worker's lines as the importer takes them, chunk by chunk until the end (None)."""
    while (chunk := inbox.get()) is not None:
        for number, line in chunk:
            yield decode_line(number, line)


def _work(make_app: Callable[[], Any], k: int, source: str, inbox: Any, out: Any) -> None:
    """A worker process: import the lines it is sent and say how far it got."""
    from hub.engine.importer import import_records

    hub = make_app().extensions["hub"]
    try:
        report = import_records(hub, _records(inbox), source, progress=lambda n: out.put(("lines", k, n)))
        out.put(("done", k, report.created, report.duplicates, report.bad))
    except BaseException as exc:  # noqa: BLE001 - told to the parent, which raises it
        out.put(("failed", k, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        hub.db.dispose()


def import_parallel(hub: Any, path: str | Path, source: str, workers: int, make_app: Callable[[], Any],
                    progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import ``path`` as ``source`` in ``workers`` processes, each building its hub with ``make_app``."""
    path = importable(path)
    if hub.db.dialect != "postgresql":
        raise ValueError("--workers needs PostgreSQL: SQLite takes one writer at a time")
    context = multiprocessing.get_context("spawn")  # no fork of this process's threads and connections
    out = context.Queue()
    inboxes = [context.Queue(maxsize=QUEUED_CHUNKS) for _ in range(workers)]
    procs = [context.Process(target=_work, args=(make_app, k, source, inboxes[k], out), daemon=True)
             for k in range(workers)]
    for proc in procs:
        proc.start()  # they build their hubs while this one reads the file
    collector = _Collector(procs, out, progress)
    try:
        _send(path, workers, inboxes, collector)
        for inbox in inboxes:
            collector.put(inbox, None)
        collector.wait()
    finally:
        if not collector.finished:
            # Chunks still in a queue's pipe would hold this process at exit (its feeder
            # thread waits for a reader that is gone): drop them.
            for inbox in inboxes:
                inbox.cancel_join_thread()
        for proc in procs:
            proc.join(timeout=10 if collector.finished else 0)
            if proc.is_alive():
                proc.kill()
    report = collector.report
    report.bad.sort()
    return report


def _send(path: Path, workers: int, inboxes: list[Any], collector: _Collector) -> None:
    """Every decodable line to its worker, in chunks; the undecodable ones reported bad."""
    chunks: list[list[tuple[int, str]]] = [[] for _ in range(workers)]
    report = collector.report
    for number, obj, line in _lines(path):
        report.lines += 1
        if line is None:
            report.bad.append((number, str(obj)))
            collector.show(1)  # read too: the total counts it
            continue
        k = worker_of(obj, workers)
        chunks[k].append((number, line))
        if len(chunks[k]) >= CHUNK:
            collector.put(inboxes[k], chunks[k])
            chunks[k] = []
    for k, chunk in enumerate(chunks):
        if chunk:
            collector.put(inboxes[k], chunk)


class _Collector:
    """The workers' progress and reports, read while sending and until each is done;
    a worker that failed or died raises."""

    def __init__(self, procs: list[Any], out: Any, progress: Callable[[int], None] | None):
        self.procs, self.out, self.progress = procs, out, progress
        self.report = ImportReport()
        self.waiting = set(range(len(procs)))
        self.finished = False

    def show(self, n: int) -> None:
        if self.progress:
            self.progress(n)

    def put(self, inbox: Any, chunk: Any) -> None:
        """Hand a worker its next chunk, reading reports while its queue is full."""
        while True:
            try:
                inbox.put(chunk, timeout=0.1)
                return
            except queue.Full:
                self._read(0.0)

    def wait(self) -> None:
        while self.waiting:
            self._read(POLL_SECONDS)
        self.finished = True

    def _read(self, timeout: float) -> None:
        try:
            message = self.out.get(timeout=timeout) if timeout else self.out.get_nowait()
        except queue.Empty:
            dead = [k for k in self.waiting if not self.procs[k].is_alive()]
            if dead:
                raise RuntimeError(f"an import worker ended without a report (exit code {self.procs[dead[0]].exitcode});"
                                   " what it stored stays: run the import again to finish it") from None
            return
        kind, k = message[0], message[1]
        if kind == "lines":
            self.show(message[2])
        elif kind == "done":
            _, _, created, duplicates, bad = message
            self.report.created += created
            self.report.duplicates += duplicates
            self.report.bad.extend(bad)  # the file's own line numbers: the worker was sent them
            self.waiting.discard(k)
        else:
            raise RuntimeError(f"an import worker failed: {message[2]}; what it stored stays: "
                               "run the import again to finish it")
