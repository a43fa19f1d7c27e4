"""The answers of ``/api/v1``, declared once (pydantic v2).

Routes build every body with these models (``Model.from_row(...)`` then
:func:`body`), and :mod:`hub.api.openapi` generates the OpenAPI document's
schemas from the same declarations, so a field is written in one place.
Names and values are part of the fixed API (DESIGN.md): add fields, never
rename or drop one.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from hub.sdk.contracts import CustomerInput, DateTimeIn
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, FOLLOWUP_STATUSES, Channel
from hub.storage.themes import themes_of_extra

Category = Literal[CATEGORIES]  # type: ignore[valid-type]
CaseStatus = Literal[CASE_STATUSES]  # type: ignore[valid-type]
FollowupStatus = Literal[FOLLOWUP_STATUSES]  # type: ignore[valid-type]

#: Times are written as Python's ``isoformat()`` (``2026-11-20T12:00:00+00:00``),
#: as the API always has, rather than pydantic's ``Z`` form.
Time = Annotated[
    dt.datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Answer(BaseModel):
    """Base of every answer: read from ORM rows, every field always present."""

    model_config = ConfigDict(from_attributes=True, json_schema_serialization_defaults_required=True)


class RiskReason(Answer):
    """One signal that adds to an item's risk."""

    signal: str
    weight: float
    detail: str = ""


class Feedback(Answer):
    """A stored feedback item with its score and the status of its case."""

    id: int
    source: str
    external_id: str
    channel: Channel
    occurred_at: Time
    received_at: Time
    text: str | None
    nps: Annotated[int, Field(ge=0, le=10)] | None
    language: str | None
    sentiment: float | None
    category: Category | None
    risk: int = Field(ge=0, le=100)
    risk_reasons: list[RiskReason]
    reach: int | None
    thread_id: str | None
    url: str | None
    customer_id: int | None
    case_id: int | None
    case_status: CaseStatus | None = None
    themes: list[str] = Field(default_factory=list,
                              description="drivers the enricher found in the text ([enrich.themes]), e.g. billing")
    edited: bool = Field(False, description="the author changed the text at the source (earlier texts are kept)")
    removed: bool = Field(False, description="taken down at the source; kept here, marked")

    @classmethod
    def from_row(cls, row: Any, case_status: str | None = None) -> Feedback:
        item = cls.model_validate(row)
        item.case_status = case_status  # not a column of the item: the caller joined it
        item.themes = themes_of_extra(row.extra)  # stored in extra by the enricher, not a column
        extra = row.extra if isinstance(row.extra, dict) else {}
        item.edited, item.removed = bool(extra.get("history")), "removed" in extra  # FeedbackIn.change
        return item


class Followup(Answer):
    """The outbox row of a case: the callback the hub asked a sink to schedule."""

    id: int
    sink: str
    status: FollowupStatus
    due_at: Time
    attempts: int
    external_id: str | None
    last_error: str | None


class Case(Answer):
    id: int
    customer_id: int | None
    status: CaseStatus
    priority: str
    risk: int
    owner: str | None
    sla_due_at: Time | None
    opened_at: Time
    updated_at: Time
    contacted_at: Time | None
    closed_at: Time | None
    outcome: str | None
    resurvey_nps: int | None


class CaseListed(Case):
    """A case in a list: with its number of items and its follow-up."""

    items: int = Field(0, description="feedback items in the case")
    followup: Followup | None = None
    themes: list[str] = Field(default_factory=list, description="union of the themes of the case's items")

    @classmethod
    def from_row(cls, row: Any, items: int, followup: Any | None, themes: list[str] | None = None) -> CaseListed:
        return cls.model_validate({**dict(Case.model_validate(row)), "items": items, "followup": followup,
                                   "themes": themes or []})


class Identity(Answer):
    kind: str
    value: str
    confidence: float
    evidence: str | None


class Customer(Answer):
    """A customer with every identity and the timeline across channels."""

    id: int
    name: str | None
    value: float | None = Field(description="yearly value, when a CRM told it")
    identities: list[Identity]
    timeline: list[Feedback]
    cases: list[Case]
    merged_into_id: int | None = Field(None, description="set while this customer is merged into that one")


