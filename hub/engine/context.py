"""The per-app hub state (``app.extensions["hub"]``) and how to reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flask
import pluggy

from hub.config import Config
from hub.engine.registry import Registry
from hub.sdk.http import Clock
from hub.storage.database import Database


@dataclass
class Hub:
    pm: pluggy.PluginManager
    config: Config
    registry: Registry
    db: Database
    executor: Any
    clock: Clock = field(default_factory=Clock)
    instance_path: str = "instance"

    @property
    def hook(self):
        return self.pm.hook

    def case_url(self, case_id: int) -> str:
        return f"{self.config.get('public_url', '').rstrip('/')}/cases/{case_id}"


def current_hub() -> Hub:
    return flask.current_app.extensions["hub"]


def hub_of(app: flask.Flask) -> Hub:
    return app.extensions["hub"]
