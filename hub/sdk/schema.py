"""The common schema as plugins see it: frozen dataclasses, never ORM objects.

Plugins build :class:`FeedbackIn` (what a source says happened) and receive
:class:`FeedbackView`, :class:`CaseView` and :class:`FollowupView` (what the hub
stored).  Keeping plugins away from ORM rows means a plugin can never lazy-load,
mutate or hold a session open by accident, and the core may change its tables
without breaking plugins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

CHANNELS = ("survey", "social", "email", "phone", "chat", "other")
Channel = Literal["survey", "social", "email", "phone", "chat", "other"]
CATEGORIES = ("detractor", "passive", "promoter")
CASE_STATUSES = ("new", "assigned", "scheduled", "contacted", "resolved", "closed")
OPEN_CASE_STATUSES = ("new", "assigned", "scheduled", "contacted")
FOLLOWUP_STATUSES = ("pending", "sending", "sent", "failed", "dead", "done")
#: What :attr:`FeedbackIn.change` may say about an item the source sent before.
ITEM_CHANGES = ("edited", "removed")


def nps_category(nps: int | None) -> str | None:
    """NPS bucket: 0-6 detractor, 7-8 passive, 9-10 promoter."""
    if nps is None:
        return None
    if nps <= 6:
        return "detractor"
    return "passive" if nps <= 8 else "promoter"


#: Score scales beside NPS, with their ranges: CSAT 1-5 (satisfaction), CES 1-7 (customer
#: effort, 7 = very easy).  Each has the same three categories, so every scale feeds the same
#: escalation: a CSAT 1-2 or a CES 1-3 is a detractor like an NPS 0-6.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
#: scale -> (highest detractor score, highest passive score)
_SCALE_CUTS = {"nps": (6, 8), "csat": (2, 3), "ces": (3, 5)}


def score_category(score: int | None, scale: str | None = "nps") -> str | None:
    """The category of a score on its scale (None for no score or an unknown scale)."""
    if score is None or scale not in _SCALE_CUTS:
        return None
    detractor, passive = _SCALE_CUTS[scale]
    return "detractor" if score <= detractor else "passive" if score <= passive else "promoter"


def item_category(item: FeedbackIn) -> str | None:
    """An item's category: from ``nps`` when it has one, else from ``score`` on its ``scale``."""
    if item.nps is not None:
        return nps_category(item.nps)
    return score_category(item.score, item.scale)


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC; the hub stores every time in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IdentityKind:
    """A kind of identity by which the hub recognises a customer (``hub_register_identity_kinds``).

    The core declares ``email``, ``phone`` and ``crm_id``; a plugin declares the
    kinds its source knows people by (a social network's username or user id...).
    ``reachable`` says whether the hub can call or mail a customer back through
    it: follow-ups of customers with no reachable identity go to
    ``routing.unreachable``.  ``label`` names the kind for people (the
    network's name), ``display`` shows a value (``"@{value}"``), and ``normalize``
    makes equal identities compare equal (it gets the value with surrounding
    whitespace already stripped).  A stored identity of a kind nobody declares
    is kept, shown as is, and never makes a customer reachable.
    """

    name: str
    reachable: bool
    label: str
    display: str = "{value}"
    normalize: Callable[[str], str] | None = None

    def clean(self, value: str) -> str:
        """The value as stored and compared: stripped, then through ``normalize``."""
        value = str(value).strip()
        return self.normalize(value) if self.normalize and value else value

    def show(self, value: str) -> str:
        """The value as people read it, e.g. ``@janb``."""
        return self.display.format(value=value)

    @classmethod
    def undeclared(cls, name: str) -> IdentityKind:
        """Stand-in for a stored kind that no installed plugin declares."""
        return cls(name=name, reachable=False, label=name)


@dataclass(frozen=True)
class CustomerRef:
    """Who gave the feedback, as far as the source knows.

    Every field is optional; identity resolution links the item to an existing
    customer when any of its identities (email, phone, crm_id or a ``handles``
    pair) matches one the hub knows, after each value is normalized by its
    kind (:class:`IdentityKind`).
    """

    email: str | None = None
    name: str | None = None
    crm_id: str | None = None
    phone: str | None = None
    #: Identities of kinds that plugins declare, as (kind, value) pairs, e.g.
    #: ``(("forum_user", "janb"),)``; each kind is declared by a plugin.
    handles: tuple[tuple[str, str], ...] = ()

    def identities(self) -> list[tuple[str, str]]:
        """(kind, value) pairs as the source gave them, strongest evidence first;
        the pipeline normalizes each value by its kind."""
        out = [(kind, str(value)) for kind, value in (("crm_id", self.crm_id), ("email", self.email),
                                                       ("phone", self.phone)) if value]
        out.extend((kind, value) for kind, value in self.handles if value)
        return out


