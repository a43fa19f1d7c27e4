"""Configured instances: ``[sources.<name>]`` / ``[sinks.<name>]`` tables
matched to the plugin kinds that plugins register, validated at start."""

from __future__ import annotations

import threading
from typing import Any

import pluggy

from hub.config import Config, ConfigError, resolve_secret
from hub.sdk.connectors import CrmSink, Instance, SourceConnector, _Plugin
from hub.sdk.http import Clock


def _collect(results: list[list[type[_Plugin]] | None]) -> dict[str, type[_Plugin]]:
    kinds: dict[str, type[_Plugin]] = {}
    for group in results:
        for cls in group or []:
            if not cls.plugin_name:
                raise TypeError(f"{cls.__qualname__} has no plugin_name")
            kinds[cls.plugin_name] = cls
    return kinds


def validate_settings(cls: type[_Plugin], table: dict[str, Any], cfg: Config, key: str) -> dict[str, Any]:
    """Check a table against the plugin's declared settings; resolve secrets."""
    declared = {s.name: s for s in cls.all_settings()}
    out: dict[str, Any] = {}
    generic = {"plugin", "rate_limit", "timeout", "enabled", "schedule_seconds"}
    for name in table:
        if name not in declared and name not in generic:
            known = ", ".join(sorted(declared)) or "none"
            raise cfg.error(f"{key}.{name}", f"unknown setting for plugin {cls.plugin_name!r} (known: {known})")
    for name in generic:
        if name in table:
            out[name] = table[name]
    for name, setting in declared.items():
        if name in table:
            value = table[name]
            if setting.secret:
                value = resolve_secret(value, cfg, f"{key}.{name}")
            elif isinstance(value, str) and value.startswith(("env:", "file:")):
                value = resolve_secret(value, cfg, f"{key}.{name}")
            if not isinstance(value, setting.type) or (isinstance(value, bool) and setting.type in (int, float)):
                want = setting.type.__name__ if isinstance(setting.type, type) else "/".join(t.__name__ for t in setting.type)
                raise cfg.error(f"{key}.{name}", f"expected {want}, got {type(value).__name__}")
            out[name] = value
        elif setting.required:
            raise cfg.error(f"{key}.{name}", f"missing (required by plugin {cls.plugin_name!r})")
        else:
            out[name] = setting.default
    if "base_url" in out and out["base_url"] and not str(out["base_url"]).startswith(("http://", "https://")):
        raise cfg.error(f"{key}.base_url", "must start with http:// or https://")
    return out


class Registry:
    """Plugin kinds and the configured instances built from them."""

    def __init__(self, pm: pluggy.PluginManager, cfg: Config, clock: Clock | None = None):
        self.cfg = cfg
        self.clock = clock
        self.source_kinds = _collect(pm.hook.hub_register_connectors())
        self.sink_kinds = _collect(pm.hook.hub_register_crm_sinks())
        self.sources: dict[str, Instance] = {}
        self.sinks: dict[str, Instance] = {}
        self._objects: dict[tuple[str, str], _Plugin] = {}
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
                self._objects[(kind, name)] = obj
            return obj

    def connector(self, name: str) -> SourceConnector:
        return self._get("source", name)  # type: ignore[return-value]

    def sink(self, name: str) -> CrmSink:
        return self._get("sink", name)  # type: ignore[return-value]

    def instance(self, name: str) -> Instance | None:
        return self.sources.get(name) or self.sinks.get(name)


__all__ = ["Registry", "ConfigError", "validate_settings"]
