"""The webcare inbox: a to-do list of cases, worst and soonest first.

Views (``?view=``), each a shareable URL together with its filters and sort:

``todo`` (default)
    One row per case that needs an action (new, assigned, scheduled): its
    latest item, how many items it holds and on which channels.  Ordered by
    what needs action first: the SLA due time (soonest, overdue on top), then
    the risk.  Contacted cases wait on the customer and are not in the way.
``callbacks``
    My callbacks today: open cases I own with a callback due today in the
    team's time zone (the hub's clock says what "today" is).
``waiting``
    Contacted cases: the ball is with the customer.
``done``
    Resolved and closed cases, most recently closed first.
``feedback``
    All feedback, one row per item (the raw stream), with the case it joined;
    an item without a case says why and offers "open case" and "dismiss".
    New items reach an open page through ``/inbox/updates.json?after=<id>``
    (polled by ``static/app.js``), rendered by the same row macro.

Case views page by case (50 rows) and read their items' counts and channels
for that page only, so the list stays fast on large tables.  Columns sort
with ``?sort=<key>&dir=asc|desc``.  Saved views store the query string under
a name for the whole team; bulk assign and close act on the ticked cases
through the case lifecycle, each with its audit record.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode

import flask
from sqlalchemy import Select, and_, bindparam, exists, func, or_, select

from hub.engine import audit as audit_trail
from hub.engine import cases as lifecycle
from hub.engine.context import current_hub
from hub.engine.planner import planner_for
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, CHANNELS, OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.storage.search import TextCondition, cases_matching, item_or_author_condition
from hub.storage.themes import has_theme, themes_of_extra
from hub.web.common import background, current_user, db_session, now, requires, safe_next, ui_blueprint
from hub.web.filters import team_tz
from hub.web.i18n import gettext
from hub.web.loop_views import control_cases
from hub.web.side_query import side_row

bp = ui_blueprint("inbox", __name__)

PAGE_SIZE = 50
COUNT_CAP = 1000
MAX_PAGE = 200
BULK_MAX = 200
RISK_BANDS = {"high": (70, None), "medium": (40, None), "low": (None, 40)}
STATUS_CHOICES = ("open", "all", "none", *CASE_STATUSES)
VIEWS = ("todo", "callbacks", "waiting", "done", "feedback")
#: The statuses each case view lists.
VIEW_STATUSES = {
    "todo": m.TODO_STATUSES,
    "callbacks": OPEN_CASE_STATUSES,
    "waiting": ("contacted",),
    "done": ("resolved", "closed"),
}
#: Follow-up states in which the callback is still to happen.
OPEN_FOLLOWUP = ("pending", "sending", "sent", "failed", "dead")
F, C, CU, FU = m.FeedbackItem, m.Case, m.Customer, m.Followup


def _callback_due():
    """The case's next open callback time (a correlated subquery)."""
    return (select(func.min(FU.due_at)).where(FU.case_id == C.id, FU.status.in_(OPEN_FOLLOWUP))
            .correlate(C).scalar_subquery())


#: Sortable columns of the case views: key -> the SQL it sorts on.
CASE_SORTS: dict[str, Any] = {
    "due": lambda: C.sla_due_at,
    "risk": lambda: C.risk,
    "opened": lambda: C.opened_at,
    "updated": lambda: C.updated_at,
    "owner": lambda: C.owner,
    "status": lambda: C.status,
    "customer": lambda: CU.name,
    "callback": _callback_due,
}
#: What each view sorts by when the URL names no column.
DEFAULT_SORT = {"todo": ("action", "asc"), "callbacks": ("callback", "asc"), "waiting": ("updated", "desc"),
                "done": ("closed", "desc"), "feedback": ("risk", "desc")}
ITEM_SORTS = {"risk": lambda: F.risk, "occurred": lambda: F.occurred_at, "due": lambda: C.sla_due_at}


