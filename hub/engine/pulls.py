"""Pulls and backfills: the page loop every source connector shares.

Per page, in one transaction: store the raw records (duplicates skipped),
normalize them, run the pipeline, and save the stream's state.  So the cursor
never runs ahead of committed rows: a crash re-reads at most one page, and the
dedupe makes that harmless.

Streams sorted oldest-first move their cursor page by page.  Streams that come
newest-first (X's timelines) keep the highest value seen as a *signpost* and
make it the cursor only when the run reached the end, so a run that dies half
way starts again from the old cursor instead of skipping the unread pages.

Child streams (the comments of each post, :class:`hub.sdk.connectors.Stream`
``children``) are paged here too, never by the plugin: after a parent page is
committed, each of its records' children are read page by page, each page
committed with the resume point in the parent's state row (``state.children``:
the parents finished, and the child cut short with its next token).  The
parent's cursor/signpost moves only when all children of its page are in;
a run that dies re-reads that parent page (duplicates are skipped), skips the
finished parents and continues the cut-short child from its token.

Normalizing and marking the raw events is :func:`hub.engine.raw_events.normalize_and_mark`,
the same function webhook deliveries and replays go through.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.engine.pipeline import Pipeline
from hub.engine.poison import safe_reason
from hub.engine.raw_events import ingest_isolated, normalize_and_mark, store_raw
from hub.engine.state_store import INSTANCE_STREAM, joined
from hub.sdk.connectors import Stream
from hub.sdk.pagination import Page
from hub.storage import models as m
from hub.storage.database import after_commit

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


@dataclass
class StreamCounts:
    """What one stream (or child stream, ``"posts/comments"``) of a pull read."""

    pages: int = 0
    records: int = 0
    new_items: int = 0
    duplicates: int = 0
    failed: int = 0


@dataclass
class PullReport:
    """Totals of a pull over all its streams and child streams, and each one's share."""

    instance: str
    pages: int = 0
    records: int = 0
    new_items: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    streams: dict[str, StreamCounts] = field(default_factory=dict)

    def add(self, stream: str, *, records: int, new_items: int, duplicates: int, failed: int) -> None:
        """Count one committed page of ``stream``."""
        counts = self.streams.setdefault(stream, StreamCounts())
        for target in (self, counts):
            target.pages += 1
            target.records += records
            target.new_items += new_items
            target.duplicates += duplicates
            target.failed += failed


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

    ``progress(records, new_items)`` is called after each committed page;
    when it also has ``add_total(n)`` (:class:`hub.engine.progress.Progress`),
    that gets each stream's size from its first page, where the vendor gives
    one (the paginator's ``total_path``).
    Errors are recorded on the instance's state (``feedback-hub sources``)
    and re-raised.
    """
    connector = hub.registry.connector(name)
    report = PullReport(instance=name)
    pipeline = Pipeline(hub)
    for stream in connector.streams():
        try:
            _StreamRun(hub, name, connector, stream, since, pipeline, report, progress).run()
        except Exception as exc:
            with hub.db.session() as s:
                st = _state(s, name, stream.name)
                st.last_run_at = hub.clock.utcnow()
                # Shown on the admin page: the reason, never the message (it can
                # quote SQL parameters, customers' text among them).
                st.last_error = safe_reason(exc)
            report.errors.append(f"{stream.name}: {safe_reason(exc)}")
            raise
    return report


def _context_key(context: dict[str, Any]) -> str:
    """The identity of a child context (the same context means the same child requests).

    Hashed: a long backfill keeps one per parent in the state row until the run ends.
    """
    text = json.dumps(context, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _with_children_progress(state: dict[str, Any] | None, progress: dict[str, Any] | None) -> dict[str, Any]:
    # A new dict: the JSON column is not mutation-tracked.
    out = {k: v for k, v in (state or {}).items() if k != "children"}
    if progress is not None:
        out["children"] = progress
    return out


@dataclass
class _StreamRun:
    """One stream of one pull, with its child streams.

    Per page, in one transaction: raw records stored (duplicates skipped),
    normalized and marked, items ingested, counts and (for a stream without
    children) the cursor saved.  A stream with children commits its page
    first, then reads each record's children page by page (each page its own
    transaction, with the resume point in the stream's state row), and moves
    its cursor only once all children of the page are committed.
    """

    hub: Hub
    name: str
    connector: Any
    stream: Stream
    since: dt.datetime | None
    pipeline: Pipeline
    report: PullReport
    progress: Callable[[int, int], None] | None
    signpost: str | None = None
    #: Children progress of a run that died half way: {"done": [context keys],
    #: "partial": {"key", "stream", "token", "finished"}}.
    children_progress: dict[str, Any] = field(default_factory=dict)

    def run(self) -> None:
        with self.hub.db.Session() as s:
            st = _state(s, self.name, self.stream.name)
            s.commit()
            cursor = st.cursor
            self.children_progress = dict((st.state or {}).get("children") or {})
        children = self.stream.child_streams()
        for page in self._pages(self.stream, cursor=None if self.since else cursor):
            if page.number == 1:
                self._announce_total(page)
            page_max: str | None = None
            for rec in page.records:
                page_max = self.stream.cursor_max(page_max, self.stream.record_cursor(rec))
            with self.hub.db.session() as s:
                self._commit(s, self.stream.name, self.stream, page)
                if not children:
                    self._advance(s, page_max)
            if children:
                self._read_children(children, page.records)
                with self.hub.db.session() as s:
                    self._advance(s, page_max)
        with self.hub.db.session() as s:
            st = _state(s, self.name, self.stream.name)
            # The run completed: the signpost (unsorted / backfill) becomes the
            # cursor, but a backfill never moves a newer cursor backwards.
            st.cursor = self.stream.cursor_max(st.cursor, self.signpost)
            st.signpost = None
            st.state = _with_children_progress(st.state, None)
            st.last_run_at = st.last_success_at = self.hub.clock.utcnow()
            st.last_error = None

    def _announce_total(self, page: Page) -> None:
        """Tell a progress reporter that can take one (``add_total``) the stream's size, when the vendor says it."""
        add_total = getattr(self.progress, "add_total", None)
        total = self.stream.paginator.total(page) if add_total is not None else None
        if total is not None:
            add_total(total)

    def _pages(self, stream: Stream, cursor: str | None, start_token: str | None = None) -> Iterator[Page]:
        since = self.since
        return self.connector.http.pages(
            stream.method, stream.request_path(),
            params_for=lambda token: stream.request_params(cursor, token, since),
            options_for=stream.request_options, parse=stream.parse_records, paginator=stream.paginator,
            validate=stream.validate_response, start_token=start_token,
        )

    def _commit(self, s, key: str, stream: Stream, page: Page) -> None:
        """Store, normalize and ingest one page's records, in the caller's transaction."""
        with joined(s):  # plugin state written by hooks during ingest joins the page too
            self._commit_joined(s, key, stream, page)

    def _commit_joined(self, s, key: str, stream: Stream, page: Page) -> None:
        now = self.hub.clock.utcnow()
        raws = [stream.to_raw(rec, page.response) for rec in page.records]
        raw_ids = store_raw(s, self.name, raws, now)
        new_ids = [i for i in raw_ids if i is not None]
        rows = s.scalars(select(m.RawEvent).where(m.RawEvent.id.in_(new_ids))).all() if new_ids else []
        order = {raw_id: n for n, raw_id in enumerate(new_ids)}
        rows = sorted(rows, key=lambda r: order[r.id])  # page order: threads are ingested as written
        done = normalize_and_mark(s, self.connector, self.name, rows)
        # A record the database refuses fails alone (marked on its raw event); the page goes on.
        results, poisoned = ingest_isolated(s, self.pipeline, self.name, done.entries, rows, now) \
            if done.entries else ([], set())
        created = sum(r.created for r in results)
        self.report.add(key, records=len(page.records), new_items=created,
                        duplicates=len(raw_ids) - len(new_ids), failed=done.failed + len(poisoned))
        st = _state(s, self.name, self.stream.name)
        st.last_run_at = now
        st.items_total = (st.items_total or 0) + created
        if created:
            st.last_item_at = max((e.item.occurred_at for e in done.entries), default=None)
        if self.progress:
            progress, records = self.progress, len(page.records)
            after_commit(s, lambda: progress(records, created))

    def _advance(self, s, page_max: str | None) -> None:
        st = _state(s, self.name, self.stream.name)
        if self.stream.is_sorted and not self.since:
            st.cursor = self.stream.cursor_max(st.cursor, page_max)
        else:
            self.signpost = self.stream.cursor_max(self.signpost, page_max)
            st.signpost = self.signpost

    # -- child streams ----------------------------------------------------------
    def _save_children_progress(self, s) -> None:
        st = _state(s, self.name, self.stream.name)
        st.state = _with_children_progress(st.state, self.children_progress)

    def _read_children(self, children: list[Stream], records: list[Any]) -> None:
        done: list[str] = self.children_progress.setdefault("done", [])
        for record in records:
            context = self.stream.child_context(record)
            if context is None:
                continue
            key = _context_key(context)
            if key in done:
                continue  # finished by a run that died later: not read again
            partial = self.children_progress.get("partial") or {}
            resume = partial if partial.get("key") == key else {}
            names = [c.name for c in children]
            first = names.index(resume["stream"]) if resume.get("stream") in names else 0
            for child in children[first:]:
                if resume.get("stream") == child.name and resume.get("finished"):
                    continue
                start = resume.get("token") if resume.get("stream") == child.name else None
                self._read_child(child, context, key, start)
            done.append(key)
            self.children_progress["partial"] = None
            with self.hub.db.session() as s:
                self._save_children_progress(s)

    def _read_child(self, child: Stream, context: dict[str, Any], key: str, start_token: str | None) -> None:
        child.context = context
        label = f"{self.stream.name}/{child.name}"
        for page in self._pages(child, cursor=None, start_token=start_token):
            paginator = child.paginator
            # Stateless paginators give the same answer the loop will: the resume point.
            token = paginator.next_token(page) if paginator.has_more(page) else None
            # A next-page URL is not kept: its query may hold credentials (Graph's
            # access_token), and the database is no place for them.  Such a child
            # restarts from its first page instead (duplicates are skipped).
            saved = None if paginator.token_is_url else token
            with self.hub.db.session() as s:
                self._commit(s, label, child, page)
                self.children_progress["partial"] = {"key": key, "stream": child.name, "token": saved,
                                                     "finished": token is None}
                self._save_children_progress(s)


def source_status(hub: Hub) -> list[dict]:
    """Instances with last run, lag and last error, for CLI and admin pages."""
    out = []
    now = hub.clock.utcnow()
    with hub.db.Session() as s:
        states = s.scalars(select(m.ConnectorState)).all()
    by_instance: dict[str, list[m.ConnectorState]] = {}
    for st in states:
        if st.stream != INSTANCE_STREAM:  # plugins' own state document, not a stream
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
