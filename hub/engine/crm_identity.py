"""Identity from the CRM: look customers up in the follow-up sink by e-mail or
phone (sinks whose ``looks_up_contacts()`` says yes) and link what the contact
holds: its id (rule ``crm_lookup``) and its social handles (rule ``crm_handle``).

Run by the scheduler, never inside an ingest: a CRM call per new customer
would make imports as slow as the CRM.  Each customer is asked once
(``attributes["crm_lookup_at"]``); an outage leaves the rest for the next run.
The same thresholds apply as at ingest: at or above ``identity.auto_link`` a new
identity joins the customer, from ``identity.suggest`` a suggestion is queued,
and an identity another customer holds is always a suggestion.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.engine.identity_rules import Rules, match_key
from hub.engine.suggestions import suggest
from hub.sdk.connectors import ContactMatch
from hub.sdk.http import RetriableError
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
BATCH = 50
LOOKED_UP = "crm_lookup_at"


def _due(session: Session, limit: int) -> list[m.Customer]:
    """Customers with an e-mail or phone, no CRM id, not asked before (newest first)."""
    I, C = m.Identity, m.Customer  # noqa: E741
    q = (select(C).where(C.merged_into_id.is_(None),
                         exists(select(I.id).where(I.customer_id == C.id, I.kind.in_(("email", "phone")))),
                         ~exists(select(I.id).where(I.customer_id == C.id, I.kind == "crm_id")))
         .order_by(C.id.desc()).limit(limit * 4))
    return [c for c in session.scalars(q) if LOOKED_UP not in (c.attributes or {})][:limit]


def lookup_customers(hub: Hub, limit: int = BATCH) -> int:
    """Ask the follow-up sink about up to ``limit`` customers; returns how many it knew."""
    if not (hub.config.get("identity") or {}).get("crm_lookup", True):
        return 0
    sink = hub.registry.sink(hub.registry.followup_sink)
    if not sink.looks_up_contacts():
        return 0
    rules = Rules.from_config(hub.config)
    found = 0
    with hub.db.session() as session:
        now = hub.clock.utcnow()
        for customer in _due(session, limit):
            contacts = {k: v for k, v in session.execute(select(m.Identity.kind, m.Identity.value).where(
                m.Identity.customer_id == customer.id, m.Identity.kind.in_(("email", "phone"))).order_by(
                m.Identity.id.desc()))}
            try:
                match = sink.lookup_contact(email=contacts.get("email"), phone=contacts.get("phone"))
            except RetriableError as exc:  # an outage: the others wait for the next run
                log.info("CRM look-up in %s postponed: %s", hub.registry.followup_sink, exc)
                break
            customer.attributes = {**(customer.attributes or {}), LOOKED_UP: now.isoformat()}
            if match is not None:
                found += 1
                _link(session, hub, rules, customer, match, "e-mail" if contacts.get("email") else "phone", now)
        if found:
            audit.record(session, actor="system", action="identity.crm_lookup", at=now,
                         sink=hub.registry.followup_sink, found=found)
    return found


def _link(session: Session, hub: Hub, rules: Rules, customer: m.Customer, match: ContactMatch, by: str,
          now) -> None:
    kinds = hub.registry.identity_kinds
    if not customer.name and match.name:
        customer.name = match.name
    wanted = [("crm_id", match.id, "crm_lookup", f"CRM contact {match.id} has this customer's {by}")]
    for kind, value in match.handles:
        clean = kinds[kind].clean(value) if kind in kinds else str(value).strip()
        if clean:
            wanted.append((kind, clean, "crm_handle", f"CRM contact {match.id} holds {kind} {clean}"))
    for kind, value, rule, evidence in wanted:
        conf = rules.weight(rule)
        holder = session.scalar(select(m.Identity.customer_id).where(m.Identity.kind == kind,
                                                                     m.Identity.value == value))
        if holder == customer.id:
            continue
        if holder is not None:
            if conf >= rules.suggest:  # two existing customers: ask, never merge silently
                suggest(session, customer_id=customer.id, other_customer_id=holder, kind=kind, value=value,
                        confidence=conf, rule=rule, evidence=evidence, now=now)
        elif conf >= rules.auto_link:
            session.add(m.Identity(customer_id=customer.id, kind=kind, value=value, confidence=conf,
                                   evidence=evidence, created_at=now, match_key=match_key(kind, value)))
            session.flush()
        elif conf >= rules.suggest:
            suggest(session, customer_id=customer.id, other_customer_id=None, kind=kind, value=value,
                    confidence=conf, rule=rule, evidence=evidence, now=now)
