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

from functools import lru_cache, partial
from typing import Any

from hub.defaults.text.language import detect_language
from hub.defaults.text.phrases import themes_of
from hub.defaults.text.sentiment import model_for
from hub.defaults.text.social import plain
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
    found = _enrichment_of(cfg)(item.text, item.language, item.sentiment is None)
    if found is None:
        return None
    out, extra = dict(found[0]), found[1]
    if extra:  # fresh lists: an item's extra is its own
        out["extra"] = {key: list(value) for key, value in extra}
    return out



@hookimpl
def hub_enrich_feedback_batch(items: list[FeedbackIn], config: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The same answers as :func:`hub_enrich_feedback`, for a whole batch in one hook call."""
    return [hub_enrich_feedback(item, config) for item in items]

def _enrichment(cfg: dict[str, Any], text: str, language: str | None, wants_sentiment: bool):
    """(fields, extra as (key, values) pairs) for one text; immutable, so it can be remembered."""
    text = plain(text)  # "@united" is a name, not an opinion
    out: dict[str, Any] = {}
    if language is None:
        language = out["language"] = language_of(text, cfg)
    extra: list[tuple[str, tuple[str, ...]]] = []
    if wants_sentiment:
        sentiment = model_for(cfg.get("sentiment", {})).of(text, language)
        out["sentiment"] = sentiment.score
        if sentiment.words:
            extra.append(("sentiment_words", tuple(sentiment.words)))
    themes = themes_of(text, cfg.get("themes", {}))
    if themes:
        extra.append(("themes", tuple(themes)))
    return tuple(out.items()), tuple(extra)


# One cache per configuration dict (a hub's configuration is one dict for its
# lifetime): stock answers repeat ("Prima", "Geen opmerkingen"), and a remembered
# enrichment is one look-up instead of detector, lexicon and taxonomy passes.
_memos: dict[int, tuple[dict[str, Any], Any]] = {}


def _enrichment_of(cfg: dict[str, Any]):
    entry = _memos.get(id(cfg))
    if entry is None or entry[0] is not cfg:
        if len(_memos) > 32:  # test suites build many apps; keep the newest
            _memos.pop(next(iter(_memos)))
        entry = (cfg, lru_cache(maxsize=16384)(partial(_enrichment, cfg)))
        _memos[id(cfg)] = entry
    return entry[1]


def clear_caches() -> None:
    """Forget remembered results (benchmarks measure every text afresh)."""
    for _, fn in _memos.values():
        fn.cache_clear()
