"""The case lifecycle: which status a case may move to, and what a move does.

One table (:data:`TRANSITIONS`) says it all; the web UI, the dispatcher, the
completion sync and any API change a case's status only through this module::

    new ──> assigned ──> scheduled ──> contacted ──> resolved ──> closed
     └──────────┴────────────┴─────────────┴──────────┴─────────────┘
               any open case may also be resolved or closed directly
    resolved, closed ──reopen──> assigned (it has an owner) or new

Two ways in:

* :func:`transition` is an explicit request ("resolve this case"): a move the
  table does not allow raises :class:`InvalidTransition`, which names the
  case, both statuses and what is allowed.
* :func:`advance` is for events that imply progress ("the callback was pushed
  to the CRM", "the CRM says the call happened"): the case moves forward only
  if it is not that far yet, so a late CRM sync never drags a resolved case
  back to ``contacted``.

Either way the move sets its timestamps and writes an
:class:`~hub.storage.models.AuditEvent` in the caller's session (the same
transaction as the change).  The status names themselves live in
:mod:`hub.sdk.schema`, because plugins see them on
:class:`~hub.sdk.schema.CaseView` and the storage layer checks them.

A customer has at most one open case, and the database says so: a partial
unique index on ``case`` (customer_id) over the open statuses (migration
0010).  Opening cases goes through :func:`open_or_join`, which lets that index
arbitrate between concurrent ingests (the loser joins the winner's case);
reopening a case while its customer has another open one is refused
(:class:`OpenCaseExists`, answered like any refused move).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, object_session

from hub.sdk.schema import CASE_STATUSES, OPEN_CASE_STATUSES
from hub.storage import models as m

__all__ = [
    "CASE_STATUSES", "CLOSED_CASE_STATUSES", "OPEN_CASE_STATUSES", "TRANSITIONS", "InvalidTransition",
    "OpenCaseExists", "OpenCaseRow", "advance", "allowed", "is_open", "open_or_join", "reopen", "transition",
]

CLOSED_CASE_STATUSES = tuple(s for s in CASE_STATUSES if s not in OPEN_CASE_STATUSES)

#: status -> the statuses it may move to.  Forward moves may skip steps (a
#: callback can happen before anyone assigned the case); moves back happen
#: only by reopening a resolved or closed case.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("assigned", "scheduled", "contacted", "resolved", "closed"),
    "assigned": ("scheduled", "contacted", "resolved", "closed"),
    "scheduled": ("contacted", "resolved", "closed"),
    "contacted": ("resolved", "closed"),
    "resolved": ("closed", "assigned", "new"),
    "closed": ("assigned", "new"),
}
if set(TRANSITIONS) != set(CASE_STATUSES):  # a new status without rules would be a dead end
    raise RuntimeError("every case status needs a row in TRANSITIONS")

#: Position in the forward path, for :func:`advance`.
_RANK = {status: i for i, status in enumerate(CASE_STATUSES)}


class InvalidTransition(ValueError):
    """A status change the lifecycle does not allow (the API answers 409)."""

    def __init__(self, case_id: int | None, current: str, to: str):
        self.case_id, self.current, self.to = case_id, current, to
        self.allowed = allowed(current)
        options = ", ".join(self.allowed) or "none"
        super().__init__(f"case {case_id}: cannot go from {current} to {to}; allowed: {options}")


class OpenCaseExists(InvalidTransition):
    """A reopen while the customer has another open case (one open case per customer)."""

    def __init__(self, case_id: int | None, current: str, to: str, open_case_id: int):
        super().__init__(case_id, current, to)
        self.open_case_id = open_case_id
        self.args = (f"case {case_id}: cannot go from {current} to {to}; its customer already has open case "
                     f"{open_case_id} (a customer has one open case at a time: work on that one)",)


def allowed(status: str) -> tuple[str, ...]:
    """The statuses a case in ``status`` may move to."""
    return TRANSITIONS.get(status, ())


def is_open(case: m.Case) -> bool:
    return case.status in OPEN_CASE_STATUSES


def transition(case: m.Case, to: str, *, actor: str, now: dt.datetime, action: str | None = None,
               **detail: Any) -> m.AuditEvent:
    """Move ``case`` to ``to`` or raise :class:`InvalidTransition`.

    Sets ``updated_at`` and the timestamps the new status implies, and adds an
    audit event (``action``, default ``case.<to>``; ``case.reopened`` for a
    move back) whose detail records ``from`` and ``to`` besides ``detail``.
    """
    current = case.status
    if to not in allowed(current):
        raise InvalidTransition(case.id, current, to)
    reopening = current in CLOSED_CASE_STATUSES and to in OPEN_CASE_STATUSES
    if reopening and (other := _other_open_case(case)) is not None:
        # The index would refuse it at commit; say why, as a refused move (409), instead.
        raise OpenCaseExists(case.id, current, to, other)
    case.status, case.updated_at = to, now
    if to == "contacted":
        case.contacted_at = case.contacted_at or now
    elif to in CLOSED_CASE_STATUSES:
        case.closed_at = case.closed_at or now
    elif reopening:
        case.closed_at = None
    default_action = "case.reopened" if reopening else f"case.{to}"
    return _audit(case, action or default_action, actor, now, {"from": current, "to": to, **detail})


def advance(case: m.Case, to: str, *, actor: str, now: dt.datetime, action: str | None = None,
            **detail: Any) -> bool:
    """Move ``case`` forward to ``to`` unless it is already there or further.

    Returns whether the status moved.  Without ``action``, only a move is
    audited (as ``case.<to>``); with one, the event is written either way (a
    UI click is recorded even when the case already had that status).
    """
    if _RANK[case.status] < _RANK[to]:
        transition(case, to, actor=actor, now=now, action=action, **detail)
        return True
    if action:
        _audit(case, action, actor, now, detail)
        case.updated_at = now
    return False


def reopen(case: m.Case, *, actor: str, now: dt.datetime, **detail: Any) -> m.AuditEvent:
    """Back to work: ``assigned`` if someone owns the case, else ``new``."""
    return transition(case, "assigned" if case.owner else "new", actor=actor, now=now, **detail)


def _other_open_case(case: m.Case) -> int | None:
    session = object_session(case)
    if case.customer_id is None or session is None:
        return None
    return session.scalar(select(m.Case.id).where(m.Case.customer_id == case.customer_id, m.Case.id != case.id,
                                                  m.Case.status.in_(OPEN_CASE_STATUSES)).limit(1))


# -- opening cases: the index arbitrates -----------------------------------------------
@dataclass(frozen=True, slots=True)
class OpenCaseRow:
    """A customer's open case after :func:`open_or_join`: the row this call inserted
    (``opened``), or the one another transaction opened first, with its risk and priority."""

    id: int
    opened: bool
    risk: int
    priority: str


#: Rounds of "insert, else read the winner" before giving up (a winner that is
#: closed again between our insert and our read makes one more round).
OPEN_ROUNDS = 3


def open_or_join(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[int, OpenCaseRow]:
    """Open a case per row (``case`` column values, one row per customer, status
    ``new``) unless the customer has an open case already; returns customer id ->
    the customer's open case.

    The partial unique index is the arbiter: ``INSERT ... ON CONFLICT DO
    NOTHING`` on it (PostgreSQL waits for a concurrent transaction holding the
    same customer's open case and, once that committed, skips our row; read
    committed then lets the next statement see the winner's case).  Rows go in
    customer order, so two batches sharing several customers wait for each
    other in one order and never deadlock.  No savepoint and no error: the
    rest of the caller's transaction stands.  On dialects without ``ON
    CONFLICT`` a plain insert raises ``IntegrityError`` (the pipeline retries).
    """
    CASE, C = m.Case.__table__, m.Case
    by_customer = {r["customer_id"]: r for r in rows}
    pending = sorted(rows, key=lambda r: (r["customer_id"] is None, r["customer_id"] or 0))
    out: dict[int, OpenCaseRow] = {}
    for _ in range(OPEN_ROUNDS):
        stmt = _insert_unless_open(session).returning(CASE.c.id, CASE.c.customer_id)
        for case_id, customer_id in session.execute(stmt, pending):
            row = by_customer[customer_id]
            out[customer_id] = OpenCaseRow(case_id, True, row["risk"], row["priority"])
        lost = [r["customer_id"] for r in pending if r["customer_id"] not in out]
        if not lost:
            return out
        for case_id, customer_id, risk, priority in session.execute(select(
                C.id, C.customer_id, C.risk, C.priority).where(
                C.customer_id.in_(lost), C.status.in_(OPEN_CASE_STATUSES))):
            out[customer_id] = OpenCaseRow(case_id, False, risk, priority)
        pending = [by_customer[cid] for cid in lost if cid not in out]
        if not pending:
            return out
    raise RuntimeError(f"customers {[r['customer_id'] for r in pending]}: no open case could be opened or found")


def _insert_unless_open(session: Session):
    CASE = m.Case.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        return insert(CASE)
    # The predicate as literal SQL, the index's own: PostgreSQL infers the
    # arbiter index by proving it, which bound parameters would defeat.
    return dialect_insert(CASE).on_conflict_do_nothing(index_elements=[CASE.c.customer_id],
                                                       index_where=text(m.OPEN_CASE_PREDICATE))


def _audit(case: m.Case, action: str, actor: str, now: dt.datetime, detail: dict[str, Any]) -> m.AuditEvent:
    event = m.AuditEvent(at=now, actor=actor, action=action, case_id=case.id, detail=detail)
    session = object_session(case)
    if session is None:
        raise RuntimeError(f"case {case.id} is not in a session; load it before changing its status")
    session.add(event)
    return event
