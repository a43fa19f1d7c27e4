"""Default scorer: the first, explainable escalation risk.

Each signal carries its weight and a detail an agent can read ("NPS 2",
"churn words: opzeggen").  Weights and word lists come from ``[scoring]`` in
the configuration, so a team tunes them without code.  The core sums the
weights (capped at 100).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import FeedbackIn, ScoringContext, Signal


@lru_cache(maxsize=32)
def _matcher(words: tuple[str, ...]) -> re.Pattern[str]:
    # Word boundaries so "sue" does not match "issue"; phrases match as phrases.
    alternatives = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def find_words(text: str, words: list[str]) -> list[str]:
    if not text or not words:
        return []
    return sorted({m.group(0).lower() for m in _matcher(tuple(words)).finditer(text)})


def _tiered(value: float | None, tiers: list[list[float]]) -> float:
    if value is None:
        return 0.0
    for threshold, weight in tiers:
        if value >= threshold:
            return float(weight)
    return 0.0


@hookimpl
def hub_score_feedback(item: FeedbackIn, context: ScoringContext) -> list[Signal]:
    cfg: dict[str, Any] = context.config
    signals: list[Signal] = []
    if item.nps is not None:
        weight = float(cfg.get("nps_weights", {}).get(str(item.nps), 0))
        if weight:
            signals.append(Signal("nps", weight, f"NPS {item.nps}"))
    text = item.text or ""
    churn = find_words(text, cfg.get("churn_words", []))
    if churn:
        signals.append(Signal("churn_language", float(cfg.get("churn_weight", 25)), "churn words: " + ", ".join(churn)))
    legal = find_words(text, cfg.get("legal_words", []))
    if legal:
        signals.append(Signal("legal_threat", float(cfg.get("legal_weight", 35)), "legal words: " + ", ".join(legal)))
    negative = find_words(text, cfg.get("negative_words", []))
    if negative or (item.sentiment is not None and item.sentiment <= -0.5):
        detail = "negative words: " + ", ".join(negative) if negative else f"sentiment {item.sentiment}"
        signals.append(Signal("negative_sentiment", float(cfg.get("negative_weight", 10)), detail))
    if item.channel == "social" and item.reach:
        weight = _tiered(item.reach, cfg.get("reach_weights", []))
        if weight:
            signals.append(Signal("public_reach", weight, f"{item.reach:,} followers can see this"))
    if context.prior_contacts:
        weight = min(float(cfg.get("repeat_weight_max", 24)),
                     context.prior_contacts * float(cfg.get("repeat_weight_each", 8)))
        days = cfg.get("repeat_window_days", 30)
        signals.append(Signal("repeat_contact", weight, f"{context.prior_contacts} earlier contact(s) in {days} days"))
    value_weight = _tiered(context.customer_value, cfg.get("value_weights", []))
    if value_weight:
        signals.append(Signal("customer_value", value_weight, f"yearly value {context.customer_value:,.0f}"))
    return signals
