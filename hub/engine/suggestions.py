"""The review queue: suggestions that two customers are one person (or that a
customer also holds an identity), confirmed or rejected by an agent.

A pair of customers has at most one pending suggestion, and a rejected pair is
never suggested again (also not under another identity); a rejected
"this customer also holds X" is not asked again either.  Confirming merges the
two customers (:func:`hub.engine.merge.merge`, undone by a split) or gives the
identity to the customer; both decisions are audited with who and why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.engine.identity_rules import EVIDENCE_MAX, match_key
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.identity_rules import Proposal

SUGGESTION = m.IdentitySuggestion.__table__


class SuggestionError(ValueError):
    """A decision that cannot be taken (unknown, already decided): the API answers 404/409."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _pair_key(customer_id: int, other_id: int | None, kind: str, value: str) -> tuple:
    """What makes two suggestions the same question: the pair, or the customer and the identity."""
    if other_id is not None:
        return ("pair", frozenset((customer_id, other_id)))
    return ("identity", customer_id, kind, value)


def decided_before(session: Session, customer_ids: set[int]) -> tuple[set[tuple], set[tuple]]:
    """(rejected questions, pending questions) touching ``customer_ids``, in one query per 500 ids."""
    from hub.engine.pipeline import _select_in

    rejected: set[tuple] = set()
    pending: set[tuple] = set()
    S = m.IdentitySuggestion
    for cid, other, kind, value, status in _select_in(session, sorted(customer_ids), lambda chunk: select(
            S.customer_id, S.other_customer_id, S.kind, S.value, S.status).where(
            or_(S.customer_id.in_(chunk), S.other_customer_id.in_(chunk)), S.status.in_(("pending", "rejected")))):
        (rejected if status == "rejected" else pending).add(_pair_key(cid, other, kind, value))
    return rejected, pending


def insert_proposals(session: Session, proposals: Sequence[Proposal], now: dt.datetime) -> int:
    """Queue the batch's proposals that are new questions; returns how many were queued."""
    known = {c.id for p in proposals for c in (p.customer, p.other) if c is not None and not c.new}
    rejected, pending = decided_before(session, known) if known else (set(), set())
    rows: list[dict[str, Any]] = []
    for p in proposals:
        other_id = p.other.id if p.other is not None else None
        if other_id == p.customer.id:
            continue
        key = _pair_key(p.customer.id, other_id, *p.identity)  # type: ignore[arg-type]
        if key in rejected or key in pending:
            continue
        pending.add(key)
        rows.append({"customer_id": p.customer.id, "other_customer_id": other_id, "kind": p.identity[0],
                     "value": p.identity[1], "confidence": round(p.confidence, 3), "evidence": p.evidence[:EVIDENCE_MAX],
                     "rule": p.rule, "status": "pending", "created_at": now})
    if rows:
        session.execute(insert(SUGGESTION), rows)
    return len(rows)


def suggest(session: Session, *, customer_id: int, other_customer_id: int | None, kind: str, value: str,
            confidence: float, rule: str, evidence: str, now: dt.datetime) -> bool:
    """Queue one suggestion outside ingest (CRM look-ups); False when it was asked or rejected before."""
    rejected, pending = decided_before(session, {customer_id} | ({other_customer_id} if other_customer_id else set()))
    key = _pair_key(customer_id, other_customer_id, kind, value)
    if key in rejected or key in pending or customer_id == other_customer_id:
        return False
    session.add(m.IdentitySuggestion(customer_id=customer_id, other_customer_id=other_customer_id, kind=kind,
                                     value=value, confidence=round(confidence, 3), evidence=evidence[:EVIDENCE_MAX],
                                     rule=rule, status="pending", created_at=now))
    return True


def _pending(session: Session, suggestion_id: int) -> m.IdentitySuggestion:
    s = session.get(m.IdentitySuggestion, suggestion_id, with_for_update=True)
    if s is None:
        raise SuggestionError(f"no suggestion {suggestion_id}", 404)
    if s.status != "pending":
        raise SuggestionError(f"suggestion {suggestion_id} was already {s.status}")
    return s


def confirm(session: Session, suggestion_id: int, *, actor: str, now: dt.datetime, reason: str | None = None,
            hub: Any = None) -> m.Customer:
    """Take the suggestion: merge the other customer into the suggested one (or
    give it the identity).  Returns the customer who holds the identity now."""
    from hub.engine.merge import merge

    s = _pending(session, suggestion_id)
    s.status, s.decided_at, s.decided_by = "confirmed", now, actor
    why = reason or f"confirmed suggestion {s.id} ({s.rule})"
    if s.other_customer_id is not None:
        survivor = merge(session, s.customer_id, s.other_customer_id, actor=actor, reason=why, now=now, hub=hub)
    else:
        survivor = session.get(m.Customer, s.customer_id)
        holder = session.scalar(select(m.Identity).where(m.Identity.kind == s.kind, m.Identity.value == s.value))
        if holder is not None and holder.customer_id != s.customer_id:
            raise SuggestionError(f"{s.kind} of suggestion {s.id} belongs to customer {holder.customer_id} now; "
                                  "merge the two customers instead")
        if holder is None:
            session.add(m.Identity(customer_id=s.customer_id, kind=s.kind, value=s.value, confidence=1.0,
                                   evidence=f"confirmed by {actor}: {s.evidence}"[:EVIDENCE_MAX], created_at=now,
                                   match_key=match_key(s.kind, s.value)))
    audit.record(session, actor=actor, action="identity.suggestion_confirmed", at=now, suggestion_id=s.id,
                 customer_id=s.customer_id, other_customer_id=s.other_customer_id, rule=s.rule,
                 reason=reason or None)
    return survivor


def reject(session: Session, suggestion_id: int, *, actor: str, now: dt.datetime,
           reason: str | None = None) -> m.IdentitySuggestion:
    """Refuse the suggestion: the pair (or the customer and identity) is not asked again."""
    s = _pending(session, suggestion_id)
    s.status, s.decided_at, s.decided_by = "rejected", now, actor
    audit.record(session, actor=actor, action="identity.suggestion_rejected", at=now, suggestion_id=s.id,
                 customer_id=s.customer_id, other_customer_id=s.other_customer_id, rule=s.rule,
                 reason=reason or None)
    return s


def list_pending(session: Session, *, limit: int, after: int | None = None) -> list[m.IdentitySuggestion]:
    """Pending suggestions, most confident first within id order (newest first), ``limit + 1`` rows."""
    q = select(m.IdentitySuggestion).where(m.IdentitySuggestion.status == "pending")
    if after is not None:
        q = q.where(m.IdentitySuggestion.id < after)
    return list(session.scalars(q.order_by(m.IdentitySuggestion.id.desc()).limit(limit + 1)))
