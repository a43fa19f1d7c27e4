"""SLA breach alerts: the team lead gets one e-mail per breached case through the configured
notifier, from a real local SMTP server (aiosmtpd) and the hub's FakeClock; an outage delays it,
repeated sweeps never duplicate it, no notifier means no alert, and it holds no customer text."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from hub.config import ConfigError
from hub.engine import sla, sla_alerts
from hub.storage import models as m
from plugins.notify_smtp import render
from tests.helpers import DETRACTOR, bearer
from tests.smtp_server import SmtpServer

LEAD = "bea@example.nl"
SENDER = "Klantenservice <klantenservice@example.nl>"


def _config(port: int, *, notifier: str | None = "email", lead_email: str | None = LEAD, **sla_keys) -> dict:
    team = {"default": True, "lead": "bea", **({"lead_email": lead_email} if lead_email else {})}
    return {"teams": {"service": team},
            "sla": {**({"notifier": notifier} if notifier else {}), **sla_keys},
            "loop": {"company_name": "Acme Energie"},
            "notifiers": {"email": {"plugin": "notify_smtp", "host": "127.0.0.1", "port": port,
                                    "security": "none", "sender": SENDER, "language": "nl", "timeout": 5}}}


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def _breached_case(app) -> int:
    """A detractor's case, its callback cancelled and the clock a minute past its SLA."""
    hub = app.extensions["hub"]
    r = app.test_client().post("/api/v1/feedback", json=DETRACTOR, headers=bearer(hub))
    assert r.status_code == 201
    case_id = r.get_json()["case_id"]
    with hub.db.session() as s:
        for f in s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)):
            f.status, f.cancelled_at = "dead", hub.clock.utcnow()
        due = s.get(m.Case, case_id).sla_due_at
    hub.clock.now = (due + dt.timedelta(minutes=1)).timestamp()
    return case_id


def _audit(hub, action: str) -> list[m.AuditEvent]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == action)))


def test_a_breached_case_alerts_its_lead_exactly_once_across_sweeps(make_app, smtp):
    app = make_app(**_config(smtp.port))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    assert sla.sweep(hub) == 1
    for _ in range(3):  # the scheduler sweeps every minute
        hub.clock.now += 60
        assert sla.sweep(hub) == 0
    [mail] = smtp.inbox.messages
    assert smtp.inbox.recipients == [[LEAD]]
    assert mail["Subject"].startswith(f"SLA verlopen: zaak {case_id} (service)") and "Acme Energie" in mail["Subject"]
    assert mail["Message-ID"] == f"<{sla_alerts.key_of(case_id)}@example.nl>"
    assert mail["List-Unsubscribe"] is None  # staff mail: nothing to opt out of
    body = mail.get_content()
    assert hub.case_url(case_id) in body and hub.case_url(case_id).startswith(hub.config["public_url"].rstrip("/"))
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        [row] = sla_alerts.rows(s, case_id)
    breached = _audit(hub, "case.sla_breached")[0].detail["late_by_hours"]
    assert f"Risicoscore: {case.risk}." in body and case.risk > 0
    assert f"Te laat: {float(breached):.1f} werkuren." in body
    assert row.status == "sent" and row.attempts == 1 and row.sent_at == hub.clock.utcnow() - dt.timedelta(minutes=3)
    assert row.idempotency_key == sla_alerts.key_of(case_id) and row.address == LEAD and row.claimed_at is None
    assert len(_audit(hub, "sla_alert.queued")) == 1 and len(_audit(hub, "sla_alert.sent")) == 1


def test_the_alert_holds_no_customer_text_or_personal_data(make_app, smtp):
    app = make_app(**_config(smtp.port))
    hub = app.extensions["hub"]
    _breached_case(app)
    sla.sweep(hub)
    [mail] = smtp.inbox.messages
    whole = mail.as_string() + mail.get_content()
    for private in ("storing", "overstappen", "jan@example.nl", "Jan"):
        assert private not in whole, private
    for event in _audit(hub, "sla_alert.queued") + _audit(hub, "sla_alert.sent"):
        assert "jan@example.nl" not in str(event.detail) and "storing" not in str(event.detail)


def test_an_smtp_outage_delays_the_alert_and_it_is_sent_once_after_recovery(make_app, smtp):
    app = make_app(**_config(smtp.port))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    smtp.inbox.reply = "421 4.3.2 service not available"
    assert sla.sweep(hub) == 1
    with hub.db.Session() as s:
        [row] = sla_alerts.rows(s, case_id)
    assert row.status == "failed" and "421" in row.last_error and smtp.inbox.messages == []
    retry_at = row.next_attempt_at
    assert retry_at > hub.clock.utcnow()
    hub.clock.now = (retry_at - dt.timedelta(seconds=1)).timestamp()
    sla.sweep(hub)  # not yet due: untouched
    with hub.db.Session() as s:
        assert sla_alerts.rows(s, case_id)[0].attempts == 1
    smtp.inbox.reply = None  # the server is back
    hub.clock.now = retry_at.timestamp()
    sla.sweep(hub)
    hub.clock.now += 3600
    sla.sweep(hub)
    assert len(smtp.inbox.messages) == 1 and smtp.inbox.recipients == [[LEAD]]
    with hub.db.Session() as s:
        [row] = sla_alerts.rows(s, case_id)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None


