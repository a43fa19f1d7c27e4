"""Configured instances: ``[sources.<name>]`` / ``[sinks.<name>]`` tables
matched to the plugin kinds that plugins register, validated at start."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pluggy
from pydantic import ValidationError

from hub.config import Config, ConfigError, resolve_secret
from hub.sdk.addresses import OutboundPolicy
from hub.sdk.connectors import CrmSink, Instance, SourceConnector, _Plugin
from hub.sdk.http import Clock
from hub.sdk.schema import IdentityKind
from hub.sdk.settings import INSTANCE_SETTINGS, Setting, settings_model
from hub.sdk.state import StateBackend


def _collect(results: list[list[type[_Plugin]] | None]) -> dict[str, type[_Plugin]]:
    kinds: dict[str, type[_Plugin]] = {}
    for group in results:
        for cls in group or []:
            if not cls.plugin_name:
                raise TypeError(f"{cls.__qualname__} has no plugin_name")
            kinds[cls.plugin_name] = cls
    return kinds


def _collect_identity_kinds(results: list[list[IdentityKind] | None]) -> dict[str, IdentityKind]:
    kinds: dict[str, IdentityKind] = {}
    # pluggy calls the last registered plugin first: reversed, so a later
    # registration of a name replaces the default's.
    for group in reversed(results):
        for kind in group or []:
            if not isinstance(kind, IdentityKind):
                raise TypeError(f"hub_register_identity_kinds returned {kind!r}, not an IdentityKind")
            kinds[kind.name] = kind
    return kinds


def outbound_policy(cfg: Config) -> OutboundPolicy:
    """``http.allowed_private_hosts``, plus in demo mode the hub's own host (its emulators are mounted there)."""
    entries = list(cfg.get("http", {}).get("allowed_private_hosts") or [])
    if cfg.get("demo"):
        entries.append(urlsplit(str(cfg.get("public_url", ""))).hostname or "127.0.0.1")
    return OutboundPolicy.allowing(entries)


def plugin_kinds(pm: pluggy.PluginManager) -> tuple[dict[str, type[_Plugin]], dict[str, type[_Plugin]]]:
    """(source kinds, sink kinds) that the installed plugins register, by plugin name."""
    return _collect(pm.hook.hub_register_connectors()), _collect(pm.hook.hub_register_crm_sinks())


def declared_settings(cls: type[_Plugin]) -> list[Setting]:
    """The plugin's own settings, then the keys every instance takes."""
    own = cls.all_settings()
    return [*own, *(s for s in INSTANCE_SETTINGS if s.name not in {o.name for o in own})]


def validate_settings(cls: type[_Plugin], table: dict[str, Any], cfg: Config, key: str) -> dict[str, Any]:
    """Check a table against the plugin's declared settings (type, range,
    choices), resolve secrets and fill defaults; the first problem is a
    :class:`ConfigError` with file, key and reason."""
    declared = {s.name: s for s in declared_settings(cls)}
    own = [s.name for s in cls.all_settings()]
    for name in table:
        if name != "plugin" and name not in declared:
            known = ", ".join(sorted(own)) or "none"
            raise cfg.error(f"{key}.{name}", f"unknown setting for plugin {cls.plugin_name!r} (known: {known})")
    values: dict[str, Any] = {}
    for name in (n for n in declared if n in table):
        value = table[name]
        if declared[name].secret or (isinstance(value, str) and value.startswith(("env:", "file:"))):
            value = resolve_secret(value, cfg, f"{key}.{name}")
        values[name] = value
    try:
        settings_model(cls.plugin_name, list(declared.values())).model_validate(values)
    except ValidationError as exc:
        name, reason = _first_problem(exc, declared, values)
        raise cfg.error(f"{key}.{name}", reason) from None
    out = {"plugin": table["plugin"]} if "plugin" in table else {}
    out.update(values)
    for name in own:
        if name not in values:
            if declared[name].required:
                raise cfg.error(f"{key}.{name}", f"missing (required by plugin {cls.plugin_name!r})")
            out[name] = declared[name].default
    if "base_url" in out and out["base_url"] and not str(out["base_url"]).startswith(("http://", "https://")):
        raise cfg.error(f"{key}.base_url", "must start with http:// or https://")
    return out


def _first_problem(exc: ValidationError, declared: dict[str, Setting], values: dict[str, Any]) -> tuple[str, str]:
    """(setting, reason): a range or choice problem as declared, else the type."""
    name = str(exc.errors()[0]["loc"][0])
    errors = [e for e in exc.errors() if e["loc"][0] == name]
    for e in errors:
        if e["type"] in ("range", "choice"):
            return name, e["msg"]
    return name, f"expected {declared[name].type_name()}, got {type(values[name]).__name__}"


