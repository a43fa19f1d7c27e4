"""Jinja filters: times in the team's time zone, relative due times, risk
levels and links that are safe to put in an ``href``."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import flask

from hub.engine.context import current_hub
from hub.web.common import has_role, now
from hub.web.i18n import current_locale, gettext, outcome_label, signal_label, theme_label


def team_tz() -> ZoneInfo:
    """The call centre's time zone (``[planner] timezone``): agents plan in it."""
    return ZoneInfo(current_hub().config.get("planner", {}).get("timezone", "UTC"))


def localtime(value: dt.datetime | None, fmt: str = "%d-%m-%Y %H:%M") -> str:
    if value is None:
        return "-"
    return value.astimezone(team_tz()).strftime(fmt)


def localdate(value: dt.datetime | None) -> str:
    """A date as the user's language writes it: '20-11-2026' (nl), '20 Nov 2026' (en)."""
    if value is None:
        return "-"
    local = value.astimezone(team_tz())
    if current_locale() == "nl":
        return local.strftime("%d-%m-%Y")
    return f"{local.day} {local.strftime('%b %Y')}"


def duration(seconds: float) -> str:
    """Short human duration: 45 min, 3 h, 2 d."""
    seconds = abs(seconds)
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 48 * 3600:
        hours = seconds / 3600
        return f"{hours:.0f} h" if hours >= 10 else f"{hours:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.0f} d"


def reltime(value: dt.datetime | None) -> str:
    """'in 3 h' or 'overdue 2 d' against the hub's clock."""
    if value is None:
        return "-"
    delta = (value - now()).total_seconds()
    return gettext("in {d}", d=duration(delta)) if delta >= 0 else gettext("overdue {d}", d=duration(delta))


def is_overdue(value: dt.datetime | None) -> bool:
    return value is not None and value < now()


def risk_level(risk: int | None) -> str:
    risk = risk or 0
    return "high" if risk >= 70 else "medium" if risk >= 40 else "low"


def weight(value: float | int | None) -> str:
    """A signal's contribution: '+35', '+2.5', or '-5' for one that lowers the risk."""
    value = float(value or 0)
    text = f"{value:+.0f}" if value == round(value) else f"{value:+.1f}"
    return "+0" if text in ("-0", "+0") else text


def number(value: float | int | None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}"
    return text.replace(",", ".") if current_locale() == "nl" else text


def safe_url(value: str | None) -> str | None:
    """Customer data may carry ``javascript:`` links: only http(s) is linked."""
    if not value:
        return None
    try:
        scheme = urlsplit(value.strip()).scheme.lower()
    except ValueError:
        return None
    return value.strip() if scheme in ("http", "https") else None


def query_with(**changes: str | int | None) -> str:
    """The current URL's query with some parameters changed (filters, pages)."""
    args = flask.request.args.to_dict()
    for key, value in changes.items():
        if value in (None, ""):
            args.pop(key, None)
        else:
            args[key] = str(value)
    from urllib.parse import urlencode

    return "?" + urlencode(args) if args else "?"


def register_filters(app: flask.Flask) -> None:
    app.jinja_env.filters.update(localtime=localtime, reltime=reltime, risk_level=risk_level, number=number,
                                 safe_url=safe_url, duration=duration, t=gettext,
                                 signal=signal_label, theme=theme_label, weight=weight,
                                 outcome=outcome_label, localdate=localdate)
    app.jinja_env.tests["overdue"] = is_overdue
    app.jinja_env.globals.update(has_role=has_role, query_with=query_with)
