"""The SMTP notifier: one plain-text e-mail per invitation, from templates.

``security`` picks how the connection is protected: ``ssl`` (implicit TLS,
usually port 465), ``starttls`` (upgrade a plain connection, port 587; refused
when the server does not offer it, so mail never goes out in the clear by
accident) or ``none`` (a local relay).  ``password`` is a secret reference
(``env:SMTP_PASSWORD``); the registry resolves it at start.

The wording lives in ``data/<kind>.<language>.txt``: a ``Subject:`` line, then
the body, with ``$company``, ``$name``, ``$link`` and ``$unsubscribe_url``
(an SLA alert to a team lead: ``$case_id``, ``$team``, ``$late_by_hours``,
``$risk`` and ``$link`` instead, without an unsubscribe link).
A language without templates falls back to the instance's ``language``.

Each message carries a ``Message-ID`` made from the invitation's key, so a
message the outbox had to send again after a crash (sent, but the hub never
heard back) is recognisably the same message to the receiving side.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from string import Template

from hub.sdk import Setting
from hub.sdk.notifiers import DeliveryError, Message, Notifier

TEMPLATES = Path(__file__).parent / "data"
LANGUAGES = ("nl", "en")
#: How a customer without a known name is addressed, per language.
NO_NAME = {"nl": "klant", "en": "customer"}


def render(message: Message, fallback_language: str = "nl") -> tuple[str, str]:
    """(subject, body) of ``message`` in its language (else ``fallback_language``)."""
    language = message.language if message.language in LANGUAGES else fallback_language
    text = (TEMPLATES / f"{message.kind}.{language}.txt").read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {message.kind}.{language}.txt must start with a Subject: line")
    values = {**message.details, "company": message.company, "name": message.name or NO_NAME[language],
              "link": message.link, "unsubscribe_url": message.unsubscribe_url,
              "case_id": "" if message.case_id is None else str(message.case_id)}
    return Template(first[len("Subject: "):]).substitute(values), Template(body).substitute(values)


def _retriable(code: int) -> bool:
    """SMTP 4xx is temporary (greylisting, full queue); 5xx is final (no such mailbox)."""
    return code < 500


class SmtpNotifier(Notifier):
    plugin_name = "notify_smtp"
    channel = "email"
    description = "Invitations and review requests as e-mail over SMTP (Dutch and English templates)"
    settings = [
        Setting("host", required=True, help="SMTP server, e.g. smtp.example.nl"),
        Setting("port", type=int, default=587, minimum=1, maximum=65535, help="587 for starttls, 465 for ssl"),
        Setting("security", default="starttls", choices=("none", "starttls", "ssl"),
                help="none | starttls | ssl"),
        Setting("username", help="login name, if the server wants one"),
        Setting("password", secret=True, help="a secret reference, e.g. env:SMTP_PASSWORD"),
        Setting("sender", required=True, help='From header, e.g. "Klantenservice <klantenservice@example.nl>"'),
        Setting("language", default="nl", choices=LANGUAGES, help="templates for customers of unknown language"),
        Setting("timeout", type=(int, float), default=20, minimum=1, maximum=300, help="seconds per SMTP exchange"),
        Setting("ca_file", help="CA bundle that signs the server's certificate (default: the system's)"),
    ]

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.get("ca_file") or None)

    def _connect(self) -> smtplib.SMTP:
        host, port, timeout = self.config["host"], int(self.config["port"]), float(self.config["timeout"])
        security = self.config["security"]
        if security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        try:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=self._tls())  # SMTPNotSupportedError if not offered: never in the clear
                smtp.ehlo()
            if self.config.get("username"):
                smtp.login(self.config["username"], self.config.get("password") or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def build(self, message: Message) -> EmailMessage:
        """The e-mail for ``message`` (headers, subject and body from the templates)."""
        subject, body = render(message, self.config.get("language") or "nl")
        mail = EmailMessage()
        mail["From"] = self.config["sender"]
        mail["To"] = message.to
        mail["Subject"] = subject
        mail["Date"] = formatdate(self.clock.time(), localtime=False, usegmt=True)
        domain = parseaddr(self.config["sender"])[1].rpartition("@")[2] or "feedback-hub.invalid"
        mail["Message-ID"] = f"<{message.key}@{domain}>"
        if message.unsubscribe_url:  # a staff alert has none: nothing to opt out of
            # One-click opt-out for mail clients (RFC 2369 / 8058).
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail["Content-Language"] = message.language if message.language in LANGUAGES else self.config["language"]
        mail.set_content(body)
        return mail

    def send(self, message: Message) -> str:
        mail = self.build(message)
        try:
            smtp = self._connect()
            try:
                smtp.send_message(mail)
            finally:
                try:
                    smtp.quit()
                except smtplib.SMTPException:
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            code = min((c for c, _ in exc.recipients.values()), default=550)
            raise DeliveryError(f"recipient refused ({code})", retriable=_retriable(code)) from None
        except smtplib.SMTPAuthenticationError as exc:
            # A wrong or rotated password is fixed in the configuration: keep the invitations until then.
            raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", retriable=True) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP server answered {exc.smtp_code}", retriable=_retriable(exc.smtp_code)) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections, TLS
            raise DeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}", retriable=True) from None
        return mail["Message-ID"]
