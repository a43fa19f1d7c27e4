"""Default escalation rule (``trylast``: any plugin's decision wins over it).

Open a case (and plan a callback) for every detractor and for anything whose
risk reaches ``scoring.risk_threshold``; priority follows the risk.  A public
post (channel ``social``) is seen by others, so it is handled at least as
urgently as a survey answer saying the same: a public legal threat always
opens a case at ``escalation.public_legal_priority``, and a post with a large
audience gets at least the priority of ``escalation.public_reach_priority``.
Feedback older than ``planner.max_callback_age_days`` (a backfill of last
year's survey) is stored and scored but opens no case: calling someone back
about a complaint of months ago helps nobody and would flood the call centre.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import Escalation, FeedbackIn, Signal

PRIORITIES = ("low", "normal", "high", "urgent")


def priority_for(risk: int) -> str:
    if risk >= 80:
        return "urgent"
    if risk >= 60:
        return "high"
    if risk >= 30:
        return "normal"
    return "low"


def _at_least(priority: str, floor: str | None) -> str:
    if floor in PRIORITIES and PRIORITIES.index(floor) > PRIORITIES.index(priority):
        return floor
    return priority


def public_floor(item: FeedbackIn, signals: list[Signal], cfg: dict[str, Any]) -> tuple[str | None, str]:
    """(lowest priority this public post may get, why), or (None, "") for a private item."""
    if item.channel != "social":
        return None, ""
    floor, why = None, ""
    for threshold, priority in cfg.get("public_reach_priority", []):
        if priority in PRIORITIES and (item.reach or 0) >= threshold:
            floor, why = priority, f"public, {item.reach:,} followers"
            break
    if any(s.signal == "legal_threat" for s in signals):
        legal = cfg.get("public_legal_priority", "urgent")
        legal = legal if legal in PRIORITIES else "urgent"
        if floor is None or PRIORITIES.index(legal) > PRIORITIES.index(floor):
            floor, why = legal, "public legal threat"
    return floor, why


@hookimpl(trylast=True)
def hub_decide_escalation(item: FeedbackIn, category: str | None, risk: int, signals: list[Signal],
                          config: dict[str, Any], now: dt.datetime) -> Escalation:
    threshold = int(config.get("scoring", {}).get("risk_threshold", 40))
    max_age = float(config.get("planner", {}).get("max_callback_age_days", 30))
    floor, public_why = public_floor(item, signals, config.get("escalation", {}))
    priority = _at_least(priority_for(risk), floor)
    if now - item.occurred_at > dt.timedelta(days=max_age):
        return Escalation(open_case=False, priority=priority, followup=False, reason=f"older than {max_age:g} days")
    legal_in_public = public_why == "public legal threat"
    if category == "detractor" or risk >= threshold or legal_in_public:
        why = "detractor" if category == "detractor" else f"risk {risk} >= {threshold}" if risk >= threshold \
            else public_why
        if floor and priority == floor and priority != priority_for(risk):
            why += f"; {public_why}: at least {floor}"
        return Escalation(open_case=True, priority=priority, followup=True, reason=why)
    return Escalation(open_case=False, priority=priority, followup=False, reason="below threshold")
