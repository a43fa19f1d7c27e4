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
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import object_session

from hub.sdk.schema import CASE_STATUSES, OPEN_CASE_STATUSES
from hub.storage import models as m

__all__ = [
    "CASE_STATUSES", "CLOSED_CASE_STATUSES", "OPEN_CASE_STATUSES", "TRANSITIONS", "InvalidTransition",
    "advance", "allowed", "is_open", "reopen", "transition",
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


def _audit(case: m.Case, action: str, actor: str, now: dt.datetime, detail: dict[str, Any]) -> m.AuditEvent:
    event = m.AuditEvent(at=now, actor=actor, action=action, case_id=case.id, detail=detail)
    session = object_session(case)
    if session is None:
        raise RuntimeError(f"case {case.id} is not in a session; load it before changing its status")
    session.add(event)
    return event
