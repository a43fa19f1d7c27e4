"""Pulls and backfills: the page loop every source connector shares.

Per page, in one transaction: store the raw records (duplicates skipped),
normalize them, run the pipeline, and save the stream's state.  So the cursor
never runs ahead of committed rows: a crash re-reads at most one page, and the
dedupe makes that harmless.

Streams sorted oldest-first move their cursor page by page.  Streams that come
newest-first (X's timelines) keep the highest value seen as a *signpost* and
make it the cursor only when the run reached the end, so a run that dies half
way starts again from the old cursor instead of skipping the unread pages.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.engine.pipeline import Entry, Pipeline
from hub.engine.raw_events import store_raw
from hub.sdk.connectors import Stream
from hub.sdk.schema import RawIn
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


@dataclass
class PullReport:
    instance: str
    pages: int = 0
    records: int = 0
    new_items: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _state(session, instance: str, stream: str) -> m.ConnectorState:
    row = session.scalars(select(m.ConnectorState).where(
        m.ConnectorState.instance == instance, m.ConnectorState.stream == stream)).first()
    if row is None:
        row = m.ConnectorState(instance=instance, stream=stream, state={}, items_total=0)
        session.add(row)
        session.flush()
    return row


def pull(hub: Hub, name: str, *, since: dt.datetime | None = None,
         progress: Callable[[int, int], None] | None = None) -> PullReport:
    """One incremental pull of instance ``name`` (or a backfill from ``since``).

    ``progress(records, new_items)`` is called after each committed page.
    Errors are recorded on the instance's state (``feedback-hub sources``)
    and re-raised.
    """
    connector = hub.registry.connector(name)
    report = PullReport(instance=name)
    pipeline = Pipeline(hub)
    for stream in connector.streams():
        try:
            _pull_stream(hub, name, connector, stream, since, pipeline, report, progress)
        except Exception as exc:
            with hub.db.session() as s:
                st = _state(s, name, stream.name)
                st.last_run_at = hub.clock.utcnow()
                st.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            report.errors.append(f"{stream.name}: {exc}")
            raise
    return report


def _pull_stream(hub, name, connector, stream: Stream, since, pipeline, report, progress) -> None:
    with hub.db.Session() as s:
        st = _state(s, name, stream.name)
        s.commit()
        cursor = st.cursor
    signpost: str | None = None
    params_for = lambda token: stream.request_params(None if since else cursor, token, since)  # noqa: E731

    for response, records in connector.http.paginate(
        stream.method, stream.request_path(), params_for=params_for, parse=stream.parse_records,
        paginator=stream.paginator,
    ):
        now = hub.clock.utcnow()
        raws: list[RawIn] = [stream.to_raw(rec, response) for rec in records]
        page_max: str | None = None
        for rec in records:
            page_max = stream.cursor_max(page_max, stream.record_cursor(rec))
        with hub.db.session() as s:
            raw_ids = store_raw(s, name, raws, now)
            entries: list[Entry] = []
            rows = {r.id: r for r in s.scalars(select(m.RawEvent).where(
                m.RawEvent.id.in_([i for i in raw_ids if i is not None])))}
            for raw, raw_id in zip(raws, raw_ids, strict=True):
                if raw_id is None:
                    report.duplicates += 1
                    continue
                row = rows[raw_id]
                try:
                    produced = connector.normalize(raw)
                except Exception as exc:
                    row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
                    report.failed += 1
                    continue
                row.status = "processed" if produced else "skipped"
                entries.extend(Entry(item, raw_id) for item in produced)
            results = pipeline.ingest(s, name, entries, now) if entries else []
            created = sum(r.created for r in results)
            report.new_items += created
            report.records += len(records)
            report.pages += 1
            st = _state(s, name, stream.name)
            if stream.is_sorted and not since:
                st.cursor = stream.cursor_max(st.cursor, page_max)
            else:
                signpost = stream.cursor_max(signpost, page_max)
                st.signpost = signpost
            st.last_run_at = now
            st.items_total = (st.items_total or 0) + created
            if created:
                st.last_item_at = max((e.item.occurred_at for e in entries), default=None)
        if progress:
            progress(len(records), created)
    with hub.db.session() as s:
        st = _state(s, name, stream.name)
        # The run completed: the signpost (unsorted / backfill) becomes the
        # cursor, but a backfill never moves a newer cursor backwards.
        st.cursor = stream.cursor_max(st.cursor, signpost)
        st.signpost = None
        st.last_run_at = st.last_success_at = hub.clock.utcnow()
        st.last_error = None


def source_status(hub: Hub) -> list[dict]:
    """Instances with last run, lag and last error, for CLI and admin pages."""
    out = []
    now = hub.clock.utcnow()
    with hub.db.Session() as s:
        states = s.scalars(select(m.ConnectorState)).all()
    by_instance: dict[str, list[m.ConnectorState]] = {}
    for st in states:
        by_instance.setdefault(st.instance, []).append(st)
    for name, inst in sorted(hub.registry.sources.items()):
        rows = by_instance.get(name, [])
        last_run = max((r.last_run_at for r in rows if r.last_run_at), default=None)
        last_item = max((r.last_item_at for r in rows if r.last_item_at), default=None)
        errors = [f"{r.stream}: {r.last_error}" for r in rows if r.last_error]
        try:
            extra = hub.registry.connector(name).health()
        except Exception as exc:  # health must never break the listing
            extra = {"health_error": str(exc)}
        out.append({
            "name": name, "plugin": inst.plugin, "last_run_at": last_run,
            "lag_seconds": (now - last_item).total_seconds() if last_item else None,
            "items_total": sum(r.items_total or 0 for r in rows),
            "cursor": {r.stream: r.cursor for r in rows},
            "last_error": "; ".join(errors) or None, **extra,
        })
    return out
