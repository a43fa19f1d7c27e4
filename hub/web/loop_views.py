"""What closing the loop shows in the UI: the control-group badge on inbox rows and
the dashboard's revenue card (who told us, who stayed silent, who stayed, who left)
with the conversion of detractors, treated vs control.

The blueprint has no routes: it adds ``is_control_case(case_id)`` to every
template (the row macros use it) and :func:`revenue_card` /
:func:`conversion_card` build the dashboard's pictures.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import flask
from markupsafe import Markup, escape
from sqlalchemy import select

from hub.engine.context import current_hub
from hub.engine.loop import outcomes, revenue
from hub.sdk.schema import OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.web.i18n import gettext

#: Segment colours of the revenue picture (who told us / stayed silent; stayed / left).
COLOURS = {"told-stayed": "#2e7d32", "told-left": "#c62828", "silent-stayed": "#81c784", "silent-left": "#ef9a9a",
           "treated": "#1565c0", "control": "#9e9e9e"}

bp = flask.Blueprint("loop_views", __name__)


class ControlCases:
    """``case_id in control_cases``: the open control cases in one query per page, others as asked."""

    def __init__(self) -> None:
        self._open: set[int] | None = None
        self._asked: dict[int, bool] = {}

    def _session(self):
        from hub.web.common import db_session

        return db_session()

    def learn(self, control: dict[int, bool]) -> None:
        """Whether each of these cases is a control case, known already (a page's rows)."""
        self._asked.update(control)

    def __contains__(self, case_id: object) -> bool:
        if not isinstance(case_id, int):
            return False
        known = self._asked.get(case_id)
        if known is not None:
            return known  # a page's rows, learned in one query: no look-up over every open case
        if self._open is None:
            self._open = set(self._session().scalars(select(m.Case.id).where(
                m.Case.control.is_(True), m.Case.status.in_(OPEN_CASE_STATUSES))))
        if case_id in self._open:
            return True
        if case_id not in self._asked:
            self._asked[case_id] = bool(self._session().scalar(select(m.Case.control).where(m.Case.id == case_id)))
        return self._asked[case_id]


def control_cases() -> ControlCases:
    """This request's ControlCases."""
    if "loop_control_cases" not in flask.g:
        flask.g.loop_control_cases = ControlCases()
    return flask.g.loop_control_cases


def is_control_case(case_id: object) -> bool:
    """``is_control_case(id)`` in templates (macros too): one ControlCases per request."""
    return case_id in control_cases()


@bp.record_once
def _template_globals(state: flask.blueprints.BlueprintSetupState) -> None:
    # Globals, not a context processor: the row macros are imported without the page's context.
    state.app.jinja_env.globals.update(is_control_case=is_control_case, loop_cards=dashboard_cards)


def dashboard_cards() -> dict[str, Any]:
    """The dashboard's loop cards (``{% include "_loop_cards.html" %}``)."""
    from hub.web.common import db_session

    session = db_session()
    revenue_picture = revenue_card(session)
    conversion = conversion_card(session)
    return {"revenue": revenue_picture, "revenue_svg": revenue_svg(revenue_picture), "conversion": conversion,
            "conversion_svg": conversion_svg(conversion), "trends": trends_card(session)}


# -- dashboard cards -----------------------------------------------------------------
def _eur(value: float, currency: str) -> str:
    symbol = "€" if currency == "EUR" else f"{currency} "
    return f"{symbol}{value:,.0f}".replace(",", ".")


def revenue_card(session) -> dict[str, Any]:
    """The revenue model as a picture: a bar of all unhappy customers split into who told us
    and who stayed silent, each split into who stayed and who left; widths are shares."""
    hub = current_hub()
    r = revenue.revenue_at_risk(session, hub.config, {})
    inputs, currency = r["inputs"], r["currency"]
    told, silent = inputs["unhappy_complaining"], inputs["unhappy_silent"]
    unhappy = told + silent
    told_left = round(told * inputs["complainer_churn"])
    silent_left = round(silent * inputs["silent_churn"])
    segments = [
        ("told-stayed", gettext("told us") + " · " + gettext("stayed"), told - told_left),
        ("told-left", gettext("told us") + " · " + gettext("left"), told_left),
        ("silent-stayed", gettext("stayed silent") + " · " + gettext("stayed"), silent - silent_left),
        ("silent-left", gettext("stayed silent") + " · " + gettext("left"), silent_left),
    ]
    return {
        "title": gettext("Revenue at risk"),
        "unhappy": unhappy,
        "segments": [{"key": k, "label": label, "count": n, "share": (n / unhappy * 100) if unhappy else 0}
                     for k, label, n in segments],
        "summary": gettext("Of {unhappy} unhappy customers, {told} told us and {silent} stayed silent.",
                           unhappy=unhappy, told=told, silent=silent),
        "lost": gettext("Lost: {lost} of {revenue} yearly revenue ({share}).", lost=_eur(r["lost"], currency),
                        revenue=_eur(r["revenue"], currency), share=f"{r['lost_share'] * 100:.0f}%"),
        "recovered": gettext("Recovered by closed loops: {recovered}.", recovered=_eur(r["recovered"], currency)),
        "at_risk": _eur(r["at_risk"], currency),
    }


def conversion_card(session) -> dict[str, Any]:
    """Detractors converted to passive or promoter after the loop, treated vs control, with intervals."""
    report = outcomes.compare(outcomes.ledger(session))
    groups = []
    for key in ("treated", "control"):
        g = report[key]
        rate = g["conversion_rate"]
        groups.append({"key": key, "label": gettext(key), "rate": rate, "ci": g["conversion_ci95"],
                       "resurveyed": g["resurveyed"], "converted": g["converted"],
                       "width": (rate or 0) * 100})
    return {"title": gettext("Detractors converted, treated vs control"), "groups": groups,
            "difference": report["conversion_difference"]}


def revenue_svg(card: dict[str, Any], width: int = 640) -> Markup:
    """One bar of all unhappy customers: told us (stayed, left), then silent (stayed, left),
    each part as wide as its share, with a legend underneath."""
    x, parts, legend = 0.0, [], []
    for i, seg in enumerate(card["segments"]):
        w = width * seg["share"] / 100
        colour = COLOURS[seg["key"]]
        title = f"{seg['label']}: {seg['count']}"
        parts.append(f'<rect class="seg-{seg["key"]}" x="{x:.1f}" y="0" width="{w:.1f}" height="48" '
                     f'fill="{colour}"><title>{escape(title)}</title></rect>')
        if w > 40:
            parts.append(f'<text x="{x + w / 2:.1f}" y="30" text-anchor="middle" fill="#fff">{seg["count"]}</text>')
        legend.append(f'<rect x="{(i % 2) * width / 2:.0f}" y="{64 + (i // 2) * 22}" width="14" height="14" '
                      f'fill="{colour}"/><text x="{(i % 2) * width / 2 + 20:.0f}" y="{76 + (i // 2) * 22}">'
                      f'{escape(seg["label"])} ({seg["count"]})</text>')
        x += w
    label = escape(card["summary"])
    return Markup(f'<svg class="loop-picture" id="revenue-picture" role="img" aria-label="{label}" '
                  f'viewBox="0 0 {width} 112" width="100%">{"".join(parts)}{"".join(legend)}</svg>')


def conversion_svg(card: dict[str, Any], width: int = 640) -> Markup:
    """Conversion of re-surveyed detractors per group: a bar each, with its 95 % interval as a whisker."""
    rows = []
    for i, g in enumerate(card["groups"]):
        y = 8 + i * 40
        bar = (width - 160) * (g["rate"] or 0)
        text = "-" if g["rate"] is None else f"{g['rate'] * 100:.0f}% ({g['converted']}/{g['resurveyed']})"
        rows.append(f'<text x="0" y="{y + 18}">{escape(g["label"])}</text>'
                    f'<rect class="bar-{g["key"]}" x="100" y="{y}" width="{bar:.1f}" height="26" '
                    f'fill="{COLOURS[g["key"]]}"/><text x="{106 + bar:.1f}" y="{y + 18}">{escape(text)}</text>')
        if g["ci"]:
            lo, hi = (100 + (width - 160) * v for v in g["ci"])
            rows.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + 13}" y2="{y + 13}" stroke="#212121" '
                        f'stroke-width="2"><title>95 %: {g["ci"][0]:.2f}-{g["ci"][1]:.2f}</title></line>')
    return Markup(f'<svg class="loop-picture" id="conversion-picture" role="img" aria-label="{escape(card["title"])}" '
                  f'viewBox="0 0 {width} 90" width="100%">{"".join(rows)}</svg>')


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def sla_adherence_by_week(session, tz, since: dt.datetime) -> dict[str, float | None]:
    """Per local week of opening: share of the cases with an SLA that were contacted in time."""
    weeks: dict[str, list[bool]] = defaultdict(list)
    C = m.Case
    for opened, due, contacted in session.execute(select(C.opened_at, C.sla_due_at, C.contacted_at).where(
            C.opened_at >= since, C.sla_due_at.is_not(None), C.control.is_(False))):
        local = opened.astimezone(tz).date()
        weeks[(local - dt.timedelta(days=local.weekday())).isoformat()].append(
            contacted is not None and contacted <= due)
    return {week: sum(v) / len(v) for week, v in weeks.items()}