@dataclass
class InboxFilters:
    """The inbox's URL parameters; unknown values are ignored, not errors,
    so an old shared link still opens."""

    view: str = ""
    channel: str = ""
    source: str = ""
    category: str = ""
    risk: str = ""
    status: str = "open"
    owner: str = ""
    language: str = ""
    theme: str = ""
    q: str = ""
    sort: str = ""
    dir: str = ""

    @classmethod
    def from_args(cls, args) -> InboxFilters:
        f = cls(**{fld.name: (args.get(fld.name) or "").strip()[:200] for fld in fields(cls)})
        if f.channel not in CHANNELS:
            f.channel = ""
        if f.category not in CATEGORIES:
            f.category = ""
        if f.risk not in RISK_BANDS:
            f.risk = ""
        if f.status not in STATUS_CHOICES:
            f.status = "open"
        if f.view not in VIEWS:
            # Links from before the case views named a status: they meant the item list.
            f.view = "feedback" if f.status != "open" else "todo"
        if "\x00" in f.theme:  # PostgreSQL refuses NUL in text: a broken link, not a server error
            f.theme = ""
        sorts = ITEM_SORTS if f.view == "feedback" else CASE_SORTS
        if f.sort not in sorts:
            f.sort = ""
        if f.dir not in ("asc", "desc"):
            f.dir = ""
        return f

    @property
    def is_case_view(self) -> bool:
        return self.view != "feedback"

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items()
                if v and not (k == "status" and v == "open") and not (k == "view" and v == "todo")}

    def item_conditions(self, with_text: bool = True) -> list[Any]:
        """Conditions on a feedback item (``F``) from the item filters (``q`` too unless not ``with_text``)."""
        conds: list[Any] = []
        if self.channel:
            conds.append(F.channel == self.channel)
        if self.source:
            conds.append(F.source == self.source)
        if self.category:
            conds.append(F.category == self.category)
        if self.language:
            conds.append(F.language == self.language)
        if self.theme:
            conds.append(has_theme(self.theme))
        if self.q and with_text:
            # The text, or who wrote it: a name, an e-mail address or a handle (index-backed).
            # Once per request: the page, its count and the tabs would each ask the index again.
            conds.append(self._text_match().condition)
        return conds

    def _text_match(self) -> TextCondition:
        cache = flask.g.setdefault("inbox_text_match", {})
        if self.q not in cache:
            cache[self.q] = item_or_author_condition(db_session(), self.q)
        return cache[self.q]

    @property
    def counts_with_page(self) -> bool:
        """A case view searching a common term: its page and capped count come
        from one query (:func:`_first_cases`).  Other item filters match most
        cases, so their capped count stops early and stays a query of its own."""
        return self.is_case_view and bool(self.q) and self._text_match().many

    def _risk(self, q: Select, column) -> Select:
        if self.risk:
            low, high = RISK_BANDS[self.risk]
            if low is not None:
                q = q.where(column >= low)
            if high is not None:
                q = q.where(column < high)
        return q

    def _owner(self, q: Select, username: str, case_only: bool) -> Select:
        if self.owner == "me":
            q = q.where(C.owner == username)
        elif self.owner == "none":
            q = q.where(C.owner.is_(None) if case_only else and_(F.case_id.is_not(None), C.owner.is_(None)))
        elif self.owner:
            q = q.where(C.owner == self.owner)
        return q

    def apply(self, q: Select, username: str) -> Select:
        """Filter an item query (``F`` outer-joined to ``C``): the All feedback view."""
        if self.status == "open":
            q = q.where(or_(C.status.in_(OPEN_CASE_STATUSES), and_(F.case_id.is_(None), F.dismissed_at.is_(None))))
        elif self.status == "none":
            q = q.where(F.case_id.is_(None))
        elif self.status != "all":
            q = q.where(C.status == self.status)
        for cond in self.item_conditions():
            q = q.where(cond)
        q = self._risk(q, F.risk)
        return self._owner(q, username, case_only=False)

    def apply_cases(self, q: Select, username: str, today: tuple[dt.datetime, dt.datetime]) -> Select:
        """Filter a case query (``C``) for a case view."""
        # The statuses as literals, not bound parameters: the to-do view's partial index
        # (ix_case_todo_order, migration 0016) is read only where the planner can prove
        # its predicate, and neither database does that through parameters.
        statuses = list(VIEW_STATUSES[self.view])
        q = q.where(C.status.in_(bindparam(f"{self.view}_statuses", statuses, expanding=True, literal_execute=True)))
        if self.view == "callbacks":
            start, end = today
            q = q.where(C.owner == username, exists().where(
                FU.case_id == C.id, FU.status.in_(OPEN_FOLLOWUP), FU.due_at >= start, FU.due_at < end))
        conds = self.item_conditions(with_text=False)
        # A common term alone (PostgreSQL): the matching cases' ids first (search.cases_matching).
        by_array = cases_matching(db_session(), self._text_match(), conds) if self.q else None
        if by_array is not None:
            q = q.where(by_array)
        elif conds or self.q:
            conds += [self._text_match().condition] if self.q else []
            # SELECT id, not *: the filters and the id are all in ix_feedback_item_case_filters.
            q = q.where(select(F.id).where(F.case_id == C.id, *conds).exists())
        q = self._risk(q, C.risk)
        return self._owner(q, username, case_only=True)

    def case_order(self) -> list[Any]:
        key, direction = (self.sort, self.dir or "asc") if self.sort else DEFAULT_SORT[self.view]
        if key == "action":
            # What needs action first: the soonest SLA (overdue first, none last), then the
            # risk: the order of ix_case_todo_order, which leads with "IS NULL" (SQLite's
            # B-tree sorts NULL first), so a page is read from the index, unsorted.
            return [C.sla_due_at.is_(None), C.sla_due_at, C.risk.desc(), C.id]
        if key == "closed":
            return [C.closed_at.desc().nulls_last(), C.id.desc()]
        column = CASE_SORTS[key]()
        ordered = column.desc().nulls_last() if direction == "desc" else column.asc().nulls_last()
        return [ordered, C.risk.desc(), C.id]

    def item_order(self) -> list[Any]:
        if not self.sort:
            # Worst first, newest first among equals: the order of ix_feedback_item_risk_id
            # (SQLite: ix_feedback_item_risk_text; channel_risk for a channel), so a page
            # is read from the index.  A tie-break on the case's SLA sorted each whole
            # risk group (25,000 items at risk 100 in a million: 0.4 s); the to-do view
            # is where the SLA orders.
            return [F.risk.desc(), F.id.desc()]
        column = ITEM_SORTS[self.sort]()
        ordered = column.desc().nulls_last() if (self.dir or "desc") == "desc" else column.asc().nulls_last()
        return [ordered, F.id.desc()]


