"""The configured notifiers: ``[notifiers.<name>]`` tables matched to the
notifier kinds plugins register (``hub_register_notifiers``), validated at start
like sources and sinks (unknown keys, types, ranges, secrets resolved)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hub.engine.registry import validate_settings
from hub.sdk.connectors import Instance
from hub.sdk.notifiers import Notifier

if TYPE_CHECKING:
    from hub.engine.context import Hub


class Notifiers:
    """Notifier kinds and the instances built from ``[notifiers.*]``."""

    def __init__(self, hub: Hub):
        cfg = hub.config
        self.clock = hub.clock
        self.kinds: dict[str, type[Notifier]] = {}
        for group in hub.hook.hub_register_notifiers():
            for cls in group or []:
                if not (isinstance(cls, type) and issubclass(cls, Notifier)) or not cls.plugin_name:
                    raise TypeError(f"hub_register_notifiers returned {cls!r}, not a Notifier class with a plugin_name")
                self.kinds[cls.plugin_name] = cls
        self.instances: dict[str, Instance] = {}
        for name, table in (cfg.get("notifiers") or {}).items():
            key = f"notifiers.{name}"
            if table.get("enabled") is False:
                continue
            plugin = table.get("plugin")
            if plugin not in self.kinds:
                known = ", ".join(sorted(self.kinds)) or "none installed"
                raise cfg.error(f"{key}.plugin", f"unknown notifier plugin {plugin!r} (available: {known})")
            settings = validate_settings(self.kinds[plugin], table, cfg, key)
            self.instances[name] = Instance(name=name, plugin=plugin, kind="notifier", settings=settings)
        for key, name in (("resurvey.notifier", cfg.get("resurvey", {}).get("notifier")),
                          ("promoters.notifier", cfg.get("promoters", {}).get("notifier"))):
            if name and name not in self.instances:
                raise cfg.error(key, f"notifier {name!r} is not configured (add a [notifiers.{name}] table)")
        for key, name in (("resurvey.source", cfg.get("resurvey", {}).get("source")),
                          ("loop.invitation_source", cfg.get("loop", {}).get("invitation_source"))):
            if name and name not in hub.registry.sources:
                raise cfg.error(key, f"source {name!r} is not configured")
        self._objects: dict[str, Notifier] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Notifier:
        if name not in self.instances:
            raise KeyError(f"no notifier named {name!r} (configured: {', '.join(sorted(self.instances)) or 'none'})")
        with self._lock:
            if name not in self._objects:
                inst = self.instances[name]
                self._objects[name] = self.kinds[inst.plugin](inst, clock=self.clock)
            return self._objects[name]


def notifiers_of(hub: Hub) -> Notifiers:
    """The hub's notifiers, built (and checked) once per hub."""
    # Kept on the Hub object itself: one per app, like the registry, without a module global.
    found = hub.__dict__.get("_loop_notifiers")
    if found is None:
        found = hub.__dict__["_loop_notifiers"] = Notifiers(hub)
    return found
