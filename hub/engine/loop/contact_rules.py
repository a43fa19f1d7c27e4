"""Contact rules: whether the hub may invite a customer now, and if not, why.

* **cooldown** - at most one invitation per customer per
  ``contact_rules.survey_cooldown_days``, across all sources and kinds.  The
  survey invitation whose answer opened a case does not hold back that case's
  re-survey (the re-survey is the second half of the same conversation), but an
  earlier re-survey does;
* **opt-out** - the unsubscribe link in every message (a signed token, no
  login) puts the customer on the suppression list;
* **suppression list** - addresses or customers never to invite (bounces,
  complaints, staff), managed by admins;
* **quiet hours** - no invitation goes out between ``quiet_hours[0]`` and
  ``quiet_hours[1]`` local time (``planner.timezone``); it waits, it is not dropped.

Every invitation that is not sent keeps its reason (``invitation.reason``) and
an audit event says so.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.config import resolve_secret
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

OPTED_OUT, SUPPRESSED, COOLDOWN = "opted_out", "suppressed", "cooldown"
#: What an unsubscribe link records on the suppression list.
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True)
class Rules:
    cooldown: dt.timedelta
    quiet_hours: tuple[int, int]
    zone: ZoneInfo

    @classmethod
    def of(cls, config) -> Rules:
        rules = config.get("contact_rules", {})
        quiet = rules.get("quiet_hours") or [0, 0]
        return cls(dt.timedelta(days=float(rules.get("survey_cooldown_days", 30))), (int(quiet[0]), int(quiet[1])),
                   ZoneInfo(config.get("planner", {}).get("timezone", "UTC")))

    def quiet_until(self, now: dt.datetime) -> dt.datetime | None:
        """When the quiet hours around ``now`` end, or None if ``now`` is not in them."""
        start, end = self.quiet_hours
        if start == end:
            return None
        local = now.astimezone(self.zone)
        quiet = (start <= local.hour < end) if start < end else (local.hour >= start or local.hour < end)
        if not quiet:
            return None
        until = local.replace(hour=end % 24, minute=0, second=0, microsecond=0)
        if until <= local:
            until += dt.timedelta(days=1)
        return until.astimezone(dt.UTC)


def suppression_reason(session: Session, customer_id: int, address: str | None) -> str | None:
    """``opted_out`` or ``suppressed`` when the customer or the address is on the list."""
    conditions = [m.Suppression.customer_id == customer_id]
    if address:
        conditions.append(m.Suppression.address == address.strip().lower())
    row = session.scalars(select(m.Suppression.reason).where(or_(*conditions)).limit(1)).first()
    if row is None:
        return None
    return OPTED_OUT if row == UNSUBSCRIBED else SUPPRESSED


def in_cooldown(session: Session, rules: Rules, invitation: m.Invitation, now: dt.datetime) -> bool:
    """Another invitation went to the customer within the cooldown."""
    if rules.cooldown <= dt.timedelta(0):
        return False
    I = m.Invitation  # noqa: E741
    q = select(I.id).where(I.customer_id == invitation.customer_id, I.id != invitation.id,
                           I.status == "sent", I.sent_at > now - rules.cooldown)
    if invitation.kind == "resurvey" and invitation.case_id is not None:
        case = session.get(m.Case, invitation.case_id)
        if case is not None:  # the survey that opened this case is not a reason to keep quiet about it
            q = q.where(or_(I.kind != "survey", I.sent_at > case.opened_at))
    return session.scalars(q.limit(1)).first() is not None


def suppress(session: Session, *, now: dt.datetime, reason: str, customer_id: int | None = None,
             address: str | None = None) -> bool:
    """Put a customer and/or an address on the suppression list; False if already there."""
    address = address.strip().lower() if address else None
    S = m.Suppression
    q = select(S.id).where(S.customer_id == customer_id if customer_id else S.address == address)
    if session.scalars(q.limit(1)).first() is not None:
        return False
    session.add(S(customer_id=customer_id, address=address, reason=reason, created_at=now))
    return True


# -- the unsubscribe link ----------------------------------------------------------
def signing_key(hub: Hub) -> str:
    """The app's secret key (config ``secret_key`` or the install's generated one)."""
    if hub.config.get("secret_key"):
        return resolve_secret(hub.config["secret_key"], hub.config, "secret_key")
    path = Path(hub.instance_path) / "secret_key"
    if not path.exists():  # the app writes it at start; a bare engine run makes the same file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _serializer(hub: Hub) -> URLSafeSerializer:
    return URLSafeSerializer(signing_key(hub), salt="feedback-hub.unsubscribe")


def unsubscribe_token(hub: Hub, customer_id: int) -> str:
    """A token that names the customer; it never expires (old e-mails keep working)."""
    return _serializer(hub).dumps({"c": int(customer_id)})


def read_unsubscribe_token(hub: Hub, token: str) -> int | None:
    """The customer id in a valid token, else None (tampered, or from another install)."""
    try:
        data = _serializer(hub).loads(token)
    except BadSignature:
        return None
    cid = data.get("c") if isinstance(data, dict) else None
    return cid if isinstance(cid, int) and not isinstance(cid, bool) else None


def unsubscribe_url(hub: Hub, customer_id: int) -> str:
    return f"{hub.config.get('public_url', '').rstrip('/')}/unsubscribe/{unsubscribe_token(hub, customer_id)}"
