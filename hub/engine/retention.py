"""The retention policy: personal data is kept only as long as it is useful.

Per source (``[retention]`` with overrides in ``[retention.sources.<name>]``):

* ``raw_payload_days``: a raw event's payload and headers (what arrived,
  verbatim, for replay) are emptied once the event is older than this and no
  longer pending.  The row stays, with its dedupe key, so the same delivery
  is still recognised as a duplicate.
* ``item_months``: an item's text, links, extra fields and its link to the
  customer are removed after this many months; its scores stay (anonymous)
  for the reports.  Items of a case that is still open wait for the case.

``0`` keeps that data forever.  The scheduler runs :func:`run_retention`
every ``interval_hours``; ``feedback-hub retention run`` runs it now.  Each
run is audited with its counts (``retention.run``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from hub.engine import audit
from hub.engine.privacy import _secure_delete, tombstone_items, tombstone_raw_events
from hub.sdk.schema import OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.storage.search import purge_deleted_text

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
DEFAULTS = {"raw_payload_days": 90, "item_months": 24}
#: Rows emptied per transaction: short write locks on SQLite.
BATCH = 1000


def months_before(when: dt.datetime, months: int) -> dt.datetime:
    """The same day and time ``months`` calendar months earlier (the month's last day if shorter)."""
    year, month = divmod(when.year * 12 + when.month - 1 - months, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def policy(hub: Hub, source: str) -> dict[str, int]:
    """The retention ages that apply to ``source`` (its override, else the defaults)."""
    cfg: dict[str, Any] = hub.config.get("retention") or {}
    base = {k: int(cfg.get(k, v)) for k, v in DEFAULTS.items()}
    override = (cfg.get("sources") or {}).get(source) or {}
    return {k: int(override.get(k, v)) for k, v in base.items()}


def _sources(hub: Hub) -> list[str]:
    with hub.db.Session() as s:
        names = set(s.scalars(select(m.RawEvent.source).distinct()))
        names |= set(s.scalars(select(m.FeedbackItem.source).distinct()))
    return sorted(names)


def _expired_raw_ids(s, source: str, cutoff: dt.datetime) -> list[int]:
    R = m.RawEvent
    return list(s.scalars(select(R.id).where(
        R.source == source, R.received_at < cutoff, R.status != "pending",
        R.payload["erased"].as_string().is_(None)).order_by(R.id).limit(BATCH)))


def _expired_item_ids(s, source: str, cutoff: dt.datetime) -> list[int]:
    F, C = m.FeedbackItem, m.Case
    open_case = select(C.id).where(C.id == F.case_id, C.status.in_(OPEN_CASE_STATUSES)).exists()
    return list(s.scalars(select(F.id).where(
        F.source == source, F.received_at < cutoff, F.extra["erased"].as_string().is_(None),
        or_(F.case_id.is_(None), ~open_case)).order_by(F.id).limit(BATCH)))


def run_retention(hub: Hub, actor: str = "scheduler") -> dict[str, dict[str, int]]:
    """Apply the policy to every source; returns {source: {"raw_events": n, "items": n}} for those changed."""
    now = hub.clock.utcnow()
    report: dict[str, dict[str, int]] = {}
    for source in _sources(hub):
        rules = policy(hub, source)
        counts = {"raw_events": 0, "items": 0}
        if rules["raw_payload_days"] > 0:
            cutoff = now - dt.timedelta(days=rules["raw_payload_days"])
            counts["raw_events"] = _in_batches(hub, lambda s, c=cutoff, n=source: _expired_raw_ids(s, n, c),
                                               lambda s, ids: tombstone_raw_events(s, ids, "retention"))
        if rules["item_months"] > 0:
            cutoff = months_before(now, rules["item_months"])
            counts["items"] = _in_batches(hub, lambda s, c=cutoff, n=source: _expired_item_ids(s, n, c),
                                          lambda s, ids: tombstone_items(s, ids, "retention"))
        if any(counts.values()):
            report[source] = counts
    with hub.db.session() as s:
        audit.record(s, actor=actor, action="retention.run", at=now,
                     raw_events=sum(c["raw_events"] for c in report.values()),
                     items=sum(c["items"] for c in report.values()), sources=sorted(report))
    if report:
        log.info("retention: %s", report)
        _checkpoint(hub)
    return report


def _in_batches(hub: Hub, find, empty) -> int:
    total = 0
    while True:
        with hub.db.session() as s:
            _secure_delete(s)
            ids = find(s)
            if not ids:
                return total
            total += empty(s, ids)


def _checkpoint(hub: Hub) -> None:
    """SQLite: fold the WAL back into the file (its frames hold the old page images)."""
    engine = hub.db.engine
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            purge_deleted_text(conn)  # emptied texts' trigrams leave the full-text index
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
