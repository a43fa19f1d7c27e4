"""Finding customers by what people know of them: part of a name, an e-mail
address or a handle.  One clause, used by the API (``GET /api/v1/customers?q=``)
and the inbox search, so both find the same people."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, or_, select

from hub.storage import models as m


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def customer_matches(term: str) -> ColumnElement[bool]:
    """Customers whose name, or one of whose identities, contains ``term``
    (case-insensitive; the "@" in front of a handle is optional)."""
    term = term.strip()
    bare = term.lstrip("@") or term
    I, C = m.Identity, m.Customer  # noqa: E741
    return or_(
        C.name.ilike(_like(term), escape="\\"),
        exists(select(I.id).where(I.customer_id == C.id, I.value.ilike(_like(bare), escape="\\"))),
    )


def matching_customer_ids(term: str):
    """A subquery of the ids of :func:`customer_matches` (for ``customer_id IN (...)``)."""
    return select(m.Customer.id).where(customer_matches(term))
