"""API token scopes (read < write < admin) and expiry, on every backend; and
the smaller trust defects: health details, ``run --demo`` on a real database,
405 without ``Allow``.

Each test fails on the code before scopes existed: every token could do
everything, forever.
"""

from __future__ import annotations

import datetime as dt
import re

import click
import flask
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text

from hub.api.routes import token_required
from hub.cli import main
from hub.engine.accounts import create_token, create_user
from hub.storage import models as m
from hub.storage.migrate import upgrade
from tests.conftest import TEST_NOW
from tests.helpers import DETRACTOR

PASSWORD = "correct-horse-1"


def _token(hub, scope: str, expires_at: dt.datetime | None = None, name: str | None = None) -> dict[str, str]:
    with hub.db.session() as s:
        value = create_token(s, name or f"t-{scope}", scope=scope, expires_at=expires_at)
    return {"Authorization": f"Bearer {value}"}


def _denials(hub) -> list[m.AuditEvent]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "api.denied")
                              .order_by(m.AuditEvent.id)))


@pytest.fixture
def probe_app(make_app):
    """The hub plus one probe endpoint per method, guarded like any endpoint
    another area adds (the bare decorator: scope from the method)."""
    app = make_app()

    def probe():
        return {"method": flask.request.method, "scope": flask.g.api_scope}

    app.add_url_rule("/api/v1/_probe", "probe", token_required(probe), methods=["GET", "POST", "PATCH", "DELETE"])
    app.add_url_rule("/api/v1/_probe_admin", "probe_admin", token_required(scope="admin")(probe), methods=["GET"])
    return app


@pytest.mark.parametrize(("scope", "allowed"), [
    ("read", {"GET"}), ("write", {"GET", "POST", "PATCH"}), ("admin", {"GET", "POST", "PATCH", "DELETE"})])
def test_the_method_decides_the_scope_an_endpoint_needs(probe_app, scope, allowed):
    hub, client = probe_app.extensions["hub"], probe_app.test_client()
    headers = _token(hub, scope)
    for method in ("GET", "POST", "PATCH", "DELETE"):
        resp = client.open("/api/v1/_probe", method=method, headers=headers)
        if method in allowed:
            assert resp.status_code == 200 and resp.get_json() == {"method": method, "scope": scope}
        else:
            assert resp.status_code == 403, (scope, method)
            err = resp.get_json()["error"]
            assert err["code"] == "forbidden"
            assert f"scope is '{scope}'" in err["message"] and "--scope" in err["message"]
    assert (probe_app.test_client().get("/api/v1/_probe_admin", headers=headers).status_code
            == (200 if scope == "admin" else 403))


def test_a_read_token_reads_but_cannot_post_feedback(app, hub, client):
    read = _token(hub, "read")
    assert client.get("/api/v1/feedback", headers=read).status_code == 200
    resp = client.post("/api/v1/feedback", json=DETRACTOR, headers=read)
    assert resp.status_code == 403
    assert "needs 'write'" in resp.get_json()["error"]["message"]
    with hub.db.Session() as s:
        assert s.scalar(select(m.FeedbackItem.id)) is None  # nothing written
    (denied,) = _denials(hub)
    assert denied.actor == "token:t-read"
    assert denied.detail == {"method": "POST", "path": "/api/v1/feedback", "reason": "scope", "needed": "write",
                             "denied": True}
    write = _token(hub, "write")
    assert client.post("/api/v1/feedback", json=DETRACTOR, headers=write).status_code == 201


def test_an_expired_token_answers_401_and_says_so(app, hub, client):
    clock = hub.clock
    headers = _token(hub, "admin", expires_at=TEST_NOW + dt.timedelta(days=1), name="ci-export")
    assert client.get("/api/v1/cases", headers=headers).status_code == 200
    clock.sleep(dt.timedelta(days=1, seconds=1).total_seconds())
    resp = client.get("/api/v1/cases", headers=headers)
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["error"]["message"]
    assert [(d.actor, d.detail["reason"]) for d in _denials(hub)] == [("token:ci-export", "expired")]


def test_revoked_and_unknown_tokens_are_401_and_audited(hub, client):
    headers = _token(hub, "write", name="old")
    with hub.db.session() as s:
        s.scalars(select(m.ApiToken)).one().revoked_at = TEST_NOW
    assert "revoked" in client.get("/api/v1/cases", headers=headers).get_json()["error"]["message"]
    assert client.get("/api/v1/cases", headers={"Authorization": "Bearer fh_guess"}).status_code == 401
    assert client.post("/api/v1/feedback", json=DETRACTOR).status_code == 401
    assert [(d.actor, d.detail["reason"]) for d in _denials(hub)] == [
        ("token:old", "revoked"), ("anonymous", "unknown"), ("anonymous", "no_token")]


def test_an_unknown_scope_is_refused_by_the_database(hub):
    with pytest.raises(ValueError, match="scope must be one of read, write, admin"):
        with hub.db.session() as s:
            create_token(s, "x", scope="root")
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with hub.db.session() as s:
            s.add(m.ApiToken(name="x", token_hash="0" * 64, prefix="fh_x", scope="root"))


def test_tokens_made_before_scopes_become_write_tokens(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO api_token (name, token_hash, prefix, created_at) "
                          "VALUES ('legacy', :h, 'fh_legacy', '2026-01-01 00:00:00')"), {"h": "a" * 64})
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT scope, expires_at FROM api_token")).one() == ("write", None)
    engine.dispose()


