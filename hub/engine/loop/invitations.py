"""The invitation outbox: survey invitations, re-surveys and review requests.

Like follow-ups (:mod:`hub.engine.dispatch`), an invitation is a row first
(``invitation``, one per idempotency key, so a second request for the same
invitation finds the first), and a message only when the dispatcher gets to
it: the row is *claimed* (``sending``; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) in a short transaction, the contact rules are checked at that
moment (the cooldown counts what was really sent), the notifier sends it, and
the outcome is written back: ``sent``; ``failed`` and retried with backoff; or
``dead`` when the notifier says retrying cannot help.  Rules that say no turn
the row ``skipped`` with its ``reason``; quiet hours only postpone it.  A row
left ``sending`` by a crash is claimed again after
``dispatch.claim_timeout_seconds`` (the notifier reuses the key as Message-ID).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.engine import audit
from hub.engine.claims import drain
from hub.engine.loop import contact_rules
from hub.engine.loop.notifiers import notifiers_of
from hub.sdk.notifiers import DeliveryError, Message
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
ACTOR = "dispatcher"


@dataclass
class InvitationReport:
    sent: int = 0
    skipped: int = 0
    retried: int = 0
    dead: int = 0
    postponed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def queue(session: Session, *, customer_id: int, kind: str, key: str, due_at: dt.datetime, now: dt.datetime,
          source: str | None, notifier: str | None, case_id: int | None = None, trigger: str = "api",
          actor: str = "system") -> tuple[m.Invitation, bool]:
    """(row, created): the invitation with ``key``, made now unless it exists."""
    existing = session.scalars(select(m.Invitation).where(m.Invitation.idempotency_key == key)).first()
    if existing is not None:
        return existing, False
    row = m.Invitation(customer_id=customer_id, case_id=case_id, kind=kind, source=source, notifier=notifier,
                       idempotency_key=key, trigger=trigger, due_at=due_at, status="pending", attempts=0,
                       next_attempt_at=due_at, created_at=now)
    try:
        with session.begin_nested():  # a concurrent request made the same key: keep theirs
            session.add(row)
            session.flush()
    except IntegrityError:
        return session.scalars(select(m.Invitation).where(m.Invitation.idempotency_key == key)).one(), False
    audit.record(session, actor=actor, action="invitation.queued", at=now, case_id=case_id, invitation_id=row.id,
                 kind=kind, trigger=trigger, source=source)
    return row, True


def skip(session: Session, row: m.Invitation, reason: str, now: dt.datetime, actor: str = ACTOR) -> None:
    """Record that ``row`` will not be sent, and why."""
    row.status, row.reason, row.claimed_at = "skipped", reason, None
    audit.record(session, actor=actor, action="invitation.skipped", at=now, case_id=row.case_id,
                 invitation_id=row.id, kind=row.kind, reason=reason)


def send_due(hub: Hub, *, max_rounds: int = 100) -> InvitationReport:
    """Send every invitation that is due, under the contact rules; returns counts."""
    return drain(hub, m.Invitation, _send_one, InvitationReport(), max_rounds=max_rounds)


# -- one invitation ------------------------------------------------------------------
def address_of(session: Session, customer_id: int, kind: str) -> str | None:
    I = m.Identity  # noqa: E741
    return session.scalars(select(I.value).where(I.customer_id == customer_id, I.kind == kind)
                           .order_by(I.confidence.desc(), I.id).limit(1)).first()


def language_of(session: Session, customer_id: int) -> str | None:
    """The language of the customer's latest feedback, if any was detected."""
    F = m.FeedbackItem
    return session.scalars(select(F.language).where(F.customer_id == customer_id, F.language.is_not(None))
                           .order_by(F.occurred_at.desc()).limit(1)).first()


def _link(hub: Hub, row: m.Invitation, address: str | None) -> str | None:
    """The survey link (with the case id for a re-survey) or the review page."""
    if row.kind == "review":
        return hub.config.get("promoters", {}).get("review_url")
    if not row.source or row.source not in hub.registry.sources:
        return None
    connector = hub.registry.connector(row.source)
    # A source that offers re-surveys implements resurvey_url(case_id, email, **hidden).
    make = getattr(connector, "resurvey_url", None)
    if make is None:
        return None
    return make(row.case_id if row.case_id is not None else "", address, invitation=row.id)


