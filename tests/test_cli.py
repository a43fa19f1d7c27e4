"""The command line, driven as an admin would (real config through env vars)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.storage import models as m


@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    return {"HUB_DATABASE_URL": database_url, "HUB_INSTANCE_PATH": str(tmp_path / "instance")}


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _items(database_url) -> list[str]:
    from sqlalchemy.orm import Session

    from hub.storage.database import make_engine

    engine = make_engine(database_url)
    with Session(engine) as s:
        out = s.scalars(select(m.FeedbackItem.external_id).order_by(m.FeedbackItem.id)).all()
    engine.dispose()
    return list(out)


def test_import_keeps_good_lines_and_names_bad_ones(cli_env, tmp_path, database_url):
    path = tmp_path / "feedback.jsonl"
    bad_lines = {17: "{not json", 503: json.dumps({"external_id": "x", "channel": "survey", "nps": 42}),
                 998: json.dumps({"external_id": "y", "channel": "fax", "text": "hi"})}
    with path.open("w") as fh:
        for n in range(1, 1001):
            if n in bad_lines:
                fh.write(bad_lines[n] + "\n")
            else:
                fh.write(json.dumps({"external_id": f"imp-{n}", "channel": "survey", "nps": n % 11,
                                     "text": "Prima" if n % 11 > 6 else "Slecht, ik ga opzeggen",
                                     "language": "nl", "customer": {"email": f"c{n % 300}@example.nl"}}) + "\n")
    result = run("import", str(path), "--source", "legacy")
    assert result.exit_code == 0, result.output
    assert "imported 997 new item(s)" in result.output
    for n in bad_lines:
        assert f"line {n}:" in result.output
    assert "line 503: nps" in result.output and "line 998: channel" in result.output
    assert len(_items(database_url)) == 997
    again = run("import", str(path), "--source", "legacy")
    assert "imported 0 new item(s), 997 already present" in again.output
    assert len(_items(database_url)) == 997


def test_import_csv(cli_env, tmp_path, database_url):
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "channel", "nps", "text", "customer_email"])
        w.writerow(["c1", "survey", "3", "Teleurgesteld", "a@b.nl"])
        w.writerow(["c2", "survey", "ten", "Top", "b@b.nl"])
    result = run("import", str(path), "--source", "csv")
    assert "imported 1 new item(s)" in result.output and "line 3: nps" in result.output
    assert _items(database_url) == ["c1"]


def test_token_create_prints_token_last_and_it_works(cli_env, database_url):
    from hub.app import create_app

    result = run("token", "create", "zapier")
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("fh_") and len(token) > 30
    client = create_app().test_client()
    assert client.get("/api/v1/feedback", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert "zapier" in run("token", "list").output
    assert token not in run("token", "list").output
    run("token", "revoke", "zapier")
    assert client.get("/api/v1/feedback", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_config_error_names_file_key_and_reason(cli_env, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[sources.nps]\nplugin = "no_such_plugin"\n')
    result = CliRunner().invoke(main, ["--config", str(site), "sources"])
    assert result.exit_code != 0
    assert str(site) in result.output and "sources.nps.plugin" in result.output
    assert "unknown source plugin 'no_such_plugin'" in result.output


def test_pull_of_unknown_source_is_a_clear_error(cli_env):
    result = run("pull", "nope")
    assert result.exit_code != 0 and "no source named 'nope'" in result.output


def test_plugins_lists_defaults_and_bundled_entry_points(cli_env):
    out = run("plugins").output
    assert "hub.defaults.scoring" in out and "hub_score_feedback" in out
    for name in ("survey_typeform", "twitter_webcare", "crm_hubspot"):
        assert name in out


def test_plugins_settings_lists_every_kind_with_types_defaults_ranges_and_help(cli_env):
    from hub.engine.registry import plugin_kinds
    from hub.plugin_manager import make_plugin_manager

    result = run("plugins", "--settings")
    assert result.exit_code == 0, result.output
    out = result.output
    sources, sinks = plugin_kinds(make_plugin_manager())
    assert {"survey_typeform", "twitter_webcare", "crm_hubspot", "local"} <= set(sources) | set(sinks)
    for section, kinds in (("sources", sources), ("sinks", sinks)):
        for name, cls in kinds.items():
            assert f'[{section}.<name>] plugin = "{name}"' in out
            for setting in cls.all_settings():  # each setting, then its help on the next line
                assert f"    {setting.name}: {setting.type_name()}" in out
                assert setting.help and f"\n        {setting.help}\n" in out, (name, setting.name)
    assert "    page_size: int, default 1000, 1-1000\n" in out
    assert "    bearer_token: str, required, secret\n" in out
    assert "    budget_reset_day: int, default 1, 1-28\n" in out
    assert "every instance also takes:" in out and "    schedule_seconds: int/float, >= 1\n" in out


def _wait_for_text(path, needle, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and needle in path.read_text():
            return True
        time.sleep(0.1)
    return False


def test_second_scheduler_on_same_database_waits_and_takes_over(cli_env, database_url, tmp_path):
    """A second node's scheduler is a standby, not an error; the first's SIGTERM hands over at once."""
    env = {**os.environ, **cli_env, "HUB_SCHEDULER__LEASE_SECONDS": "60", "HUB_SCHEDULER__STANDBY_RETRY_SECONDS": "0.3"}
    exe = [sys.executable, "-m", "hub.cli"]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = []
    try:
        for log in logs:
            with log.open("w") as out:
                procs.append(subprocess.Popen([*exe, "scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                              cwd=tmp_path))
            if log is logs[0]:
                assert _wait_for_text(log, " leads; jobs:"), log.read_text()
        assert _wait_for_text(logs[1], "waiting for leadership"), logs[1].read_text()
        assert " leads; jobs:" not in logs[1].read_text()
        procs[0].terminate()
        assert procs[0].wait(timeout=20) == 0
        # 60 s lease: taking over within 20 s shows the SIGTERM released it rather than letting it expire.
        assert _wait_for_text(logs[1], " leads; jobs:", timeout=20), logs[1].read_text()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


def test_make_run_demo_answers_health(tmp_path):
    """What `make run` starts: the embedded default with demo sources."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    exe = Path(sys.executable).with_name("feedback-hub")
    proc = subprocess.Popen([str(exe), "run", "--demo", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        status = None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.3)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer within 60 s"
        assert (tmp_path / "instance" / "hub.db").exists()  # SQLite under instance/
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "demo login" in out
