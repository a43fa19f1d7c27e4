"""Default enrichment: language, sentiment with its evidence, and themes.

Language comes from the source when it knows it (Typeform locale, X's
``lang``); otherwise lingua chooses among ``[enrich] languages``.  Sentiment
is -1..1 from a lexicon per language (VADER for English, Pattern's Dutch
adjectives with negation and word forms for Dutch): transparent, so an agent
sees which words made an item read negative.  Themes ("billing", "outage")
come from the taxonomy in ``[enrich.themes]``.  Both the themes and the
sentiment words go into ``extra`` (``themes``, ``sentiment_words``), where
the scorer reads them and the item keeps them.
"""

from __future__ import annotations

from typing import Any

from hub.defaults.text.language import detect_language
from hub.defaults.text.phrases import themes_of
from hub.defaults.text.sentiment import model_for
from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import FeedbackIn


def language_of(text: str, cfg: dict[str, Any]) -> str | None:
    languages = tuple(cfg.get("languages") or ("nl", "en", "de", "fr"))
    return detect_language(text, languages, float(cfg.get("min_language_confidence", 0.5)))


@hookimpl
def hub_enrich_feedback(item: FeedbackIn, config: dict[str, Any]) -> dict[str, Any] | None:
    if not item.text:
        return None
    cfg = config.get("enrich", {})
    out: dict[str, Any] = {}
    language = item.language or language_of(item.text, cfg)
    if item.language is None:
        out["language"] = language
    extra: dict[str, Any] = {}
    if item.sentiment is None:
        sentiment = model_for(cfg.get("sentiment", {})).of(item.text, language)
        out["sentiment"] = sentiment.score
        if sentiment.words:
            extra["sentiment_words"] = list(sentiment.words)
    themes = themes_of(item.text, cfg.get("themes", {}))
    if themes:
        extra["themes"] = themes
    if extra:
        out["extra"] = extra
    return out