def today_bounds() -> tuple[dt.datetime, dt.datetime]:
    """Today in the team's time zone, by the hub's clock, as UTC bounds."""
    local = now().astimezone(team_tz())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=1, hours=2)).replace(hour=0)  # a DST day is 23 or 25 h
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _base() -> Select:
    return (
        select(F.id, F.channel, F.source, F.occurred_at, F.received_at, F.text, F.language, F.nps, F.reach,
               F.category, F.risk, F.risk_reasons, F.extra, F.url, F.customer_id, F.case_id, F.dismissed_at,
               F.dismissed_by, C.status, C.owner, C.sla_due_at, CU.name)
        .outerjoin(C, C.id == F.case_id)
        .outerjoin(CU, CU.id == F.customer_id)
    )


@dataclass
class Row:
    id: int
    channel: str
    source: str
    occurred_at: Any
    text: str | None
    language: str | None
    nps: int | None
    reach: int | None
    category: str | None
    risk: int
    reasons: list[dict[str, Any]]
    url: str | None
    customer_id: int | None
    case_id: int | None
    status: str | None
    owner: str | None
    sla_due_at: Any
    customer: str | None
    handle: str | None = None
    themes: list[str] = field(default_factory=list)
    #: Why an item has no case (shown with "open case" and "dismiss").
    no_case_why: str | None = None
    dismissed: bool = False


@dataclass
class CaseRow:
    """One case in a case view, with its latest item."""

    id: int
    status: str
    owner: str | None
    risk: int
    priority: str
    sla_due_at: Any
    callback_due: Any
    customer_id: int | None
    customer: str | None
    version: int
    answered_publicly_at: Any
    item_count: int = 0
    channels: list[str] = field(default_factory=list)
    latest: Row | None = None
    handle: str | None = None


