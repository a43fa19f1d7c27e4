"""Demo mode (``feedback-hub run --demo``, what ``make run`` starts).

Every installed plugin's emulator is mounted under ``/_sandbox/<name>`` in the
hub's own web server, and the plugin's demo instances are configured to talk
to it through their real connector code.  A feeder adds generated Dutch and
English feedback every few seconds through the batch (import) path, so a
newcomer sees items arrive, detractors flagged and follow-ups created.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from typing import Any

import flask
import pluggy

from hub.config import _merge
from hub.engine.pipeline import Pipeline
from hub.engine.raw_events import ingest_inputs
from hub.sdk.connectors import Emulator
from hub.sdk.contracts import parse_feedback
from hub.sdk.demo_data import generate_feedback

DEMO_SOURCE = "demo_feed"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-hub-2026"
SANDBOX_PREFIX = "/_sandbox"


def emulators(pm: pluggy.PluginManager) -> list[Emulator]:
    return [e for group in pm.hook.hub_register_emulators() for e in (group or [])]


def demo_overrides(pm: pluggy.PluginManager, hub_url: str) -> dict[str, Any]:
    """Config tables for every emulator's demo instances; sets their secrets."""
    merged: dict[str, Any] = {}
    for emu in emulators(pm):
        for key, value in emu.demo_env.items():
            os.environ.setdefault(key, value)
        if emu.demo_config:
            _merge(merged, emu.demo_config(f"{hub_url}{SANDBOX_PREFIX}/{emu.name}", hub_url), {}, "demo")
    return merged


def mount_emulators(app: flask.Flask, emus: list[Emulator], prefix: str = SANDBOX_PREFIX) -> None:
    for emu in emus:
        app.register_blueprint(emu.blueprint(), url_prefix=f"{prefix}/{emu.name}")


def feed(hub, rng: random.Random, n: int, *, days_back: float = 0.0, prefix: str | None = None) -> int:
    """Ingest ``n`` generated items through the batch path; returns new items."""
    now = hub.clock.utcnow()
    start = now - dt.timedelta(days=days_back) if days_back else now - dt.timedelta(minutes=1)
    prefix = prefix or f"demo-{int(now.timestamp() * 1000)}"
    objs = generate_feedback(rng, n, start=start, end=now, prefix=prefix, people=max(40, n // 2))
    pairs = [(obj, parse_feedback(obj, now=now)[1]) for obj in objs]
    with hub.db.session() as s:
        results = ingest_inputs(s, Pipeline(hub), DEMO_SOURCE, pairs, now)
    return sum(r.created for r in results)
