"""The ingest pipeline: how a batch of feedback items becomes stored items,
customers, cases and follow-ups.  Read this module first, top to bottom.

``Pipeline.ingest(session, source, entries, now)`` builds one :class:`Batch`
and runs the steps of :data:`STEPS` over it, in this order:

=================  ==========================================================
``dedupe``         keep the first entry of each external id; items the source
                   delivered before come back with their stored ids
``enrich``         ``hub_enrich_feedback`` fills fields the source left empty
``resolve_identity``  link each item to the customer one of its identities
                   (normalized by its kind) already belongs to, else a new one
``score``          ``hub_score_feedback`` signals summed into a 0-100 risk,
                   with the customer's prior contacts and value as context
``decide``         ``hub_decide_escalation``: open a case? priority, SLA,
                   callback or not
``open_cases``     merge into the customer's open case or open one; re-survey
                   answers join the case they answer
``plan_outbox``    an outbox row (due slot from the planner) per new case that
                   wants a callback, routed to ``routing.followups`` or, for a
                   customer with no reachable identity, ``routing.unreachable``
``store_items``    the items themselves
``apply_changes``  edits and removals (``FeedbackIn.change``) of items
                   stored before: new text with the old kept in history, or
                   marked removed (never deleted)
``index_text``     the new items into the text search index (SQLite's FTS
                   table, one statement per batch: hub.storage.search)
``announce``       ``hub_case_opened`` / ``hub_feedback_ingested`` once the
                   transaction committed
=================  ==========================================================

Each step is a function of the batch: it reads what earlier steps filled in
and fills in its own part (the batch's fields are listed in the order the
steps fill them).  A step that touches the database does so for the whole
batch at once.

Batch-first by design: a page of 1,000 survey responses costs a fixed handful
of statements (look up duplicates, identities, prior contacts, open cases and
slot load once; insert customers, identities, cases, items and follow-ups with
one multi-row statement each), never one round trip per item.  A single API
POST is simply a batch of one.  Inserts go to Core tables, not ORM entities:
an ORM bulk INSERT splits the rows into groups by which values are None, a
round trip per group.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Select, bindparam, select, text, update
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hub.engine import cases as lifecycle
from hub.engine.load import add_many as add_planned_load
from hub.engine.loop.control_group import hold_out
from hub.engine.metrics import count_ingested
from hub.engine.planner import SlotPlanner, planner_for
from hub.engine.poison import storable
from hub.sdk.schema import Escalation, FeedbackIn, ScoringContext, Signal, item_category
from hub.storage import models as m
from hub.storage.database import after_commit, among, bulk_insert, count_in_windows, keys_query, reserve_ids
from hub.storage.rows import case_view, feedback_view
from hub.storage.search import index_new_items
from hub.storage.themes import themes_of_extra

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
#: What an enricher may fill in (``extra`` is merged key by key, see ``enrich``).
ITEM_FIELDS = frozenset(f.name for f in dataclasses.fields(FeedbackIn))
CHUNK = 500  # keeps IN (...) lists well under every driver's parameter limit
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
CUSTOMER, IDENTITY, CASE, FOLLOWUP, ITEM = (
    m.Customer.__table__, m.Identity.__table__, m.Case.__table__, m.Followup.__table__, m.FeedbackItem.__table__)


# -- what goes in and what comes out ------------------------------------------------
@dataclass
class Entry:
    item: FeedbackIn
    raw_event_id: int | None = None


@dataclass
class IngestResult:
    external_id: str
    item_id: int
    created: bool
    customer_id: int | None
    case_id: int | None
    followup_id: int | None = None


# -- the batch the steps work on ----------------------------------------------------
@dataclass(eq=False, slots=True)
class Customer:
    """A customer items of the batch belong to: known (``id`` from the start) or
    new (``id`` once ``resolve_identity`` inserted it).  Hashed by identity, so
    a new customer is a dict key before it has an id."""

    id: int | None
    name: str | None = None
    new: bool = False
    ref: str = ""  # a new customer's unique ref, which maps the inserted ids back


@dataclass(eq=False, slots=True)
class OpenCase:
    """A customer's open case: loaded from the database, or opened by this batch (``new``)."""

    id: int | None
    customer: Customer
    risk: int
    priority: str
    sla_due: dt.datetime | None = None
    new: bool = False
    dirty: bool = False  # risk or priority rose: written back by open_cases
    followup: bool = False  # the decision asked for a callback
    followup_id: int | None = None
    team: str | None = None  # who calls back (hub.engine.teams): a new case's SLA counts in its hours


