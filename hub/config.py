"""Configuration: three layers, validated at start.

1. ``config/default.toml`` (shipped, non-secret defaults),
2. the site file named by ``HUB_CONFIG`` (or ``--config``),
3. ``HUB_*`` environment variables, ``__`` nesting (``HUB_SCORING__RISK_THRESHOLD=50``),
   values parsed as JSON when they parse (so numbers and lists work), else strings.

Secrets are never written in files: a value ``"env:NAME"`` is read from the
environment and ``"file:/run/secrets/x"`` from a secrets file.  Any problem
raises :class:`ConfigError` naming the file, the key and the reason, so start-up
stops with a message an admin can act on.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _default_file() -> Path:
    """The one copy of the defaults: ``config/default.toml`` in the source tree;
    a wheel installs it as data under ``<prefix>/share/feedback-hub/``."""
    in_tree = Path(__file__).resolve().parents[1] / "config" / "default.toml"
    installed = Path(sys.prefix) / "share" / "feedback-hub" / "default.toml"
    return in_tree if in_tree.is_file() or not installed.is_file() else installed


DEFAULT_FILE = _default_file()
# Variables with the prefix that are not configuration keys.
_NOT_CONFIG = {"HUB_CONFIG", "HUB_LOAD_PLUGINS", "HUB_TEST_DATABASE_URL", "HUB_INSTANCE_PATH"}


class ConfigError(Exception):
    """Bad configuration: where it is (file), which key, and why."""

    def __init__(self, file: str | os.PathLike[str] | None, key: str, reason: str):
        self.file = str(file) if file else "<environment>"
        self.key = key
        self.reason = reason
        super().__init__(f"{self.file}: {key}: {reason}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"invalid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any], origins: dict[str, str], origin: str, prefix=""):
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, origin, dotted + ".")
        else:
            base[key] = copy.deepcopy(value) if isinstance(value, Mapping | list) else value
            origins[dotted] = origin
            if isinstance(value, Mapping):
                for sub in _walk_keys(value, dotted + "."):
                    origins[sub] = origin


def _walk_keys(mapping: Mapping[str, Any], prefix: str):
    for key, value in mapping.items():
        yield prefix + key
        if isinstance(value, Mapping):
            yield from _walk_keys(value, prefix + key + ".")


def env_layer(environ: Mapping[str, str], prefix: str = "HUB_") -> dict[str, Any]:
    """``HUB_*`` variables as a nested dict (like Flask's ``from_prefixed_env``)."""
    out: dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(prefix) or name in _NOT_CONFIG:
            continue
        raw = environ[name]
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        parts = [p.lower() for p in name[len(prefix):].split("__")]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return out


class Config(dict):
    """The merged configuration plus where each key came from."""

    origins: dict[str, str]

    def origin(self, dotted_key: str) -> str:
        while dotted_key:
            if dotted_key in self.origins:
                return self.origins[dotted_key]
            dotted_key = dotted_key.rpartition(".")[0]
        return str(DEFAULT_FILE)

    def error(self, dotted_key: str, reason: str) -> ConfigError:
        return ConfigError(self.origin(dotted_key), dotted_key, reason)


def load_config(
    site_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the three layers (plus ``overrides`` from code, e.g. tests)."""
    environ = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    merged: dict[str, Any] = {}
    _merge(merged, _read_toml(DEFAULT_FILE), origins, str(DEFAULT_FILE))
    site = site_file or environ.get("HUB_CONFIG")
    if site:
        _merge(merged, _read_toml(Path(site)), origins, str(site))
    _merge(merged, env_layer(environ), origins, "<environment HUB_*>")
    if overrides:
        _merge(merged, overrides, origins, "<overrides>")
    cfg = Config(merged)
    cfg.origins = origins
    _validate_core(cfg)
    return cfg


def _validate_core(cfg: Config) -> None:
    for section in ("sources", "sinks"):
        tables = cfg.setdefault(section, {})
        if not isinstance(tables, dict):
            raise cfg.error(section, "must be a table of instances")
        for name, table in tables.items():
            key = f"{section}.{name}"
            if not isinstance(table, dict):
                raise cfg.error(key, "must be a table with plugin = \"<entry-point name>\"")
            if not name.replace("_", "").replace("-", "").isalnum():
                raise cfg.error(key, "instance names may use letters, digits, '-' and '_' only")
            if not isinstance(table.get("plugin"), str) or not table["plugin"]:
                raise cfg.error(key + ".plugin", "missing: name the plugin (entry-point name) of this instance")
    routing = cfg.setdefault("routing", {})
    target = routing.get("followups", "local")
    if target not in cfg["sinks"]:
        raise cfg.error("routing.followups", f"names sink {target!r}, but there is no [sinks.{target}] table")
    for key in ("max_body_bytes", "executor_workers"):
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise cfg.error(key, "must be a positive integer")
    if cfg.get("executor") not in ("threads", "inline"):
        raise cfg.error("executor", "must be 'threads' or 'inline'")


def resolve_secret(value: Any, cfg: Config, key: str, environ: Mapping[str, str] | None = None) -> Any:
    """Turn ``env:NAME`` / ``file:PATH`` references into their value."""
    environ = os.environ if environ is None else environ
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        var = value[4:]
        if var not in environ or environ[var] == "":
            raise cfg.error(key, f"environment variable {var} is not set")
        return environ[var]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise cfg.error(key, f"cannot read secrets file {path}: {exc.strerror}") from None
    return value
