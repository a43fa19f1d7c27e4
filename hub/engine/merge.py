"""Merge two customers into one, and split them again.

:func:`merge` moves everything of the merged customer to the survivor:
identities, feedback items, cases, pending suggestions, CRM facts (attributes
and value where the survivor has none).  Two open cases become one: the
survivor's open case takes the other's items (both timelines), the earlier SLA,
the higher risk and priority, and keeps one live callback; the other case is
closed as merged and its redundant follow-up cancelled (``cancelled_at``: a task
the CRM already holds is withdrawn by the next dispatch, retried through
outages like every task change, :mod:`hub.engine.crm_sync`).  The merged customer's row
stays, pointing at the survivor, so a split can bring it back under its own id.

Everything a merge changed is written to its :class:`~hub.storage.models.CustomerMerge`
record (row ids and the values before), and :func:`split` with the merged
customer's identities restores exactly that.  A split of identities that no
merge brought makes a new customer of them, with the items that carried only
those identities and the cases all of whose items move.  Both are audited with
who and the merge record (whose ``reason`` says why); the audit detail holds
ids only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.engine import audit, crm_sync
from hub.engine import cases as lifecycle
from hub.storage import models as m

log = logging.getLogger(__name__)
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
#: A follow-up in these states is a callback still to happen.
LIVE_FOLLOWUP = ("pending", "sending", "sent", "failed")
#: Not yet in the CRM: cancelling it is an outbox change only.
UNPUSHED = ("pending", "failed")
MERGED_OUTCOME_NOTE = "merged"


class MergeError(ValueError):
    """A merge or split that cannot be done (the API answers 404, 409 or 400)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _customer(session: Session, customer_id: int) -> m.Customer:
    c = session.get(m.Customer, customer_id, with_for_update=True)
    if c is None:
        raise MergeError(f"no customer {customer_id}", 404)
    return c


def _ids(session: Session, column: Any, where: Any) -> list[int]:
    return list(session.scalars(select(column).where(where).order_by(column)))


def merge(session: Session, survivor_id: int, merged_id: int, *, actor: str, now: dt.datetime,
          reason: str | None = None, hub: Any = None) -> m.Customer:
    """Merge customer ``merged_id`` into ``survivor_id`` (see the module docstring); returns the survivor."""
    if survivor_id == merged_id:
        raise MergeError("a customer cannot be merged with itself", 400)
    survivor, merged = _customer(session, survivor_id), _customer(session, merged_id)
    for c in (survivor, merged):
        if c.merged_into_id is not None:
            raise MergeError(f"customer {c.id} was merged into customer {c.merged_into_id}; use that one")
    F, I, C, S = m.FeedbackItem, m.Identity, m.Case, m.IdentitySuggestion  # noqa: E741
    moved: dict[str, Any] = {
        "identities": _ids(session, I.id, I.customer_id == merged_id),
        "items": _ids(session, F.id, F.customer_id == merged_id),
        "cases": _ids(session, C.id, C.customer_id == merged_id),
        "customer": {"name": survivor.name, "value": survivor.value, "attributes": dict(survivor.attributes or {})},
    }
    suggestions = list(session.scalars(select(S).where(
        S.status == "pending", (S.customer_id == merged_id) | (S.other_customer_id == merged_id))))
    moved["suggestions"] = [{"id": s.id, "customer_id": s.customer_id, "other_customer_id": s.other_customer_id,
                             "status": s.status} for s in suggestions]
    record = m.CustomerMerge(survivor_id=survivor_id, merged_id=merged_id, actor=actor, reason=reason, at=now,
                             moved={**moved})
    session.add(record)
    session.flush()  # the record's id names the change in the cases' audit
    # Combined (the merged customer's open case closed) before the cases move:
    # the one-open-case index checks each row as it moves (migration 0010).
    moved["combined"] = _combine_open_cases(session, survivor_id, moved["cases"], record, actor, now, hub)
    session.flush()

    session.execute(update(I).where(I.customer_id == merged_id).values(customer_id=survivor_id))
    session.execute(update(F).where(F.customer_id == merged_id).values(customer_id=survivor_id))
    session.execute(update(C).where(C.customer_id == merged_id).values(customer_id=survivor_id))
    for s in suggestions:
        s.customer_id = survivor_id if s.customer_id == merged_id else s.customer_id
        s.other_customer_id = survivor_id if s.other_customer_id == merged_id else s.other_customer_id
        if s.customer_id == s.other_customer_id:  # it asked about exactly this merge
            s.status, s.decided_at, s.decided_by = "confirmed", now, actor
    survivor.name = survivor.name or merged.name
    survivor.name_key = survivor.name_key or merged.name_key
    survivor.value = survivor.value if survivor.value is not None else merged.value
    survivor.attributes = {**(merged.attributes or {}), **(survivor.attributes or {})}
    merged.merged_into_id = survivor_id
    # A new dict that differs from the one inserted: JSON columns see reassignment, not mutation.
    record.moved = {**moved}
    audit.record(session, actor=actor, action="customer.merged", at=now, customer_id=survivor_id,
                 merged_customer_id=merged_id, merge_id=record.id, identities=len(moved["identities"]),
                 items=len(moved["items"]), cases=len(moved["cases"]), reason=(reason or "")[:200] or None)
    session.flush()
    _merge_crm_contacts(session, hub, survivor_id, moved["identities"], actor, now)
    return survivor


