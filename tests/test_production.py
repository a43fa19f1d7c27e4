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
