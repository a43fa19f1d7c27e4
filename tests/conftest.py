"""Shared test fixtures.

* ``make_app(**config)`` builds a hub app on a fresh database: a copy of a
  migrated SQLite template (fast), or the PostgreSQL server named by
  ``HUB_TEST_DATABASE_URL`` (tables truncated between tests).  Tests that use a
  database run once per backend: ``[sqlite]`` always, ``[postgres]`` too when
  the variable is set (CI sets it when a server answers).
* From the testing kit (``hub.sdk.testing``, loaded through its ``pytest11``
  entry point like in any plugin's suite, so not imported here a second time):
  ``live_server(wsgi_app)``, ``fake_vendor``, ``fake_clock`` and ``make_hub``.
* ``fixture_path(name)`` finds copied vendor payloads under ``tests/fixtures``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from hub.sdk import FakeClock
from hub.sdk.testing import RunningHub, start_hub
from hub.storage.database import make_engine
from hub.storage.migrate import upgrade
from hub.storage.models import Base

FIXTURES = Path(__file__).parent / "fixtures"
#: "Now" for every app a test builds (unless it passes a clock of its own).
TEST_NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
PG_URL = os.environ.get("HUB_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])


def pytest_configure(config):
    # The kit normally arrives through its pytest11 entry point (setup.cfg).  An
    # install made before that entry point existed, or PYTEST_DISABLE_PLUGIN_AUTOLOAD,
    # lacks it: register it here then, under the same name, so it is never there twice.
    import hub.sdk.testing as kit

    if not config.pluginmanager.is_registered(kit):
        config.pluginmanager.register(kit, "feedback_hub")
    # The suite's vendors are local servers on 127.0.0.1, which clients refuse
    # by default (SSRF): allow exactly that address for clients built without
    # a policy (hubs get it through start_hub's http.allowed_private_hosts).
    from hub.sdk.http import default_policy, set_default_policy

    set_default_policy(default_policy().widened(kit.LOOPBACK_TEST_HOSTS))
    # Hubs built from site files and the environment (CLI tests, subprocesses) too.
    os.environ.setdefault("HUB_HTTP__ALLOWED_PRIVATE_HOSTS", json.dumps(list(kit.LOOPBACK_TEST_HOSTS)))


def fixture_path(name: str) -> Path:
    return FIXTURES / name


@pytest.fixture(scope="session")
def sqlite_template(hub_sqlite_template) -> Path:
    return hub_sqlite_template


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this xdist worker's own on the PostgreSQL server, migrated."""
    assert PG_URL
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    # The process id too: several suites may share one server (parallel checkouts).
    name = f"hubtest_{os.getpid()}_{_worker()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def make_app(database_url, tmp_path, monkeypatch):
    """Factory: ``make_app(plugins=(...), clock=..., **config_overrides)`` -> Flask app.

    A thin wrapper over the testing kit's :func:`hub.sdk.testing.start_hub` that
    adds the backend parametrisation and loads installed entry points by default.
    """
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    hubs: list[RunningHub] = []

    def factory(plugins=(), clock=None, load_entry_points=True, **overrides):
        # The hub's own clock, never the wall clock: the suite passes on any date.
        running = start_hub(database_url=database_url, plugins=plugins, clock=clock or FakeClock(TEST_NOW.timestamp()),
                            load_entry_points=load_entry_points, **overrides)
        hubs.append(running)
        return running.app

    yield factory
    for running in hubs:
        running.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def hub(app):
    return app.extensions["hub"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(hub) -> dict[str, str]:
    from tests.helpers import bearer

    return bearer(hub)