def _combine_open_cases(session: Session, survivor_id: int, moved_cases: list[int], record: m.CustomerMerge,
                        actor: str, now: dt.datetime, hub: Any) -> dict[str, Any] | None:
    """The survivor's open case (its first) takes the merged customer's open case (``moved_cases``: the
    merged customer's cases, still under it)."""
    C, F = m.Case, m.FeedbackItem
    open_cases = list(session.scalars(select(C).where((C.customer_id == survivor_id) | C.id.in_(moved_cases),
                                                      C.status.in_(lifecycle.OPEN_CASE_STATUSES)).order_by(C.opened_at, C.id)))
    kept = [c for c in open_cases if c.id not in moved_cases]
    absorbed = [c for c in open_cases if c.id in moved_cases]
    if not kept or not absorbed:
        return None
    primary, other = kept[0], absorbed[0]
    before = {"id": primary.id, "sla_due_at": _iso(primary.sla_due_at), "risk": primary.risk,
              "priority": primary.priority, "owner": primary.owner}
    other_before = {"id": other.id, "status": other.status, "closed_at": _iso(other.closed_at),
                    "outcome": other.outcome, "updated_at": _iso(other.updated_at)}
    items = _ids(session, F.id, F.case_id == other.id)
    session.execute(update(F).where(F.case_id == other.id).values(case_id=primary.id))
    slas = [s for s in (primary.sla_due_at, other.sla_due_at) if s is not None]
    primary.sla_due_at = min(slas) if slas else None
    primary.risk = max(primary.risk, other.risk)
    if PRIORITY_RANK.get(other.priority, 1) > PRIORITY_RANK.get(primary.priority, 1):
        primary.priority = other.priority
    primary.owner = primary.owner or other.owner
    primary.updated_at = now
    followups = _one_live_callback(session, primary, other, hub, now)
    lifecycle.transition(other, "closed", actor=actor, now=now, action="case.merged", into_case_id=primary.id,
                         merge_id=record.id)
    other.outcome = other.outcome or MERGED_OUTCOME_NOTE
    audit.record(session, actor=actor, action="case.merged_in", at=now, case_id=primary.id, from_case_id=other.id,
                 merge_id=record.id, items=len(items))
    return {"primary": before, "other": other_before, "items": items, "followups": followups}


def _one_live_callback(session: Session, primary: m.Case, other: m.Case, hub: Any, now: dt.datetime
                       ) -> list[dict[str, Any]]:
    """Keep one live follow-up: the primary's, else the other case's, moved over.
    Every other live one is cancelled; a task the CRM already holds is cancelled
    there through the outbox (:mod:`hub.engine.crm_sync`: retried, never lost)."""
    Fu = m.Followup
    live = list(session.scalars(select(Fu).where(Fu.case_id.in_((primary.id, other.id)),
                                                 Fu.status.in_(LIVE_FOLLOWUP)).order_by(Fu.id)))
    keep = next((f for f in live if f.case_id == primary.id), None) or next(iter(live), None)
    changes = []
    for f in live:
        change = {"id": f.id, **{k: _plain(getattr(f, k)) for k in FOLLOWUP_STATE}}
        if f is keep:
            if f.case_id != primary.id:
                f.case_id = primary.id
                changes.append(change)
            continue
        f.status, f.cancelled_at = "dead", now
        f.last_error = f"cancelled: case merged into case {primary.id}"
        crm_sync.mark(f, now)  # the CRM's task is withdrawn at the next dispatch
        changes.append(change)
    return changes


