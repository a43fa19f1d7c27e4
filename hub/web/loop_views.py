"""What closing the loop shows in the UI: the control-group badge on inbox rows and
the dashboard's revenue card (who told us, who stayed silent, who stayed, who left)
with the conversion of detractors, treated vs control.

The blueprint has no routes: it adds ``control_cases`` to every template (rows
test ``case_id in control_cases``) and :func:`revenue_card` /
:func:`conversion_card` build the dashboard's pictures.
"""

from __future__ import annotations

from typing import Any

import flask
from sqlalchemy import select

from hub.engine.context import current_hub
from hub.engine.loop import outcomes, revenue
from hub.sdk.schema import OPEN_CASE_STATUSES
from hub.storage import models as m
from hub.web.i18n import gettext

bp = flask.Blueprint("loop_views", __name__)


class ControlCases:
    """``case_id in control_cases``: the open control cases in one query per page, others as asked."""

    def __init__(self) -> None:
        self._open: set[int] | None = None
        self._asked: dict[int, bool] = {}

    def _session(self):
        from hub.web.common import db_session

        return db_session()

    def __contains__(self, case_id: object) -> bool:
        if not isinstance(case_id, int):
            return False
        if self._open is None:
            self._open = set(self._session().scalars(select(m.Case.id).where(
                m.Case.control.is_(True), m.Case.status.in_(OPEN_CASE_STATUSES))))
        if case_id in self._open:
            return True
        if case_id not in self._asked:
            self._asked[case_id] = bool(self._session().scalar(select(m.Case.control).where(m.Case.id == case_id)))
        return self._asked[case_id]


@bp.app_context_processor
def _control_cases() -> dict[str, Any]:
    return {"control_cases": ControlCases()}


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
