"""Production packaging (issue 15): the secret key, gunicorn.conf.py, deploy/ examples."""

from __future__ import annotations

import multiprocessing
import stat
import threading
from pathlib import Path

import pytest

from hub.app import _secret_key, instance_secret
from hub.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def _race(path: str, barrier, out) -> None:
    barrier.wait()
    out.put(instance_secret(Path(path)))


def test_twenty_processes_starting_together_share_one_key(tmp_path):
    """Gunicorn workers on a fresh install: every one reads the first writer's key."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(20), ctx.Queue()
    path = tmp_path / "instance" / "secret_key"
    procs = [ctx.Process(target=_race, args=(str(path), barrier, out)) for _ in range(20)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert len(set(keys)) == 1 and len(keys[0]) >= 48
    assert keys[0] == path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary files left behind


def test_twenty_threads_share_one_key(tmp_path):
    path = tmp_path / "secret_key"
    barrier, keys = threading.Barrier(20), []

    def go():
        barrier.wait()
        keys.append(instance_secret(path))

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 20 and len(set(keys)) == 1


def test_an_existing_key_is_kept(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("kept-key\n")
    assert instance_secret(path) == "kept-key"


def _cfg(tmp_path, monkeypatch, **env):
    for name in ("HUB_CONFIG", "HUB_SECRET_KEY", "HUB_SECRET_KEY_FILE", "HUB_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_config(None)


def test_production_refuses_to_start_without_a_key(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, monkeypatch, HUB_ENVIRONMENT="production")
    with pytest.raises(ConfigError, match="HUB_SECRET_KEY or HUB_SECRET_KEY_FILE"):
        _secret_key(cfg, str(tmp_path))
    assert not (tmp_path / "secret_key").exists()  # never a generated key in production


def test_production_refuses_a_short_key(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, monkeypatch, HUB_ENVIRONMENT="production", HUB_SECRET_KEY="short")
    with pytest.raises(ConfigError, match="at least 32"):
        _secret_key(cfg, str(tmp_path))


def test_production_reads_the_key_from_the_environment_or_a_file(tmp_path, monkeypatch):
    key = "k" * 40
    cfg = _cfg(tmp_path, monkeypatch, HUB_ENVIRONMENT="production", HUB_SECRET_KEY=key)
    assert _secret_key(cfg, str(tmp_path)) == key
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(f"{'f' * 40}\n")
    cfg = _cfg(tmp_path, monkeypatch, HUB_ENVIRONMENT="production", HUB_SECRET_KEY_FILE=str(secret_file))
    assert _secret_key(cfg, str(tmp_path)) == "f" * 40
    cfg = _cfg(tmp_path, monkeypatch, HUB_ENVIRONMENT="production", HUB_SECRET_KEY_FILE=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read secrets file"):
        _secret_key(cfg, str(tmp_path))


def test_development_generates_one_in_the_instance_folder(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, monkeypatch)
    key = _secret_key(cfg, str(tmp_path))
    assert (tmp_path / "secret_key").read_text() == key
    assert _secret_key(cfg, str(tmp_path)) == key


# -- packaging examples --------------------------------------------------------------------------
def test_gunicorn_conf_imports_and_reads_its_settings_from_the_environment(monkeypatch):
    import runpy

    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("GUNICORN_BIND", "0.0.0.0:9000")
    monkeypatch.delenv("HUB_LOG_FORMAT", raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["workers"], conf["bind"], conf["preload_app"]) == (3, "0.0.0.0:9000", False)
    assert conf["graceful_timeout"] > 0 and conf["forwarded_allow_ips"]
    assert "%(U)s" in conf["access_log_format"] and "%(r)s" not in conf["access_log_format"]  # no query strings
    monkeypatch.setenv("HUB_LOG_FORMAT", "json")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    import json

    fields = {"t": "[02/Dec/2026:06:00:00 +0000]", "h": "10.0.0.1", "m": "GET", "U": "/healthz", "s": 200, "B": 16,
              "L": 0.01}
    assert json.loads(conf["access_log_format"] % fields)["path"] == "/healthz"


def test_a_gunicorn_worker_freezes_its_loaded_app_out_of_full_collections(app):
    """post_worker_init hands the built app's objects to gc.freeze (hub.app.settle_for_serving):
    a full collection over them cost ~86 ms inside some request."""
    import gc
    import runpy
    from types import SimpleNamespace

    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        conf["post_worker_init"](SimpleNamespace(wsgi=app))
        # Everything tracked then, the app's objects among them, is frozen.
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def _mentioned_commands() -> list[tuple[str, list[str]]]:
    """Every `feedback-hub <command> [--option ...]` the deploy examples and docs/deploying.md run."""
    import re

    import yaml

    found = []
    texts = [p.read_text() for p in sorted((ROOT / "deploy").rglob("*")) if p.is_file()]
    texts.append((ROOT / "docs" / "deploying.md").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        if isinstance(service.get("command"), list) and service["command"][0] == "feedback-hub":
            texts.append(" ".join(service["command"]))
    for text in texts:
        # A command line, not prose ("a feedback-hub web node"): at a line's start, after bin/, exec or `.
        for mt in re.finditer(r"(?:^|(?<=bin/)|(?<=exec )|(?<=`))feedback-hub ((?:[a-z]+ )*[a-z]+)"
                              r"((?: --[a-z-]+(?: [^ \s'\"`-][^ \s'\"`]*)?)*)", text, re.MULTILINE):
            words = mt.group(1).split()
            found.append((words, re.findall(r"--[a-z-]+", mt.group(2))))
    return found


def test_the_deploy_examples_run_real_commands_with_real_options():
    import click

    from hub.cli import main

    seen = set()
    for words, options in _mentioned_commands():
        cmd, ctx = main, click.Context(main)
        for word in words:  # "db upgrade", "token create prometheus": walk groups, stop at a command's arguments
            if not isinstance(cmd, click.Group):
                break
            sub = cmd.get_command(ctx, word)
            assert sub is not None, f"feedback-hub {' '.join(words)}: no command {word!r}"
            cmd = sub
        known = {opt for param in cmd.params for opt in getattr(param, "opts", [])}
        for option in options:
            assert option in known, f"feedback-hub {' '.join(words)}: no option {option}"
        seen.add(cmd.name)
    assert {"scheduler", "worker", "upgrade"} <= seen


def test_the_systemd_units_and_compose_file_name_the_three_processes():
    import yaml

    units = {p.name: p.read_text() for p in (ROOT / "deploy" / "systemd").glob("*.service")}
    assert "gunicorn -c" in units["feedback-hub-web.service"] and "hub:create_app()" in units["feedback-hub-web.service"]
    assert "feedback-hub scheduler" in units["feedback-hub-scheduler.service"]
    assert "feedback-hub worker" in units["feedback-hub-worker@.service"]
    for text in units.values():
        assert "HUB_ENVIRONMENT=production" in text and "SECRET_KEY=" not in text  # the key comes from a file
    services = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]
    assert services["scheduler1"]["command"][:2] == ["feedback-hub", "scheduler"]
    assert services["worker"]["command"][:2] == ["feedback-hub", "worker"]
    assert services["migrate"]["command"] == ["feedback-hub", "db", "upgrade"]
    assert "HUB_SECRET_KEY" not in services["web1"]["environment"]  # only HUB_SECRET_KEY_FILE