Item = TypeVar("Item")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(Answer, Generic[Item]):
    """A page of a list, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[Item]
    next_cursor: str | None


class FeedbackPage(Page[Feedback]):
    pass


class CasePage(Page[CaseListed]):
    pass


class Health(Answer):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    sources: list[str] | None = Field(description="configured source instances (null without a valid token)")
    sinks: list[str] | None = Field(description="configured sink instances (null without a valid token)")


class ErrorDetail(BaseModel):
    code: str = Field(description="e.g. invalid, unauthorized, not_found, too_large")
    message: str
    field: str | None = Field(None, description="the field at fault, dotted (customer.email); only on 400")


class Error(BaseModel):
    error: ErrorDetail


class Erasure(Answer):
    """What a GDPR erase removed (``DELETE /api/v1/customers/<id>``): counts and ids only."""

    customer_id: int
    identities: int = Field(description="identities deleted")
    items: int = Field(description="items emptied (tombstones keep their key, so a re-delivery stays out)")
    raw_events: int = Field(description="raw payloads emptied")
    cases: int = Field(description="cases deleted, with their follow-ups and notes")
    crm_requests: int = Field(description="CRM sinks asked to delete the contact too")
    crm_waiting: int = Field(description="of those, still waiting for their CRM (retried until done)")


# -- closing the loop: reports, events, invitations (hub/api/reports_api.py) --
class GroupOutcome(Answer):
    """Detractor cases of one group (treated: called back; control: held out)."""

    cases: int
    resurveyed: int = Field(description="cases whose re-survey was answered")
    converted: int = Field(description="re-surveyed detractors who answered as passive or promoter")
    conversion_rate: float | None = Field(description="converted / resurveyed")
    conversion_ci95: list[float] | None = Field(description="95 % Wilson interval of conversion_rate")
    churned: int = Field(description="customers who churned after the case opened")
    churn_rate: float
    churn_ci95: list[float] | None
    renewed: int
    repeat_contacts: int = Field(description="inbound contacts within loop.repeat_window_days after the loop closed")
    repeat_rate: float | None = Field(description="share of cases with a repeat contact")
    repeat_ci95: list[float] | None
    median_hours_to_first_contact: float | None


class Difference(Answer):
    """treated - control, with a two-sided two-proportion z-test."""

    difference: float | None
    ci95: list[float] | None
    z: float | None
    p_value: float | None
    significant: bool = Field(description="p_value < 0.05")


class InvitationStats(Answer):
    source: str | None
    kind: Literal["resurvey", "survey", "review"]
    queued: int
    sent: int
    answered: int
    answer_rate: float | None = Field(description="answered / sent")
    skipped: int
    skip_reasons: dict[str, int] = Field(description="why invitations were not sent (cooldown, opted_out...)")


class PromoterStats(Answer):
    requested: int
    sent: int
    skipped: int
    referrals: int = Field(description="requests the promoter followed up on")


class CaseOutcome(Answer):
    """One line of the outcome ledger."""

    case_id: int
    customer_id: int | None
    control: bool
    score_before: int | None
    category_before: str | None
    score_after: int | None = Field(description="the re-survey's answer")
    category_after: str | None
    resurveyed: bool
    converted: bool = Field(description="detractor before, passive or promoter after")
    hours_to_first_contact: float | None
    churned: bool
    renewed: bool
    repeat_contacts: int
    closed: bool
    loop_closed: bool = Field(description="called back or re-surveyed")


class OutcomeReport(Answer):
    """``GET /api/v1/reports/outcomes``: what callbacks achieve, treated vs control."""

    control_share: float = Field(description="loop.control_share")
    treated: GroupOutcome
    control: GroupOutcome
    conversion_difference: Difference
    churn_difference: Difference
    repeat_difference: Difference
    invitations: list[InvitationStats]
    promoters: PromoterStats
    cases: list[CaseOutcome] | None = Field(
        description="with ?detail=cases: the ledger, newest cases first (at most limit)")


class RevenueInputs(Answer):
    customers: int
    yearly_value: float
    unhappy_complaining: int
    unhappy_silent: int
    complainer_churn: float
    silent_churn: float


class RevenueReport(Answer):
    """``GET /api/v1/reports/revenue-at-risk``: the complaints-and-revenue model (docs/closing_the_loop.md)."""

    currency: str
    revenue: float
    at_risk: float = Field(description="(unhappy_complaining + unhappy_silent) x yearly_value")
    kept: float = Field(description="complaining customers who stay: unhappy_complaining x (1 - complainer_churn) x value")
    kept_silent: float
    lost: float = Field(description="lost_complaining + lost_silent")
    lost_share: float = Field(description="lost / revenue (0-1)")
    lost_complaining: float
    lost_silent: float
    recovered: float = Field(description="what closed loops kept, against the control group (or the model)")
    recovered_basis: Literal["control", "model"]
    treated_customers: int
    inputs: RevenueInputs
    input_basis: dict[str, Literal["data", "config", "query"]]


class EventInput(BaseModel):
    """``POST /api/v1/events``: something that happened to a customer."""

    model_config = ConfigDict(extra="forbid")

    customer: CustomerInput  # type: ignore[valid-type]
    type: Literal["churned", "renewed", "complaint_filed"]
    occurred_at: DateTimeIn = None


class EventStored(Answer):
    id: int
    customer_id: int
    type: str
    occurred_at: Time


class InvitationRequest(BaseModel):
    """``POST /api/v1/invitations``: invite customers to a source's survey after a moment that matters."""

    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        None, description="survey source instance (default: loop.invitation_source)")
    customers: list[CustomerInput] = Field(min_length=1, max_length=1000)  # type: ignore[valid-type]
    trigger: str = Field("api", pattern=r"^[a-z][a-z0-9_]{0,49}$", description="what happened, e.g. deal_closed")


