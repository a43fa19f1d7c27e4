"""Raw events: what arrived from a source, verbatim, stored before anything
interprets it (for replay and audit), and their processing into items.

A webhook delivery is stored as a ``pending`` raw event and acknowledged; the
executor then normalizes it through the source's connector and ingests the
items.  Each raw event ends ``processed``, ``skipped`` (nothing to store, e.g.
a retweet) or ``failed`` with the reason, never silently lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session

from hub.engine.pipeline import Entry, IngestResult, Pipeline, _chunks
from hub.engine.poison import safe_reason, storable_raw
from hub.engine.privacy import honour_erase_request
from hub.engine.state_store import joined
from hub.sdk.connectors import ERASE_REQUEST, SourceConnector
from hub.sdk.schema import FeedbackIn, RawIn
from hub.storage import models as m
from hub.storage.database import insert_ignore

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
RAW = m.RawEvent.__table__


def store_raw(session: Session, source: str, raws: Sequence[RawIn], now: dt.datetime, status: str = "pending"
              ) -> list[int | None]:
    """Store raw events; returns each one's id, or None for a duplicate delivery.

    ``status`` is "pending" for events processed later (webhooks), or
    "processed" when the caller ingests them in the same transaction.
    """
    out: list[int | None] = [None] * len(raws)
    keyed: dict[str, int] = {}
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(raws):
        raw = storable_raw(raw)
        if raw.dedupe_key is not None:
            if raw.dedupe_key in keyed:
                continue
            keyed[raw.dedupe_key] = i
        rows.append(
            (i, {"source": source, "kind": raw.kind, "dedupe_key": raw.dedupe_key, "payload": raw.payload,
                 "headers": raw.headers or None, "received_at": now, "status": status})
        )
    if keyed:
        existing: set[str] = set()
        for chunk in _chunks(list(keyed)):
            existing.update(
                session.scalars(
                    select(m.RawEvent.dedupe_key).where(m.RawEvent.source == source, m.RawEvent.dedupe_key.in_(chunk))
                )
            )
        rows = [(i, r) for i, r in rows if r["dedupe_key"] is None or r["dedupe_key"] not in existing]
    if not rows:
        return out
    unkeyed = [(i, r) for i, r in rows if r["dedupe_key"] is None]
    keyed_rows = [(i, r) for i, r in rows if r["dedupe_key"] is not None]
    for i, r in unkeyed:  # rare (sources give dedupe keys); one row at a time keeps ids exact
        out[i] = session.execute(insert(RAW).returning(RAW.c.id), r).scalar_one()
    if keyed_rows:
        # ON CONFLICT DO NOTHING: a concurrent delivery that committed the same
        # key first makes ours a duplicate (None), not an error.
        stmt = insert_ignore(session, RAW).returning(RAW.c.id, RAW.c.dedupe_key)
        got = {key: new_id for new_id, key in session.execute(stmt, [r for _, r in keyed_rows])}
        for i, r in keyed_rows:
            out[i] = got.get(r["dedupe_key"])
    return out


@dataclass
class Normalized:
    """What :func:`normalize_and_mark` made of a set of raw events."""

    entries: list[Entry] = field(default_factory=list)
    processed: int = 0
    skipped: int = 0
    failed: int = 0


def raw_in(row: m.RawEvent) -> RawIn:
    """A stored raw event as the plugin sees it (the same for pulls, webhooks and replays)."""
    return RawIn(payload=row.payload, dedupe_key=row.dedupe_key, kind=row.kind, headers=row.headers or {})


def normalize_and_mark(session: Session, connector: SourceConnector, source: str, rows: Sequence[m.RawEvent]
                       ) -> Normalized:
    """Normalize each raw event through its connector and mark it, in the caller's transaction.

    A raw event ends ``processed`` (it gave items, returned as entries to
    ingest), ``skipped`` (it gave none, e.g. a retweet) or ``failed`` with the
    reason (any exception of the plugin; the event stays stored for replay).
    The one place this happens, for pulls (:mod:`hub.engine.pulls`) and for
    webhook deliveries and replays (:func:`process_raw_events`); the caller
    ingests the entries and commits marks, items and cursor together.
    """
    out = Normalized()
    with joined(session):  # state the plugin writes while normalizing commits with the page
        for row in rows:
            if row.kind == ERASE_REQUEST:  # the source asks to erase what it sent before: the core's job
                try:
                    honour_erase_request(session, source, row.payload)
                    row.status = "processed"
                    out.processed += 1
                except ValueError as exc:
                    row.status, row.error = "failed", f"erase request: {safe_reason(exc)}"
                    out.failed += 1
                continue
            try:
                produced = connector.normalize(raw_in(row))
            except Exception as exc:  # any plugin error marks the event, keeps it for replay
                # The reason, not the message: it can quote the customer's text.
                row.status, row.error = "failed", f"normalize: {safe_reason(exc)}"
                out.failed += 1
                log.warning("raw event %s of %s failed to normalize: %s", row.id, source, type(exc).__name__)
                continue
            row.status = "processed" if produced else "skipped"
            if produced:
                out.processed += 1
            else:
                out.skipped += 1
            out.entries.extend(Entry(item, row.id) for item in produced)
    return out


#: Database errors that say nothing about the records: never blamed on one.
NOT_THE_RECORDS = (OperationalError, DisconnectionError)


def ingest_isolated(session: Session, pipeline: Pipeline, source: str, entries: Sequence[Entry],
                    rows: Sequence[m.RawEvent], now: dt.datetime | None = None
                    ) -> tuple[list[IngestResult], set[int]]:
    """Ingest ``entries`` as one batch; if that fails, find the raw events that poison it.

    The normal case is the pipeline's one batch (its fixed handful of
    statements).  A failed batch rolled back its savepoint only; it is run
    again in halves (the entries of one raw event stay together) until each
    failing raw event is alone: that one is marked ``failed`` with a safe
    reason, and everything else is stored.  One poisoned event among ``n``
    costs about ``2 log2 n`` batches.  Returns the results and the ids of the
    raw events marked failed.
    """
    try:
        return pipeline.ingest(session, source, entries, now), set()
    except NOT_THE_RECORDS:
        raise
    except Exception as exc:  # noqa: BLE001 - any record-made failure is isolated below
        groups: dict[int | None, list[Entry]] = {}
        for e in entries:
            groups.setdefault(e.raw_event_id, []).append(e)
        if None in groups:
            raise  # entries without a raw event cannot be marked: the caller's error
        if len(groups) == 1:
            (raw_id,) = groups
            row = next(r for r in rows if r.id == raw_id)
            row.status, row.error = "failed", f"ingest: {safe_reason(exc)}"
            log.warning("raw event %s of %s failed to ingest: %s", raw_id, source, row.error)
            return [], {raw_id}
        log.info("batch of %d raw events of %s failed (%s); isolating the culprit", len(groups), source,
                 type(exc).__name__)
    ids = list(groups)
    half = len(ids) // 2
    results: list[IngestResult] = []
    failed: set[int] = set()
    for part in (ids[:half], ids[half:]):
        got, bad = ingest_isolated(session, pipeline, source, [e for i in part for e in groups[i]], rows, now)
        results.extend(got)
        failed |= bad
    return results, failed


def process_raw_events(hub: Hub, source: str, raw_ids: Sequence[int], statuses: Sequence[str] = ("pending",)
                       ) -> dict[str, int]:
    """Normalize and ingest stored raw events (webhook deliveries, replays).

    Each raw event ends ``processed`` (items stored), ``skipped`` (nothing to
    store, e.g. a retweet) or ``failed`` with the reason, never silently lost;
    one that cannot be stored fails alone, the rest of the batch is ingested.
    ``statuses``: which raw events to take (a replay of failed ones adds "failed").
    """
    connector = hub.registry.connector(source)
    with hub.db.session() as session, joined(session):
        rows = session.scalars(select(m.RawEvent).where(m.RawEvent.id.in_(list(raw_ids)),
                                                        m.RawEvent.status.in_(list(statuses)))
                               .order_by(m.RawEvent.id)).all()
        for row in rows:
            row.error = None
        done = normalize_and_mark(session, connector, source, rows)
        counts = {"processed": done.processed, "skipped": done.skipped, "failed": done.failed, "items": 0}
        if done.entries:
            results, failed = ingest_isolated(session, Pipeline(hub), source, done.entries, rows)
            counts["items"] = sum(r.created for r in results)
            counts["processed"] -= len(failed)
            counts["failed"] += len(failed)
    return counts


REPLAY_BATCH = 500


def replay(hub: Hub, source: str | None = None, include_failed: bool = False,
           progress: Callable[[str, dict[str, int]], None] | None = None) -> dict[str, int]:
    """Process every pending (and with ``include_failed`` every failed) raw event
    again, in batches of :data:`REPLAY_BATCH` per source; returns the totals.
    ``progress(source, counts)`` is called after each committed batch."""
    statuses = ("pending", "failed") if include_failed else ("pending",)
    names = [source] if source else sorted(hub.registry.sources)
    totals = {"processed": 0, "skipped": 0, "failed": 0, "items": 0}
    for name in names:
        hub.registry.connector(name)  # an unknown source fails before anything runs
        with hub.db.Session() as s:
            ids = list(s.scalars(select(m.RawEvent.id).where(
                m.RawEvent.source == name, m.RawEvent.status.in_(statuses)).order_by(m.RawEvent.id)))
        for start in range(0, len(ids), REPLAY_BATCH):
            counts = process_raw_events(hub, name, ids[start:start + REPLAY_BATCH], statuses)
            for key, n in counts.items():
                totals[key] += n
            if progress:
                progress(name, counts)
    return totals


def ingest_inputs(session: Session, pipeline: Pipeline, source: str, pairs: Sequence[tuple[Any, FeedbackIn]],
                  now: dt.datetime, kind: str = "import") -> list[IngestResult]:
    """The path of input already in the common schema (API, import, demo):
    each (decoded object, item) is kept verbatim as a raw event and ingested,
    in the caller's transaction."""
    raws = [RawIn(payload=obj, dedupe_key=item.external_id, kind=kind) for obj, item in pairs]
    raw_ids = store_raw(session, source, raws, now, status="processed")
    entries = [Entry(item, raw_id) for (_, item), raw_id in zip(pairs, raw_ids, strict=True)]
    return pipeline.ingest(session, source, entries, now)
