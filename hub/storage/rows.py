"""Stored rows -> frozen views (what plugins get; the API's answers are :mod:`hub.api.contracts`).

Each view has one builder here, used by every part of the hub: it takes an
ORM row or the values the pipeline just inserted (a mapping with the row's
``id``), so an item announced at ingest and the same item read back later are
built the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.sdk.schema import CaseView, CustomerView, FeedbackView, FollowupView, IdentityKind, Signal
from hub.storage import models as m

#: The identities CustomerView has a field of its own for; the rest are ``handles``.
CONTACT_KINDS = ("email", "crm_id", "phone")


def _getter(row: Any) -> Callable[[str], Any]:
    if isinstance(row, Mapping):
        return row.get
    return lambda name: getattr(row, name)


def feedback_view(row: m.FeedbackItem | Mapping[str, Any]) -> FeedbackView:
    get = _getter(row)
    return FeedbackView(
        id=get("id"),
        source=get("source"),
        external_id=get("external_id"),
        channel=get("channel"),
        occurred_at=get("occurred_at"),
        text=get("text"),
        nps=get("nps"),
        language=get("language"),
        reach=get("reach"),
        category=get("category"),
        risk=get("risk"),
        risk_reasons=tuple(Signal(**r) for r in (get("risk_reasons") or [])),
        customer_id=get("customer_id"),
        case_id=get("case_id"),
        thread_id=get("thread_id"),
        url=get("url"),
    )


def case_view(row: m.Case | Mapping[str, Any]) -> CaseView:
    get = _getter(row)
    return CaseView(
        id=get("id"),
        customer_id=get("customer_id"),
        status=get("status"),
        priority=get("priority"),
        risk=get("risk"),
        sla_due_at=get("sla_due_at"),
        owner=get("owner"),
        outcome=get("outcome"),
    )


def customer_view(customer: m.Customer, identities: list[tuple[str, str]],
                  kinds: Mapping[str, IdentityKind] | None = None) -> CustomerView:
    """``identities``: the customer's (kind, value) pairs, oldest first (the
    first of a kind wins).  ``kinds`` displays the handles; without it (or for
    an undeclared kind) a handle is shown as stored."""
    contact: dict[str, str] = {}
    handles: list[tuple[str, str]] = []
    for kind, value in identities:
        if kind in CONTACT_KINDS:
            contact.setdefault(kind, value)
        elif (kind, value) not in handles:
            handles.append((kind, value))
    handle = None
    if handles:
        kind, value = handles[0]
        handle = (kinds or {}).get(kind, IdentityKind.undeclared(kind)).show(value)
    return CustomerView(id=customer.id, name=customer.name, email=contact.get("email"), crm_id=contact.get("crm_id"),
                        value=customer.value, phone=contact.get("phone"), handles=tuple(handles), handle=handle)


def customer_views(session: Session, ids: set[int], kinds: Mapping[str, IdentityKind] | None = None
                   ) -> dict[int, CustomerView]:
    if not ids:
        return {}
    customers = {c.id: c for c in session.scalars(select(m.Customer).where(m.Customer.id.in_(ids)))}
    idents: dict[int, list[tuple[str, str]]] = {}
    q = select(m.Identity.customer_id, m.Identity.kind, m.Identity.value).where(
        m.Identity.customer_id.in_(ids)).order_by(m.Identity.id)
    for cid, kind, value in session.execute(q):
        idents.setdefault(cid, []).append((kind, value))
    return {cid: customer_view(c, idents.get(cid, []), kinds) for cid, c in customers.items()}


def followup_views(session: Session, rows: list[m.Followup], case_url: Any = None,
                   kinds: Mapping[str, IdentityKind] | None = None) -> list[FollowupView]:
    """Views for a batch of outbox rows, with 4 queries whatever the batch size.
    ``kinds`` (the registry's identity kinds) displays customers' handles."""
    case_ids = {r.case_id for r in rows}
    cases = {c.id: c for c in session.scalars(select(m.Case).where(m.Case.id.in_(case_ids)))} if case_ids else {}
    items: dict[int, list[FeedbackView]] = {}
    if case_ids:
        q = select(m.FeedbackItem).where(m.FeedbackItem.case_id.in_(case_ids)).order_by(m.FeedbackItem.occurred_at.desc())
        for it in session.scalars(q):
            items.setdefault(it.case_id, []).append(feedback_view(it))
    customers = customer_views(session, {c.customer_id for c in cases.values() if c.customer_id}, kinds)
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
