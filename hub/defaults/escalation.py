"""Default escalation rule (``trylast``: any plugin's decision wins over it).

Open a case (and plan a callback) for every detractor and for anything whose
risk reaches ``scoring.risk_threshold``; priority follows the risk.  Feedback
older than ``planner.max_callback_age_days`` (a backfill of last year's
survey) is stored and scored but opens no case: calling someone back about a
complaint of months ago helps nobody and would flood the call centre.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import Escalation, FeedbackIn, Signal


def priority_for(risk: int) -> str:
    if risk >= 80:
        return "urgent"
    if risk >= 60:
        return "high"
    if risk >= 30:
        return "normal"
    return "low"


@hookimpl(trylast=True)
def hub_decide_escalation(item: FeedbackIn, category: str | None, risk: int, signals: list[Signal],
                          config: dict[str, Any], now: dt.datetime) -> Escalation:
    threshold = int(config.get("scoring", {}).get("risk_threshold", 40))
    max_age = float(config.get("planner", {}).get("max_callback_age_days", 30))
    if now - item.occurred_at > dt.timedelta(days=max_age):
        return Escalation(open_case=False, priority=priority_for(risk), followup=False,
                          reason=f"older than {max_age:g} days")
    if category == "detractor" or risk >= threshold:
        why = "detractor" if category == "detractor" else f"risk {risk} >= {threshold}"
        return Escalation(open_case=True, priority=priority_for(risk), followup=True, reason=why)
    return Escalation(open_case=False, priority=priority_for(risk), followup=False, reason="below threshold")
