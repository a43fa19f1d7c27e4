"""Customer facts from the CRM: renewals and churn from deal or lifecycle data, and the
moments after which a customer is asked for feedback (a deal or ticket closed).

Every sink that exposes facts (``CrmSink.reads_customer_facts``) is read from its
cursor (kept in the sink's state store, so a restart resumes where it stopped).
A fact with a ``kind`` becomes the same ``customer_event`` row ``POST
/api/v1/events`` records (the outcome ledger counts it); a fact whose
``moment`` is listed in ``crm_facts.invite`` queues a survey invitation in the
invitation outbox, where the contact rules decide at sending time.  Each CRM
record is taken once: its ``record`` names the event (``customer_event.source``)
and the invitation's idempotency key, so reading the same deal again changes
nothing.  Facts about contacts the hub has no customer for are counted and
left alone (the hub learns of customers from their feedback, not from the CRM).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.engine.loop import invitations
from hub.engine.loop.events import record_event
from hub.sdk import RetriableError
from hub.sdk.connectors import CustomerFact
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
ACTOR = "crm_facts"
CURSOR_KEY = "customer_facts_cursor"
OUTCOME_KINDS = frozenset(m.CUSTOMER_EVENT_TYPES)


@dataclass
class FactReport:
    read: int = 0
    events: int = 0
    invitations: int = 0
    unknown_customers: int = 0
    errors: list[str] = field(default_factory=list)


def event_source(sink: str, fact: CustomerFact) -> str:
    return f"{sink}:{fact.record}"[:100]


def customers_of(session: Session, contact_ids: tuple[str, ...]) -> list[int]:
    """The hub's customers holding these CRM contact ids (``crm_id`` identities)."""
    if not contact_ids:
        return []
    rows = session.scalars(select(m.Identity.customer_id).where(
        m.Identity.kind == "crm_id", m.Identity.value.in_(list(contact_ids)))).all()
    return sorted(set(rows))


def _settings(hub: Hub) -> dict:
    return hub.config.get("crm_facts") or {}


def _invitation_target(hub: Hub) -> tuple[str | None, str | None]:
    cfg = _settings(hub)
    source = cfg.get("source") or hub.config.get("loop", {}).get("invitation_source")
    notifier = cfg.get("notifier") or hub.config.get("resurvey", {}).get("notifier")
    return source, notifier


def _apply(session: Session, hub: Hub, sink: str, fact: CustomerFact, now: dt.datetime, report: FactReport) -> None:
    customers = customers_of(session, fact.contact_ids)
    if not customers:
        report.unknown_customers += 1
        return
    source_name = event_source(sink, fact)
    invite_moments = set(_settings(hub).get("invite") or [])
    source, notifier = _invitation_target(hub)
    delay = dt.timedelta(hours=float(_settings(hub).get("invite_delay_hours", 0)))
    for customer_id in customers:
        if fact.kind in OUTCOME_KINDS and session.scalars(select(m.CustomerEvent.id).where(
                m.CustomerEvent.customer_id == customer_id, m.CustomerEvent.source == source_name)).first() is None:
            record_event(session, customer_id=customer_id, kind=fact.kind, occurred_at=fact.occurred_at,
                         source=source_name, now=now, actor=ACTOR)
            report.events += 1
        if fact.moment in invite_moments and not source:
            report.errors.append(f"{fact.moment} invites, but no survey source is set (crm_facts.source)")
        if fact.moment in invite_moments and source:
            # One invitation per CRM record and customer, whatever the number of reads.
            key = f"survey-{source}-{customer_id}-{fact.moment}-{sink}:{fact.record}"[:200]
            _, created = invitations.queue(session, customer_id=customer_id, kind="survey", key=key,
                                           due_at=now + delay, now=now, source=source, notifier=notifier,
                                           trigger=fact.moment[:50], actor=ACTOR)
            report.invitations += created


def sync_sink(hub: Hub, sink: str, report: FactReport) -> None:
    connector = hub.registry.sink(sink)
    if not connector.reads_customer_facts():
        return
    cursor = connector.state.get(CURSOR_KEY)
    facts, new_cursor = connector.customer_facts(cursor)
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        for fact in facts:
            _apply(s, hub, sink, fact, now, report)
    report.read += len(facts)
    # Only after the facts are stored: a crash in between reads them again (and records them once).
    if new_cursor != cursor:
        connector.state.set(CURSOR_KEY, new_cursor)


def sync_customer_facts(hub: Hub) -> FactReport:
    """Read every sink's customer facts since its cursor; one sink's outage leaves the others."""
    report = FactReport()
    for sink in list(hub.registry.sinks):
        try:
            sync_sink(hub, sink, report)
        except RetriableError as exc:
            report.errors.append(f"{sink}: {exc}")
            log.warning("customer facts of %s not read now: %s", sink, exc)
    return report