class InvitationQueued(Answer):
    id: int
    customer_id: int
    status: str
    created: bool = Field(description="false: this invitation was already queued (same customer, source, trigger, day)")


class InvitationBatch(Answer):
    queued: int
    existing: int
    invitations: list[InvitationQueued]


LOOP_CONTRACTS: tuple[type[BaseModel], ...] = (OutcomeReport, RevenueReport, EventInput, EventStored,
                                               InvitationRequest, InvitationBatch)


#: Every answer model, for the OpenAPI document (nested models come along).
ANSWERS: tuple[type[BaseModel], ...] = (Feedback, FeedbackPage, CasePage, Customer, Health, Error, Erasure)
#: The loop's reports and request bodies (hub/api/reports_api.py).
ANSWERS += LOOP_CONTRACTS


# -- identity graph: the review queue, customer search, merge and split --------------
class Suggestion(Answer):
    """Are these one person?  ``kind``/``value`` is the identity that matched,
    held by ``other_customer_id`` (null: nobody holds it yet)."""

    id: int
    customer_id: int
    other_customer_id: int | None
    kind: str
    value: str
    confidence: float = Field(ge=0, le=1)
    evidence: str
    rule: str = Field(description="the matching rule, e.g. handle_email_name, conflict ([identity.weights])")
    status: Literal["pending", "confirmed", "rejected"]
    created_at: Time


class SuggestionPage(Page[Suggestion]):
    pass


class CustomerListed(Answer):
    """A customer found by ``GET /api/v1/customers?q=``."""

    id: int
    name: str | None
    value: float | None
    identities: list[Identity]


class CustomerPage(Page[CustomerListed]):
    pass


#: Text a database can store: PostgreSQL refuses NUL in text, so it is a 400 here, not a server error.
NO_NUL = r"^[^\x00]*$"


class MergeRequest(BaseModel):
    """``POST /api/v1/customers/<id>/merge``: the other customer becomes part of this one."""

    model_config = ConfigDict(extra="forbid")
    other_customer_id: int = Field(ge=1, le=2**63 - 1)
    reason: str | None = Field(None, max_length=500, pattern=NO_NUL, description="why (kept with the merge record)")


class IdentityRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=20, pattern=NO_NUL)
    value: str = Field(min_length=1, max_length=320, pattern=NO_NUL)


