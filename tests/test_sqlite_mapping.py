"""SQLite: connections that serve pages and API reads map the database file
(``sqlite_mmap_mb``); imports, workers and writes never turn it on, so their
resident memory does not grow with the file."""

from __future__ import annotations

import flask
import pytest
from sqlalchemy import text

from hub.storage.database import Database


def _mapped(session) -> int:
    return session.execute(text("PRAGMA mmap_size")).scalar()


def test_a_page_session_maps_the_file_and_a_job_session_does_not(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}", sqlite_mmap_bytes=8 * 2**20)
    try:
        with db.Session() as s:
            assert _mapped(s) == 0
        with db.ReadSession() as s:  # a job's read (a worker's pending check): not mapped
            assert _mapped(s) == 0
        with db.PageSession() as s:
            assert _mapped(s) == 8 * 2**20
    finally:
        db.engine.dispose()


def test_zero_maps_nothing(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}", sqlite_mmap_bytes=0)
    try:
        with db.PageSession() as s:
            assert _mapped(s) == 0
    finally:
        db.engine.dispose()


def test_the_web_pages_use_the_mapped_sessions(app, auth):
    hub = app.extensions["hub"]
    if hub.db.dialect != "sqlite":
        pytest.skip("SQLite only")
    seen = []

    @app.after_request
    def _peek(resp):
        session = flask.g.get("hub_session") or flask.g.get("web_session")
        if session is not None:
            seen.append(_mapped(session))
        return resp

    resp = app.test_client().get("/api/v1/feedback", headers=auth)
    assert resp.status_code == 200
    assert seen and seen[-1] == 1024 * 2**20  # the default of config/default.toml
