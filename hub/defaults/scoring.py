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
from functools import lru_cache, partial
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
    return list(_text_evidence_of(cfg)(*_text_key(item)))


def _text_key(item: FeedbackIn) -> tuple:
    extra = item.extra or {}
    return (item.text or "", item.sentiment, tuple(extra.get("sentiment_words", ())[:6]),
            tuple(extra.get("themes", ())))


def _text_evidence(cfg: dict[str, Any], text: str, sentiment: float | None, words: tuple[str, ...],
                   themes: tuple[str, ...]) -> tuple[Evidence, ...]:
    w = cfg.get("weights", {})
    out: list[Evidence] = []
    shown = ", ".join(words)
    if sentiment is not None and sentiment < -0.05:
        out.append(Evidence("negative_sentiment", float(w.get("negative_sentiment", 0)), -sentiment,
                            f"sentiment {sentiment:+.2f}" + (f": {shown}" if shown else "")))
    elif sentiment is not None and sentiment > 0.05:
        out.append(Evidence("positive_sentiment", float(w.get("positive_sentiment", 0)), sentiment,
                            f"sentiment {sentiment:+.2f}" + (f": {shown}" if shown else "")))
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
    if themes:
        tw = cfg.get("theme_weights", {})
        out.append(Evidence("themes", sum(float(tw.get(t, 0)) for t in themes), 1.0, "themes: " + ", ".join(themes)))
    return tuple(out)


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
    key = (_text_key(item), item.nps, item.channel, item.reach, context.prior_contacts, context.customer_value)
    chance, signals = _score_of(context.config)(key)
    return chance, list(signals)


def _score(cfg: dict[str, Any], key: tuple) -> tuple[float, tuple[Signal, ...]]:
    text_key, nps, channel, reach, prior_contacts, customer_value = key
    probe = _Facts(nps, channel, reach)
    context = ScoringContext(config=cfg, prior_contacts=prior_contacts, customer_value=customer_value)
    intercept = float(cfg.get("intercept", -3.5))
    evidence = context_evidence(probe, context) + list(_text_evidence_of(cfg)(*text_key))
    return callback_chance(evidence, intercept), tuple(contributions(evidence, intercept))


class _Facts(NamedTuple):
    """The fields of an item that :func:`context_evidence` reads."""

    nps: int | None
    channel: str | None
    reach: int | None


# Both caches are per configuration dict (a hub's configuration is one dict for its
# lifetime).  Customers send the same short answers again and again ("Prima",
# "Nog steeds geen internet"), and an import scores thousands of them: a remembered
# result costs one dictionary look-up instead of a pass over the words.  Signals are
# frozen, so handing out the same ones twice is safe.
_memos: dict[tuple[str, int], tuple[dict[str, Any], Any]] = {}


def _memo(kind: str, fn, cfg: dict[str, Any]):
    key = (kind, id(cfg))
    entry = _memos.get(key)
    if entry is None or entry[0] is not cfg:
        if len(_memos) > 64:  # test suites build many apps; keep the newest
            _memos.pop(next(iter(_memos)))
        entry = (cfg, lru_cache(maxsize=16384)(partial(fn, cfg)))
        _memos[key] = entry
    return entry[1]


def _text_evidence_of(cfg: dict[str, Any]):
    return _memo("text", _text_evidence, cfg)


def _score_of(cfg: dict[str, Any]):
    return _memo("score", _score, cfg)


def clear_caches() -> None:
    """Forget remembered results (benchmarks measure every item afresh)."""
    for _, fn in _memos.values():
        fn.cache_clear()


@hookimpl
def hub_score_feedback(item: FeedbackIn, context: ScoringContext) -> list[Signal]:
    return score(item, context)[1]


@hookimpl
def hub_score_feedback_batch(items: list[FeedbackIn], contexts: list[ScoringContext]) -> list[list[Signal]]:
    """The same signals as :func:`hub_score_feedback`, for a whole batch in one hook call."""
    return [score(item, context)[1] for item, context in zip(items, contexts, strict=True)]