@dataclass(slots=True)
class Fresh:
    """One new item (not a duplicate) as the steps fill it in."""

    entry: Entry
    item: FeedbackIn
    identities: list[tuple[str, str]] = field(default_factory=list)  # normalized (kind, value)
    customer: Customer = None  # type: ignore[assignment]  # set by resolve_identity
    prior_contacts: int = 0
    category: str | None = None
    risk: int = 0
    signals: list[Signal] = field(default_factory=list)
    decision: Escalation | None = None
    case: OpenCase | int | None = None  # an int: the case a re-survey answer belongs to
    row: dict[str, Any] = field(default_factory=dict)  # the values inserted into feedback_item, with "id"

    @property
    def case_id(self) -> int | None:
        return self.case.id if isinstance(self.case, OpenCase) else self.case


@dataclass
class Batch:
    """One ingest, handed from step to step: what came in, then what each step
    found or made (grouped below by the step that fills it in)."""

    hub: Hub
    session: Session
    source: str
    entries: Sequence[Entry]
    now: dt.datetime
    #: Feedback of a customer within this window counts as a repeat contact
    #: (scoring) and joins a case opened later (open_cases).
    window: dt.timedelta
    # dedupe
    first: dict[str, int] = field(default_factory=dict)  # external id -> index of its first entry
    stored: dict[str, tuple[int, int | None, int | None]] = field(default_factory=dict)  # -> item, customer, case
    fresh: list[Fresh] = field(default_factory=list)
    # resolve_identity
    customers: dict[int, Customer] = field(default_factory=dict)  # stored customers met, by id
    identities: dict[tuple[str, str], Customer] = field(default_factory=dict)  # every identity met, and whose
    # open_cases
    cases: dict[Customer, OpenCase] = field(default_factory=dict)  # each customer's open case
    new_cases: list[OpenCase] = field(default_factory=list)
    case_rows: list[dict[str, Any]] = field(default_factory=list)  # the values inserted into "case", with "id"
    planner: SlotPlanner | None = None

    def customer(self, customer_id: int) -> Customer:
        """The one Customer object of a known customer id."""
        c = self.customers.get(customer_id)
        if c is None:
            c = self.customers[customer_id] = Customer(customer_id)
        return c

    def slot_planner(self) -> SlotPlanner:
        """The planner with the due slots already taken, loaded on first use."""
        if self.planner is None:
            self.planner = planner_for(self.hub, self.session, self.now)
        return self.planner

    def results(self) -> list[IngestResult]:
        """One result per entry, in order; repeats and stored items have ``created=False``."""
        made = {f.item.external_id: f for f in self.fresh}
        out = []
        for i, e in enumerate(self.entries):
            ext = e.item.external_id
            f = made.get(ext)
            if e.item.change == "removed":
                continue  # a removal makes no item (apply_changes marks the stored one)
            if f is None:
                iid, cust, case = self.stored[ext]
                out.append(IngestResult(ext, iid, False, cust, case))
            elif self.first[ext] == i:
                followup = f.case.followup_id if isinstance(f.case, OpenCase) else None
                out.append(IngestResult(ext, f.row["id"], True, f.customer.id, f.case_id, followup))
            else:
                out.append(IngestResult(ext, f.row["id"], False, f.customer.id, f.case_id))
        return out


def _chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _select_in(session: Session, values: Sequence[Any], query: Callable[[Sequence[Any]], Select]) -> Iterator[Row]:
    """Rows of ``query(chunk)`` for each chunk of ``values`` (a long IN list, cut to size)."""
    for chunk in _chunks(values):
        yield from session.execute(query(chunk))


# -- the steps, in order ------------------------------------------------------------
def dedupe(b: Batch) -> None:
    """Keep the first entry of each external id; drop the ones already stored.
    Removals never make an item (``apply_changes`` marks the stored one)."""
    for i, e in enumerate(b.entries):
        if e.item.change != "removed":
            b.first.setdefault(e.item.external_id, i)
    F = m.FeedbackItem
    # Both columns of the unique (source, external_id) index, the keys as one array on PostgreSQL.
    for ext, iid, cust, case in _select_in(b.session, list(b.first), lambda chunk: select(
            F.external_id, F.id, F.customer_id, F.case_id).where(
            F.source == b.source, among(b.session, F.external_id, chunk))):
        b.stored[ext] = (iid, cust, case)
    b.fresh = [Fresh(b.entries[i], b.entries[i].item) for ext, i in b.first.items() if ext not in b.stored]


