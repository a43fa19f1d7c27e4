"""The page badges and icons (hub.web.badges): what the row macros used to write,
escaped, and in the reader's language."""

from __future__ import annotations

from types import SimpleNamespace

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
        flask.g.user = SimpleNamespace(locale="nl")  # a Dutch reader
        assert 'title="Risico 85/100"' in badges.risk_badge(85)
        assert badges.status_badge(None) == '<span class="status status-none">geen case</span>'
        assert badges.status_badge("new") == '<span class="status status-new">nieuw</span>'
        survey = str(badges.channel_badge("survey"))
        assert survey.startswith('<span class="channel channel-survey" title="enquête"><svg class="icon "')
        assert survey.endswith("</svg><span>enquête</span></span>")


def test_why_shows_two_reasons_and_the_rest_in_a_title_escaped(app):
    reasons = [{"signal": "nps", "weight": 29.13, "detail": "NPS <1>"},
               {"signal": "legal_threat", "weight": -5, "detail": "a & b"},
               {"signal": "repeat_contact", "weight": 2.5, "detail": '"three"'},
               {"signal": "my_own_signal", "weight": 0, "detail": "x"}]
    with app.test_request_context("/"):
        html = str(badges.why(reasons))
        assert html.startswith('<span class="why" title="NPS &lt;1&gt;">low NPS <b>+29.1</b></span>'
                               '<span class="why" title="a &amp; b">legal threat <b>-5</b></span>')
        assert html.endswith('<span class="why more" title="repeat contact +2.5: &#34;three&#34;; '
                             'my own signal +0: x">+2</span>')
        assert badges.why([]) == ""


def test_due_counts_down_only_while_the_sla_runs(app):
    import datetime as dt

    hub = app.extensions["hub"]
    with app.test_request_context("/"):
        soon = hub.clock.utcnow() + dt.timedelta(hours=3, minutes=1)
        running = str(badges.due(soon, "assigned"))
        assert running.startswith('<span title="') and "<svg" in running and running.endswith("in 3 h</span>")
        assert badges.due(soon, "contacted") == '<span class="muted">-</span>'
        assert badges.due(None, "new") == '<span class="muted">-</span>'
