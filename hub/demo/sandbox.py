"""``feedback-hub sandbox``: every plugin's vendor emulator in one server."""

from __future__ import annotations

import flask

from hub.demo.mode import emulators, mount_emulators
from hub.plugin_manager import make_plugin_manager
from hub.sdk.connectors import Emulator


def make_sandbox_app(pm=None) -> tuple[flask.Flask, list[Emulator]]:
    pm = pm or make_plugin_manager()
    emus = emulators(pm)
    app = flask.Flask("hub.demo.sandbox")
    mount_emulators(app, emus, prefix="")

    @app.get("/")
    def index():
        return flask.jsonify(emulators=[{"name": e.name, "path": f"/{e.name}", "description": e.description}
                                        for e in emus])

    return app, emus
