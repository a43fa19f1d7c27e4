"""Contact rules and the re-survey's trigger in detail: quiet hours in the planner's time zone,
a contact recorded in the hub (not the CRM) plans the re-survey too, promoters get a review request
under the same rules, and unsubscribe tokens cannot be forged."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from hub.engine.cases import transition
from hub.engine.dispatch import dispatch
from hub.engine.loop import contact_rules
from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FakeClock, FeedbackIn
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.smtp_server import SmtpServer

AMS = ZoneInfo("Europe/Amsterdam")


def _local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=AMS).astimezone(dt.UTC)


@pytest.mark.parametrize(("quiet", "now", "until"), [
    ((21, 8), _local(2026, 11, 20, 22, 30), _local(2026, 11, 21, 8)),
    ((21, 8), _local(2026, 11, 21, 7, 59), _local(2026, 11, 21, 8)),
    ((21, 8), _local(2026, 11, 20, 12, 0), None),
    ((21, 8), _local(2026, 11, 20, 21, 0), _local(2026, 11, 21, 8)),
    ((12, 14), _local(2026, 11, 20, 13, 0), _local(2026, 11, 20, 14)),
    ((12, 14), _local(2026, 11, 20, 14, 0), None),
    ((0, 0), _local(2026, 11, 20, 3, 0), None),
    ((21, 8), _local(2026, 3, 28, 23, 0), _local(2026, 3, 29, 8)),  # the night the clocks go forward
])
def test_quiet_hours_in_local_time(quiet, now, until):
    rules = contact_rules.Rules(dt.timedelta(days=30), quiet, AMS)
    assert rules.quiet_until(now) == until


def _hub(make_app, smtp_port=9, **config):
    app = make_app(clock=FakeClock(TEST_NOW.timestamp()),
                   sources={"nps": {"plugin": "survey_typeform", "form_id": "u6nXL7", "token": "t"}},
                   notifiers={"email": {"plugin": "notify_smtp", "host": "127.0.0.1", "port": smtp_port,
                                        "security": "none", "sender": "Service <service@acme.nl>"}},
                   resurvey={"notifier": "email", "source": "nps"}, contact_rules={"quiet_hours": [0, 0]}, **config)
    return app.extensions["hub"]


def _answer(hub, ext: str, nps: int, email: str = "jan@example.nl"):
    with hub.db.session() as s:
        [result] = Pipeline(hub).ingest(s, "nps", [Entry(FeedbackIn(
            ext, "survey", hub.clock.utcnow(), nps=nps, text="Slecht." if nps < 7 else "Top!",
            customer=CustomerRef(email=email, name="Jan")))])
    return result


def test_a_contact_recorded_in_the_hub_plans_the_resurvey_once(make_app):
    hub = _hub(make_app)
    case_id = _answer(hub, "a1", 2).case_id
    dispatch(hub)  # the local sink takes the follow-up; nobody has called yet
    with hub.db.Session() as s:
        assert s.scalars(select(m.Invitation)).all() == []
    hub.clock.now += 3600
    with hub.db.session() as s:  # what the case page's "contacted" button does
        transition(s.get(m.Case, case_id), "contacted", actor="user:anna", now=hub.clock.utcnow())
    dispatch(hub)
    dispatch(hub)
    with hub.db.Session() as s:
        [row] = s.scalars(select(m.Invitation)).all()
    assert (row.kind, row.case_id, row.trigger) == ("resurvey", case_id, "followup")
    assert row.due_at == TEST_NOW + dt.timedelta(hours=1 + 72)


def test_an_answered_case_is_not_resurveyed(make_app):
    hub = _hub(make_app)
    case_id = _answer(hub, "a1", 2).case_id
    with hub.db.session() as s:
        case = s.get(m.Case, case_id)
        transition(case, "contacted", actor="user:anna", now=hub.clock.utcnow())
        case.resurvey_nps = 8  # the customer answered a link sent otherwise
    dispatch(hub)
    hub.clock.now += 73 * 3600
    dispatch(hub)
    with hub.db.Session() as s:
        [row] = s.scalars(select(m.Invitation)).all()
    assert (row.status, row.reason) == ("skipped", "already_answered")


def test_promoters_get_a_review_request_under_the_contact_rules(make_app):
    with SmtpServer() as smtp:
        hub = _hub(make_app, smtp.port, promoters={"enabled": True, "review_url": "https://www.acme.nl/review",
                                                   "delay_hours": 24})
        _answer(hub, "p1", 10, email="fan@example.nl")
        dispatch(hub)
        assert smtp.inbox.messages == []  # not before the delay
        hub.clock.now += 25 * 3600
        dispatch(hub)
        [mail] = smtp.inbox.messages
        assert mail["To"] == "fan@example.nl" and "https://www.acme.nl/review" in mail.get_content()
        # A second promoter got a survey invitation just now: the review request waits for the cooldown.
        with hub.db.session() as s:
            from hub.engine.loop import invitations

            invitations.invite(s, hub, [CustomerRef(email="other@example.nl")], source="nps", trigger="api",
                               now=hub.clock.utcnow())
        dispatch(hub)
        _answer(hub, "p2", 9, email="other@example.nl")
        hub.clock.now += 25 * 3600
        dispatch(hub)
        assert len(smtp.inbox.messages) == 2  # the survey invitation, no second review request
    with hub.db.Session() as s:
        reviews = s.scalars(select(m.Invitation).where(m.Invitation.kind == "review").order_by(m.Invitation.id)).all()
        from hub.engine.loop.promoters import promoter_report

        report = promoter_report(s)
    assert [(r.status, r.reason) for r in reviews] == [("sent", None), ("skipped", "cooldown")]
    assert report == {"requested": 2, "sent": 1, "skipped": 1, "referrals": 0}


def test_unsubscribe_tokens_cannot_be_forged(make_app, tmp_path):
    hub = _hub(make_app)
    token = contact_rules.unsubscribe_token(hub, 42)
    assert contact_rules.read_unsubscribe_token(hub, token) == 42
    assert contact_rules.read_unsubscribe_token(hub, token[:-2] + ("A" if token[-1] != "A" else "B") * 2) is None
    forged = contact_rules.URLSafeSerializer("another install", salt="feedback-hub.unsubscribe").dumps({"c": 42})
    assert contact_rules.read_unsubscribe_token(hub, forged) is None
    assert contact_rules.read_unsubscribe_token(hub, "not-a-token") is None
