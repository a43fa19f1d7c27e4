"""The worker's warm-up: plugins' first-use loading happens before its first batch (issue 17)."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from hub.defaults.text import language
from hub.engine.pipeline import WARM_UP_TEXTS, warm_up
from hub.sdk import hookimpl
from hub.storage import models as m


class Recorder:
    def __init__(self):
        self.enriched, self.scored = [], []

    @hookimpl
    def hub_enrich_feedback(self, item, config):
        self.enriched.append((item.text, item.language))

    @hookimpl
    def hub_score_feedback(self, item, context):
        self.scored.append((item.text, item.language, context.prior_contacts))
        return []


def test_warm_up_enriches_and_scores_sample_texts_and_stores_nothing(make_app):
    recorder = Recorder()
    hub = make_app(plugins=(recorder,)).extensions["hub"]
    assert warm_up(hub) >= 0
    texts = [text for _, text in WARM_UP_TEXTS]
    assert recorder.enriched == [(text, None) for text in texts]  # detection itself is warmed up
    assert recorder.scored == [(text, lang, 0) for lang, text in WARM_UP_TEXTS]
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.FeedbackItem)) == 0
        assert s.scalar(select(func.count()).select_from(m.Customer)) == 0


def test_warm_up_builds_the_default_language_detector(make_app, monkeypatch):
    monkeypatch.setattr(language, "_detectors", {})
    language.detect_language.cache_clear()
    hub = make_app().extensions["hub"]
    warm_up(hub)
    assert any(d is not None for d in language._detectors.values())


def test_a_plugin_failing_in_the_warm_up_is_logged_not_raised(make_app, caplog):
    class Broken:
        @hookimpl
        def hub_enrich_feedback(self, item, config):
            raise RuntimeError("lexicon missing")

    hub = make_app(plugins=(Broken(),)).extensions["hub"]
    with caplog.at_level(logging.WARNING, logger="hub.engine.pipeline"):
        warm_up(hub)
    assert "warm-up" in caplog.text and "RuntimeError" in caplog.text