def why_no_case(r: Any) -> str:
    """A sentence for an item that opened no case, from what the item says and
    the escalation settings (the decision's reason is not stored)."""
    if r.dismissed_at is not None:
        return gettext("Dismissed by {name}.", name=r.dismissed_by or "-")
    cfg = current_hub().config
    max_age = float(cfg.get("planner", {}).get("max_callback_age_days", 30))
    if r.received_at and r.occurred_at and r.received_at - r.occurred_at > dt.timedelta(days=max_age):
        return gettext("Older than {n} days when it arrived: too late for a callback.", n=f"{max_age:g}")
    threshold = int(cfg.get("scoring", {}).get("risk_threshold", 40))
    if r.risk < threshold and r.category != "detractor":
        return gettext("Risk {risk} is below the threshold of {n} and it is no detractor.", risk=r.risk, n=threshold)
    return gettext("No case was opened for it.")


def _handles(customer_ids: set[int]) -> dict[int, str]:
    """The handle (else the address) shown under each customer's name, one
    query for the page.  A handle is an identity of a kind that makes nobody
    reachable (a social network's username), shown as its kind displays it."""
    if not customer_ids:
        return {}
    registry = current_hub().registry
    skip = sorted(registry.reachable_kinds - {"email"})
    found: dict[int, dict[str, str]] = {}
    # Oldest identity first, sorted here: an ORDER BY id tempts SQLite to walk the
    # whole table in id order instead of using ix_identity_customer_kind.
    for _id, cid, kind, value in sorted(db_session().connection().execute(
        select(m.Identity.id, m.Identity.customer_id, m.Identity.kind, m.Identity.value)
        .where(m.Identity.customer_id.in_(customer_ids), m.Identity.kind.notin_(skip))
    )):
        found.setdefault(cid, {}).setdefault(kind, value)
    out = {}
    for cid, known in found.items():
        handle = next(((k, v) for k, v in known.items() if k != "email"), None)
        shown = registry.identity_kind(handle[0]).show(handle[1]) if handle else known.get("email")
        if shown:
            out[cid] = shown
    return out


def _control_cases_of(case_ids: list[int]) -> None:
    """Tell the control badge (``is_control_case`` in the row macros) which of the
    page's cases are in the control group, in one query: it asked per case that
    was not an open control case, 50 queries a page."""
    if case_ids:
        control = set(db_session().connection().execute(
            select(C.id).where(C.id.in_(set(case_ids)), C.control.is_(True))).scalars())
        control_cases().learn({i: i in control for i in case_ids})


def _rows(result, with_people: bool = True) -> list[Row]:
    """Item rows from ``result`` (``_base()``'s columns); ``with_people=False``
    leaves the handles and control badges to the caller (:func:`_case_rows`
    asks once for a page's cases and their latest items together)."""
    rows = []
    for r in result:
        reasons = sorted(r.risk_reasons or [], key=lambda s: -float(s.get("weight", 0)))
        rows.append(Row(r.id, r.channel, r.source, r.occurred_at, r.text, r.language, r.nps, r.reach, r.category,
                        r.risk, reasons, r.url, r.customer_id, r.case_id, r.status, r.owner, r.sla_due_at, r.name,
                        themes=themes_of_extra(r.extra), dismissed=r.dismissed_at is not None,
                        no_case_why=why_no_case(r) if r.case_id is None else None))
    if with_people:
        handles = _handles({r.customer_id for r in rows if r.customer_id})
        _control_cases_of([r.case_id for r in rows if r.case_id])
        for row in rows:
            row.handle = handles.get(row.customer_id or 0)
    return rows