@dataclass(frozen=True)
class FeedbackIn:
    """One piece of feedback in the common schema, as a source plugin produces it.

    ``external_id`` is unique per source instance: the hub stores one item per
    (source, external_id) however often it arrives.
    """

    external_id: str
    channel: str
    occurred_at: dt.datetime
    text: str | None = None
    nps: int | None = None
    language: str | None = None
    reach: int | None = None
    thread_id: str | None = None
    url: str | None = None
    #: -1 (negative) .. 1 (positive); set by enrichment when the source has none.
    sentiment: float | None = None
    customer: CustomerRef = field(default_factory=CustomerRef)
    #: Source-specific facts worth keeping (public metrics, hidden fields...).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set when this item answers a re-survey for a case (loop closure).
    resurvey_case_id: int | None = None
    #: A score on another scale (``scale`` csat 1-5 or ces 1-7, see :data:`SCALES`);
    #: an NPS answer sets ``nps`` (and may set ``score`` with scale ``nps`` too).
    score: int | None = None
    scale: str | None = None
    #: A change to an item the source sent before (same ``external_id``), one of
    #: :data:`ITEM_CHANGES`: ``"edited"`` (the author changed it: the stored item
    #: takes the new text and keeps the earlier one in ``extra["history"]``) or
    #: ``"removed"`` (taken down at the source: the stored item is marked
    #: ``extra["removed"]``, never deleted).  An edit of an item the hub never had
    #: is stored as a new item; a removal of one changes nothing.
    change: str | None = None

    def __post_init__(self) -> None:
        if self.change is not None and self.change not in ITEM_CHANGES:
            raise ValueError(f"change must be one of {', '.join(ITEM_CHANGES)}, not {self.change!r}")


@dataclass(frozen=True)
class RawIn:
    """What arrived from a source, verbatim, before any interpretation.

    ``dedupe_key`` identifies the delivery's subject (e.g. a survey response
    token): a second raw event with the same key for the same source is a
    duplicate delivery and is not stored again.
    """

    payload: Any
    dedupe_key: str | None = None
    kind: str = "record"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Signal:
    """One reason that contributes to an item's escalation risk."""

    signal: str
    weight: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "weight": round(float(self.weight), 2), "detail": self.detail}


@dataclass(frozen=True)
class ScoringContext:
    """Facts the core looked up once per batch so scorers need no queries."""

    config: dict[str, Any]
    #: Earlier feedback items of the same customer within the repeat window.
    prior_contacts: int = 0
    #: Yearly value of the customer in the hub's currency, when known.
    customer_value: float | None = None


@dataclass(frozen=True)
class Escalation:
    """What the hub does with a scored item (``hub_decide_escalation``)."""

    open_case: bool
    priority: str = "normal"  # low / normal / high / urgent
    followup: bool = True
    sla_hours: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class FeedbackView:
    """A stored feedback item as plugins see it."""

    id: int | None
    source: str
    external_id: str
    channel: str
    occurred_at: dt.datetime
    text: str | None
    nps: int | None
    language: str | None
    reach: int | None
    category: str | None
    risk: int
    risk_reasons: tuple[Signal, ...]
    customer_id: int | None
    case_id: int | None
    thread_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class CustomerView:
    """A customer as sinks see it: name, contact details and other identities."""

    id: int
    name: str | None
    email: str | None
    crm_id: str | None
    value: float | None
    phone: str | None = None
    #: Identities of other kinds as (kind, value), e.g. ``(("forum_user", "janb"),)``.
    handles: tuple[tuple[str, str], ...] = ()
    #: The first handle as its kind displays it (``"@janb"``), for naming a
    #: customer known only by a handle.
    handle: str | None = None

    @property
    def shown_as(self) -> str:
        """How to name the customer to people: name, e-mail, handle or number."""
        return self.name or self.email or self.handle or f"customer #{self.id}"


@dataclass(frozen=True)
class CaseView:
    id: int
    customer_id: int | None
    status: str
    priority: str
    risk: int
    sla_due_at: dt.datetime | None
    owner: str | None
    outcome: str | None


@dataclass(frozen=True)
class FollowupView:
    """An outbox row handed to a CRM sink: 'call this customer back before due_at'."""

    id: int
    case_id: int
    sink: str
    idempotency_key: str
    due_at: dt.datetime
    attempts: int
    external_id: str | None
    customer: CustomerView | None
    case: CaseView
    #: The items of the case, newest first, for the task's body.
    items: tuple[FeedbackView, ...]
    #: Absolute link to the case in the hub's UI, when the hub knows its URL.
    case_url: str | None = None
    #: The CRM owner the task should have: the calling team's (``[teams.<name>]
    #: crm_owner``), its lead's once the case breached its SLA; None = the sink decides.
    crm_owner: str | None = None


@dataclass(frozen=True)
class PushResult:
    """A sink's answer for one follow-up.

    ``ok`` with an ``external_id`` marks it sent.  ``retriable`` failures
    (outages: 429, 5xx, timeouts, an expired token) wait and are tried again,
    never given up; non-retriable ones (the CRM refuses the task itself) end
    ``dead`` with the error.
    """

    followup_id: int
    ok: bool
    external_id: str | None = None
    error: str | None = None
    retriable: bool = True
    #: What the sink learned about the customer (e.g. ``("crm_id", "37765")``);
    #: the hub records it as identities of the case's customer.
    identities: tuple[tuple[str, str], ...] = ()
    #: Yearly value from the CRM (revenue reports, scoring).
    customer_value: float | None = None
    #: CRM facts merged into the customer's attributes (lifecycle stage, owner...).
    customer_attributes: dict[str, Any] = field(default_factory=dict)
    #: Seconds the sink or its CRM asks to wait before this follow-up is tried
    #: again (a ``Retry-After``, a daily limit's reset); the outbox never tries sooner.
    retry_after: float | None = None


@dataclass(frozen=True)
class Completion:
    """A sink reports a follow-up as done in the CRM (callback happened)."""

    followup_id: int
    outcome: str | None = None
    completed_at: dt.datetime | None = None