def outside_peak_share(session, config, tz, since: dt.datetime) -> float | None:
    """Share of the callbacks planned since ``since`` whose slot is outside the call centre's peak hours."""
    peaks = set(config.get("planner", {}).get("peak_hours", []))
    due = session.scalars(select(m.Followup.due_at).where(m.Followup.created_at >= since)).all()
    if not due:
        return None
    return sum(1 for t in due if t.astimezone(tz).hour not in peaks) / len(due)


def trends_card(session, weeks: int = 12) -> dict[str, Any]:
    """Conversion treated vs control and SLA adherence per week; callbacks outside peaks; repeat
    contacts after closed vs unclosed loops."""
    hub = current_hub()
    tz = ZoneInfo(hub.config.get("planner", {}).get("timezone", "UTC"))
    since = hub.clock.utcnow() - dt.timedelta(weeks=weeks)
    rows = outcomes.ledger(session, since=since,
                           repeat_window_days=float(hub.config.get("loop", {}).get("repeat_window_days", 30)))
    sla = sla_adherence_by_week(session, tz, since)
    conversion = {w["week"]: w for w in outcomes.weekly_conversion(rows, tz)}
    table = []
    for week in sorted(set(sla) | set(conversion)):
        c = conversion.get(week)
        table.append({"week": week, "treated": _pct(c["treated"]["rate"]) if c else "-",
                      "control": _pct(c["control"]["rate"]) if c else "-", "sla": _pct(sla.get(week))})
    repeats = outcomes.repeat_rates(rows)
    return {"weeks": table, "outside_peaks": _pct(outside_peak_share(session, hub.config, tz, since)),
            "repeat_closed": _pct(repeats["closed"]), "repeat_unclosed": _pct(repeats["unclosed"]),
            "repeat_cases": (repeats["closed_cases"], repeats["unclosed_cases"])}