#: What a merge may change on a follow-up, restored by its split.
FOLLOWUP_STATE = ("case_id", "status", "last_error", "cancelled_at", "sync_pending", "sync_next_at",
                  "sync_attempts", "sync_error")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _merge_crm_contacts(session: Session, hub: Any, survivor_id: int, moved_identities: list[int], actor: str,
                        now: dt.datetime) -> None:
    """``[identity] crm_merge``: the two customers' CRM contacts become one too (sinks that can)."""
    if hub is None or not hub.config.get("identity", {}).get("crm_merge"):
        return
    rows = session.execute(select(m.Identity.id, m.Identity.value).where(
        m.Identity.customer_id == survivor_id, m.Identity.kind == "crm_id").order_by(m.Identity.id)).all()
    kept = [v for iid, v in rows if iid not in moved_identities]
    gone = [v for iid, v in rows if iid in moved_identities]
    if not kept or not gone:
        return
    sink = hub.registry.sink(hub.registry.followup_sink)
    if not sink.merges_contacts():
        return
    for other in gone:
        try:
            sink.merge_contacts(kept[0], other)
            ok = True
        except Exception as exc:  # the hub's merge stands; the audit says the CRM's did not happen
            log.warning("merging CRM contacts in %s failed: %s", hub.registry.followup_sink, exc)
            ok = False
        audit.record(session, actor=actor, action="crm.contacts_merged" if ok else "crm.contacts_merge_failed",
                     at=now, customer_id=survivor_id, sink=hub.registry.followup_sink)


# -- split ------------------------------------------------------------------------------
def split(session: Session, customer_id: int, identities: Sequence[tuple[str, str]], *, actor: str,
          now: dt.datetime, reason: str | None = None) -> m.Customer:
    """Take ``identities`` (kind, value) off customer ``customer_id``; returns the customer who holds them after.

    When they are exactly what a merge brought, that merge is undone (the
    merged customer comes back with its own id and everything it had);
    otherwise a new customer gets them (see the module docstring).
    """
    customer = _customer(session, customer_id)
    if not identities:
        raise MergeError("name the identities to split off", 400)
    rows = list(session.scalars(select(m.Identity).where(m.Identity.customer_id == customer_id)))
    by_kv = {(r.kind, r.value): r for r in rows}
    missing = [kv for kv in identities if kv not in by_kv]
    if missing:
        raise MergeError(f"customer {customer_id} has no {missing[0][0]} {missing[0][1]!r}", 400)
    chosen = {by_kv[kv].id for kv in identities}
    if chosen == {r.id for r in rows}:
        raise MergeError("a split must leave the customer at least one identity", 400)
    for record in session.scalars(select(m.CustomerMerge).where(
            m.CustomerMerge.survivor_id == customer_id, m.CustomerMerge.split_at.is_(None))
            .order_by(m.CustomerMerge.id.desc())):
        if set(record.moved.get("identities", [])) == chosen:
            return _undo(session, record, customer, actor, now, reason)
    return _split_new(session, customer, chosen, rows, actor, now, reason)


def _undo(session: Session, record: m.CustomerMerge, survivor: m.Customer, actor: str, now: dt.datetime,
          reason: str | None) -> m.Customer:
    moved = record.moved
    merged = session.get(m.Customer, record.merged_id, with_for_update=True)
    F, I, C = m.FeedbackItem, m.Identity, m.Case  # noqa: E741
    for table, key in ((I, "identities"), (F, "items"), (C, "cases")):
        ids = moved.get(key) or []
        for chunk in _chunks(ids):
            session.execute(update(table).where(table.id.in_(chunk), table.customer_id == survivor.id)
                            .values(customer_id=merged.id))
    # Reopened only once back with its own customer: the survivor's case is still open
    # (one open case per customer).
    _restore_combined(session, moved.get("combined"), actor, now, record.id)
    for s in moved.get("suggestions", []):
        row = session.get(m.IdentitySuggestion, s["id"])
        if row is not None:
            row.customer_id, row.other_customer_id = s["customer_id"], s["other_customer_id"]
            if row.status == "confirmed" and row.decided_at == record.at:
                row.status, row.decided_at, row.decided_by = s["status"], None, None
    before = moved.get("customer", {})
    survivor.name, survivor.value = before.get("name"), before.get("value")
    survivor.attributes = dict(before.get("attributes") or {})
    from hub.engine.identity_rules import name_key

    survivor.name_key = name_key(survivor.name)
    merged.merged_into_id = None
    record.split_at, record.split_by = now, actor
    audit.record(session, actor=actor, action="customer.split", at=now, customer_id=survivor.id,
                 restored_customer_id=merged.id, merge_id=record.id, reason=(reason or "")[:200] or None)
    session.flush()
    return merged


