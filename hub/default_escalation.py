"""Default escalation rule (``trylast``: any plugin's decision wins over it).

Open a case (and plan a callback) for every detractor and for anything whose
risk reaches ``scoring.risk_threshold``; priority follows the risk.
"""

from __future__ import annotations

from typing import Any

from hub.hookspecs import hookimpl
from hub.schema import Escalation, FeedbackIn, Signal


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
                          config: dict[str, Any]) -> Escalation:
    threshold = int(config.get("scoring", {}).get("risk_threshold", 40))
    if category == "detractor" or risk >= threshold:
        why = "detractor" if category == "detractor" else f"risk {risk} >= {threshold}"
        return Escalation(open_case=True, priority=priority_for(risk), followup=True, reason=why)
    return Escalation(open_case=False, priority=priority_for(risk), followup=False, reason="below threshold")