def _refusal(hub: Hub, s: Session, row: m.Invitation, now: dt.datetime) -> tuple[str | None, Message | None]:
    """(reason not to send, or the message to send)."""
    if not row.notifier or row.notifier not in notifiers_of(hub).instances:
        return "no_notifier", None
    notifier = notifiers_of(hub).get(row.notifier)
    address = address_of(s, row.customer_id, notifier.channel)
    reason = contact_rules.suppression_reason(s, row.customer_id, address)
    if reason:
        return reason, None
    if address is None:
        return "no_address", None
    if row.case_id is not None and row.kind == "resurvey":
        case = s.get(m.Case, row.case_id)
        if case is not None and (case.resurvey_score is not None or case.resurvey_nps is not None):
            return "already_answered", None
    if contact_rules.in_cooldown(s, contact_rules.Rules.of(hub.config), row, now):
        return contact_rules.COOLDOWN, None
    link = _link(hub, row, address)
    if not link:
        return "no_link", None
    customer = s.get(m.Customer, row.customer_id)
    loop = hub.config.get("loop", {})
    default_language = notifier.config.get("language") or "nl"
    return None, Message(kind=row.kind, to=address, language=language_of(s, row.customer_id) or default_language,
                         company=loop.get("company_name", ""), link=link, key=row.idempotency_key,
                         unsubscribe_url=contact_rules.unsubscribe_url(hub, row.customer_id),
                         name=customer.name if customer else None, case_id=row.case_id)


def _send_one(hub: Hub, invitation_id: int, now: dt.datetime, report: InvitationReport) -> None:
    rules = contact_rules.Rules.of(hub.config)
    with hub.db.session() as s:
        row = s.get(m.Invitation, invitation_id)
        quiet_end = rules.quiet_until(now)
        if quiet_end is not None:  # not now: later, and the attempt is not spent
            row.status, row.claimed_at, row.attempts = "pending", None, row.attempts - 1
            row.next_attempt_at = quiet_end
            report.postponed += 1
            return
        reason, message = _refusal(hub, s, row, now)
        if reason:
            skip(s, row, reason, now)
            report.skipped += 1
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            return
        notifier_name, attempts = row.notifier, row.attempts
    # The message goes out outside any transaction: a slow mail server holds no lock.
    notifier = notifiers_of(hub).get(notifier_name)  # type: ignore[arg-type]
    try:
        delivery_id, failure = notifier.send(message), None  # type: ignore[arg-type]
    except DeliveryError as exc:
        delivery_id, failure = None, exc
    except Exception as exc:  # noqa: BLE001 - a notifier's bug: kept and retried, never lost
        log.exception("notifier %s failed", notifier_name)
        delivery_id, failure = None, DeliveryError(f"{type(exc).__name__}: {exc}", retriable=True)
    with hub.db.session() as s:
        row = s.get(m.Invitation, invitation_id)
        row.claimed_at = None
        if failure is None:
            row.status, row.sent_at, row.external_id, row.last_error = "sent", now, (delivery_id or "")[:200], None
            audit.record(s, actor=ACTOR, action="invitation.sent", at=now, case_id=row.case_id,
                         invitation_id=row.id, kind=row.kind, notifier=notifier_name)
            report.sent += 1
        elif failure.retriable:
            row.status, row.last_error = "failed", str(failure)
            row.next_attempt_at = now + max(_backoff(hub, attempts),
                                            dt.timedelta(seconds=float(failure.retry_after or 0)))
            report.retried += 1
        else:
            row.status, row.last_error = "dead", str(failure)
            audit.record(s, actor=ACTOR, action="invitation.dead", at=now, case_id=row.case_id,
                         invitation_id=row.id, kind=row.kind, notifier=notifier_name)
            report.dead += 1
            report.errors.append(f"invitation {row.id}: {failure}")


