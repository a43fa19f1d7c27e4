"""``feedback-hub invite FILE.csv``, ``suppress`` and the invitations in ``dispatch``, as an admin runs them."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cli import main
from hub.storage import models as m
from hub.storage.database import make_engine
from tests.smtp_server import SmtpServer


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _site(tmp_path, port: int) -> str:
    path = tmp_path / "site.toml"
    path.write_text(f'''
[sources.nps_survey]
plugin = "survey_typeform"
form_id = "u6nXL7"
token = "tf"

[notifiers.email]
plugin = "notify_smtp"
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Klantenservice <klantenservice@example.nl>"

[resurvey]
notifier = "email"
source = "nps_survey"

[contact_rules]
quiet_hours = [0, 0]

[loop]
company_name = "Acme"
invitation_source = "nps_survey"
''')
    return str(path)


def _invitations(database_url):
    engine = make_engine(database_url)
    with Session(engine) as s:
        out = [(r.status, r.reason, r.trigger) for r in s.scalars(select(m.Invitation).order_by(m.Invitation.id))]
    engine.dispose()
    return out


def test_invite_a_csv_then_dispatch_sends_and_suppress_stops_it(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    customers = tmp_path / "customers.csv"
    customers.write_text("email;name\nanna@example.nl;Anna\nbob@example.nl;Bob\n", encoding="utf-8")
    with SmtpServer() as smtp:
        monkeypatch.setenv("HUB_CONFIG", _site(tmp_path, smtp.port))
        first = run("invite", str(customers), "--trigger", "deal_closed")
        assert first.exit_code == 0, first.output
        assert "queued 2 invitations, 0 already queued" in first.output
        assert "queued 0 invitations, 2 already queued" in run("invite", str(customers), "--trigger",
                                                                "deal_closed").output
        sent = run("dispatch")
        assert "invitations: sent 2, not sent 0" in sent.output, sent.output
        assert sorted(msg["To"] for msg in smtp.inbox.messages) == ["anna@example.nl", "bob@example.nl"]
        assert run("suppress", "Carla@Example.nl").output.strip() == "on the suppression list"
        assert run("suppress", "carla@example.nl").output.strip() == "already on the suppression list"
        (tmp_path / "carla.csv").write_text("email\ncarla@example.nl\n")
        run("invite", str(tmp_path / "carla.csv"))
        assert "not sent 1" in run("dispatch").output
        assert len(smtp.inbox.messages) == 2
    assert _invitations(database_url)[-1] == ("skipped", "suppressed", "csv")


def test_a_bad_row_queues_nothing_and_names_its_line(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HUB_CONFIG", _site(tmp_path, 9))
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name\nok@example.nl,Ok\nnot-an-address,Bad\n")
    result = CliRunner().invoke(main, ["invite", str(bad)])
    assert result.exit_code != 0 and "bad.csv:3: email: is not an email address" in result.output
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("mail\nx@example.nl\n")
    result = CliRunner().invoke(main, ["invite", str(wrong)])
    assert result.exit_code != 0 and "unknown: mail" in result.output
    result = CliRunner().invoke(main, ["invite", str(bad), "--source", "nope"])
    assert result.exit_code != 0 and "--source" in result.output
    assert _invitations(database_url) == []
