"""The page badges and icons (hub.web.badges): what the row macros used to write,
escaped, and in the reader's language."""

from __future__ import annotations

import flask

from hub.web import badges


def test_an_icon_is_its_shape_and_an_unknown_one_a_dot():
    survey = str(badges.icon("survey", "big"))
    assert survey.startswith('<svg class="icon big" viewBox="0 0 24 24"') and survey.endswith("</svg>")
    assert 'd="M6 3h9l4 4v14H6z"' in survey
    assert '<circle cx="12" cy="12" r="5"' in str(badges.icon("no-such-icon"))
    assert 'class="icon x&lt;y&#34;"' in str(badges.icon("survey", 'x<y"'))


def test_badges_escape_what_they_are_given(app):
    with app.test_request_context("/"):
        assert "<script>" not in badges.channel_badge("<script>")
        assert "&lt;script&gt;" in badges.status_badge("<script>")
        assert badges.risk_badge(85) == '<span class="risk risk-high" title="Risk 85/100">85</span>'
        assert badges.risk_badge(40).startswith('<span class="risk risk-medium"')
        assert badges.status_badge(None) == '<span class="status status-none">no case</span>'


def test_badges_speak_the_readers_language(app):
    with app.test_request_context("/"):
        flask.g.user, flask.g.locale = object(), "nl"
        assert 'title="Risico 85/100"' in badges.risk_badge(85)
        assert badges.status_badge(None) == '<span class="status status-none">geen case</span>'
        assert badges.status_badge("new") == '<span class="status status-new">nieuw</span>'
        survey = str(badges.channel_badge("survey"))
        assert survey.startswith('<span class="channel channel-survey" title="enquête"><svg class="icon "')
        assert survey.endswith("</svg><span>enquête</span></span>")