def _backoff(hub: Hub, attempts: int) -> dt.timedelta:
    cfg = hub.config.get("dispatch", {})
    base, cap = float(cfg.get("backoff_base_seconds", 30)), float(cfg.get("backoff_max_seconds", 3600))
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# -- answers ------------------------------------------------------------------------
def mark_answered(hub: Hub, now: dt.datetime) -> int:
    """Sent invitations answered since: a re-survey by its case's score, others by any
    answer from the customer to the invitation's source within ``loop.answer_window_days``."""
    window = dt.timedelta(days=float(hub.config.get("loop", {}).get("answer_window_days", 30)))
    I, F, C = m.Invitation, m.FeedbackItem, m.Case  # noqa: E741
    # (customer_id, occurred_at) is indexed: an answer is looked up per invitation by its customer.
    answers = select(F.occurred_at).where(
        F.customer_id == I.customer_id, F.source == I.source, F.occurred_at >= I.sent_at,
        or_(I.case_id.is_(None), F.case_id == I.case_id))
    first_answer = select(func.min(F.occurred_at)).where(*answers.whereclause.clauses).scalar_subquery()
    answered_case = select(C.id).where(C.id == I.case_id,
                                      or_(C.resurvey_score.is_not(None), C.resurvey_nps.is_not(None))).exists()
    with hub.db.session() as s:
        # Only rows that have an answer are written: the others are not touched on every run.
        result = s.execute(update(I).where(
            I.status == "sent", I.answered_at.is_(None), I.sent_at >= now - window,
            or_(I.kind != "resurvey", answered_case), answers.exists()).values(answered_at=first_answer)
            .execution_options(synchronize_session=False))
        return result.rowcount or 0


# -- proactive invitations (POST /api/v1/invitations, feedback-hub invite) ------------------
def find_or_add_customer(session: Session, hub: Hub, ref, now: dt.datetime, evidence: str) -> tuple[int, bool]:
    """(customer id, created): the customer one of ``ref``'s identities belongs to, else a new one."""
    kinds = hub.registry.identity_kinds
    pairs = list(dict.fromkeys((k, kinds[k].clean(v) if k in kinds else str(v).strip())
                               for k, v in ref.identities()))
    for kind, value in pairs:
        found = session.scalars(select(m.Identity.customer_id).where(m.Identity.kind == kind,
                                                                     m.Identity.value == value)).first()
        if found is not None:
            return found, False
    customer = m.Customer(name=ref.name, attributes={}, created_at=now)
    session.add(customer)
    session.flush()
    for kind, value in pairs:
        session.add(m.Identity(customer_id=customer.id, kind=kind, value=value, confidence=1.0, evidence=evidence,
                               created_at=now))
    session.flush()
    return customer.id, True


def invite(session: Session, hub: Hub, refs: list, *, source: str, trigger: str, now: dt.datetime,
           notifier: str | None = None, actor: str = "api", due_at: dt.datetime | None = None
           ) -> list[tuple[m.Invitation, bool]]:
    """Queue a survey invitation for each customer (found or added by identity); one per
    customer, source, trigger and day, so a repeated request invites nobody twice."""
    notifier = notifier or hub.config.get("resurvey", {}).get("notifier")
    out = []
    for ref in refs:
        customer_id, _ = find_or_add_customer(session, hub, ref, now, f"invitation {trigger}")
        key = f"survey-{source}-{customer_id}-{trigger}-{now.date().isoformat()}"
        out.append(queue(session, customer_id=customer_id, kind="survey", key=key, due_at=due_at or now, now=now,
                         source=source, notifier=notifier, trigger=trigger, actor=actor))
    return out


def invitation_stats(session: Session, since: dt.datetime | None = None) -> list[dict]:
    """Per source and kind: queued, sent, answered, answer rate, skipped (with reasons)."""
    I = m.Invitation  # noqa: E741
    q = select(I.source, I.kind, I.status, I.reason, I.answered_at.is_not(None))
    if since is not None:
        q = q.where(I.created_at >= since)
    groups: dict[tuple, dict] = {}
    for source, kind, status, reason, answered in session.execute(q):
        g = groups.setdefault((source, kind), {"source": source, "kind": kind, "queued": 0, "sent": 0, "answered": 0,
                                               "skipped": 0, "skip_reasons": {}})
        g["queued"] += 1
        g["sent"] += status == "sent"
        g["answered"] += bool(answered)
        if status == "skipped":
            g["skipped"] += 1
            g["skip_reasons"][reason or "unknown"] = g["skip_reasons"].get(reason or "unknown", 0) + 1
    for g in groups.values():
        g["answer_rate"] = round(g["answered"] / g["sent"], 4) if g["sent"] else None
    return sorted(groups.values(), key=lambda g: (g["source"] or "", g["kind"]))