def enrich(b: Batch) -> None:
    """``hub_enrich_feedback``: each plugin may fill fields that are still empty."""
    config = b.hub.config
    answers = hook_answers(b.hub, "hub_enrich_feedback", {"items": [f.item for f in b.fresh], "config": config},
                           [{"item": f.item, "config": config} for f in b.fresh])
    for f, results in zip(b.fresh, answers, strict=True):
        updates: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for result in results:
            for key, value in (result or {}).items():
                if key == "extra" and isinstance(value, dict):
                    # Enrichers add keys to extra (themes...); the source's own keys win.
                    extra.update({k: v for k, v in value.items() if k not in f.item.extra and k not in extra})
                elif key not in ITEM_FIELDS:
                    # A plugin's typo must not fail the whole batch: say so, skip the key.
                    log.warning("hub_enrich_feedback returned %r, which is not a FeedbackIn field; ignored", key)
                elif value is not None and getattr(f.item, key) is None and key not in updates:
                    updates[key] = value
        if extra:
            updates["extra"] = {**f.item.extra, **extra}
        if updates:
            f.item = _with(f.item, updates)


def _with(item: FeedbackIn, updates: dict[str, Any]) -> FeedbackIn:
    """``dataclasses.replace(item, **updates)`` at a fraction of its cost (a
    frozen dataclass is copied field by field through ``__init__`` there): the
    fields are copied as they are, and only a new ``change`` needs the check."""
    if "change" in updates:
        return dataclasses.replace(item, **updates)
    new = object.__new__(FeedbackIn)
    new.__dict__.update(item.__dict__)
    new.__dict__.update(updates)
    return new


def resolve_identity(b: Batch) -> None:
    """Link each item to the customer one of its identities (normalized by its
    kind) belongs to; else to the customer the matching rules find at or above
    ``identity.auto_link``; else to a new customer, with a suggestion queued
    from ``identity.suggest`` on.  Two customers' identities in one item queue
    a suggestion, never a silent merge.  Later items of the batch see the
    identities earlier ones brought.  Rules and evidence:
    :mod:`hub.engine.identity_rules`."""
    from hub.engine.identity_rules import resolve

    resolve(b)


def score(b: Batch) -> None:
    """``hub_score_feedback``: every plugin's signals, summed into a 0-100 risk.
    Scorers get the customer's prior contacts within the window (earlier items
    of this batch included) and yearly value, looked up here for the batch."""
    stored, value = _stored_contacts(b), _customer_values(b)
    scoring = b.hub.config.get("scoring", {})
    contexts = []
    earlier: dict[Customer, list[dt.datetime]] = defaultdict(list)  # this batch's items so far, per customer
    for f, n in zip(b.fresh, stored, strict=True):  # the contexts first: they depend on the times only
        when, times = f.item.occurred_at, earlier[f.customer]
        f.prior_contacts = n + bisect.bisect_left(times, when) - bisect.bisect_left(times, when - b.window)
        contexts.append(ScoringContext(config=scoring, prior_contacts=f.prior_contacts,
                                       customer_value=value.get(f.customer)))
        bisect.insort(times, when)  # later items of the batch see this one
    answers = hook_answers(b.hub, "hub_score_feedback", {"items": [f.item for f in b.fresh], "contexts": contexts},
                           [{"item": f.item, "context": c} for f, c in zip(b.fresh, contexts, strict=True)])
    for f, results in zip(b.fresh, answers, strict=True):
        f.signals = [s for res in results for s in res]
        f.risk = max(0, min(100, round(sum(s.weight for s in f.signals))))
        f.category = item_category(f.item)


