"""Promoter follow-up: a customer who scores 9-10 is asked for a review or a
referral (``promoters.review_url``), ``promoters.delay_hours`` after the answer,
through a notifier and under the same contact rules as every invitation
(a promoter who just got a re-survey is not asked again within the cooldown;
that request is recorded as skipped with reason ``cooldown``)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.engine.loop import invitations
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

LOOKBACK = dt.timedelta(days=14)


def review_key(item_id: int) -> str:
    return f"review-item-{item_id}"


def plan_review_requests(hub: Hub, now: dt.datetime) -> int:
    """Queue a review request per promoter answer not yet asked; returns how many."""
    cfg = hub.config.get("promoters", {})
    notifier = cfg.get("notifier") or hub.config.get("resurvey", {}).get("notifier")
    if not cfg.get("enabled") or not cfg.get("review_url") or not notifier:
        return 0
    delay = dt.timedelta(hours=float(cfg.get("delay_hours", 24)))
    F, I = m.FeedbackItem, m.Invitation  # noqa: E741
    asked = select(I.id).where(I.customer_id == F.customer_id, I.kind == "review",
                               I.created_at >= now - LOOKBACK - delay).exists()
    promoters = select(F.id, F.customer_id, F.source, F.received_at).where(
        F.category == "promoter", F.channel == "survey", F.customer_id.is_not(None),
        F.received_at >= now - LOOKBACK, ~asked).order_by(F.id).limit(5000)
    made = 0
    with hub.db.session() as s:
        seen: set[int] = set()
        for item_id, customer_id, source, received_at in s.execute(promoters).all():
            if customer_id in seen:
                continue  # one request per customer, however many 10s they gave
            seen.add(customer_id)
            _, created = invitations.queue(s, customer_id=customer_id, kind="review", key=review_key(item_id),
                                           due_at=received_at + delay, now=now, source=source, notifier=notifier,
                                           trigger="promoter", actor="dispatcher")
            made += created
    return made


def promoter_report(session, since: dt.datetime | None = None) -> dict[str, int]:
    """Review / referral requests: asked, sent, skipped, answered (followed the link and answered)."""
    I = m.Invitation  # noqa: E741
    q = select(I.status, I.answered_at).where(I.kind == "review")
    if since is not None:
        q = q.where(I.created_at >= since)
    rows = session.execute(q).all()
    return {"requested": len(rows), "sent": sum(1 for st, _ in rows if st == "sent"),
            "skipped": sum(1 for st, _ in rows if st == "skipped"),
            "referrals": sum(1 for _, answered in rows if answered is not None)}