def _restore_combined(session: Session, combined: dict[str, Any] | None, actor: str, now: dt.datetime,
                      merge_id: int) -> None:
    if not combined:
        return
    F, Fu = m.FeedbackItem, m.Followup
    primary = session.get(m.Case, combined["primary"]["id"], with_for_update=True)
    other = session.get(m.Case, combined["other"]["id"], with_for_update=True)
    for chunk in _chunks(combined.get("items") or []):
        session.execute(update(F).where(F.id.in_(chunk)).values(case_id=other.id))
    if primary is not None:
        b = combined["primary"]
        primary.sla_due_at, primary.risk, primary.priority = _time(b["sla_due_at"]), b["risk"], b["priority"]
        primary.owner, primary.updated_at = b["owner"], now
    for change in combined.get("followups") or []:
        f = session.get(Fu, change["id"])
        if f is None:
            continue
        if f.crm_status == crm_sync.CANCELLED and f.cancelled_at is not None:
            continue  # the CRM withdrew the task already: it stays cancelled (the primary's callback stands)
        for key in FOLLOWUP_STATE:
            if key in change:
                value = change[key]
                setattr(f, key, _time(value) if key in ("cancelled_at", "sync_next_at") else value)
    if other is not None:
        b = combined["other"]
        if other.status in lifecycle.CLOSED_CASE_STATUSES and b["status"] in lifecycle.OPEN_CASE_STATUSES:
            # Back through the lifecycle: reopened as new, then on to where it was.
            lifecycle.transition(other, "new", actor=actor, now=now, action="case.unmerged", merge_id=merge_id)
            if b["status"] != "new":
                lifecycle.transition(other, b["status"], actor=actor, now=now, merge_id=merge_id)
        other.outcome, other.closed_at = b["outcome"], _time(b["closed_at"])


def _split_new(session: Session, customer: m.Customer, chosen: set[int], rows: list[m.Identity], actor: str,
               now: dt.datetime, reason: str | None) -> m.Customer:
    F, C = m.FeedbackItem, m.Case
    new = m.Customer(name=None, attributes={}, created_at=now)
    session.add(new)
    session.flush()
    moving = {(r.kind, r.value) for r in rows if r.id in chosen}
    staying = {(r.kind, r.value) for r in rows if r.id not in chosen}
    items = session.execute(select(F.id, F.case_id, F.identities).where(F.customer_id == customer.id)).all()
    moved_items, kept_cases = [], set()
    for iid, case_id, carried in items:
        kvs = {tuple(kv) for kv in carried or []}
        if kvs & moving and not kvs & staying:
            moved_items.append(iid)
        elif case_id is not None:
            kept_cases.add(case_id)
    moved_cases = sorted({case_id for iid, case_id, _ in items if iid in set(moved_items) and case_id is not None}
                         - kept_cases)
    for r in rows:
        if r.id in chosen:
            r.customer_id = new.id
    for chunk in _chunks(moved_items):
        session.execute(update(F).where(F.id.in_(chunk)).values(customer_id=new.id))
    for chunk in _chunks(moved_cases):
        session.execute(update(C).where(C.id.in_(chunk)).values(customer_id=new.id))
    audit.record(session, actor=actor, action="customer.split", at=now, customer_id=customer.id,
                 new_customer_id=new.id, identities=len(chosen), items=len(moved_items), cases=len(moved_cases),
                 reason=(reason or "")[:200] or None)
    session.flush()
    return new


def _chunks(ids: Iterable[int], n: int = 500) -> Iterable[list[int]]:
    ids = list(ids)
    for i in range(0, len(ids), n):
        yield ids[i : i + n]