def hook_answers(hub: Hub, name: str, batch_kwargs: dict[str, Any], item_kwargs: list[dict[str, Any]]
                 ) -> list[list[Any]]:
    """Every plugin's non-None answer to the per-item hook ``name``, per item, in pluggy's call order.

    A plugin that implements ``<name>_batch`` is called once for the whole
    batch through it, at its per-item form's place in the order (a plugin with
    only the batch form answers after the per-item ones); the others are called
    per item.  Why: a 1,000-item page made thousands of pluggy calls of the
    default enricher and scorer; now it makes one each (hookspecs.py).
    """
    n = len(item_kwargs)
    answers: list[list[Any]] = [[] for _ in range(n)]
    batch = {impl.plugin_name: impl for impl in getattr(hub.hook, f"{name}_batch").get_hookimpls()}
    impls = getattr(hub.hook, name).get_hookimpls()
    if any(i.hookwrapper or i.wrapper for i in impls):  # a wrapper needs pluggy's own per-item call
        caller = getattr(hub.hook, name)
        answers = [list(caller(**kw)) for kw in item_kwargs]
        order: list[tuple[Any, Any]] = [(None, bi) for bi in batch.values() if not any(
            i.plugin_name == bi.plugin_name for i in impls)]
    else:
        order = [(impl, batch.pop(impl.plugin_name, None)) for impl in reversed(impls)]
        order += [(None, bi) for bi in reversed(list(batch.values()))]
    for impl, batch_impl in order:
        if batch_impl is not None:
            got = batch_impl.function(*[batch_kwargs[a] for a in batch_impl.argnames])
            if got is None:
                continue
            if len(got) != n:
                raise ValueError(f"{batch_impl.plugin_name}: {name}_batch gave {len(got)} answers for {n} items")
            for out, answer in zip(answers, got, strict=True):
                if answer is not None:
                    out.append(answer)
        else:
            fn, args = impl.function, impl.argnames
            for out, kw in zip(answers, item_kwargs, strict=True):
                answer = fn(*[kw[a] for a in args])
                if answer is not None:
                    out.append(answer)
    return answers


#: What :func:`warm_up` enriches and scores: a Dutch and an English complaint (language, text).
WARM_UP_TEXTS = (("nl", "De monteur is niet gekomen en niemand belt terug, heel slecht."),
                 ("en", "The engineer never came and nobody called back, very poor."))


def warm_up(hub: Hub) -> float:
    """Enrich and score sample items once, outside any transaction; the seconds it took.

    Why: plugins load language models and lexicons on first use.  In a worker,
    that first use came inside its first batch, which on SQLite holds the one
    write lock (77 ms to 1.8 s measured) while webhook deliveries wait for it.  Nothing is
    stored; a plugin that fails here is logged and fails again, for real, in a batch.
    """
    started = time.perf_counter()
    now, config = hub.clock.utcnow(), hub.config
    items = [FeedbackIn(external_id=f"warm-up-{lang}", channel="survey", occurred_at=now, text=text, nps=3)
             for lang, text in WARM_UP_TEXTS]
    try:
        hook_answers(hub, "hub_enrich_feedback", {"items": items, "config": config},
                     [{"item": item, "config": config} for item in items])
        items = [_with(item, {"language": lang}) for item, (lang, _) in zip(items, WARM_UP_TEXTS, strict=True)]
        contexts = [ScoringContext(config=config.get("scoring", {})) for _ in items]
        hook_answers(hub, "hub_score_feedback", {"items": items, "contexts": contexts},
                     [{"item": item, "context": c} for item, c in zip(items, contexts, strict=True)])
    except Exception as exc:  # noqa: BLE001 - the first real batch reports it with its items
        log.warning("warm-up: a plugin's enrichment or scoring failed (%s)", type(exc).__name__)
    return time.perf_counter() - started


def _stored_contacts(b: Batch) -> list[int]:
    """Per fresh item, how many stored items of its (known) customer lie in the
    window before it: ``[occurred_at - window, occurred_at)``.

    Counted by the database, one index range (customer_id, occurred_at) per
    distinct (customer, time), in one statement per chunk.  Why: fetching the
    times themselves cost a row per stored item, so a customer with thousands
    of items in the window (a busy account, a flood of one respondent's
    deliveries) made each batch slower than the last.  Bounded on both sides
    for the same reason: a backfill walks newest first (Typeform).
    """
    F = m.FeedbackItem
    probes = sorted({(f.customer.id, f.item.occurred_at) for f in b.fresh if f.customer.id in b.customers})
    found: dict[tuple[int, dt.datetime], int] = {}
    for chunk in _chunks(probes):
        windows = [(cid, when - b.window, when) for cid, when in chunk]
        found.update(zip(chunk, count_in_windows(b.session, F.customer_id, F.occurred_at, windows), strict=True))
    return [found.get((f.customer.id, f.item.occurred_at), 0) for f in b.fresh]


