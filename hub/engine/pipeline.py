"""The ingest pipeline: raw event -> normalize -> dedupe -> identity -> score
-> case -> outbox, in one transaction, for a batch of items at a time.

Batch-first by design: a page of 1,000 survey responses costs a fixed handful
of queries (look up duplicates, identities, prior contacts, open cases and slot
load once; insert customers, identities, cases, items and follow-ups with one
multi-row statement each), never one round trip per item.  A single API POST is
simply a batch of one.

Hooks that announce new data (``hub_feedback_ingested``, ``hub_case_opened``)
run after the transaction commits (:func:`hub.db.after_commit`).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.engine.planner import SlotPlanner
from hub.sdk.schema import (
    OPEN_CASE_STATUSES,
    CaseView,
    FeedbackIn,
    FeedbackView,
    ScoringContext,
    Signal,
    nps_category,
)
from hub.storage import models as m
from hub.storage.database import after_commit

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
CHUNK = 500  # keeps IN (...) lists well under every driver's parameter limit
#: Identities through which a person can be called or mailed back.
REACHABLE_KINDS = ("email", "phone", "crm_id")
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
# Inserts go to Core tables, not ORM entities: an ORM bulk INSERT splits the
# rows into groups by which values are None, a round trip per group.
RAW, CUSTOMER, IDENTITY, CASE, FOLLOWUP, ITEM = (
    m.RawEvent.__table__, m.Customer.__table__, m.Identity.__table__, m.Case.__table__, m.Followup.__table__,
    m.FeedbackItem.__table__)


@dataclass
class Entry:
    item: FeedbackIn
    raw_event_id: int | None = None


@dataclass
class IngestResult:
    external_id: str
    item_id: int
    created: bool
    customer_id: int | None
    case_id: int | None
    followup_id: int | None = None


def _chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class _NewCustomer:
    __slots__ = ("name", "id", "ref")

    def __init__(self, name: str | None):
        self.name = name
        self.id: int | None = None
        self.ref = uuid.uuid4().hex


class _CaseRef:
    __slots__ = ("id", "customer", "risk", "priority", "sla_due", "new", "dirty", "followup", "followup_id")

    def __init__(self, id_, customer, risk, priority, sla_due=None, new=False):
        self.id = id_
        self.customer = customer
        self.risk = risk
        self.priority = priority
        self.sla_due = sla_due
        self.new = new
        self.dirty = False
        self.followup = False
        self.followup_id: int | None = None


def _cid(customer: int | _NewCustomer) -> int:
    return customer if isinstance(customer, int) else customer.id  # type: ignore[return-value]


class Pipeline:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.scoring = hub.config.get("scoring", {})
        self.window = dt.timedelta(days=float(self.scoring.get("repeat_window_days", 30)))

    # -- public ---------------------------------------------------------
    def ingest(self, session: Session, source: str, entries: Sequence[Entry], now: dt.datetime | None = None
               ) -> list[IngestResult]:
        """Store a batch of items (with everything they cause) in ``session``'s
        transaction.  Duplicates (same source + external_id) come back with
        ``created=False`` and the stored item's ids; nothing is written for them.
        """
        now = now or self.hub.clock.utcnow()
        for attempt in range(3):
            try:
                with session.begin_nested():
                    return self._ingest(session, source, entries, now)
            except IntegrityError:
                # Another transaction stored the same item or identity between
                # our look-up and our insert (PostgreSQL, concurrent webhook
                # and pull): run again; the look-ups now see its rows.
                if attempt == 2:
                    raise
                log.info("ingest conflict on %s, retrying batch of %d", source, len(entries))
        raise AssertionError("unreachable")

    # -- steps ----------------------------------------------------------
    def _enrich(self, item: FeedbackIn) -> FeedbackIn:
        updates: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for result in self.hub.hook.hub_enrich_feedback(item=item, config=self.hub.config):
            for key, value in (result or {}).items():
                if key == "extra" and isinstance(value, dict):
                    # Enrichers add keys to extra (themes...); the source's own keys win.
                    extra.update({k: v for k, v in value.items() if k not in item.extra and k not in extra})
                elif value is not None and getattr(item, key, None) is None and key not in updates:
                    updates[key] = value
        if extra:
            updates["extra"] = {**item.extra, **extra}
        return dataclasses.replace(item, **updates) if updates else item

    def _ingest(self, session: Session, source: str, entries: Sequence[Entry], now: dt.datetime) -> list[IngestResult]:
        hook = self.hub.hook
        # 1. dedupe inside the batch and against the database
        first: dict[str, int] = {}
        for i, e in enumerate(entries):
            first.setdefault(e.item.external_id, i)
        existing: dict[str, tuple[int, int | None, int | None]] = {}
        for chunk in _chunks(list(first)):
            q = select(m.FeedbackItem.external_id, m.FeedbackItem.id, m.FeedbackItem.customer_id,
                       m.FeedbackItem.case_id).where(m.FeedbackItem.source == source,
                                                     m.FeedbackItem.external_id.in_(chunk))
            for ext, iid, cust, case in session.execute(q):
                existing[ext] = (iid, cust, case)
        fresh = [i for i in first.values() if entries[i].item.external_id not in existing]
        items = {i: self._enrich(entries[i].item) for i in fresh}

        # 2. identity resolution: exact match on strong identities
        wanted = {kv for i in fresh for kv in items[i].customer.identities()}
        known: dict[tuple[str, str], int | _NewCustomer] = {}
        values = sorted({v for _, v in wanted})
        for chunk in _chunks(values):
            for kind, value, cust in session.execute(
                select(m.Identity.kind, m.Identity.value, m.Identity.customer_id).where(m.Identity.value.in_(chunk))
            ):
                if (kind, value) in wanted:
                    known[(kind, value)] = cust
        customer_of: dict[int, int | _NewCustomer] = {}
        new_customers: list[_NewCustomer] = []
        new_identities: list[tuple[tuple[str, str], int | _NewCustomer, str]] = []
        for i in fresh:
            it = items[i]
            ids = it.customer.identities()
            cust = next((known[kv] for kv in ids if kv in known), None)
            if cust is None:
                cust = _NewCustomer(it.customer.name)
                new_customers.append(cust)
            for kv in ids:
                if kv not in known:
                    known[kv] = cust
                    new_identities.append((kv, cust, f"{it.channel} {source}/{it.external_id}"))
            customer_of[i] = cust
        if new_customers:
            by_ref = {c.ref: c for c in new_customers}
            stmt = insert(CUSTOMER).returning(CUSTOMER.c.id, CUSTOMER.c.ref)
            for cid, ref in session.execute(stmt, [{"ref": c.ref, "name": c.name, "attributes": {}, "created_at": now}
                                                   for c in new_customers]):
                by_ref[ref].id = cid
        if new_identities:
            session.execute(insert(IDENTITY), [
                {"customer_id": _cid(c), "kind": k, "value": v, "confidence": 1.0, "evidence": ev, "created_at": now}
                for (k, v), c, ev in new_identities
            ])

        # 3. context for scoring: prior contacts within the window, value
        old_ids = sorted({c for c in customer_of.values() if isinstance(c, int)})
        history: dict[int, list[dt.datetime]] = defaultdict(list)
        values_by_cust: dict[int, float | None] = {}
        if old_ids and fresh:
            since = min(items[i].occurred_at for i in fresh) - self.window
            for chunk in _chunks(old_ids):
                for cid, occ in session.execute(
                    select(m.FeedbackItem.customer_id, m.FeedbackItem.occurred_at).where(
                        m.FeedbackItem.customer_id.in_(chunk), m.FeedbackItem.occurred_at >= since)
                ):
                    history[cid].append(occ)
                for cid, value in session.execute(
                    select(m.Customer.id, m.Customer.value).where(m.Customer.id.in_(chunk))
                ):
                    values_by_cust[cid] = value
            for times in history.values():
                times.sort()

        # 4. score and decide
        scored: dict[int, tuple[str | None, int, list[Signal], Any]] = {}
        for i in fresh:
            it = items[i]
            cid = _cid(customer_of[i])
            times = history[cid]
            prior = bisect.bisect_left(times, it.occurred_at) - bisect.bisect_left(times, it.occurred_at - self.window)
            ctx = ScoringContext(config=self.scoring, prior_contacts=prior, customer_value=values_by_cust.get(cid))
            signals = [s for res in hook.hub_score_feedback(item=it, context=ctx) for s in (res or [])]
            risk = max(0, min(100, round(sum(s.weight for s in signals))))
            category = nps_category(it.nps)
            decision = hook.hub_decide_escalation(item=it, category=category, risk=risk, signals=signals,
                                                  config=self.hub.config, now=now)
            scored[i] = (category, risk, signals, decision)
            bisect.insort(times, it.occurred_at)  # later items of the batch see this one

        # 5. cases: merge into the customer's open case, or open one
        open_cases: dict[int | _NewCustomer, _CaseRef] = {}
        for chunk in _chunks(old_ids):
            q = (select(m.Case.id, m.Case.customer_id, m.Case.risk, m.Case.priority, m.Case.sla_due_at)
                 .where(m.Case.customer_id.in_(chunk), m.Case.status.in_(OPEN_CASE_STATUSES))
                 .order_by(m.Case.opened_at))
            for case_id, cid, risk, prio, sla in session.execute(q):
                open_cases[cid] = _CaseRef(case_id, cid, risk, prio, sla)
        resurvey_ids = sorted({items[i].resurvey_case_id for i in fresh if items[i].resurvey_case_id})
        resurvey_cases = set()
        for chunk in _chunks(resurvey_ids):
            resurvey_cases.update(session.scalars(select(m.Case.id).where(m.Case.id.in_(chunk))))
        planner_cfg = self.hub.config.get("planner", {})
        planner: SlotPlanner | None = None
        case_of: dict[int, _CaseRef | int | None] = {}
        new_cases: list[_CaseRef] = []
        resurvey_updates: dict[int, int] = {}
        for i in fresh:
            it = items[i]
            category, risk, signals, decision = scored[i]
            cust = customer_of[i]
            key = cust  # an int id, or the _NewCustomer object itself (hashed by identity)
            if it.resurvey_case_id and it.resurvey_case_id in resurvey_cases:
                case_of[i] = it.resurvey_case_id
                if it.nps is not None:
                    resurvey_updates[it.resurvey_case_id] = it.nps
                continue
            ref = open_cases.get(key)
            if ref is not None:
                if risk > ref.risk:
                    ref.risk, ref.dirty = risk, True
                if decision and PRIORITY_RANK.get(decision.priority, 1) > PRIORITY_RANK.get(ref.priority, 1):
                    ref.priority, ref.dirty = decision.priority, True
                case_of[i] = ref
            elif decision and decision.open_case:
                if planner is None:
                    planner = self._planner(session, planner_cfg, now)
                sla = planner.sla_due(decision.priority, now, decision.sla_hours)
                ref = _CaseRef(None, cust, risk, decision.priority, sla, new=True)
                ref.followup = decision.followup
                open_cases[key] = ref
                new_cases.append(ref)
                case_of[i] = ref
            else:
                case_of[i] = None
        # An item that did not escalate on its own joins the case a later
        # item of the same customer opened (a thread that turns angry).
        for i in fresh:
            if case_of[i] is None:
                ref = open_cases.get(customer_of[i])
                if ref is not None and ref.new:
                    case_of[i] = ref
        if new_cases:
            # One new case per customer in a batch, so customer_id maps ids back.
            by_customer = {_cid(c.customer): c for c in new_cases}
            stmt = insert(CASE).returning(CASE.c.id, CASE.c.customer_id)
            for case_id, cust_id in session.execute(stmt, [
                {"customer_id": _cid(c.customer), "status": "new", "priority": c.priority, "risk": c.risk,
                 "sla_due_at": c.sla_due, "opened_at": now, "updated_at": now}
                for c in new_cases
            ]):
                by_customer[cust_id].id = case_id
        # ... and so do the customer's recent case-less items from earlier batches.
        earlier = [c for c in new_cases if isinstance(c.customer, int)]
        if earlier:
            session.execute(
                update(ITEM).where(ITEM.c.customer_id == bindparam("cust"), ITEM.c.case_id.is_(None),
                                   ITEM.c.occurred_at >= bindparam("since")).values(case_id=bindparam("case")),
                [{"cust": c.customer, "since": now - self.window, "case": c.id} for c in earlier])
        dirty = [c for c in open_cases.values() if c.dirty and not c.new]
        if dirty:
            session.execute(update(m.Case), [{"id": c.id, "risk": c.risk, "priority": c.priority, "updated_at": now}
                                             for c in dirty])
        if resurvey_updates:
            session.execute(update(m.Case), [{"id": k, "resurvey_nps": v, "updated_at": now}
                                             for k, v in resurvey_updates.items()])

        # 6. outbox rows for new cases that want a callback
        wants = [c for c in new_cases if c.followup]
        if wants:
            sinks = self._route(session, wants, known)
            assert planner is not None
            by_case = {c.id: c for c in wants}
            stmt = insert(FOLLOWUP).returning(FOLLOWUP.c.id, FOLLOWUP.c.case_id)
            for fid, case_id in session.execute(stmt, [
                {"case_id": c.id, "sink": sinks[c.id], "idempotency_key": f"hub-case-{c.id}-callback",
                 "due_at": planner.plan(now, c.sla_due), "status": "pending", "attempts": 0,
                 "next_attempt_at": now, "created_at": now}
                for c in wants
            ]):
                by_case[case_id].followup_id = fid

        # 7. the items themselves
        rows = []
        for i in fresh:
            it = items[i]
            category, risk, signals, _ = scored[i]
            case = case_of[i]
            rows.append({
                "source": source, "external_id": it.external_id, "raw_event_id": entries[i].raw_event_id,
                "channel": it.channel, "occurred_at": it.occurred_at, "received_at": now, "text": it.text,
                "language": it.language, "nps": it.nps, "sentiment": it.sentiment, "category": category,
                "risk": risk, "risk_reasons": [s.as_dict() for s in signals], "reach": it.reach,
                "thread_id": it.thread_id, "url": it.url, "extra": it.extra or {},
                "customer_id": _cid(customer_of[i]),
                "case_id": case.id if isinstance(case, _CaseRef) else case,
            })
        item_ids: list[int] = []
        if rows:
            # (source, external_id) is unique and deduplicated above: it maps
            # the returned ids back to rows without a per-row round trip.
            stmt = insert(ITEM).returning(ITEM.c.id, ITEM.c.external_id)
            id_of = {ext: iid for iid, ext in session.execute(stmt, rows)}
            item_ids = [id_of[r["external_id"]] for r in rows]

        # 8. results, and events once committed
        by_index: dict[int, IngestResult] = {}
        views: list[FeedbackView] = []
        for i, row, iid in zip(fresh, rows, item_ids, strict=True):
            case = case_of[i]
            by_index[i] = IngestResult(
                external_id=row["external_id"], item_id=iid, created=True, customer_id=row["customer_id"],
                case_id=row["case_id"], followup_id=case.followup_id if isinstance(case, _CaseRef) else None)
            views.append(FeedbackView(
                id=iid, source=source, external_id=row["external_id"], channel=row["channel"],
                occurred_at=row["occurred_at"], text=row["text"], nps=row["nps"], language=row["language"],
                reach=row["reach"], category=row["category"], risk=row["risk"],
                risk_reasons=tuple(scored[i][2]), customer_id=row["customer_id"], case_id=row["case_id"],
                thread_id=row["thread_id"], url=row["url"]))
        case_views = [CaseView(id=c.id, customer_id=_cid(c.customer), status="new", priority=c.priority,
                               risk=c.risk, sla_due_at=c.sla_due, owner=None, outcome=None) for c in new_cases]
        if views or case_views:
            after_commit(session, lambda: self._announce(views, case_views))

        results = []
        for i, e in enumerate(entries):
            j = first[e.item.external_id]
            if j in by_index:
                r = by_index[j]
                results.append(r if i == j else dataclasses.replace(r, created=False, followup_id=None))
            else:
                iid, cust, case = existing[e.item.external_id]
                results.append(IngestResult(e.item.external_id, iid, False, cust, case))
        return results

    def _route(self, session: Session, cases: list[_CaseRef], known: dict[tuple[str, str], Any]) -> dict[int, str]:
        """Sink per new case: ``routing.followups``, except that customers the
        hub cannot call or mail (only a social handle) go to
        ``routing.unreachable``, where webcare answers them in public."""
        routing = self.hub.config["routing"]
        main, fallback = self.hub.registry.followup_sink, routing.get("unreachable")
        if not fallback or fallback == main:
            return {c.id: main for c in cases}
        reachable: set[int] = set()
        for (kind, _), cust in known.items():
            if kind in REACHABLE_KINDS:
                reachable.add(_cid(cust))
        old = sorted({c.customer for c in cases if isinstance(c.customer, int)} - reachable)
        for chunk in _chunks(old):
            reachable.update(session.scalars(select(IDENTITY.c.customer_id).where(
                IDENTITY.c.customer_id.in_(chunk), IDENTITY.c.kind.in_(REACHABLE_KINDS))))
        return {c.id: main if _cid(c.customer) in reachable else fallback for c in cases}

    def _planner(self, session: Session, cfg: dict[str, Any], now: dt.datetime) -> SlotPlanner:
        horizon = now + dt.timedelta(hours=max([48.0, *map(float, cfg.get("sla_hours", {}).values())]))
        due = session.scalars(select(m.Followup.due_at).where(
            m.Followup.due_at >= now, m.Followup.due_at <= horizon,
            m.Followup.status.in_(("pending", "sending", "sent", "failed"))))
        return SlotPlanner(cfg, due)

    def _announce(self, views: list[FeedbackView], cases: list[CaseView]) -> None:
        hook = self.hub.hook
        # Skip the per-item calls when no plugin listens (a 100k import).
        if hook.hub_case_opened.get_hookimpls():
            for c in cases:
                hook.hub_case_opened(case=c)
        if hook.hub_feedback_ingested.get_hookimpls():
            for v in views:
                hook.hub_feedback_ingested(item=v)
