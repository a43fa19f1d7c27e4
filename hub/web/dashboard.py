"""The dashboard: is the loop being closed, and how loaded is the call centre?

Figures for a window of 7, 30 or 90 days, bucketed in the team's time zone
(a callback at 09:30 in Amsterdam counts in the 9 o'clock column).  Counts
that can run over every open case are done in SQL; per-day and per-hour
buckets read only the window's rows.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict

import flask
from sqlalchemy import case as sql_case
from sqlalchemy import func, select

from hub.engine.context import current_hub
from hub.engine.planner import hourly_load
from hub.sdk.schema import OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.storage.themes import themes_of_extra
from hub.web import charts
from hub.web.charts import Bar
from hub.web.common import db_session, now, ui_blueprint
from hub.web.filters import duration, team_tz
from hub.web.i18n import gettext, theme_label

bp = ui_blueprint("dashboard", __name__)
WINDOWS = (7, 30, 90)
#: Time-to-first-contact buckets: (upper bound in hours, label).
TTFC_BUCKETS = ((1, "< 1 h"), (4, "1-4 h"), (24, "4-24 h"), (48, "1-2 d"), (120, "2-5 d"), (None, "> 5 d"))


def nps_of(scores: list[int]) -> float | None:
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return 100.0 * (promoters - detractors) / len(scores)


def _nps_series(session, start: dt.datetime, days: int, tz) -> tuple[list, list[int]]:
    rows = session.execute(select(m.FeedbackItem.occurred_at, m.FeedbackItem.nps).where(
        m.FeedbackItem.nps.is_not(None), m.FeedbackItem.occurred_at >= start)).all()
    weekly = days > 31
    buckets: dict[dt.date, list[int]] = defaultdict(list)
    every: list[int] = []
    for occurred, score in rows:
        day = occurred.astimezone(tz).date()
        if weekly:
            day -= dt.timedelta(days=day.weekday())
        buckets[day].append(score)
        every.append(score)
    first = start.astimezone(tz).date()
    if weekly:
        first -= dt.timedelta(days=first.weekday())
    step = dt.timedelta(days=7 if weekly else 1)
    points = []
    day = first
    last = now().astimezone(tz).date()
    while day <= last:
        scores = buckets.get(day, [])
        share = sum(1 for s in scores if s <= 6) / len(scores) if scores else None
        points.append((day.strftime("%d-%m"), nps_of(scores), share, len(scores)))
        day += step
    return points, every


def _sla_states(session, current: dt.datetime) -> list[tuple[str, str, int]]:
    due = m.Case.sla_due_at
    end_of_day = current.astimezone(team_tz()).replace(hour=23, minute=59, second=59).astimezone(dt.UTC)
    # A contacted case met its first-contact SLA, whatever the date says.
    bucket = sql_case(
        (m.Case.status == "contacted", "contacted"),
        (due.is_(None), "none"),
        (due < current, "overdue"),
        (due < current + dt.timedelta(hours=4), "soon"),
        (due <= end_of_day, "today"),
        else_="later",
    )
    counts = dict(session.execute(select(bucket, func.count()).where(m.Case.status.in_(OPEN_CASE_STATUSES))
                                  .group_by(bucket)).all())
    return [("overdue", gettext("overdue"), counts.get("overdue", 0)),
            ("soon", gettext("due within 4 h"), counts.get("soon", 0)),
            ("today", gettext("due today"), counts.get("today", 0)),
            ("later", gettext("later"), counts.get("later", 0)),
            ("contacted", gettext("contacted"), counts.get("contacted", 0)),
            ("none", gettext("no SLA"), counts.get("none", 0))]


def _detractor_themes(session, start: dt.datetime, top: int = 8) -> tuple[list[tuple[str, int]], int]:
    """The themes detractors named most in the window (theme, items), and how many detractors there were.

    Counted in Python from the window's detractors only: the themes live in a
    JSON column, and grouping JSON array elements is spelled per database."""
    extras = session.scalars(select(m.FeedbackItem.extra).where(
        m.FeedbackItem.category == "detractor", m.FeedbackItem.occurred_at >= start)).all()
    counts = Counter(theme for extra in extras for theme in set(themes_of_extra(extra)))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top], len(extras)


def _load_points(session, current: dt.datetime, tz, business_days: int = 5) -> list[tuple[str, int, int, float, bool]]:
    """The planner's next business hours: (label, planned, capacity, expected inbound, peak)."""
    rows = [r for r in hourly_load(current_hub(), session, current, current + dt.timedelta(days=business_days + 4))
            if r.capacity]
    days = sorted({r.hour.astimezone(tz).date() for r in rows})[:business_days]
    points, last_day = [], None
    for r in rows:
        local = r.hour.astimezone(tz)
        if local.date() not in days:
            continue
        label = f"{local:%d-%m} {local:%H}h" if local.date() != last_day else f"{local:%H}"
        last_day = local.date()
        points.append((label, r.planned, r.capacity, r.inbound_expected, r.peak))
    return points