def _customer_values(b: Batch) -> dict[Customer, float | None]:
    """Known customers' yearly values."""
    C = m.Customer
    return {b.customers[cid]: v for cid, v in _select_in(
        b.session, sorted(b.customers), lambda chunk: select(C.id, C.value).where(among(b.session, C.id, chunk)))}


def decide(b: Batch) -> None:
    """``hub_decide_escalation`` (first result wins; the default plugin is trylast)."""
    hook, config = b.hub.hook.hub_decide_escalation, b.hub.config
    for f in b.fresh:
        f.decision = hook(item=f.item, category=f.category, risk=f.risk, signals=f.signals, config=config, now=b.now)


def open_cases(b: Batch) -> None:
    """An item joins its customer's open case (raising its risk and priority),
    opens one when the decision says so, or stays case-less.  A re-survey
    answer joins the case it answers and records its score there."""
    _load_open_cases(b)
    resurveys = _existing_cases(b, {f.item.resurvey_case_id for f in b.fresh if f.item.resurvey_case_id})
    answers: dict[int, dict[str, Any]] = {}
    for f in b.fresh:
        if f.item.resurvey_case_id in resurveys:
            f.case = f.item.resurvey_case_id
            if (answer := _resurvey_answer(f.item)) is not None:
                answers[f.item.resurvey_case_id] = answer  # type: ignore[index]
        elif (case := b.cases.get(f.customer)) is not None:
            _raise(case, f.risk, f.decision)
            f.case = case
        elif f.decision and f.decision.open_case:
            f.case = b.cases[f.customer] = _new_case(b, f)
    # An item that did not escalate on its own joins the case a later item of
    # the same customer opened (a thread that turns angry).
    for f in b.fresh:
        if f.case is None and (case := b.cases.get(f.customer)) is not None and case.new:
            f.case = case
    _insert_cases(b)
    _update_cases(b, answers)


def _load_open_cases(b: Batch) -> None:
    C = m.Case
    # One look-up of the one-open-case index per customer (its predicate literal):
    # by ``= ANY(...)`` PostgreSQL walked every case per batch (hub.storage.database.keys_query).
    for case_id, cid, risk, priority, sla in _select_in(b.session, sorted(b.customers), lambda chunk: keys_query(
            b.session, C.customer_id, chunk, (C.id, C.customer_id, C.risk, C.priority, C.sla_due_at),
            text(m.OPEN_CASE_PREDICATE)).order_by(C.opened_at)):
        customer = b.customers[cid]
        b.cases[customer] = OpenCase(case_id, customer, risk, priority, sla)


def _existing_cases(b: Batch, ids: set[int | None]) -> set[int]:
    return {case_id for (case_id,) in _select_in(b.session, sorted(ids), lambda chunk: select(m.Case.id).where(
        among(b.session, m.Case.id, chunk)))}


def _raise(case: OpenCase, risk: int, decision: Escalation | None) -> None:
    if risk > case.risk:
        case.risk, case.dirty = risk, True
    if decision and PRIORITY_RANK.get(decision.priority, 1) > PRIORITY_RANK.get(case.priority, 1):
        case.priority, case.dirty = decision.priority, True


def _new_case(b: Batch, f: Fresh) -> OpenCase:
    assert f.decision is not None
    planner = b.slot_planner()
    team = planner.team_for(themes_of_extra(f.item.extra), f.item.channel).name
    sla = planner.sla_due(f.decision.priority, b.now, f.decision.sla_hours, team)
    case = OpenCase(None, f.customer, f.risk, f.decision.priority, sla, new=True, followup=f.decision.followup,
                    team=team)
    b.new_cases.append(case)
    return case