class Registry:
    """Plugin kinds and the configured instances built from them."""

    def __init__(self, pm: pluggy.PluginManager, cfg: Config, clock: Clock | None = None):
        self.cfg = cfg
        self.clock = clock
        self.source_kinds = _collect(pm.hook.hub_register_connectors())
        self.sink_kinds = _collect(pm.hook.hub_register_crm_sinks())
        #: Identity kinds by name (``hub_register_identity_kinds``).
        self.identity_kinds = _collect_identity_kinds(pm.hook.hub_register_identity_kinds())
        #: Names of the kinds through which the hub can call or mail a customer back.
        self.reachable_kinds = frozenset(k.name for k in self.identity_kinds.values() if k.reachable)
        self.sources: dict[str, Instance] = {}
        self.sinks: dict[str, Instance] = {}
        self._objects: dict[tuple[str, str], _Plugin] = {}
        #: Builds each instance's state backend (``self.state``); set by the app once the database exists.
        self.state_backend: Callable[[str], StateBackend] | None = None
        #: Named rate budgets shared by every process (hub.engine.shared_budget); set by the app, None: per object.
        self.budget_provider: Callable[..., Any] | None = None
        self._lock = threading.Lock()
        for section, kinds, target, kind in (
            ("sources", self.source_kinds, self.sources, "source"),
            ("sinks", self.sink_kinds, self.sinks, "sink"),
        ):
            for name, table in cfg.get(section, {}).items():
                key = f"{section}.{name}"
                if table.get("enabled") is False:
                    continue
                plugin = table["plugin"]
                if plugin not in kinds:
                    known = ", ".join(sorted(kinds)) or "none installed"
                    raise cfg.error(f"{key}.plugin", f"unknown {kind} plugin {plugin!r} (available: {known})")
                settings = validate_settings(kinds[plugin], table, cfg, key)
                target[name] = Instance(name=name, plugin=plugin, kind=kind, settings=settings)
        overlap = set(self.sources) & set(self.sinks)
        if overlap:
            name = sorted(overlap)[0]
            raise cfg.error(f"sinks.{name}", "a source and a sink may not share an instance name")
        route = cfg["routing"].get("followups", "local")
        if route not in self.sinks:
            raise cfg.error("routing.followups", f"sink {route!r} is not enabled")

        fallback = cfg["routing"].get("unreachable")
        if fallback and fallback not in self.sinks:
            raise cfg.error("routing.unreachable", f"sink {fallback!r} is not configured")
        #: Where instances' HTTP clients may connect (SSRF); base URLs checked now, addresses per connection.
        self.http_policy = outbound_policy(cfg)
        for section, table in (("sources", self.sources), ("sinks", self.sinks)):
            for name, inst in table.items():
                reason = self.http_policy.url_refusal(str(inst.settings.get("base_url") or ""))
                if reason:
                    raise cfg.error(f"{section}.{name}.base_url", reason)

    def identity_kind(self, name: str) -> IdentityKind:
        """The declared kind, or a not-reachable stand-in for an undeclared one."""
        return self.identity_kinds.get(name) or IdentityKind.undeclared(name)

    @property
    def followup_sink(self) -> str:
        return self.cfg["routing"].get("followups", "local")

    def _get(self, kind: str, name: str) -> _Plugin:
        table = self.sources if kind == "source" else self.sinks
        if name not in table:
            raise KeyError(f"no {kind} instance named {name!r} (configured: {', '.join(sorted(table)) or 'none'})")
        with self._lock:
            obj = self._objects.get((kind, name))
            if obj is None:
                inst = table[name]
                cls = (self.source_kinds if kind == "source" else self.sink_kinds)[inst.plugin]
                obj = cls(inst, clock=self.clock)
                obj.http_policy = self.http_policy
                obj.budget_provider = self.budget_provider
                if self.state_backend is not None:  # before any hook, pull or webhook uses it
                    obj.state.bind(self.state_backend(name))
                self._objects[(kind, name)] = obj
            return obj

    def connector(self, name: str) -> SourceConnector:
        return self._get("source", name)  # type: ignore[return-value]

    def sink(self, name: str) -> CrmSink:
        return self._get("sink", name)  # type: ignore[return-value]

    def instance(self, name: str) -> Instance | None:
        return self.sources.get(name) or self.sinks.get(name)


__all__ = ["Registry", "ConfigError", "declared_settings", "plugin_kinds", "validate_settings"]