def _case_rows(result) -> list[CaseRow]:
    """Case rows with their item counts, channels and latest item: three queries
    for a page (the counts and channels come grouped by case and channel together;
    the handles are asked once for the cases and their latest items)."""
    result = list(result)
    cases = [CaseRow(r.id, r.status, r.owner, r.risk, r.priority, r.sla_due_at, r.callback_due, r.customer_id,
                     r.name, r.version, r.answered_publicly_at) for r in result]
    if not cases:
        return cases
    # The control badges of the page, from the case rows themselves (no query of their own).
    control_cases().learn({r.id: bool(r.control) for r in result})
    conn = db_session().connection()
    counts: dict[int, int] = {}
    newest: dict[int, int] = {}
    channels: dict[int, set[str]] = {}
    for cid, channel, n, latest_id in conn.execute(
            select(F.case_id, F.channel, func.count(), func.max(F.id))
            .where(F.case_id.in_([c.id for c in cases])).group_by(F.case_id, F.channel)):
        counts[cid] = counts.get(cid, 0) + n
        newest[cid] = max(newest.get(cid, 0), latest_id)
        channels.setdefault(cid, set()).add(channel)
    latest = ({r.id: r for r in _rows(conn.execute(_base().where(F.id.in_(list(newest.values())))),
                                      with_people=False)} if newest else {})
    handles = _handles({c.customer_id for c in cases if c.customer_id}
                       | {r.customer_id for r in latest.values() if r.customer_id})
    for c in cases:
        c.item_count, c.channels, c.latest = counts.get(c.id, 0), sorted(channels.get(c.id, ())), latest.get(
            newest.get(c.id))
        c.handle = handles.get(c.customer_id or 0)
    for row in latest.values():
        row.handle = handles.get(row.customer_id or 0)
    return cases


def _choices() -> dict[str, list[str]]:
    """Sources, languages and owners for the filter menus, cached a minute:
    a DISTINCT over every item on each page view would cost more than the page."""
    app = flask.current_app
    cache = app.extensions.setdefault("hub_web_choices", {})
    if cache.get("at", 0) > time.monotonic() - 60:
        return cache["value"]
    session = db_session()
    hub = current_hub()
    sources = set(hub.registry.sources) | set(session.scalars(select(F.source).distinct()))
    languages = {x for x in session.scalars(select(F.language).distinct()) if x}
    # The configured taxonomy's themes, in its order (an item only carries those).
    themes = list(hub.config.get("enrich", {}).get("themes", {}))
    value = {"sources": sorted(sources), "languages": sorted(languages), "themes": themes}
    cache.update(at=time.monotonic(), value=value)
    return value


def _owners() -> list[str]:
    # Not cached: a user created a moment ago is assignable at once.
    return list(db_session().scalars(select(m.User.username).where(
        m.User.active.is_(True), m.User.role.in_(("agent", "admin"))).order_by(m.User.username)))


def _page_no() -> int:
    page = flask.request.args.get("page", "1")
    return min(MAX_PAGE, int(page)) if page.isdigit() and int(page) > 0 else 1


def _counts(username: str, today: tuple[dt.datetime, dt.datetime], capped: Select | None) -> Select:
    """One row: how many cases each case view holds (capped), for the view tabs; the
    newest item's id (where the live updates start); with ``capped``, the page's own
    capped count as ``total``.  One query: a round trip each cost a PostgreSQL page ~1 ms
    apiece, and it runs beside the page's query (hub.web.side_query)."""
    columns = []
    for view in VIEW_STATUSES:
        if view == "done":
            continue  # grows for ever: no count worth a query
        q = InboxFilters(view=view).apply_cases(select(C.id), username, today).limit(COUNT_CAP + 1)
        columns.append(select(func.count()).select_from(q.subquery()).scalar_subquery().label(view))
    columns.append(select(func.max(F.id)).scalar_subquery().label("latest"))
    if capped is not None:
        columns.append(select(func.count()).select_from(capped.subquery()).scalar_subquery().label("total"))
    return select(*columns)


def _capped(filters: InboxFilters, username: str, today: tuple[dt.datetime, dt.datetime]) -> Select | None:
    """The page's rows up to the cap, to count; None where the page's own query counts them
    (a case view searching a common term)."""
    if filters.counts_with_page:
        return None
    if filters.is_case_view:
        return filters.apply_cases(select(C.id), username, today).limit(COUNT_CAP + 1)
    return filters.apply(select(F.id).outerjoin(C, C.id == F.case_id), username).limit(COUNT_CAP + 1)


def _view_counts(row: Any) -> dict[str, int]:
    return {view: row._mapping[view] or 0 for view in VIEW_STATUSES if view != "done"}


def _ordered_case_ids(filters: InboxFilters, username: str, today: tuple[dt.datetime, dt.datetime]) -> Select:
    """The ids of the view's cases that pass the filters, in the view's order (no limit yet)."""
    q = filters.apply_cases(select(C.id), username, today)
    if (filters.sort or DEFAULT_SORT[filters.view][0]) == "customer":
        q = q.outerjoin(CU, CU.id == C.customer_id)
    return q.order_by(*filters.case_order())