class SplitRequest(BaseModel):
    """``POST /api/v1/customers/<id>/split``: these identities (and their items) become a customer of their own."""

    model_config = ConfigDict(extra="forbid")
    identities: list[IdentityRef] = Field(min_length=1, max_length=100)
    reason: str | None = Field(None, max_length=500, pattern=NO_NUL)


class Decision(BaseModel):
    """Optional body of ``POST /api/v1/identity/suggestions/<id>/confirm|reject``."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=500, pattern=NO_NUL)


ANSWERS += (Suggestion, SuggestionPage, CustomerPage, MergeRequest, SplitRequest, Decision)


# -- the case API and the planner's load (hub/api/cases_api.py) ------------------------
SlaState = Literal["on_track", "at_risk", "breached", "met", "missed"]


class CrmTask(Answer):
    """What the CRM's task of a follow-up holds, as far as the hub knows."""

    external_id: str | None = Field(description="the task's id in the CRM; null until pushed")
    due_at: Time | None = Field(description="the due time the CRM holds (null: not pushed yet)")
    status: str | None = Field(description="NOT_STARTED, COMPLETED or CANCELLED, as last sent or read")
    owner: str | None = Field(description="the task's owner in the CRM, when known")
    sync_pending: bool = Field(description="a change made in the hub is still to reach the CRM")
    sync_error: str | None


class CaseFollowup(Followup):
    team: str | None
    cancelled_at: Time | None
    completed_at: Time | None
    crm: CrmTask

    @classmethod
    def from_row(cls, row: Any) -> CaseFollowup:
        crm = CrmTask(external_id=row.external_id, due_at=row.crm_due_at, status=row.crm_status,
                      owner=row.crm_owner, sync_pending=bool(row.sync_pending), sync_error=row.sync_error)
        return cls.model_validate({**dict(Followup.model_validate(row)), "team": row.team,
                                   "cancelled_at": row.cancelled_at, "completed_at": row.completed_at, "crm": crm})


class CaseDetail(Case):
    """One case with its SLA state, its team, its callbacks and their CRM tasks."""

    team: str | None
    root_cause: str | None
    resolved: bool | None
    escalated_at: Time | None
    sla_state: SlaState | None = Field(description="on_track, at_risk or breached while open; met or missed once contacted")
    callback_at: Time | None = Field(description="when the open callback is due")
    allowed_status: list[CaseStatus] = Field(description="statuses PATCH may move the case to")
    followup: CaseFollowup | None = Field(description="the open callback (else the newest)")
    followups: list[CaseFollowup]


class CasePatch(BaseModel):
    """``PATCH /api/v1/cases/<id>``: any of these; the same rules, audit and CRM effects as the UI."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["assigned", "contacted", "resolved", "closed"] | None = None
    owner: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    callback_at: dt.datetime | None = Field(None, description="ISO time with zone; moves the same CRM task")
    outcome: Annotated[str, Field(max_length=50)] | None = Field(
        None, description="with status resolved: callback_done, solved_remotely, compensated, explained, "
                          "not_reachable or no_action_needed; with contacted: free text")
    root_cause: Annotated[str, Field(max_length=200)] | None = None
    resolved: bool | None = None
    note: Annotated[str, Field(min_length=1, max_length=5000)] | None = None


class LoadHour(Answer):
    hour: Time = Field(description="start of the hour slot")
    planned: int = Field(description="callbacks planned in the slot")
    capacity: int = Field(description="callbacks the team(s) can make in the hour (0 outside business hours)")
    inbound_expected: float = Field(description="inbound contacts expected in the hour (learned)")
    peak: bool = Field(description="a peak hour: callbacks avoid it while off-peak capacity remains")


class PlannerLoadAnswer(Answer):
    items: list[LoadHour]


ANSWERS += (CaseDetail, CasePatch, PlannerLoadAnswer)


def body(answer: BaseModel) -> dict[str, Any]:
    """An answer as JSON-ready data (absent optional error fields are left out)."""
    return answer.model_dump(mode="json", exclude_none=isinstance(answer, Error))
