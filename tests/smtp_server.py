"""A real local SMTP server for tests (aiosmtpd), optionally with STARTTLS, implicit TLS or a login."""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made by openssl."""
    if not shutil.which("openssl"):
        import pytest

        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class Inbox:
    """What the server received: parsed messages, and the envelopes' recipients."""

    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    #: Reply to DATA instead of 250 (e.g. "451 4.3.0 try later", "550 5.1.1 no such user").
    reply: str | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.reply:
            return self.reply
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


class SmtpServer:
    """``with SmtpServer(...) as server:`` a listening aiosmtpd on 127.0.0.1:``server.port``."""

    def __init__(self, *, tls: str = "none", cert: tuple[Path, Path] | None = None,
                 login: tuple[str, str] | None = None):
        self.inbox = Inbox()
        self.port = free_port()
        kwargs: dict = {}
        if tls != "none":
            assert cert is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if login:
            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(),
                                                               auth_data.password.decode()) == login
                return AuthResult(success=ok)

            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=tls != "none")
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
