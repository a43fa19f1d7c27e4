"""``feedback-hub import FILE --source NAME``: JSONL or CSV in the common schema.

Good lines are stored in batches through the pipeline's batch path (a fixed
number of statements per batch); bad lines are reported with their line number
and reason, and never stop the good ones.
"""

from __future__ import annotations

import csv
import gc
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.engine.pipeline import Pipeline
from hub.engine.raw_events import ingest_inputs
from hub.sdk.contracts import CUSTOMER_INPUT_FIELDS, InputError, parse_feedback
from hub.sdk.schema import FeedbackIn
from hub.storage import models as m
from hub.storage.database import Statistics

if TYPE_CHECKING:
    from hub.engine.context import Hub

BATCH = 1000
#: The tables an import writes, whose planner statistics it keeps current.
TABLES = (m.RawEvent.__table__, m.FeedbackItem.__table__, m.Customer.__table__, m.Identity.__table__,
          m.Case.__table__, m.Followup.__table__)


@dataclass
class ImportReport:
    lines: int = 0
    created: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    """CSV cells are text: turn them into the JSON input form."""
    obj: dict[str, Any] = {}
    customer: dict[str, str] = {}
    for key, value in row.items():
        if key is None:
            raise InputError("row", "more cells than header columns")
        if value is None or value == "":
            continue
        if key.startswith("customer_") and key[9:] in CUSTOMER_INPUT_FIELDS:
            customer[key[9:]] = value
        elif key in ("nps", "reach"):
            try:
                obj[key] = int(value)
            except ValueError:
                raise InputError(key, f"must be an integer, not {value!r}") from None
        else:
            obj[key] = value
    if customer:
        obj["customer"] = customer
    return obj


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object or InputError) for each data line."""
    for number, obj, _clean in read_records(path):
        yield number, obj


def read_records(path: Path) -> Iterator[tuple[int, Any, bool]]:
    """(line number, decoded object or InputError, clean) for each data line.

    ``clean``: the line is ASCII JSON without a ``\\u`` escape, so no string
    decoded from it can hold a NUL or a lone surrogate (raw control characters
    are not JSON): its raw event is stored without a walk through it
    (:func:`hub.engine.raw_events.store_raw`).  CSV cells are never marked.
    """
    is_csv = path.suffix.lower() == ".csv"
    with path.open("r", encoding="utf-8", newline="") as fh:
        if is_csv:
            reader = csv.DictReader(fh)
            for row in reader:
                try:
                    yield reader.line_num, _csv_row(row), False
                except InputError as exc:
                    yield reader.line_num, exc, False
            return
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield decode_line(number, line)


def decode_line(number: int, line: str) -> tuple[int, Any, bool]:
    """One JSONL line as :func:`read_records` yields it."""
    try:
        return number, json.loads(line), line.isascii() and "\\u" not in line
    except ValueError as exc:
        return number, InputError("line", f"malformed JSON: {exc}"), False


class FrozenHeap:
    """Keeps the cyclic garbage collector off the long-lived heap during an import.

    Why: an import allocates millions of short-lived objects, so the collector
    runs often, and each full collection walks the whole long-lived heap (the
    app, SQLAlchemy's and pydantic's caches, the language models the first batch
    loads): about a third of an import's time on SQLite.  Collection pauses
    until the first batch is done (it loads those models), then everything that
    exists is frozen (``gc.freeze``) and collection resumes, with a larger
    young generation: what the import itself allocates is still collected.
    """

    def __init__(self) -> None:
        self.active = False

    def __enter__(self) -> FrozenHeap:
        # An outer caller froze or paused collection already: leave it to them.
        if gc.isenabled() and not gc.get_freeze_count():
            self.active, self.thresholds = True, gc.get_threshold()
            gc.disable()
        return self

    def settle(self) -> None:
        """The first batch is done: freeze what it left and collect again from here on."""
        if self.active and not gc.isenabled():
            gc.freeze()
            gc.set_threshold(max(self.thresholds[0], 20_000), *self.thresholds[1:])
            gc.enable()

    def __exit__(self, *exc: object) -> None:
        if self.active:
            gc.set_threshold(*self.thresholds)
            gc.unfreeze()
            gc.enable()


def import_file(hub: Hub, path: str | Path, source: str, progress: Callable[[int], None] | None = None,
                workers: int = 1, make_app: Callable[[], Any] | None = None) -> ImportReport:
    """Import a JSONL or CSV file of common-schema items as ``source``: good lines
    stored in batches of :data:`BATCH`, bad ones reported with their number.

    ``workers`` > 1 (PostgreSQL): that many processes, by customer, each building
    its hub with ``make_app`` (picklable: ``functools.partial(create_app, ...)`` as
    this one's was built; :mod:`hub.engine.parallel_import`)."""
    if workers > 1:
        from hub.engine.parallel_import import import_parallel

        if make_app is None:
            raise ValueError("an import in several processes needs make_app, which each one builds its hub with")
        return import_parallel(hub, path, source, workers, make_app, progress)
    return import_records(hub, read_records(importable(path)), source, progress)


def importable(path: str | Path) -> Path:
    """``path`` if its name says JSONL or CSV, else a ValueError that says what is."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ValueError(f"{path}: use .jsonl (one JSON object per line) or .csv")
    return path


def import_records(hub: Hub, records: Iterable[tuple[int, Any, bool]], source: str,
                   progress: Callable[[int], None] | None = None) -> ImportReport:
    """:func:`import_file` of ``records`` as :func:`read_records` yields them."""
    with FrozenHeap() as heap:
        return _import_records(hub, records, source, progress, heap.settle)


def _import_records(hub: Hub, records: Iterable[tuple[int, Any, bool]], source: str,
                    progress: Callable[[int], None] | None, settle: Callable[[], None]) -> ImportReport:
    report = ImportReport()
    pipeline = Pipeline(hub)
    batch: list[tuple[Any, FeedbackIn]] = []
    clean: list[bool] = []  # per line of the batch: its raw event needs no cleaning walk (read_records)
    stats = Statistics(hub.db, TABLES)
    shown = 0  # lines told to ``progress``: every line read, bad ones too (the total counts them all)

    def show() -> None:
        nonlocal shown
        if progress and report.lines > shown:
            progress(report.lines - shown)
            shown = report.lines

    def flush() -> None:
        if not batch:
            return
        with hub.db.session() as s:
            results = ingest_inputs(s, pipeline, source, batch, hub.clock.utcnow(), clean=clean)
        created = sum(r.created for r in results)
        report.created += created
        report.duplicates += len(results) - created
        stats.wrote(created)
        batch.clear()
        clean.clear()
        settle()
        show()

    now = hub.clock.utcnow()
    for number, obj, known_clean in records:
        report.lines += 1
        if isinstance(obj, InputError):
            report.bad.append((number, str(obj)))
            continue
        try:
            if isinstance(obj, dict):
                obj.setdefault("source", source)
                if obj["source"] != source:
                    raise InputError("source", f"is {obj['source']!r} but the import is for {source!r}")
            _, item = parse_feedback(obj, now=now)
        except InputError as exc:
            report.bad.append((number, str(exc)))
            continue
        batch.append((obj, item))
        clean.append(known_clean and type(obj) is dict)
        if len(batch) >= BATCH:
            flush()
    flush()
    show()
    stats.finish()
    return report


def count_lines(path: Path) -> int:
    """Data lines of ``path`` (the progress total): one quick pass over the bytes.

    CSV counts physical lines, so quoted cells with line breaks make it a
    little high: progress then ends short of 100 %, never past it.
    """
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip()) - (1 if path.suffix.lower() == ".csv" else 0)

