"""SLA alerts: a breached case's team lead hears of it through a notifier.

When :func:`hub.engine.sla.sweep` escalates a breached case (once per case),
it calls :func:`queue` in the same transaction, so the escalation and its
alert are written together or not at all.  The alert is a row first and a
message only when :func:`send_due` gets to it, like an invitation
(:mod:`hub.engine.loop.invitations`): claimed (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), sent outside any transaction, then ``sent``; ``failed`` and tried
again with backoff (an SMTP outage delays it, never loses it); or ``dead``
when the notifier says retrying cannot help.  A row left ``sending`` by a
crash is claimed again after ``dispatch.claim_timeout_seconds``; the
notifier reuses the alert's key as its Message-ID.

It is staff mail, not a customer survey: the contact rules (cooldown,
opt-out, quiet hours) do not apply, there is no unsubscribe link, and the
message holds only the case id, its link, the team, how late it is and its
risk score - no customer text, name or address.

Configuration: ``[sla] notifier`` names the notifier instance (none: no
alerts), ``[teams.<team>] lead_email`` the address; a team without one gets
no alert (audited as skipped, reason ``no_address``).

Storage: one ``staff_alert`` row (:class:`hub.storage.models.StaffAlert`) per
case and breach, unique by its ``idempotency_key`` (:func:`key_of`), deleted
with its case.  ``status`` and ``attempts``, ``next_attempt_at``,
``claimed_at``, ``sent_at`` and ``last_error`` are the outbox's state;
``notifier`` and ``address`` say where it goes; ``facts`` holds what the
message says (team, hours late, risk) and, once sent, the notifier's message id.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.engine.claims import drain
from hub.engine.loop.notifiers import notifiers_of
from hub.engine.teams import Team
from hub.sdk.notifiers import DeliveryError, Message
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
ACTOR = "scheduler"
KIND = "sla_alert"
Row = m.StaffAlert


@dataclass
class AlertReport:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def key_of(case_id: int) -> str:
    """The alert's idempotency key (and Message-ID): one per case and breach."""
    return f"sla-alert-case-{case_id}"


def rows(session: Session, case_id: int | None = None) -> list[m.StaffAlert]:
    """The alert rows (of one case), oldest first."""
    q = select(Row)
    if case_id is not None:
        q = q.where(Row.case_id == case_id)
    return list(session.scalars(q.order_by(Row.id)))


def queue(hub: Hub, session: Session, case: m.Case, team: Team, late_by_hours: float,
          now: dt.datetime) -> m.StaffAlert | None:
    """The alert of ``case``'s breach, queued in ``session`` unless alerts are off or it exists."""
    notifier = (hub.config.get("sla") or {}).get("notifier")
    if not notifier:
        return None
    existing = rows(session, case.id)
    if existing:
        return existing[0]
    address = ((hub.config.get("teams") or {}).get(team.name) or {}).get("lead_email")
    if not address:
        audit.record(session, actor=ACTOR, action="sla_alert.skipped", at=now, case_id=case.id,
                     team=team.name, reason="no_address")
        return None
    row = Row(case_id=case.id, idempotency_key=key_of(case.id), notifier=notifier, address=address,
              status="pending", next_attempt_at=now, attempts=0, created_at=now,
              facts={"team": team.name, "late_by_hours": round(late_by_hours, 1), "risk": int(case.risk or 0)})
    session.add(row)
    session.flush()
    audit.record(session, actor=ACTOR, action="sla_alert.queued", at=now, case_id=case.id, team=team.name,
                 notifier=notifier)
    return row


# -- sending ------------------------------------------------------------------------
def send_due(hub: Hub, *, max_rounds: int = 20) -> AlertReport:
    """Send every alert that is due; returns counts."""
    return drain(hub, Row, _send_one, AlertReport(), max_rounds=max_rounds)


def case_id_of(row: m.StaffAlert) -> int:
    return row.case_id


def message_of(hub: Hub, row: m.StaffAlert, language: str) -> Message:
    """The alert's message: facts only, the notifier's templates word it."""
    case_id, facts = case_id_of(row), row.facts
    return Message(kind=KIND, to=row.address or "", language=language,
                   company=(hub.config.get("loop") or {}).get("company_name", ""), link=hub.case_url(case_id),
                   unsubscribe_url="", key=key_of(case_id), case_id=case_id,
                   details={"team": str(facts["team"]), "late_by_hours": f"{float(facts['late_by_hours']):.1f}",
                            "risk": str(facts["risk"])})


def _send_one(hub: Hub, row_id: int, now: dt.datetime, report: AlertReport) -> None:
    with hub.db.session() as s:
        row = s.get(Row, row_id)
        name, attempts = row.notifier, row.attempts
        notifiers = notifiers_of(hub)
        if name not in notifiers.instances:  # the configuration changed since it was queued
            failure: DeliveryError | None = DeliveryError(f"notifier {name!r} is not configured", retriable=False)
            message = None
        else:
            notifier = notifiers.get(name)
            language = (hub.config.get("sla") or {}).get("language") or notifier.config.get("language") or "nl"
            message, failure = message_of(hub, row, language), None
    delivery_id = None
    if failure is None:
        # Sent outside any transaction: a slow mail server holds no lock.
        try:
            delivery_id = notifier.send(message)
        except DeliveryError as exc:
            failure = exc
        except Exception as exc:  # noqa: BLE001 - a notifier's bug: kept and retried, never lost
            log.exception("notifier %s failed on an SLA alert", name)
            failure = DeliveryError(f"{type(exc).__name__}: {exc}", retriable=True)
    _settle(hub, row_id, now, name, attempts, delivery_id, failure, report)


def _settle(hub: Hub, row_id: int, now: dt.datetime, name: str | None, attempts: int, delivery_id: str | None,
            failure: DeliveryError | None, report: AlertReport) -> None:
    with hub.db.session() as s:
        row = s.get(Row, row_id)
        case_id = case_id_of(row)
        row.claimed_at = None
        if failure is None:
            row.status, row.sent_at, row.last_error = "sent", now, None
            row.facts = {**row.facts, "message_id": (delivery_id or "")[:200]}
            audit.record(s, actor=ACTOR, action="sla_alert.sent", at=now, case_id=case_id, notifier=name)
            report.sent += 1
        elif failure.retriable:
            row.status, row.last_error = "failed", str(failure)
            row.next_attempt_at = now + max(_backoff(hub, attempts), dt.timedelta(seconds=float(failure.retry_after or 0)))
            report.retried += 1
        else:
            row.status, row.last_error = "dead", str(failure)
            audit.record(s, actor=ACTOR, action="sla_alert.dead", at=now, case_id=case_id, notifier=name)
            report.dead += 1
            report.errors.append(f"SLA alert of case {case_id}: {failure}")


def _backoff(hub: Hub, attempts: int) -> dt.timedelta:
    cfg = hub.config.get("dispatch", {})
    base, cap = float(cfg.get("backoff_base_seconds", 30)), float(cfg.get("backoff_max_seconds", 3600))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))