# -- the command line ---------------------------------------------------------------------
@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    return database_url


def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_token_create_with_scope_and_expiry(cli_env, make_app):
    result = _cli("token", "create", "reporting", "--scope", "read", "--expires-days", "30")
    assert result.exit_code == 0, result.output
    value = result.output.strip().splitlines()[-1]
    assert value.startswith("fh_")
    listing = _cli("token", "list").output
    assert re.search(r"reporting  fh_\S+\.\.\.  read  expires \d{4}-\d\d-\d\d \d\d:\d\d  active", listing), listing
    app = make_app()
    hub = app.extensions["hub"]
    with hub.db.Session() as s:
        row = s.scalars(select(m.ApiToken).where(m.ApiToken.name == "reporting")).one()
        created = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "token.created")).one()
    assert row.scope == "read"
    assert dt.timedelta(days=29, hours=23) < row.expires_at - row.created_at < dt.timedelta(days=30, minutes=1)
    assert created.actor == "cli" and created.detail["scope"] == "read" and value not in str(created.detail)
    client = app.test_client()
    assert client.get("/api/v1/cases", headers={"Authorization": f"Bearer {value}"}).status_code == 200
    assert client.post("/api/v1/feedback", json=DETRACTOR,
                       headers={"Authorization": f"Bearer {value}"}).status_code == 403


@pytest.mark.parametrize("args", [["--scope", "root"], ["--expires-days", "0"], ["--expires-days", "99999"]])
def test_token_create_refuses_bad_options(cli_env, args):
    result = CliRunner().invoke(main, ["token", "create", "x", *args])
    assert result.exit_code == 2 and "Invalid value" in result.output


# -- the admin tokens page ------------------------------------------------------------------
def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _admin(app):
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        create_user(s, "root", PASSWORD, "admin")
    client = app.test_client()
    token = _csrf(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": "root", "password": PASSWORD, "csrf_token": token})
    return client


def test_the_tokens_page_creates_and_shows_scope_and_expiry(app, hub):
    client = _admin(app)
    page = client.get("/admin/tokens").get_data(as_text=True)
    resp = client.post("/admin/tokens", data={"name": "bi-tool", "scope": "read", "expires_days": "7",
                                              "csrf_token": _csrf(page)})
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    row = re.search(r'<tr data-token="bi-tool" data-scope="read".*?</tr>', body, re.S).group(0)
    assert "<code>read</code>" in row and "never" not in row.split('token-expires">')[1].split("</td>")[0]
    with hub.db.Session() as s:
        token = s.scalars(select(m.ApiToken).where(m.ApiToken.name == "bi-tool")).one()
    assert token.scope == "read" and token.expires_at == TEST_NOW + dt.timedelta(days=7)
    bad = client.post("/admin/tokens", data={"name": "x", "scope": "root", "csrf_token": _csrf(body)})
    assert bad.status_code == 400
    hub.clock.sleep(dt.timedelta(days=8).total_seconds())
    later = client.get("/admin/tokens").get_data(as_text=True)
    assert re.search(r'<tr data-token="bi-tool" data-scope="read" class="revoked">.*?expired', later, re.S)


# -- smaller defects ----------------------------------------------------------------------------
def test_health_names_instances_only_to_token_holders(hub, client):
    open_answer = client.get("/api/v1/health")
    assert open_answer.status_code == 200
    assert open_answer.get_json() == {"status": "ok", "database": "ok", "sources": None, "sinks": None}
    assert client.get("/api/v1/health", headers={"Authorization": "Bearer fh_guess"}).get_json()["sinks"] is None
    detailed = client.get("/api/v1/health", headers=_token(hub, "read")).get_json()
    assert detailed["sinks"] == ["local"] and detailed["sources"] == []


def test_405_keeps_the_allow_header(client):
    resp = client.delete("/api/v1/openapi.json")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD", "OPTIONS"}


def test_run_demo_refuses_a_database_it_did_not_start(hub):
    from hub.cli.commands import _demo_database
    from hub.demo import mode as demo_mod

    with hub.db.session() as s:
        create_user(s, "demo", "the-real-admin-pass", "admin")
    with pytest.raises(click.ClickException, match="is not a demo database"):
        _demo_database(hub, demo_mod)
    with hub.db.Session() as s:
        user = s.scalars(select(m.User).where(m.User.username == "demo")).one()
        assert user.session_epoch == 0  # untouched: password and sessions as they were
    from werkzeug.security import check_password_hash

    assert check_password_hash(user.password_hash, "the-real-admin-pass")


def test_run_demo_makes_its_login_once_and_never_resets_it(hub):
    from hub.cli.commands import _demo_database
    from hub.demo import mode as demo_mod

    _demo_database(hub, demo_mod)  # a fresh database: marked, the demo login made
    with hub.db.session() as s:
        user = s.scalars(select(m.User).where(m.User.username == demo_mod.DEMO_USER)).one()
        user.password_hash = "changed-by-its-owner"
    _demo_database(hub, demo_mod)  # the next demo run on it
    with hub.db.Session() as s:
        assert s.scalars(select(m.User.password_hash).where(m.User.username == demo_mod.DEMO_USER)).one() == \
            "changed-by-its-owner"