def _first_cases(filters: InboxFilters, username: str, today: tuple[dt.datetime, dt.datetime],
                 need: int) -> list[int]:
    """The first ``need`` of the view's cases that hold an item passing the item
    filters, in the view's order: the page and its capped count from one query.

    A common search term is in a minority of a to-do list's cases (at a million
    items, "storing" in 4,240 of 20,680), so the count up to the cap reads most
    cases' items whatever the form; one pass with ``EXISTS`` per case, then the
    sort, does it once, where the page query and the count query did it twice.
    SQLite answers each ``EXISTS`` from ix_feedback_item_case_text (about 1 us a
    case); a walk a chunk of cases at a time, in Python, cost twice the query.
    PostgreSQL reads each case's items from the heap (a long text does not fit
    a B-tree entry), ~40 ms at a million items: once, not again for the count."""
    # Core results, not ORM ones: up to the cap of ids.
    return db_session().connection().execute(_ordered_case_ids(filters, username, today).limit(need)).scalars().all()


def _case_page(filters: InboxFilters, username: str, today: tuple[dt.datetime, dt.datetime],
               page_no: int) -> list[CaseRow]:
    """A page of a case view in two steps: the page's case ids, from the filters
    and sort keys alone (ix_case_todo_order holds the to-do view in its order,
    ix_case_status_due the others' keys), then those cases with
    their customer and next callback.  In one query every case of the view was
    joined to its customer and had its callback looked up before the sort
    (20,000 open cases: 0.1 s)."""
    ids_q = _ordered_case_ids(filters, username, today).limit(PAGE_SIZE).offset((page_no - 1) * PAGE_SIZE)
    return _cases_of(db_session().connection().execute(ids_q).scalars().all())


def _cases_of(ids: list[int]) -> list[CaseRow]:
    """The rows of the cases ``ids``, in that order, with their customer and next callback."""
    if not ids:
        return []
    found = {r.id: r for r in db_session().connection().execute(
        select(C.id, C.status, C.owner, C.risk, C.priority, C.sla_due_at, C.customer_id, C.version,
               C.answered_publicly_at, C.control, CU.name, _callback_due().label("callback_due"))
        .outerjoin(CU, CU.id == C.customer_id).where(C.id.in_(ids)))}
    return _case_rows([found[i] for i in ids if i in found])


@bp.get("/")
def index():
    filters = InboxFilters.from_args(flask.request.args)
    page_no = _page_no()
    user = current_user()
    session = db_session()
    today = today_bounds()
    rows: list[Any]
    capped = _capped(filters, user.username, today)
    # Started first: the counts are read while the page's own query runs.
    counts = side_row(current_hub().db, session, _counts(user.username, today, capped))
    if filters.counts_with_page:
        offset = (page_no - 1) * PAGE_SIZE
        found = _first_cases(filters, user.username, today, max(COUNT_CAP + 1, offset + PAGE_SIZE + 1))
        rows = _cases_of(found[offset:offset + PAGE_SIZE])
        total = min(len(found), COUNT_CAP + 1)
    elif filters.is_case_view:
        rows = _case_page(filters, user.username, today, page_no)
    else:
        q = filters.apply(_base(), user.username)
        rows = _rows(session.connection().execute(q.order_by(*filters.item_order())
                                     .limit(PAGE_SIZE).offset((page_no - 1) * PAGE_SIZE)))
    row = counts()
    if capped is not None:
        total = row.total
    view_counts, latest = _view_counts(row), row.latest or 0
    hub = current_hub()
    saved = session.scalars(select(m.SavedView).order_by(m.SavedView.name)).all()
    return flask.render_template(
        "inbox.html", rows=rows, filters=filters, total=total, count_cap=COUNT_CAP, page=page_no,
        has_next=len(rows) == PAGE_SIZE and page_no < MAX_PAGE, latest=latest, choices=_choices(),
        owners=_owners(), channels=CHANNELS, categories=CATEGORIES, statuses=CASE_STATUSES, views=VIEWS,
        view_counts=view_counts, saved_views=saved, current_query=_query_of(filters),
        poll_ms=int(float(hub.config.get("web", {}).get("poll_seconds", 5)) * 1000),
    )


