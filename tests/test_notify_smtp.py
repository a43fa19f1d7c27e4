"""notify_smtp against a real local SMTP server (aiosmtpd): plain, STARTTLS, implicit TLS and
login; Dutch and English templates with the company's name; SMTP replies mapped to retry or not;
the instance's settings checked at start."""

from __future__ import annotations

import pytest

from hub.config import ConfigError
from hub.sdk import FakeClock, Instance
from hub.sdk.notifiers import DeliveryError, Message
from plugins.notify_smtp import SmtpNotifier, render
from tests.conftest import TEST_NOW
from tests.smtp_server import SmtpServer, free_port, self_signed

SENDER = "Klantenservice <klantenservice@example.nl>"


def notifier(port: int, **settings) -> SmtpNotifier:
    values = {"host": "127.0.0.1", "port": port, "security": "none", "username": None, "password": None,
              "sender": SENDER, "language": "nl", "timeout": 5, "ca_file": None, **settings}
    return SmtpNotifier(Instance("email", "notify_smtp", "notifier", values), clock=FakeClock(TEST_NOW.timestamp()))


def message(**over) -> Message:
    values = {"kind": "resurvey", "to": "sanne@example.nl", "language": "nl", "company": "Acme Energie",
              "link": "https://form.typeform.com/to/u6nXL7#case_id=42&email=sanne%40example.nl",
              "unsubscribe_url": "http://hub.example/unsubscribe/tok", "key": "resurvey-case-42", "name": "Sanne",
              "case_id": 42, **over}
    return Message(**values)


def test_a_plain_message_arrives_with_link_company_and_unsubscribe_headers():
    with SmtpServer() as server:
        sent_id = notifier(server.port).send(message())
    [mail] = server.inbox.messages
    assert server.inbox.recipients == [["sanne@example.nl"]]
    assert mail["From"] == SENDER and mail["To"] == "sanne@example.nl"
    assert "Acme Energie" in mail["Subject"] and mail["Subject"].startswith("Hebben we het goed opgelost?")
    body = mail.get_content()
    assert "Beste Sanne," in body and "#case_id=42&email=sanne%40example.nl" in body
    assert "Klantenservice Acme Energie" in body
    assert mail["List-Unsubscribe"] == "<http://hub.example/unsubscribe/tok>"
    assert mail["Message-ID"] == sent_id == "<resurvey-case-42@example.nl>"
    assert mail["Date"].datetime == TEST_NOW  # the hub's clock, not the wall clock


@pytest.mark.parametrize("kind", ["resurvey", "survey", "review"])
def test_every_kind_has_dutch_and_english_wording(kind):
    nl_subject, nl_body = render(message(kind=kind, language="nl"))
    en_subject, en_body = render(message(kind=kind, language="en"))
    for subject, body in ((nl_subject, nl_body), (en_subject, en_body)):
        assert "Acme Energie" in subject + body and message().link in body and message().unsubscribe_url in body
    assert nl_body != en_body
    assert "Meld u af" in nl_body and "Unsubscribe" in en_body


def test_unknown_language_falls_back_and_missing_name_is_polite():
    subject, body = render(message(language="de", name=None), fallback_language="en")
    assert body.startswith("Dear customer,") and subject.startswith("Did we put it right?")


def test_starttls_with_login(tmp_path):
    cert = self_signed(tmp_path)
    with SmtpServer(tls="starttls", cert=cert, login=("hub", "s3cret")) as server:
        notifier(server.port, security="starttls", username="hub", password="s3cret",
                 ca_file=str(cert[0])).send(message())
        with pytest.raises(DeliveryError) as refused:
            notifier(server.port, security="starttls", username="hub", password="wrong",
                     ca_file=str(cert[0])).send(message(key="k2"))
    assert len(server.inbox.messages) == 1
    assert refused.value.retriable  # a wrong password is fixed in the config: the invitation waits


def test_starttls_never_falls_back_to_plain_text():
    with SmtpServer() as server, pytest.raises(DeliveryError) as failed:  # a server without STARTTLS
        notifier(server.port, security="starttls").send(message())
    assert server.inbox.messages == [] and failed.value.retriable


def test_implicit_tls(tmp_path):
    cert = self_signed(tmp_path)
    with SmtpServer(tls="ssl", cert=cert) as server:
        notifier(server.port, security="ssl", ca_file=str(cert[0])).send(message(language="en"))
    [mail] = server.inbox.messages
    assert mail["Subject"] == "Did we put it right? - Acme Energie"


def test_untrusted_certificate_is_refused(tmp_path):
    cert = self_signed(tmp_path)
    with SmtpServer(tls="ssl", cert=cert) as server, pytest.raises(DeliveryError):
        notifier(server.port, security="ssl").send(message())  # the system CAs do not sign it
    assert server.inbox.messages == []


@pytest.mark.parametrize(("reply", "retriable"), [("451 4.3.0 try again later", True),
                                                  ("550 5.1.1 no such mailbox", False)])
def test_smtp_replies_say_whether_to_retry(reply, retriable):
    with SmtpServer() as server:
        server.inbox.reply = reply
        with pytest.raises(DeliveryError) as failed:
            notifier(server.port).send(message())
    assert failed.value.retriable is retriable and reply[:3] in str(failed.value)


def test_server_down_is_retriable():
    with pytest.raises(DeliveryError) as failed:
        notifier(free_port()).send(message())
    assert failed.value.retriable and "unreachable" in str(failed.value)


def _smtp_config(**email):
    return {"notifiers": {"email": {"plugin": "notify_smtp", "host": "smtp.example.nl", "port": 587,
                                    "security": "starttls", "sender": SENDER, **email}}}


def test_the_issue_configuration_is_accepted_with_the_password_as_secret_reference(make_app, monkeypatch):
    from hub.engine.loop.notifiers import notifiers_of

    monkeypatch.setenv("SMTP_PASSWORD", "from-the-environment")
    app = make_app(**_smtp_config(username="hub", password="env:SMTP_PASSWORD"))
    inst = notifiers_of(app.extensions["hub"]).instances["email"]
    assert inst.settings["password"] == "from-the-environment" and inst.settings["port"] == 587
    assert "from-the-environment" not in repr(inst)


@pytest.mark.parametrize(("email", "key"), [
    ({"security": "tls"}, "notifiers.email.security"),
    ({"port": 70000}, "notifiers.email.port"),
    ({"hots": "x"}, "notifiers.email.hots"),
    ({"password": "env:SMTP_PASSWORD_NOT_SET"}, "notifiers.email.password"),
])
def test_bad_notifier_settings_fail_at_start(make_app, email, key):
    with pytest.raises(ConfigError) as bad:
        make_app(**_smtp_config(**email))
    assert bad.value.key == key


def test_resurvey_must_name_a_configured_notifier(make_app):
    with pytest.raises(ConfigError) as bad:
        make_app(**_smtp_config(), resurvey={"notifier": "sms"})
    assert bad.value.key == "resurvey.notifier" and "sms" in bad.value.reason
