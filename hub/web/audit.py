"""The audit page (admins): who did what, filtered, and exported as CSV.

Every area writes through :func:`hub.engine.audit.record` with actors
``kind:name``; this page filters by that kind, the action, the case and a date
range in the team's time zone (the dates an admin thinks in), newest first,
paged by id.  The CSV holds the same rows with local times and an offset, so a
spreadsheet shows what the page shows.  Details are ids by rule (no
customers' text), so exporting them is safe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import flask
from sqlalchemy import Select, or_, select

from hub.storage import models as m
from hub.web.common import db_session, ui_blueprint
from hub.web.filters import team_tz
from hub.web.i18n import gettext

bp = ui_blueprint("audit", __name__, url_prefix="/admin/audit", min_role="admin")

PAGE_SIZE = 100
#: A CSV export stops here (a year of a busy hub); narrow the dates for more.
MAX_EXPORT_ROWS = 200_000
#: The actor kinds the hub writes (``kind:name`` or the bare kind).
ACTOR_KINDS = ("user", "token", "cli", "scheduler", "dispatcher", "sink", "webhook", "system", "customer",
               "anonymous")
MAX_ID = 2**63 - 1


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class AuditFilters:
    kind: str | None = None
    action: str | None = None
    case_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    denied: bool = False

    @classmethod
    def from_args(cls, args: Any) -> AuditFilters:
        kind = args.get("kind") or None
        if kind is not None and kind not in ACTOR_KINDS:
            raise BadFilter(gettext("Unknown actor kind."))
        action = (args.get("action") or "").strip() or None
        if action is not None and (len(action) > 100 or "\x00" in action):
            raise BadFilter(gettext("The action is at most 100 characters."))
        return cls(kind=kind, action=action, case_id=_case_id(args.get("case")),
                   date_from=_date(args.get("from")), date_to=_date(args.get("to")),
                   denied=args.get("denied") == "1")

    def query_args(self) -> dict[str, str]:
        """These filters as query parameters (for the CSV link and paging)."""
        out = {"kind": self.kind, "action": self.action, "case": self.case_id, "denied": "1" if self.denied else None,
               "from": self.date_from.isoformat() if self.date_from else None,
               "to": self.date_to.isoformat() if self.date_to else None}
        return {k: str(v) for k, v in out.items() if v is not None}


def _case_id(raw: str | None) -> int | None:
    raw = (raw or "").strip().lstrip("#")
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise BadFilter(gettext("The case is a case number."))
    return int(raw)


def _date(raw: str | None) -> dt.date | None:
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise BadFilter(gettext("Dates are written 2026-11-20.")) from None
    if not 1970 <= day.year <= 2200:
        raise BadFilter(gettext("Dates are written 2026-11-20."))
    return day


def _local_midnight(day: dt.date) -> dt.datetime:
    """The start of ``day`` in the team's time zone, as UTC."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=team_tz()).astimezone(dt.UTC)


def filtered(f: AuditFilters) -> Select:
    q = select(m.AuditEvent)
    if f.kind:
        q = q.where(or_(m.AuditEvent.actor == f.kind, m.AuditEvent.actor.startswith(f"{f.kind}:", autoescape=True)))
    if f.action:
        # An exact action, or a family: "token" finds token.created and token.revoked.
        q = q.where(or_(m.AuditEvent.action == f.action,
                        m.AuditEvent.action.startswith(f"{f.action.rstrip('.')}.", autoescape=True)))
    if f.case_id is not None:
        q = q.where(m.AuditEvent.case_id == f.case_id)
    if f.date_from:
        q = q.where(m.AuditEvent.at >= _local_midnight(f.date_from))
    if f.date_to:
        q = q.where(m.AuditEvent.at < _local_midnight(f.date_to + dt.timedelta(days=1)))
    if f.denied:
        q = q.where(or_(m.AuditEvent.action.endswith(".denied"), m.AuditEvent.action.endswith("_failed"),
                        m.AuditEvent.action.endswith("_limited")))
    return q


def detail_text(detail: dict[str, Any] | None) -> str:
    """``key=value`` pairs, sorted, values as JSON when not plain text."""
    parts = []
    for key, value in sorted((detail or {}).items()):
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


@bp.get("/")
def index():
    try:
        filters = AuditFilters.from_args(flask.request.args)
        before = _case_id(flask.request.args.get("before"))
    except BadFilter as exc:
        return _page(AuditFilters(), [], None, str(exc), 400)
    q = filtered(filters)
    if before is not None:
        q = q.where(m.AuditEvent.id < before)
    rows = db_session().scalars(q.order_by(m.AuditEvent.id.desc()).limit(PAGE_SIZE + 1)).all()
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    return _page(filters, rows[:PAGE_SIZE], older)


def _page(filters: AuditFilters, rows: list[m.AuditEvent], older: int | None, error: str | None = None,
          status: int = 200):
    actions = db_session().scalars(select(m.AuditEvent.action).distinct().order_by(m.AuditEvent.action)).all()
    return flask.render_template("audit.html", rows=rows, filters=filters, args=filters.query_args(), older=older,
                                 kinds=ACTOR_KINDS, actions=actions, error=error, detail_text=detail_text,
                                 tab="audit"), status


@bp.get("/audit.csv")
def export():
    try:
        filters = AuditFilters.from_args(flask.request.args)
    except BadFilter as exc:
        flask.abort(400, str(exc))
    tz = team_tz()
    # Read now, inside the request: a streamed body would outlive the request's session.
    rows = db_session().execute(filtered(filters).with_only_columns(
        m.AuditEvent.id, m.AuditEvent.at, m.AuditEvent.actor, m.AuditEvent.action, m.AuditEvent.case_id,
        m.AuditEvent.detail).order_by(m.AuditEvent.id.desc()).limit(MAX_EXPORT_ROWS)).all()
    resp = flask.Response(_csv(rows, tz), mimetype="text/csv")
    resp.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _csv(rows: list[Any], tz: dt.tzinfo) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "time", "actor", "action", "case_id", "detail"])
    for number, (event_id, at, actor, action, case_id, detail) in enumerate(rows, 1):
        writer.writerow([event_id, at.astimezone(tz).isoformat(timespec="seconds"), _cell(actor), _cell(action),
                         case_id if case_id is not None else "", _cell(detail_text(detail))])
        if number % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(text: str) -> str:
    """No formulas: a spreadsheet runs a cell starting with = + - @ (a username can start so)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