def _query_of(filters: InboxFilters) -> str:
    return urlencode(filters.as_args())


@bp.get("/inbox/updates.json")
@background
def updates():
    """Items newer than ``after`` that pass the page's filters, as row HTML
    (All feedback), or only how many arrived (case views: the page offers a reload)."""
    filters = InboxFilters.from_args(flask.request.args)
    after = flask.request.args.get("after", "")
    if not after.isdigit():
        return flask.jsonify(error={"code": "invalid", "message": "after must be an item id"}), 400
    if filters.is_case_view:
        # ORDER BY id: read from the rowid (a few rows past ``after``); unordered, SQLite's
        # sampled statistics once had it scan a small covering index whole (50 ms).
        newer = select(F.id).where(F.id > int(after), *filters.item_conditions()).order_by(F.id).limit(COUNT_CAP)
        ids = list(db_session().scalars(newer))
        return flask.jsonify(latest=max([int(after), *ids]), rows=[], new=len(ids))
    q = filters.apply(_base(), current_user().username).where(F.id > int(after))
    rows = _rows(db_session().connection().execute(q.order_by(F.id).limit(PAGE_SIZE)))
    macro = flask.get_template_attribute("_rows.html", "row")
    return flask.jsonify(
        latest=max([int(after)] + [r.id for r in rows]),
        rows=[{"id": r.id, "risk": r.risk, "html": str(macro(r, True))} for r in rows],
        new=len(rows),
    )


# -- actions ----------------------------------------------------------------------
def _back():
    return flask.redirect(safe_next(flask.request.form.get("next"), flask.url_for("inbox.index")))


def _actor() -> str:
    return f"user:{current_user().username}"


def _case_ids() -> list[int]:
    raw = flask.request.form.getlist("case_id")
    return sorted({int(x) for x in raw if x.isdigit()})[:BULK_MAX]


@bp.post("/inbox/bulk")
@requires("agent")
def bulk():
    """Assign or close the ticked cases; each change goes through the lifecycle
    and is audited.  Cases that cannot take the action are counted, not failed."""
    ids = _case_ids()
    action = flask.request.form.get("action", "")
    if not ids or action not in ("assign", "close"):
        flask.flash(gettext("Tick one or more cases and choose an action."), "error")
        return _back()
    session = db_session()
    owner = flask.request.form.get("owner", "")
    if action == "assign":
        owner = current_user().username if owner == "me" else owner
        if owner not in _owners():
            flask.flash(gettext("No such user."), "error")
            return _back()
    done, skipped = 0, 0
    current = now()
    for case in session.scalars(select(C).where(C.id.in_(ids)).order_by(C.id)):
        if not lifecycle.is_open(case):
            skipped += 1
            continue
        if action == "assign":
            previous, case.owner = case.owner, owner
            lifecycle.advance(case, "assigned", actor=_actor(), now=current, action="case.assigned", owner=owner,
                              previous_owner=previous, bulk=True)
        else:
            for f in session.scalars(select(FU).where(FU.case_id == case.id, FU.status.in_(("pending", "failed")))):
                f.status, f.last_error = "dead", "cancelled: case closed without callback"
            lifecycle.transition(case, "closed", actor=_actor(), now=current, reason="bulk close", bulk=True)
        done += 1
    session.commit()
    message = (gettext("{n} cases assigned to {name}.", n=done, name=owner) if action == "assign"
               else gettext("{n} cases closed.", n=done))
    if skipped:
        message += " " + gettext("{n} already closed, left as they were.", n=skipped)
    flask.flash(message, "ok")
    return _back()


def _caseless_item(item_id: int) -> m.FeedbackItem:
    item = db_session().get(F, item_id)
    if item is None:
        flask.abort(404)
    return item


def _priority(risk: int) -> str:
    return "urgent" if risk >= 80 else "high" if risk >= 60 else "normal" if risk >= 30 else "low"