@bp.get("/dashboard")
def index():
    raw = flask.request.args.get("days", "30")
    days = int(raw) if raw.isdigit() and int(raw) in WINDOWS else 30
    session = db_session()
    tz = team_tz()
    current = now()
    start = current - dt.timedelta(days=days)
    planner = current_hub().config.get("planner", {})

    points, scores = _nps_series(session, start, days, tz)
    sla = _sla_states(session, current)

    due_times = session.scalars(select(m.Followup.due_at).where(m.Followup.created_at >= start)).all()
    per_hour = Counter(t.astimezone(tz).hour for t in due_times)
    open_h, close_h = planner.get("business_hours", [9, 17])
    peaks = set(planner.get("peak_hours", []))
    hour_bars = [Bar(f"{h:02d}", per_hour.get(h, 0),
                     "peak" if h in peaks else "business" if open_h <= h < close_h else "off")
                 for h in range(24)]

    load_points = _load_points(session, current, tz)

    contact_rows = session.execute(select(m.Case.opened_at, m.Case.contacted_at).where(
        m.Case.contacted_at.is_not(None), m.Case.contacted_at >= start)).all()
    hours = [max(0.0, (c - o).total_seconds() / 3600) for o, c in contact_rows]
    ttfc = Counter()
    for h in hours:
        ttfc[next(label for bound, label in TTFC_BUCKETS if bound is None or h < bound)] += 1
    median_h = statistics.median(hours) if hours else None

    closed = session.execute(select(func.count(), func.count(m.Case.resurvey_nps)).where(
        m.Case.status.in_(("resolved", "closed")), m.Case.closed_at >= start)).one()
    closed_total, with_resurvey = closed
    resurvey_share = with_resurvey / closed_total if closed_total else None

    themes, detractors = _detractor_themes(session, start)

    nps = nps_of(scores)
    detractor_share = sum(1 for s in scores if s <= 6) / len(scores) if scores else None
    open_total = sum(c for _, _, c in sla)
    waiting = open_total - sla[4][2]
    kpis = [
        (gettext("NPS"), "-" if nps is None else f"{nps:+.0f}", f"{len(scores)} {gettext('responses')}",
         "good" if (nps or 0) >= 30 else "warn" if (nps or 0) >= 0 else "bad"),
        (gettext("Detractors"), "-" if detractor_share is None else f"{detractor_share * 100:.0f}%", "", ""),
        (gettext("Open cases"), str(open_total), gettext("{n} awaiting contact", n=waiting), ""),
        (gettext("Overdue"), str(sla[0][2]), "", "bad" if sla[0][2] else "good"),
        (gettext("Median time to first contact"), "-" if median_h is None else duration(median_h * 3600),
         f"{len(hours)}", ""),
        (gettext("Closed with a re-survey"), "-" if resurvey_share is None else f"{resurvey_share * 100:.0f}%",
         f"{with_resurvey}/{closed_total}", ""),
    ]
    charts_out = {
        "nps": charts.nps_trend(points, label=gettext("NPS and detractor share over time"),
                                legend=(gettext("NPS"), gettext("detractor share")), width=1280, height=300)
        if scores else None,
        "sla": charts.hbars([Bar(label, count, key) for key, label, count in sla],
                            label=gettext("Open cases by SLA state")),
        "hours": charts.columns(hour_bars, label=gettext("Follow-ups per hour of the day"), every=2)
        if due_times else None,
        "load": charts.load_curve(load_points, label=gettext("Planned callbacks against expected inbound, next 5 days"),
                                  legend=(gettext("planned callbacks"), gettext("expected inbound"), gettext("capacity")))
        if load_points else None,
        "ttfc": charts.columns([Bar(label, ttfc.get(label, 0), "contact") for _, label in TTFC_BUCKETS],
                               label=gettext("Time to first contact")) if hours else None,
        "resurvey": charts.donut(resurvey_share, label=gettext("Share of closed cases with a re-survey"),
                                 caption=f"{with_resurvey} / {closed_total} {gettext('with re-survey')}"),
        "themes": charts.hbars([Bar(theme_label(t), n, "theme") for t, n in themes],
                               label=gettext("Top themes among detractors")) if themes else None,
    }
    return flask.render_template("dashboard.html", days=days, windows=WINDOWS, kpis=kpis, charts=charts_out,
                                 tz=str(tz), median_h=median_h, detractors=detractors, contacted=len(hours),
                                 business=f"{int(open_h):02d}-{int(close_h):02d}")
