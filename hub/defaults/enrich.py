"""Default enrichment: language detection and a lexicon sentiment (nl + en).

Language comes from the source when it knows it (Typeform locale, X's
``lang``); otherwise ``langdetect`` (a port of Google's detector) guesses.
Sentiment is a small transparent lexicon score: agents can see why an item
reads negative, which a black-box model would not tell them.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import FeedbackIn

_lock = threading.Lock()
_WORD = re.compile(r"[\w']+", re.UNICODE)

POSITIVE = {
    "goed", "top", "super", "tevreden", "blij", "prima", "snel", "vriendelijk", "fijn", "geweldig", "bedankt",
    "dank", "uitstekend", "good", "great", "excellent", "happy", "thanks", "fast", "friendly", "love", "helpful",
}
NEGATIVE = {
    "slecht", "waardeloos", "belachelijk", "schandalig", "boos", "teleurgesteld", "klacht", "traag", "nooit",
    "storing", "kapot", "fout", "onbereikbaar", "bad", "terrible", "awful", "worst", "angry", "disappointed",
    "complaint", "slow", "broken", "useless", "ridiculous", "never", "outage", "wrong", "unreachable",
}


def detect_language(text: str) -> str | None:
    """Best guess of the text's language (ISO 639-1), or None for too little text."""
    if len(text.strip()) < 12:
        return None
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    with _lock:  # langdetect's factory is a module global; seed it once, deterministically
        DetectorFactory.seed = 0
        try:
            langs = detect_langs(text)
        except LangDetectException:
            return None
    best = langs[0] if langs else None
    return best.lang if best and best.prob >= 0.6 else None


def lexicon_sentiment(text: str) -> float | None:
    words = [w.lower() for w in _WORD.findall(text)]
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    if pos + neg == 0:
        return None
    return round((pos - neg) / (pos + neg), 2)


@hookimpl
def hub_enrich_feedback(item: FeedbackIn, config: dict[str, Any]) -> dict[str, Any] | None:
    if not item.text:
        return None
    out: dict[str, Any] = {}
    if item.language is None:
        out["language"] = detect_language(item.text)
    if item.sentiment is None:
        out["sentiment"] = lexicon_sentiment(item.text)
    return out