@bp.post("/inbox/items/<int:item_id>/open-case")
@requires("agent")
def open_case(item_id: int):
    """Open a case for an item that did not escalate (or join the customer's open case)."""
    session = db_session()
    item = _caseless_item(item_id)
    if item.case_id is not None:
        return flask.redirect(flask.url_for("cases.show", case_id=item.case_id))
    current = now()
    case = None
    if item.customer_id is not None:
        case = session.scalars(select(C).where(C.customer_id == item.customer_id,
                                               C.status.in_(OPEN_CASE_STATUSES)).order_by(C.id.desc())).first()
    if case is None:
        # The team and SLA as the pipeline would have given them (business hours of the team).
        priority = _priority(item.risk)
        planner = planner_for(current_hub(), session, current)
        team = planner.team_for(themes_of_extra(item.extra), item.channel).name
        case = C(customer_id=item.customer_id, status="new", priority=priority, risk=item.risk, team=team,
                 sla_due_at=planner.sla_due(priority, current, None, team), opened_at=current, updated_at=current)
        session.add(case)
        session.flush()
        action = "case.opened"
    else:
        case.risk, case.updated_at = max(case.risk, item.risk), current
        action = "case.item_joined"
    item.case_id, item.dismissed_at, item.dismissed_by = case.id, None, None
    audit_trail.record(session, actor=_actor(), action=action, at=current, case_id=case.id, item_id=item.id)
    session.commit()
    flask.flash(gettext("Case {id} opened for this feedback.", id=case.id) if action == "case.opened"
                else gettext("Added to the customer's open case {id}.", id=case.id), "ok")
    return flask.redirect(flask.url_for("cases.show", case_id=case.id))


@bp.post("/inbox/items/<int:item_id>/dismiss")
@requires("agent")
def dismiss(item_id: int):
    session = db_session()
    item = _caseless_item(item_id)
    if item.case_id is not None:
        flask.flash(gettext("This feedback belongs to a case: close the case instead."), "error")
        return _back()
    item.dismissed_at, item.dismissed_by = now(), current_user().username
    audit_trail.record(session, actor=_actor(), action="item.dismissed", at=item.dismissed_at, item_id=item.id)
    session.commit()
    flask.flash(gettext("Dismissed: it no longer waits in the inbox."), "ok")
    return _back()


# -- saved views --------------------------------------------------------------------
def _clean_query(raw: str) -> str:
    """Only the inbox's own parameters survive, re-encoded (no page number)."""
    args = dict(parse_qsl(raw.lstrip("?"), keep_blank_values=False))
    return urlencode(InboxFilters.from_args(args).as_args())


@bp.post("/inbox/views")
def save_view():
    session = db_session()
    name = " ".join((flask.request.form.get("name") or "").split())[:80]
    query = _clean_query(flask.request.form.get("query") or "")
    if not name:
        flask.flash(gettext("Give the view a name."), "error")
        return flask.redirect(flask.url_for("inbox.index") + ("?" + query if query else ""))
    if session.scalar(select(m.SavedView.id).where(m.SavedView.name == name)) is not None:
        flask.flash(gettext("A view named {name} exists already: pick another name.", name=name), "error")
        return flask.redirect(flask.url_for("inbox.index") + ("?" + query if query else ""))
    view = m.SavedView(name=name, query=query, created_by=current_user().username, created_at=now())
    session.add(view)
    session.flush()
    audit_trail.record(session, actor=_actor(), action="view.saved", at=view.created_at, view_id=view.id)
    session.commit()
    flask.flash(gettext("View {name} saved for the team.", name=name), "ok")
    return flask.redirect(flask.url_for("inbox.index") + ("?" + query if query else ""))


@bp.post("/inbox/views/<int:view_id>/delete")
def delete_view(view_id: int):
    session = db_session()
    view = session.get(m.SavedView, view_id)
    if view is None:
        flask.abort(404)
    user = current_user()
    if view.created_by != user.username and user.role != "admin":
        audit_trail.record(session, actor=_actor(), action="view.delete_refused", at=now(), view_id=view.id,
                           denied=True)
        session.commit()
        flask.flash(gettext("Only {name} or an admin can delete this view.", name=view.created_by), "error")
        return flask.redirect(flask.url_for("inbox.index")), 303
    audit_trail.record(session, actor=_actor(), action="view.deleted", at=now(), view_id=view.id)
    session.delete(view)
    session.commit()
    flask.flash(gettext("View {name} deleted.", name=view.name), "ok")
    return flask.redirect(flask.url_for("inbox.index"))
