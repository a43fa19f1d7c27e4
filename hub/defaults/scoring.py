"""Default scorer: a calibrated, explainable escalation risk.

The risk is the chance that an item needs a callback, times 100: a logistic
combination of signals, ``p = 1 / (1 + exp(-(intercept + sum(weight * x))))``,
with every weight (in log-odds) and word list in ``[scoring]``.  The signals:
NPS, the sentiment the enricher found (and its words), complaint cues ("nog
steeds", "no reply"), requests for help, capitals, profanity, angry emoji,
churn and legal words, themes, public reach, repeat contacts and customer
value.

Each reason's ``weight`` is its contribution in risk points, so the reasons
add up to the risk (the core sums them).  ``base_rate`` is the chance of an
item without any signal, ``sigmoid(intercept)``; the other contributions
follow the straight path from there to this item (integrated gradients,
exact for one logistic): signal *i* gets ``w_i x_i / sum(w x)`` of the rise
(or fall: a promoter's NPS and a positive tone count negative).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from hub.defaults.text.phrases import emoji_in, index_of, shouting
from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import FeedbackIn, ScoringContext, Signal

#: The word lists of ``[scoring]`` matched against the text, in one pass.
PHRASE_LISTS = ("complaint_cues", "cue_exceptions", "help_requests", "profanity", "churn_words", "legal_words")


class Evidence(NamedTuple):
    """One signal before calibration: its log-odds weight, strength x and detail."""

    signal: str
    weight: float
    x: float
    detail: str


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0


def _tiered(value: float | None, tiers: list[list[float]]) -> float:
    if value is None:
        return 0.0
    for threshold, weight in tiers:
        if value >= threshold:
            return float(weight)
    return 0.0


def text_evidence(item: FeedbackIn, cfg: dict[str, Any]) -> list[Evidence]:
    """What the words say: sentiment, complaint cues, tone, churn, legal threats, themes."""
    w = cfg.get("weights", {})
    text = item.text or ""
    out: list[Evidence] = []
    words = ", ".join(item.extra.get("sentiment_words", [])[:6]) if item.extra else ""
    if item.sentiment is not None and item.sentiment < -0.05:
        out.append(Evidence("negative_sentiment", float(w.get("negative_sentiment", 0)), -item.sentiment,
                            f"sentiment {item.sentiment:+.2f}" + (f": {words}" if words else "")))
    elif item.sentiment is not None and item.sentiment > 0.05:
        out.append(Evidence("positive_sentiment", float(w.get("positive_sentiment", 0)), item.sentiment,
                            f"sentiment {item.sentiment:+.2f}" + (f": {words}" if words else "")))
    # "werkt weer prima" is no complaint: known harmless uses of a cue are cut out first
    found = index_of(cfg, PHRASE_LISTS).find(text)
    # "werkt weer prima" is no complaint: a cue inside a known harmless phrase does not count
    harmless = found.get("cue_exceptions", ())
    cues = [c for c in found.get("complaint_cues", ()) if not any(c in h for h in harmless)]
    if cues:  # a second and third cue add less: one frustrated customer, not three
        out.append(Evidence("complaint_cue", float(w.get("complaint_cue", 0)), min(2.0, 1 + 0.5 * (len(cues) - 1)),
                            "complaint cues: " + ", ".join(cues)))
    for name, hits, label in (
        ("help_request", found.get("help_requests"), "asks for help"),
        ("shouting", shouting(text), "capitals"),
        ("profanity", found.get("profanity"), "profanity"),
        ("angry_emoji", emoji_in(text, cfg.get("angry_emoji", [])), "emoji"),
        ("churn_language", found.get("churn_words"), "churn words"),
        ("legal_threat", found.get("legal_words"), "legal words"),
    ):
        if hits:
            out.append(Evidence(name, float(w.get(name, 0)), 1.0, f"{label}: " + " ".join(hits[:6])
                                if name in ("shouting", "angry_emoji") else f"{label}: " + ", ".join(hits)))
    themes = list(item.extra.get("themes", [])) if item.extra else []
    if themes:
        tw = cfg.get("theme_weights", {})
        out.append(Evidence("themes", sum(float(tw.get(t, 0)) for t in themes), 1.0, "themes: " + ", ".join(themes)))
    return out


def context_evidence(item: FeedbackIn, context: ScoringContext) -> list[Evidence]:
    """What the hub knows besides the words: NPS, reach, repeat contacts, value."""
    cfg = context.config
    out: list[Evidence] = []
    if item.nps is not None:
        weight = float(cfg.get("nps_weights", {}).get(str(item.nps), 0))
        if weight:
            out.append(Evidence("nps", weight, 1.0, f"NPS {item.nps}"))
    if item.channel == "social" and item.reach:
        weight = _tiered(item.reach, cfg.get("reach_weights", []))
        if weight:
            out.append(Evidence("public_reach", weight, 1.0, f"{item.reach:,} followers can see this"))
    if context.prior_contacts:
        weight = min(float(cfg.get("repeat_weight_max", 1.8)),
                     context.prior_contacts * float(cfg.get("repeat_weight_each", 0.6)))
        days = cfg.get("repeat_window_days", 30)
        out.append(Evidence("repeat_contact", weight, 1.0, f"{context.prior_contacts} earlier contact(s) in {days} days"))
    weight = _tiered(context.customer_value, cfg.get("value_weights", []))
    if weight:
        out.append(Evidence("customer_value", weight, 1.0, f"yearly value {context.customer_value:,.0f}"))
    return out


def callback_chance(evidence: list[Evidence], intercept: float) -> float:
    return sigmoid(intercept + sum(e.weight * e.x for e in evidence))


def contributions(evidence: list[Evidence], intercept: float) -> list[Signal]:
    """Risk points per signal, plus the base chance; they add up to ``100 * p``."""
    logits = [(e, e.weight * e.x) for e in evidence if e.weight * e.x]
    total = sum(value for _, value in logits)
    base, p = sigmoid(intercept), sigmoid(intercept + total)
    if 100 * p < 0.5:
        return []  # the chance rounds to nothing: no reason to show
    # (p - base) / total is the mean slope of the sigmoid along the path: always in (0, 0.25]
    slope = 100 * ((p - base) / total if abs(total) > 1e-9 else base * (1 - base))
    signals = [Signal(e.signal, round(slope * value, 2), e.detail) for e, value in logits]
    signals.append(Signal("base_rate", round(100 * base, 2), "chance without any signal"))
    signals.sort(key=lambda s: -s.weight)
    return signals


def score(item: FeedbackIn, context: ScoringContext) -> tuple[float, list[Signal]]:
    """(callback chance, reasons) of one item."""
    cfg = context.config
    intercept = float(cfg.get("intercept", -3.5))
    evidence = context_evidence(item, context) + text_evidence(item, cfg)
    return callback_chance(evidence, intercept), contributions(evidence, intercept)


@hookimpl
def hub_score_feedback(item: FeedbackIn, context: ScoringContext) -> list[Signal]:
    return score(item, context)[1]
