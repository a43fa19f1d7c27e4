"""ORM rows -> frozen views (what plugins get; the API's answers are :mod:`hub.api.contracts`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.sdk.schema import CaseView, CustomerView, FeedbackView, FollowupView, Signal
from hub.storage import models as m


def feedback_view(row: m.FeedbackItem) -> FeedbackView:
    return FeedbackView(
        id=row.id,
        source=row.source,
        external_id=row.external_id,
        channel=row.channel,
        occurred_at=row.occurred_at,
        text=row.text,
        nps=row.nps,
        language=row.language,
        reach=row.reach,
        category=row.category,
        risk=row.risk,
        risk_reasons=tuple(Signal(**r) for r in (row.risk_reasons or [])),
        customer_id=row.customer_id,
        case_id=row.case_id,
        thread_id=row.thread_id,
        url=row.url,
    )


def case_view(row: m.Case) -> CaseView:
    return CaseView(
        id=row.id,
        customer_id=row.customer_id,
        status=row.status,
        priority=row.priority,
        risk=row.risk,
        sla_due_at=row.sla_due_at,
        owner=row.owner,
        outcome=row.outcome,
    )


def customer_views(session: Session, ids: set[int]) -> dict[int, CustomerView]:
    if not ids:
        return {}
    customers = {c.id: c for c in session.scalars(select(m.Customer).where(m.Customer.id.in_(ids)))}
    idents: dict[int, dict[str, str]] = {}
    for ident in session.scalars(select(m.Identity).where(m.Identity.customer_id.in_(ids))):
        idents.setdefault(ident.customer_id, {}).setdefault(ident.kind, ident.value)
    return {
        cid: CustomerView(
            id=cid,
            name=c.name,
            email=idents.get(cid, {}).get("email"),
            crm_id=idents.get(cid, {}).get("crm_id"),
            x_handle=idents.get(cid, {}).get("x_handle"),
            value=c.value,
        )
        for cid, c in customers.items()
    }


def followup_views(session: Session, rows: list[m.Followup], case_url: Any = None) -> list[FollowupView]:
    """Views for a batch of outbox rows, with 3 queries whatever the batch size."""
    case_ids = {r.case_id for r in rows}
    cases = {c.id: c for c in session.scalars(select(m.Case).where(m.Case.id.in_(case_ids)))} if case_ids else {}
    items: dict[int, list[FeedbackView]] = {}
    if case_ids:
        q = select(m.FeedbackItem).where(m.FeedbackItem.case_id.in_(case_ids)).order_by(m.FeedbackItem.occurred_at.desc())
        for it in session.scalars(q):
            items.setdefault(it.case_id, []).append(feedback_view(it))
    customers = customer_views(session, {c.customer_id for c in cases.values() if c.customer_id})
    out = []
    for r in rows:
        case = cases[r.case_id]
        out.append(
            FollowupView(
                id=r.id,
                case_id=r.case_id,
                sink=r.sink,
                idempotency_key=r.idempotency_key,
                due_at=r.due_at,
                attempts=r.attempts,
                external_id=r.external_id,
                customer=customers.get(case.customer_id) if case.customer_id else None,
                case=case_view(case),
                items=tuple(items.get(r.case_id, [])),
                case_url=case_url(r.case_id) if case_url else None,
            )
        )
    return out
