"""Accounts hardening: Secure cookies, no username oracle by answer time,
logout and password change end every session, login rate limits.

The limiter counts on its storage's clock (the wall clock for memory://), so
these tests never wait on it: their windows are an hour long (the one test of
the shipped defaults: a minute, for six requests), so none expires mid-test.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import create_engine, inspect, select

from hub.config import ConfigError
from hub.engine import accounts
from hub.engine.accounts import create_user
from hub.storage import models as m
from hub.storage.migrate import upgrade

PASSWORD = "correct-horse-1"


def add_user(app, username: str, role: str = "agent", password: str = PASSWORD) -> None:
    with app.extensions["hub"].db.session() as s:
        create_user(s, username, password, role)


def csrf_token(client, url: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match, f"{url} has no CSRF token"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD, **kwargs):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client)}, **kwargs)


def session_cookie(resp) -> str:
    cookies = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert cookies, "no session cookie set"
    return cookies[-1]


# -- 1. Secure cookies ----------------------------------------------------------------
@pytest.mark.parametrize("overrides, secure", [
    ({}, False),
    ({"public_url": "https://hub.example.org"}, True),
    ({"web": {"secure_cookies": True}}, True),
    ({"public_url": "http://hub.example.org", "web": {"secure_cookies": False}}, False),
])
def test_session_cookie_is_secure_on_https_or_by_setting(make_app, overrides, secure):
    app = make_app(**overrides)
    add_user(app, "anna")
    resp = login(app.test_client(), "anna")
    assert resp.status_code == 302
    assert ("; Secure" in session_cookie(resp)) is secure


def test_secure_cookies_setting_is_a_boolean(make_app):
    with pytest.raises(ConfigError, match="secure_cookies"):
        make_app(web={"secure_cookies": "yes"})


# -- 2. Same answer time for unknown users --------------------------------------------
@pytest.fixture
def hash_checks(monkeypatch) -> list[str]:
    """Every password hash the hub verifies (the slow part of a login)."""
    calls: list[str] = []
    real = accounts.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    return calls


def test_unknown_user_costs_a_hash_check_like_a_known_one(app, hash_checks):
    add_user(app, "anna")
    client = app.test_client()
    assert login(client, "nobody", "whatever-123").status_code == 401
    assert len(hash_checks) == 1
    # The dummy hash is made the same way as real ones (same method and cost).
    with app.extensions["hub"].db.session() as s:
        real_hash = s.query(m.User).filter_by(username="anna").one().password_hash
    assert hash_checks[0].split("$")[0] == real_hash.split("$")[0]
    assert hash_checks[0] != real_hash

    assert login(client, "anna", "wrong-password").status_code == 401
    assert len(hash_checks) == 2 and hash_checks[1] == real_hash


def test_inactive_user_costs_a_hash_check_and_is_refused(app, hash_checks):
    add_user(app, "anna")
    with app.extensions["hub"].db.session() as s:
        s.query(m.User).filter_by(username="anna").one().active = False
    assert login(app.test_client(), "anna").status_code == 401
    assert len(hash_checks) == 1


def test_check_password_without_a_user_is_false():
    assert accounts.check_password(None, PASSWORD) is False


# -- 3. Logout and password change end every session ----------------------------------
def copy_session(source, target) -> None:
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value, domain=cookie.domain)


def test_cookie_copied_before_logout_stops_working_after_it(app):
    add_user(app, "anna")
    browser, thief = app.test_client(), app.test_client()
    assert login(browser, "anna").status_code == 302
    copy_session(browser, thief)
    assert thief.get("/").status_code == 200  # the copy works while signed in

    resp = browser.post("/logout", data={"csrf_token": csrf_token(browser, "/")})
    assert resp.status_code == 302
    resp = thief.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_logout_ends_the_users_other_sessions_too(app):
    add_user(app, "anna")
    laptop, phone = app.test_client(), app.test_client()
    assert login(laptop, "anna").status_code == 302
    assert login(phone, "anna").status_code == 302
    laptop.post("/logout", data={"csrf_token": csrf_token(laptop, "/")})
    assert phone.get("/").status_code == 302
    # Signing in again works, and starts a session that lives.
    assert login(phone, "anna").status_code == 302
    assert phone.get("/").status_code == 200


def test_password_change_by_an_admin_ends_the_users_sessions(app):
    add_user(app, "boss", "admin")
    add_user(app, "anna")
    admin, anna = app.test_client(), app.test_client()
    assert login(admin, "boss").status_code == 302
    assert login(anna, "anna").status_code == 302
    assert anna.get("/").status_code == 200

    # "Create user" refuses the existing name; the admin resets the password on its row.
    resp = admin.post("/admin/users", data={"username": "anna", "password": "new-password-2", "role": "agent",
                                            "locale": "", "csrf_token": csrf_token(admin, "/admin/users")})
    assert resp.status_code == 409
    assert anna.get("/").status_code == 200
    with app.extensions["hub"].db.Session() as s:
        anna_id = s.scalars(select(m.User.id).where(m.User.username == "anna")).one()
    resp = admin.post(f"/admin/users/{anna_id}/password",
                      data={"password": "new-password-2", "csrf_token": csrf_token(admin, "/admin/users")})
    assert resp.status_code == 302
    assert anna.get("/").status_code == 302
    assert login(anna, "anna", "new-password-2").status_code == 302
    assert admin.get("/").status_code == 200  # the admin's own session is untouched


def test_resetting_a_password_bumps_the_session_epoch(app):
    """``feedback-hub user create`` over an existing user goes through create_user."""
    add_user(app, "anna")
    with app.extensions["hub"].db.session() as s:
        assert s.query(m.User).filter_by(username="anna").one().session_epoch == 0
    add_user(app, "anna", password="another-pass-3")
    with app.extensions["hub"].db.session() as s:
        assert s.query(m.User).filter_by(username="anna").one().session_epoch == 1


def test_password_reset_from_the_cli_ends_the_users_sessions(app, database_url, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main

    add_user(app, "anna")
    anna = app.test_client()
    assert login(anna, "anna").status_code == 302
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    result = CliRunner().invoke(main, ["user", "create", "anna", "--password", "new-password-2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert anna.get("/").status_code == 302
    with app.extensions["hub"].db.session() as s:
        assert s.query(m.User).filter_by(username="anna").one().session_epoch == 1


def test_session_lifetime_is_hours_not_a_month(make_app):
    assert make_app().permanent_session_lifetime == dt.timedelta(hours=12)
    app = make_app(web={"session_hours": 2})
    assert app.permanent_session_lifetime == dt.timedelta(hours=2)
    assert app.config["SESSION_REFRESH_EACH_REQUEST"] is True  # sliding: counted from the last request


def test_migration_0003_adds_the_epoch_column(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0002")
    assert "session_epoch" not in {c["name"] for c in inspect(engine).get_columns("user")}
    upgrade(engine, "0003")
    columns = {c["name"]: c for c in inspect(engine).get_columns("user")}
    assert columns["session_epoch"]["nullable"] is False
    engine.dispose()


# -- 4. Login rate limits ---------------------------------------------------------------
def limited_app(make_app, per_ip: str = "100 per hour", per_user: str = "100 per hour"):
    app = make_app(web={"login_limit_per_ip": per_ip, "login_failures_per_user": per_user})
    add_user(app, "anna")
    return app


def assert_too_many(resp, window_seconds: int = 3600) -> str:
    assert resp.status_code == 429
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= window_seconds
    return resp.get_data(as_text=True)


def test_default_limits_stop_guessing_a_password(app):
    """With the shipped defaults (5 failures a minute per username) guess 6 is refused."""
    add_user(app, "anna")
    client = app.test_client()
    for _ in range(5):
        assert login(client, "anna", "wrong-password").status_code == 401
    assert_too_many(login(client, "anna", "wrong-password"), window_seconds=60)


def test_failed_logins_per_username_are_limited(make_app):
    app = limited_app(make_app, per_user="3 per hour")
    client = app.test_client()
    for _ in range(3):
        assert login(client, "anna", "wrong-password").status_code == 401
    # Locked: even the right password waits now.
    body = assert_too_many(login(client, "anna"))
    assert re.search(r"Too many sign-in attempts\. Try again in \d+ seconds\.", body)
    # From another address too: the limit is on the username.
    assert_too_many(login(client, "anna", environ_base={"REMOTE_ADDR": "10.0.0.9"}))
    # Another username is not affected.
    add_user(app, "bert")
    assert login(client, "bert").status_code == 302


def test_successful_logins_do_not_count_against_the_username(make_app):
    app = limited_app(make_app, per_user="2 per hour")
    client = app.test_client()
    for _ in range(4):
        assert login(client, "anna").status_code == 302
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})


def test_login_attempts_per_address_are_limited(make_app):
    app = limited_app(make_app, per_ip="3 per hour")
    client = app.test_client()
    for name in ("a", "b", "c"):
        assert login(client, name, "wrong-password").status_code == 401
    assert_too_many(login(client, "anna"))
    # Another address still gets in.
    assert login(client, "anna", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 302


def test_the_limit_page_speaks_dutch(make_app):
    app = limited_app(make_app, per_user="1 per hour")
    client = app.test_client()
    assert login(client, "anna", "wrong-password").status_code == 401
    body = assert_too_many(login(client, "anna", headers={"Accept-Language": "nl"}))
    assert re.search(r"Te veel inlogpogingen\. Probeer het over \d+ seconden opnieuw\.", body)


def test_each_app_counts_on_its_own(make_app):
    first = limited_app(make_app, per_user="1 per hour")
    login(first.test_client(), "anna", "wrong-password")
    assert_too_many(login(first.test_client(), "anna"))
    second = limited_app(make_app, per_user="1 per hour")
    assert login(second.test_client(), "anna").status_code == 302


def test_the_login_page_itself_is_not_limited(make_app):
    app = limited_app(make_app, per_ip="1 per hour")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/login").status_code == 200


@pytest.mark.parametrize("key", ["login_limit_per_ip", "login_failures_per_user"])
def test_a_bad_limit_is_a_config_error(make_app, key):
    with pytest.raises(ConfigError, match=key):
        make_app(web={key: "lots"})


@pytest.mark.parametrize("uri", ["postgresql://db/hub", "redis", "async+redis://127.0.0.1:6379"])
def test_a_bad_limit_storage_is_a_config_error(make_app, uri):
    with pytest.raises(ConfigError, match="ratelimit_storage_uri"):
        make_app(web={"ratelimit_storage_uri": uri})


def test_the_limiter_uses_the_configured_storage(app):
    from limits.storage import MemoryStorage

    assert isinstance(app.extensions["hub_login_limiter"].storage, MemoryStorage)


def test_the_login_limiter_leaves_no_thread_that_blocks_exit(make_app):
    """limits' memory storage starts a non-daemon timer thread; under a shifted
    clock (faketime, as CI runs the suite) it never fires and the process hangs
    at exit.  The hub's storage sweeps inline instead."""
    import threading

    before = {t.ident for t in threading.enumerate()}
    app = make_app()
    client = app.test_client()
    for _ in range(3):
        client.post("/login", data={"username": "nobody", "password": "wrong"})
    started = [t for t in threading.enumerate() if t.ident not in before and not t.daemon]
    assert started == []
    assert type(app.extensions["hub_login_limiter"]._storage).__name__ == "ThreadlessMemoryStorage"
