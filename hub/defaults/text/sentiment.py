"""Sentiment per language: one analyser each, built once per configuration.

``[enrich.sentiment.<language>]`` holds the only word lists for sentiment:
``words`` (this hub's own words with a polarity -1..1, domain words such as
"storing" that the general lexicons miss), ``ignore`` (lexicon words that are
mostly something else in customer text), ``negators`` and ``intensifiers``
(English needs neither: VADER has its own).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hub.defaults.text.dutch import DutchSentiment
from hub.defaults.text.english import EnglishSentiment


@dataclass(frozen=True)
class Sentiment:
    """-1 (negative) .. 1 (positive), and the words that made it so."""

    score: float | None
    words: tuple[str, ...] = field(default=())


class SentimentModel:
    """One analyser per language of ``[enrich.sentiment]``: VADER for English, the
    Dutch rules with Pattern's lexicon for Dutch, the Dutch rules with only the
    configured words for any other language listed there."""

    def __init__(self, cfg: dict[str, Any]):
        nl, en = cfg.get("nl", {}), cfg.get("en", {})
        self.english = EnglishSentiment(en.get("words"), en.get("ignore", []))
        self.dutch = DutchSentiment(nl.get("words"), nl.get("negators", []), nl.get("intensifiers", {}),
                                    nl.get("ignore", []))
        self.plain = {lang: _plain(section) for lang, section in cfg.items()
                      if lang not in ("en", "nl") and isinstance(section, dict)}
        self.of = lru_cache(maxsize=8192)(self._of)

    def _of(self, text: str, language: str | None) -> Sentiment:
        if language == "en":
            return Sentiment(*_pack(self.english.score(text)))
        if language == "nl":
            return Sentiment(*_pack(self.dutch.score(text)))
        if language in self.plain:
            return Sentiment(*_pack(self.plain[language].score(text)))
        # Language unknown: the analyser that recognises more words decides.
        en, nl = self.english.score(text), self.dutch.score(text)
        return Sentiment(*_pack(en if len(en[1]) > len(nl[1]) else nl))


def _plain(section: dict[str, Any]) -> DutchSentiment:
    model = DutchSentiment(None, section.get("negators", []), section.get("intensifiers", {}))
    model.lexicon = {w.lower(): float(p) for w, p in section.get("words", {}).items()}  # only its own words
    return model


def _pack(result: tuple[float | None, list[str]]) -> tuple[float | None, tuple[str, ...]]:
    return result[0], tuple(result[1])


_lock = threading.Lock()
_models: dict[int, tuple[dict[str, Any], SentimentModel]] = {}


def model_for(cfg: dict[str, Any]) -> SentimentModel:
    """The model of this configuration section, built on first use (cached by identity:
    a hub's configuration is one dict for its lifetime)."""
    entry = _models.get(id(cfg))
    if entry is not None and entry[0] is cfg:
        return entry[1]
    with _lock:
        entry = _models.get(id(cfg))
        if entry is None or entry[0] is not cfg:
            if len(_models) > 32:  # test suites build many apps; keep the newest
                _models.pop(next(iter(_models)))
            entry = (cfg, SentimentModel(cfg))
            _models[id(cfg)] = entry
        return entry[1]
