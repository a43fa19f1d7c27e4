"""The loop closed end to end, with real parts: the Typeform emulator's webhooks in,
HubSpot's emulator for the callback, a real local SMTP server (aiosmtpd) for the
re-survey e-mail, and the hub's FakeClock for the 72 hours in between."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from hub.engine.cases import transition
from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.sdk import FakeClock
from hub.sdk.testing import LiveServer, post_webhook, sign_hmac
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from plugins.survey_typeform import TypeformEmulator
from tests.helpers import bearer
from tests.smtp_server import SmtpServer

SECRET = "whsec-loop"
TOKEN = "pat-loop-test"
START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)  # a Monday, 11:00 in Amsterdam


class Loop:
    """One hub wired to the three emulators, and the steps of the loop as methods."""

    def __init__(self, make_app, smtp: SmtpServer, crm_url: str, portal: HubSpotState, clock: FakeClock):
        self.smtp, self.portal, self.clock = smtp, portal, clock
        self.survey = TypeformEmulator(responses=0, start=START - dt.timedelta(days=30), token="tf",
                                       webhook_secret=SECRET)
        self.app = make_app(
            clock=clock,
            sources={"nps_survey": {"plugin": "survey_typeform", "form_id": self.survey.form_id, "token": "tf",
                                    "webhook_secret": SECRET, "base_url": "http://127.0.0.1:9"}},
            sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": crm_url}},
            routing={"followups": "hubspot"},
            notifiers={"email": {"plugin": "notify_smtp", "host": "127.0.0.1", "port": smtp.port,
                                 "security": "none", "sender": "Klantenservice <klantenservice@acme.nl>"}},
            resurvey={"delay_hours": 72, "notifier": "email", "source": "nps_survey"},
            loop={"company_name": "Acme Energie"})
        self.hub = self.app.extensions["hub"]
        self.client = self.app.test_client()

    def answer(self, nps: int, text: str, email: str = "sanne@example.nl", hidden: dict | None = None) -> int:
        """A survey answer arrives by webhook; returns its case id."""
        token = self.survey.add_response(nps=nps, text=text, email=email, hidden=hidden,
                                         submitted_at=self.clock.utcnow())
        body = json.dumps(self.survey.webhook_event(self.survey.index_of(token))).encode()
        r = post_webhook(self.client, "nps_survey", body, {"Content-Type": "application/json",
                                                           "Typeform-Signature": sign_hmac(SECRET, body)})
        assert r.status_code == 200, r.data
        with self.hub.db.Session() as s:
            return s.scalars(select(m.FeedbackItem.case_id).where(m.FeedbackItem.external_id == token)).one()

    def call_back(self, case_id: int) -> None:
        """The callback task reaches HubSpot, an agent completes it there, the hub syncs."""
        dispatch(self.hub)
        with self.hub.db.Session() as s:
            task_id = s.scalars(select(m.Followup.external_id).where(m.Followup.case_id == case_id)).one()
        self.portal.complete_task(task_id)
        assert sync_completions(self.hub) >= 1
        with self.hub.db.Session() as s:
            assert s.get(m.Case, case_id).status == "contacted"

    def invitations(self, case_id: int | None = None) -> list[m.Invitation]:
        with self.hub.db.Session() as s:
            q = select(m.Invitation).order_by(m.Invitation.id)
            return list(s.scalars(q.where(m.Invitation.case_id == case_id) if case_id else q))


@pytest.fixture
def loop(make_app):
    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN)
    crm = LiveServer(make_emulator_app(portal))
    with SmtpServer() as smtp:
        yield Loop(make_app, smtp, crm.url, portal, clock)
    crm.stop()


def _link(mail) -> str:
    return re.search(r"https://form\.typeform\.com/\S+", mail.get_content()).group(0)


def test_detractor_called_back_resurveyed_converted_then_cooldown_then_opt_out(loop):
    # 1. A detractor answers; the callback happens in HubSpot.
    case_id = loop.answer(2, "Al drie weken storing, ik ga overstappen.")
    loop.call_back(case_id)

    # 2. No re-survey before the delay: planned for 72 h after the callback.
    loop.clock.now += 71 * 3600
    dispatch(loop.hub)
    [planned] = loop.invitations(case_id)
    assert planned.status == "pending" and planned.due_at == START + dt.timedelta(hours=72)
    assert loop.smtp.inbox.messages == []

    # 3. After it, one e-mail whose link carries the case id (a hidden field).
    loop.clock.now += 2 * 3600
    report = dispatch(loop.hub)
    assert report.invitations.sent == 1
    [mail] = loop.smtp.inbox.messages
    assert mail["To"] == "sanne@example.nl" and "Acme Energie" in mail["Subject"]
    hidden = dict(parse_qsl(urlsplit(_link(mail)).fragment))
    assert hidden["case_id"] == str(case_id) and hidden["email"] == "sanne@example.nl"
    dispatch(loop.hub)  # a second run sends nothing twice
    assert len(loop.smtp.inbox.messages) == 1

    # 4. The signed answer from that link, NPS 9: the case's outcome and a conversion.
    assert loop.answer(9, "Netjes opgelost, dank!", hidden=hidden) == case_id
    dispatch(loop.hub)
    with loop.hub.db.Session() as s:
        assert s.get(m.Case, case_id).resurvey_nps == 9
    auth = bearer(loop.hub)
    outcome = loop.client.get("/api/v1/reports/outcomes", headers=auth).get_json()
    assert outcome["treated"]["cases"] == 1 and outcome["treated"]["resurveyed"] == 1
    assert outcome["treated"]["converted"] == 1 and outcome["treated"]["conversion_rate"] == 1.0
    [resurveys] = [g for g in outcome["invitations"] if g["kind"] == "resurvey"]
    assert resurveys["sent"] == 1 and resurveys["answered"] == 1 and resurveys["answer_rate"] == 1.0

    # 5. The case is closed; ten days later the same customer is unhappy again:
    #    a new case and callback, but no second invitation inside the 30-day cooldown.
    with loop.hub.db.session() as s:
        transition(s.get(m.Case, case_id), "resolved", actor="user:anna", now=loop.clock.utcnow())
    loop.clock.now += 10 * 86400
    second = loop.answer(3, "Weer storing!")
    assert second != case_id
    loop.call_back(second)
    loop.clock.now += 73 * 3600
    dispatch(loop.hub)
    assert len(loop.smtp.inbox.messages) == 1
    [held] = loop.invitations(second)
    assert (held.status, held.reason) == ("skipped", "cooldown")
    with loop.hub.db.Session() as s:
        why = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "invitation.skipped",
                                                   m.AuditEvent.case_id == second)).one()
    assert why.detail["reason"] == "cooldown" and why.detail["invitation_id"] == held.id

    # 6. Opt-out: the link in the first e-mail, no login; afterwards nothing is sent.
    path = urlsplit(str(mail["List-Unsubscribe"]).strip().strip("<>")).path
    page = loop.client.get(path)
    assert page.status_code == 200 and b"unsubscribe-confirm" in page.data
    assert loop.invitations()[-1].status == "skipped"  # the GET changed nothing...
    assert loop.client.post(path).status_code == 200  # ...the confirmation does
    loop.clock.now += 40 * 86400  # past the cooldown
    r = loop.client.post("/api/v1/invitations", headers=auth,
                         json={"source": "nps_survey", "customers": [{"email": "Sanne@example.nl"}],
                               "trigger": "contract_renewal"})
    assert r.status_code == 202 and r.get_json()["queued"] == 1
    dispatch(loop.hub)
    assert len(loop.smtp.inbox.messages) == 1
    last = loop.invitations()[-1]
    assert (last.kind, last.status, last.reason) == ("survey", "skipped", "opted_out")
    assert loop.client.get(path.replace("/unsubscribe/", "/unsubscribe/x")).status_code == 404


def test_a_proactive_invitation_is_sent_once_and_its_answer_counted(loop):
    auth = bearer(loop.hub)
    body = {"source": "nps_survey", "customers": [{"email": "piet@example.nl", "name": "Piet"}],
            "trigger": "deal_closed"}
    first = loop.client.post("/api/v1/invitations", headers=auth, json=body).get_json()
    again = loop.client.post("/api/v1/invitations", headers=auth, json=body).get_json()
    assert (first["queued"], again["queued"], again["existing"]) == (1, 0, 1)
    assert first["invitations"][0]["id"] == again["invitations"][0]["id"]
    dispatch(loop.hub)
    [mail] = loop.smtp.inbox.messages
    assert mail["Subject"].startswith("Hoe tevreden bent u over Acme Energie") and "Beste Piet," in mail.get_content()
    loop.clock.now += 3600
    loop.answer(10, "Prima!", email="piet@example.nl")
    dispatch(loop.hub)
    stats = loop.client.get("/api/v1/reports/outcomes", headers=auth).get_json()["invitations"]
    [surveys] = [g for g in stats if g["kind"] == "survey"]
    assert (surveys["sent"], surveys["answered"], surveys["answer_rate"]) == (1, 1, 1.0)


def test_quiet_hours_postpone_and_an_smtp_outage_retries_without_duplicates(loop, monkeypatch):
    auth = bearer(loop.hub)
    loop.clock.now += 11 * 3600  # 22:00 in Amsterdam: quiet hours (21-8)
    loop.client.post("/api/v1/invitations", headers=auth,
                     json={"source": "nps_survey", "customers": [{"email": "kees@example.nl"}]})
    dispatch(loop.hub)
    [row] = loop.invitations()
    assert row.status == "pending" and row.attempts == 0
    assert row.next_attempt_at == dt.datetime(2026, 11, 24, 7, tzinfo=dt.UTC)  # 08:00 local
    loop.clock.now += 10 * 3600
    loop.smtp.inbox.reply = "421 4.3.2 service not available"
    dispatch(loop.hub)
    [row] = loop.invitations()
    assert row.status == "failed" and "421" in row.last_error and loop.smtp.inbox.messages == []
    loop.smtp.inbox.reply = None
    loop.clock.now += 3600
    dispatch(loop.hub)
    dispatch(loop.hub)
    [row] = loop.invitations()
    assert row.status == "sent" and len(loop.smtp.inbox.messages) == 1