def _insert_cases(b: Batch) -> None:
    """Insert the new cases; each also takes its customer's recent case-less
    items from earlier batches (the thread that turned angry, again)."""
    if not b.new_cases:
        return
    b.case_rows = [{"customer_id": c.customer.id, "status": "new", "priority": c.priority, "risk": c.risk,
                    "sla_due_at": c.sla_due, "opened_at": b.now, "updated_at": b.now, "team": c.team}
                   for c in b.new_cases]
    # One new case per customer in a batch, so customer_id maps ids back.
    by_customer = {c.customer.id: (c, row) for c, row in zip(b.new_cases, b.case_rows, strict=True)}
    # The one-open-case index arbitrates: a customer whose case a concurrent
    # ingest committed first joins that case instead (no second case, no second callback).
    for customer_id, got in lifecycle.open_or_join(b.session, b.case_rows).items():
        case, row = by_customer[customer_id]
        case.id = row["id"] = got.id
        if not got.opened:
            _join_opened_meanwhile(case, got)
    # In id order (they were inserted in customer order): hooks and follow-ups follow the cases' ids.
    b.new_cases = sorted((c for c in b.new_cases if c.new), key=lambda c: c.id)
    b.case_rows = [row for c, row in sorted(by_customer.values(), key=lambda cr: cr[1]["id"]) if c.new]
    earlier = [c for c in b.new_cases if not c.customer.new]
    if earlier:
        b.session.execute(
            update(ITEM).where(ITEM.c.customer_id == bindparam("cust"), ITEM.c.case_id.is_(None),
                               ITEM.c.occurred_at >= bindparam("since")).values(case_id=bindparam("case")),
            [{"cust": c.customer.id, "since": b.now - b.window, "case": c.id} for c in earlier])


def _join_opened_meanwhile(case: OpenCase, found: lifecycle.OpenCaseRow) -> None:
    """``case`` was to be new, but another transaction opened the customer's case first:
    become that case, raising its risk and priority to this batch's (written by ``_update_cases``)."""
    risk, priority = case.risk, case.priority
    case.new, case.followup = False, False  # the winner planned the callback
    case.risk, case.priority = found.risk, found.priority
    if risk > case.risk:
        case.risk, case.dirty = risk, True
    if PRIORITY_RANK.get(priority, 1) > PRIORITY_RANK.get(case.priority, 1):
        case.priority, case.dirty = priority, True


def _resurvey_answer(item: FeedbackIn) -> dict[str, Any] | None:
    """What a re-survey answer writes on its case: the score on its scale (an NPS
    answer also keeps ``resurvey_nps``, which the API has always shown)."""
    if item.nps is not None:
        return {"resurvey_nps": item.nps, "resurvey_score": item.nps, "resurvey_scale": "nps"}
    if item.score is not None and item.scale:
        return {"resurvey_score": item.score, "resurvey_scale": item.scale}
    return None


_PRIORITY_RANK_SQL = sql_case(PRIORITY_RANK, value=CASE.c.priority, else_=PRIORITY_RANK["normal"])


def _update_cases(b: Batch, resurvey_answers: dict[int, dict[str, Any]]) -> None:
    dirty = [c for c in b.cases.values() if c.dirty and not c.new]
    if dirty:
        # Raised in SQL, never lowered: batches joining one case at once (the
        # one-open-case race) each read it before the others wrote it.
        risk, rank = bindparam("new_risk", type_=CASE.c.risk.type), bindparam("new_rank", type_=CASE.c.risk.type)
        b.session.execute(update(CASE).where(CASE.c.id == bindparam("case_id")).values(
            risk=sql_case((CASE.c.risk < risk, risk), else_=CASE.c.risk),
            priority=sql_case((_PRIORITY_RANK_SQL < rank, bindparam("new_priority", type_=CASE.c.priority.type)),
                              else_=CASE.c.priority),
            updated_at=bindparam("now", type_=CASE.c.updated_at.type)),
            [{"case_id": c.id, "new_risk": c.risk, "new_rank": PRIORITY_RANK.get(c.priority, 1),
              "new_priority": c.priority, "now": b.now} for c in dirty])
    # One executemany per set of columns: an NPS answer also writes resurvey_nps.
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for case_id, answer in resurvey_answers.items():
        by_columns[tuple(sorted(answer))].append({"id": case_id, **answer, "updated_at": b.now})
    for rows in by_columns.values():
        b.session.execute(update(m.Case), rows)


