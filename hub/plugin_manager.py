"""The plugin manager: default plugins first, then installed entry points.

One manager per app (``app.extensions["hub"].pm``), never a module global, so
tests and several apps in one process do not share registrations.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from hub.sdk import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT

#: The core's own behaviour, shipped as replaceable plugins (datasette-style).
DEFAULT_PLUGINS = (
    "hub.defaults.identity",
    "hub.defaults.enrich",
    "hub.defaults.scoring",
    "hub.defaults.escalation",
    "hub.defaults.local_sink",
)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    source: str  # "default" | "entry point" | "registered"
    hooks: tuple[str, ...]


def _restriction(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def make_plugin_manager(
    load_entry_points: bool = True, only: str | None = None, extra: tuple[Any, ...] = ()
) -> pluggy.PluginManager:
    """Build a manager: defaults, then entry points (filtered), then ``extra``.

    ``only`` (default: ``HUB_LOAD_PLUGINS``) is a comma list of entry-point
    names; when set, other entry points are not loaded.  Default plugins always
    load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.hub_info = {}  # name -> (source, version)
    for modname in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
        pm.hub_info[modname] = ("default", None)
    if load_entry_points:
        allowed = _restriction(only if only is not None else os.environ.get("HUB_LOAD_PLUGINS"))
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.has_plugin(ep.name):
                continue
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            version = ep.dist.version if ep.dist else None
            pm.hub_info[ep.name] = ("entry point", f"{ep.dist.name} {version}" if ep.dist else None)
    for plugin in extra:
        name = pm.register(plugin)
        pm.hub_info[name] = ("registered", None)
    pm.check_pending()
    return pm


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    out = []
    for name, plugin in pm.list_name_plugin():
        source, version = getattr(pm, "hub_info", {}).get(name, ("registered", None))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        out.append(PluginInfo(name=name, version=version, source=source, hooks=hooks))
    return out