def test_an_alert_left_sending_by_a_crash_is_sent_again_with_the_same_message_id(make_app, smtp):
    app = make_app(**_config(smtp.port))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    smtp.inbox.reply = "421 4.3.2 try later"
    sla.sweep(hub)
    now = hub.clock.utcnow()
    with hub.db.session() as s:  # as if a scheduler died between claiming and sending
        [row] = sla_alerts.rows(s, case_id)
        row.status, row.claimed_at = "sending", now
    smtp.inbox.reply = None
    hub.clock.now += 60
    sla.sweep(hub)
    assert smtp.inbox.messages == []  # a fresh claim is another scheduler's: left alone
    hub.clock.now += float(hub.config["dispatch"].get("claim_timeout_seconds", 300))
    sla.sweep(hub)
    [mail] = smtp.inbox.messages
    assert mail["Message-ID"] == f"<{sla_alerts.key_of(case_id)}@example.nl>"


def test_no_notifier_configured_sends_no_alert(make_app, smtp):
    app = make_app(**_config(smtp.port, notifier=None))
    hub = app.extensions["hub"]
    _breached_case(app)
    assert sla.sweep(hub) == 1  # still escalated
    with hub.db.Session() as s:
        assert sla_alerts.rows(s) == []
    assert smtp.inbox.messages == [] and _audit(hub, "sla_alert.queued") == []


def test_a_team_without_lead_email_is_escalated_and_the_missing_address_audited(make_app, smtp):
    app = make_app(**_config(smtp.port, lead_email=None))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    assert sla.sweep(hub) == 1 and sla.sweep(hub) == 0
    [event] = _audit(hub, "sla_alert.skipped")
    assert event.case_id == case_id and event.detail["reason"] == "no_address"
    assert smtp.inbox.messages == []


def test_customer_contact_rules_do_not_block_a_staff_alert(make_app, smtp):
    # Quiet hours around the clock and the lead's address on the suppression list: both are for customers.
    app = make_app(**_config(smtp.port), contact_rules={"quiet_hours": [0, 24]})
    hub = app.extensions["hub"]
    _breached_case(app)
    with hub.db.session() as s:
        s.add(m.Suppression(address=LEAD, reason="unsubscribed", created_at=hub.clock.utcnow()))
    sla.sweep(hub)
    assert smtp.inbox.recipients == [[LEAD]]


def test_the_alert_language_follows_the_sla_setting(make_app, smtp):
    app = make_app(**_config(smtp.port, language="en"))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    sla.sweep(hub)
    [mail] = smtp.inbox.messages
    assert mail["Subject"].startswith(f"SLA breached: case {case_id} (service)")
    assert "Late by: 0.0 business hours." in mail.get_content()


def test_a_rejected_address_ends_the_alert_dead_without_retrying(make_app, smtp):
    app = make_app(**_config(smtp.port))
    hub = app.extensions["hub"]
    case_id = _breached_case(app)
    smtp.inbox.reply = "550 5.1.1 no such user"
    sla.sweep(hub)
    smtp.inbox.reply = None
    hub.clock.now += 86400
    sla.sweep(hub)
    with hub.db.Session() as s:
        [row] = sla_alerts.rows(s, case_id)
    assert row.status == "dead" and "550" in row.last_error and smtp.inbox.messages == []
    assert len(_audit(hub, "sla_alert.dead")) == 1


@pytest.mark.parametrize(("overrides", "key"), [
    ({"sla": {"notifier": "sms"}}, "sla.notifier"),
    ({"teams": {"service": {"default": True, "lead_email": "bea"}}}, "teams.service.lead_email"),
])
def test_a_bad_alert_configuration_stops_start_up_naming_the_key(make_app, overrides, key):
    config = _config(2525)
    config.update(overrides)
    with pytest.raises(ConfigError) as bad:
        make_app(**config)
    assert bad.value.key == key


@pytest.mark.parametrize("language", ["nl", "en"])
def test_both_languages_word_the_alert_without_an_unsubscribe_link(language):
    from hub.sdk.notifiers import Message

    message = Message(kind="sla_alert", to=LEAD, language=language, company="Acme Energie",
                      link="https://hub.example/cases/7", unsubscribe_url="", key="sla-alert-case-7", case_id=7,
                      details={"team": "billing", "late_by_hours": "2.5", "risk": "81"})
    subject, body = render(message)
    assert "7" in subject and "billing" in subject and "Acme Energie" in subject
    assert "https://hub.example/cases/7" in body and "2.5" in body and "81" in body
    assert "$" not in subject + body