def plan_outbox(b: Batch) -> None:
    """An outbox row per new case that wants a callback: a due slot from the
    planner, the sink from the routing.  The dispatcher pushes it later."""
    wants = [c for c in b.new_cases if c.followup]
    if not wants:
        return
    # The randomised control group: some detractors get no callback (proof of what callbacks do).
    detractors = {f.customer for f in b.fresh if f.category == "detractor"}
    held = hold_out(b.session, b.hub.config, wants, detractors, b.now)
    wants = [c for c in wants if c.id not in held]
    if not wants:
        return
    sinks = _route(b, wants)
    planner = b.slot_planner()
    # Ids reserved up front and every column with a default given: the rows go
    # below the ORM (COPY on PostgreSQL), as the items do.
    ids = reserve_ids(b.session, FOLLOWUP, len(wants))
    rows = []
    for c, followup_id in zip(wants, ids, strict=True):
        c.followup_id = followup_id
        rows.append({"id": followup_id, "case_id": c.id, "sink": sinks[c.id],
                     "idempotency_key": f"hub-case-{c.id}-callback", "due_at": planner.plan(b.now, c.sla_due, c.team),
                     "team": c.team, "status": "pending", "attempts": 0, "next_attempt_at": b.now,
                     "created_at": b.now, "sync_pending": False, "sync_attempts": 0})
    bulk_insert(b.session, FOLLOWUP, rows)
    add_planned_load(b.session, planner.taken)  # the slots' counts, kept as callbacks are planned
    planner.taken.clear()


def _route(b: Batch, cases: list[OpenCase]) -> dict[int, str]:
    """Sink per new case: ``routing.followups``, except that customers the hub
    cannot call or mail (no identity of a reachable kind, e.g. only a social
    handle) go to ``routing.unreachable``, where webcare answers them in public."""
    registry = b.hub.registry
    main, fallback = registry.followup_sink, b.hub.config["routing"].get("unreachable")
    if not fallback or fallback == main:
        return {c.id: main for c in cases}  # type: ignore[misc]
    reachable = {cust for (kind, _), cust in b.identities.items() if kind in registry.reachable_kinds}
    unsure = sorted({c.customer.id for c in cases if not c.customer.new and c.customer not in reachable})
    for (cid,) in _select_in(b.session, unsure, lambda chunk: select(IDENTITY.c.customer_id).where(
            among(b.session, IDENTITY.c.customer_id, chunk), IDENTITY.c.kind.in_(sorted(registry.reachable_kinds)))):
        reachable.add(b.customers[cid])
    return {c.id: main if c.customer in reachable else fallback for c in cases}  # type: ignore[misc]


def store_items(b: Batch) -> None:
    """The items themselves, with their scores and links, in one INSERT."""
    if not b.fresh:
        return
    # Ids from the table's sequence up front: the insert needs no RETURNING and
    # goes below the ORM (COPY on PostgreSQL, executemany on SQLite).
    for f, item_id in zip(b.fresh, reserve_ids(b.session, ITEM, len(b.fresh)), strict=True):
        it = f.item
        f.row = {
            "id": item_id, "source": b.source, "external_id": it.external_id, "raw_event_id": f.entry.raw_event_id,
            "channel": it.channel, "occurred_at": it.occurred_at, "received_at": b.now, "text": it.text,
            "language": it.language, "nps": it.nps, "sentiment": it.sentiment, "category": f.category,
            "score": it.nps if it.score is None else it.score,
            "scale": it.scale or ("nps" if it.nps is not None else None),
            "risk": f.risk, "risk_reasons": [s.as_dict() for s in f.signals], "reach": it.reach,
            "thread_id": it.thread_id, "url": it.url, "extra": it.extra or {},
            "customer_id": f.customer.id, "case_id": f.case_id, "identities": [list(kv) for kv in f.identities],
        }
    bulk_insert(b.session, ITEM, [f.row for f in b.fresh])


