"""The webcare inbox: every channel in one list, worst first.

One row per feedback item (a survey answer, a post...), joined to its case
for status, owner and SLA due time.  Sorted by the item's escalation risk,
then by the case's SLA due time (soonest first), newest first within that.

Fast on large tables because it pages (50 rows) and the risk ordering walks
the ``(risk, id)`` index from the top: the first page is read from the
index's first few hundred entries, not by sorting 100k rows.  The total is
counted only up to :data:`COUNT_CAP` for the same reason.

New items reach an open page through ``/inbox/updates.json?after=<id>``
(polled by ``static/app.js``): items with a higher id that pass the same
filters, rendered by the same row macro, so escaping is identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import flask
from sqlalchemy import Select, and_, func, or_, select

from hub.engine.context import current_hub
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, CHANNELS, OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.storage.themes import has_theme, themes_of_extra
from hub.web.common import current_user, db_session, ui_blueprint

bp = ui_blueprint("inbox", __name__)

PAGE_SIZE = 50
COUNT_CAP = 1000
MAX_PAGE = 200
RISK_BANDS = {"high": (70, None), "medium": (40, None), "low": (None, 40)}
STATUS_CHOICES = ("open", "all", "none", *CASE_STATUSES)
F, C, CU = m.FeedbackItem, m.Case, m.Customer


@dataclass
class InboxFilters:
    """The inbox's URL parameters; unknown values are ignored, not errors,
    so an old shared link still opens."""

    channel: str = ""
    source: str = ""
    category: str = ""
    risk: str = ""
    status: str = "open"
    owner: str = ""
    language: str = ""
    theme: str = ""
    q: str = ""

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
        if "\x00" in f.theme:  # PostgreSQL refuses NUL in text: a broken link, not a server error
            f.theme = ""
        return f

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v and not (k == "status" and v == "open")}

    def apply(self, q: Select, username: str) -> Select:
        if self.status == "open":
            q = q.where(or_(C.status.in_(OPEN_CASE_STATUSES), F.case_id.is_(None)))
        elif self.status == "none":
            q = q.where(F.case_id.is_(None))
        elif self.status != "all":
            q = q.where(C.status == self.status)
        if self.channel:
            q = q.where(F.channel == self.channel)
        if self.source:
            q = q.where(F.source == self.source)
        if self.category:
            q = q.where(F.category == self.category)
        if self.language:
            q = q.where(F.language == self.language)
        if self.theme:
            q = q.where(has_theme(self.theme))
        if self.risk:
            low, high = RISK_BANDS[self.risk]
            if low is not None:
                q = q.where(F.risk >= low)
            if high is not None:
                q = q.where(F.risk < high)
        if self.owner == "me":
            q = q.where(C.owner == username)
        elif self.owner == "none":
            q = q.where(and_(F.case_id.is_not(None), C.owner.is_(None)))
        elif self.owner:
            q = q.where(C.owner == self.owner)
        if self.q:
            term = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            q = q.where(F.text.ilike(term, escape="\\"))
        return q


def _base() -> Select:
    return (
        select(F.id, F.channel, F.source, F.occurred_at, F.text, F.language, F.nps, F.reach, F.category, F.risk,
               F.risk_reasons, F.extra, F.url, F.customer_id, F.case_id, C.status, C.owner, C.sla_due_at, CU.name)
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


def _rows(result) -> list[Row]:
    rows = []
    for r in result:
        reasons = sorted(r.risk_reasons or [], key=lambda s: -float(s.get("weight", 0)))
        rows.append(Row(r.id, r.channel, r.source, r.occurred_at, r.text, r.language, r.nps, r.reach, r.category,
                        r.risk, reasons, r.url, r.customer_id, r.case_id, r.status, r.owner, r.sla_due_at, r.name,
                        themes=themes_of_extra(r.extra)))
    ids = {r.customer_id for r in rows if r.customer_id}
    if ids:
        # One query for the page: the handle (else the address) shown under the
        # name.  A handle is an identity of a kind that makes nobody reachable
        # (a social network's username), shown as its kind displays it ("@janb").
        registry = current_hub().registry
        skip = sorted(registry.reachable_kinds - {"email"})
        found: dict[int, dict[str, str]] = {}
        for cid, kind, value in db_session().execute(
            select(m.Identity.customer_id, m.Identity.kind, m.Identity.value)
            .where(m.Identity.customer_id.in_(ids), m.Identity.kind.notin_(skip))
            .order_by(m.Identity.id)
        ):
            found.setdefault(cid, {}).setdefault(kind, value)
        for r in rows:
            known = found.get(r.customer_id or 0, {})
            handle = next(((k, v) for k, v in known.items() if k != "email"), None)
            r.handle = registry.identity_kind(handle[0]).show(handle[1]) if handle else known.get("email")
    return rows


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
    owners = list(session.scalars(select(m.User.username).where(
        m.User.active.is_(True), m.User.role.in_(("agent", "admin"))).order_by(m.User.username)))
    # The configured taxonomy's themes, in its order (an item only carries those).
    themes = list(hub.config.get("enrich", {}).get("themes", {}))
    value = {"sources": sorted(sources), "languages": sorted(languages), "owners": owners, "themes": themes}
    cache.update(at=time.monotonic(), value=value)
    return value


@bp.get("/")
def index():
    filters = InboxFilters.from_args(flask.request.args)
    page = flask.request.args.get("page", "1")
    page_no = min(MAX_PAGE, int(page)) if page.isdigit() and int(page) > 0 else 1
    user = current_user()
    session = db_session()
    q = filters.apply(_base(), user.username)
    ordered = q.order_by(F.risk.desc(), C.sla_due_at.asc().nulls_last(), F.id.desc())
    rows = _rows(session.execute(ordered.limit(PAGE_SIZE).offset((page_no - 1) * PAGE_SIZE)))
    capped = filters.apply(select(F.id).outerjoin(C, C.id == F.case_id), user.username).limit(COUNT_CAP + 1)
    total = session.scalar(select(func.count()).select_from(capped.subquery()))
    latest = session.scalar(select(func.max(F.id))) or 0
    hub = current_hub()
    return flask.render_template(
        "inbox.html", rows=rows, filters=filters, total=total, count_cap=COUNT_CAP, page=page_no,
        has_next=len(rows) == PAGE_SIZE and page_no < MAX_PAGE, latest=latest, choices=_choices(),
        channels=CHANNELS, categories=CATEGORIES, statuses=CASE_STATUSES,
        poll_ms=int(float(hub.config.get("web", {}).get("poll_seconds", 5)) * 1000),
    )


@bp.get("/inbox/updates.json")
def updates():
    """Items newer than ``after`` that pass the page's filters, as row HTML."""
    filters = InboxFilters.from_args(flask.request.args)
    after = flask.request.args.get("after", "")
    if not after.isdigit():
        return flask.jsonify(error={"code": "invalid", "message": "after must be an item id"}), 400
    q = filters.apply(_base(), current_user().username).where(F.id > int(after))
    rows = _rows(db_session().execute(q.order_by(F.id).limit(PAGE_SIZE)))
    macro = flask.get_template_attribute("_rows.html", "row")
    return flask.jsonify(
        latest=max([int(after)] + [r.id for r in rows]),
        rows=[{"id": r.id, "risk": r.risk, "html": str(macro(r, True))} for r in rows],
    )