def apply_changes(b: Batch) -> None:
    """Edits and removals (``FeedbackIn.change``) of items stored before them.

    An edit replaces the item's text and appends the earlier text, with when it
    was replaced, to ``extra["history"]``; a removal sets ``extra["removed"]``
    and keeps the item (its case and history stay explainable).  An edit that
    made the item (first seen in this batch) has nothing to change; a removal of
    an item the hub never had changes nothing.  Scores stay as they were.
    """
    changes = [e.item for i, e in enumerate(b.entries)
               if e.item.change and (b.first.get(e.item.external_id) != i or e.item.external_id in b.stored)]
    if not changes:
        return
    F = m.FeedbackItem
    found = {ext: (iid, text, dict(extra or {})) for ext, iid, text, extra in _select_in(
        b.session, sorted({it.external_id for it in changes}), lambda chunk: select(
            F.external_id, F.id, F.text, F.extra).where(F.source == b.source, among(b.session, F.external_id, chunk)))}
    changed: set[str] = set()
    for item in changes:  # in arrival order: two edits in one batch both enter the history
        if item.external_id not in found:
            continue
        iid, text, extra = found[item.external_id]
        if "erased" in extra:
            continue  # an erased item (privacy) never takes text back, whatever the source sends later
        if item.change == "edited" and item.text is not None and item.text != text:
            extra["history"] = [*extra.get("history", []), {"text": text, "until": b.now.isoformat()}]
            text = item.text
        elif item.change == "removed" and "removed" not in extra:
            extra["removed"] = {"at": b.now.isoformat()}
        else:
            continue
        found[item.external_id] = (iid, text, extra)
        changed.add(item.external_id)
    for ext in sorted(changed):
        iid, text, extra = found[ext]
        b.session.execute(update(ITEM).where(ITEM.c.id == iid).values(text=text, extra=extra))


def announce(b: Batch) -> None:
    """``hub_case_opened`` and ``hub_feedback_ingested``, once the transaction
    committed (never for data that may still roll back).  Views are built from
    the inserted values only when a plugin listens: a 100k import skips them."""
    hook = b.hub.hook
    fresh, source = len(b.fresh), b.source
    if fresh:
        after_commit(b.session, lambda: count_ingested(source, fresh))  # /metrics: hub_items_ingested_total
    case_rows = b.case_rows if hook.hub_case_opened.get_hookimpls() else []
    item_rows = [f.row for f in b.fresh] if hook.hub_feedback_ingested.get_hookimpls() else []
    if not case_rows and not item_rows:
        return

    def send() -> None:
        for row in case_rows:
            hook.hub_case_opened(case=case_view(row))
        for row in item_rows:
            hook.hub_feedback_ingested(item=feedback_view(row))

    after_commit(b.session, send)


#: The steps of an ingest, in order (see the module docstring).
def index_text(b: Batch) -> None:
    """The batch's items into the text search index (SQLite's FTS, in bulk)."""
    if b.fresh:
        index_new_items(b.session)


STEPS: tuple[Callable[[Batch], None], ...] = (
    dedupe, enrich, resolve_identity, score, decide, open_cases, plan_outbox, store_items, apply_changes,
    index_text, announce)


#: SQLSTATEs of a transaction the server stopped for another one's sake (deadlock, serialization).
RETRYABLE_SQLSTATES = ("40P01", "40001")


def _deadlocked(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


class Pipeline:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.window = dt.timedelta(days=float(hub.config.get("scoring", {}).get("repeat_window_days", 30)))

    def ingest(self, session: Session, source: str, entries: Sequence[Entry], now: dt.datetime | None = None
               ) -> list[IngestResult]:
        """Store a batch of items (with everything they cause) in ``session``'s
        transaction.  Duplicates (same source + external_id) come back with
        ``created=False`` and the stored item's ids; nothing is written for them.
        """
        now = now or self.hub.clock.utcnow()
        # The edge: values no database can store (NUL, lone surrogates, over-long
        # fields) are cleaned before any step sees them, the same on every dialect.
        entries = [e if (clean := storable(e.item)) is e.item else Entry(clean, e.raw_event_id) for e in entries]
        for attempt in range(3):
            batch = Batch(self.hub, session, source, entries, now, self.window)
            try:
                with session.begin_nested():
                    for step in STEPS:
                        step(batch)
                return batch.results()
            except (IntegrityError, OperationalError) as exc:
                # Another transaction stored the same item or identity between
                # our look-up and our insert (PostgreSQL, concurrent webhook
                # and pull): run again; the look-ups now see its rows.  A
                # deadlock between two such writers (the server stops one of
                # them) is run again the same way.
                if attempt == 2 or (isinstance(exc, OperationalError) and not _deadlocked(exc)):
                    raise
                log.info("ingest conflict on %s, retrying batch of %d", source, len(entries))
        raise AssertionError("unreachable")
