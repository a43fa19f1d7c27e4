"""twitter_webcare: X (Twitter) mentions and searches into the feedback hub.

The plugin object pluggy registers (entry point ``twitter_webcare``).  The
connector lives in :mod:`.connector`, the post mapping in :mod:`.mapping`, the
monthly read budget in :mod:`.budget`, webhook signatures in :mod:`.webhook`
and the API stand-in for sandbox, demo and tests in :mod:`.emulator`.
See ``README.md`` in this folder for the administrator's guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.sdk import Emulator, hookimpl
from hub.sdk.schema import IdentityKind

from .connector import TwitterConnector, validate_instance_settings
from .mapping import X_HANDLE

if TYPE_CHECKING:
    from .emulator import XEmulator

__all__ = ["TwitterConnector", "XEmulator", "make_emulator"]


def __getattr__(name: str):  # the emulator (Flask) loads only for the sandbox and demo mode
    if name == "XEmulator":
        from .emulator import XEmulator

        return XEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEMO_INSTANCE = "webcare"


@hookimpl
def hub_configure(config: dict[str, Any]) -> None:
    """Fail at start, naming the key, for settings the core's type check cannot judge."""
    for name, table in (config.get("sources") or {}).items():
        if not isinstance(table, dict) or table.get("plugin") != TwitterConnector.plugin_name:
            continue
        if table.get("enabled") is False:
            continue
        problems = validate_instance_settings(table)
        if problems:
            raise ValueError(f"sources.{name}: " + "; ".join(problems))


@hookimpl
def hub_register_connectors() -> list[type]:
    return [TwitterConnector]


@hookimpl
def hub_register_identity_kinds() -> list[IdentityKind]:
    return [X_HANDLE]


def make_emulator(emu: XEmulator | None = None, *, webhook_share: float = 0.5) -> Emulator:
    """The sandbox/demo emulator around ``emu`` (a fresh generated one by default).

    ``webhook_share``: how often a demo tick also pushes a new post through the
    Account Activity webhook (the poll then finds it as a duplicate).
    """
    from .emulator import BRAND_ID, DEMO_BEARER_TOKEN, DEMO_CONSUMER_SECRET, XEmulator, demo_tick

    emu = emu or XEmulator()

    def demo_config(base_url: str, hub_url: str) -> dict[str, Any]:
        return {"sources": {DEMO_INSTANCE: {
            "plugin": TwitterConnector.plugin_name,
            "base_url": base_url,
            "bearer_token": "env:X_BEARER_TOKEN",
            "consumer_secret": "env:X_CONSUMER_SECRET",
            "user_id": BRAND_ID,
            "queries": ["acme lang:nl -is:retweet", "(acme OR akme) lang:en -is:retweet"],
            "brand_handles": ["acme"],
            "monthly_read_budget": 100_000,
            "schedule_seconds": 30,
        }}}

    return Emulator(
        name="x",
        blueprint=emu.blueprint,
        demo_config=demo_config,
        demo_env={"X_BEARER_TOKEN": DEMO_BEARER_TOKEN, "X_CONSUMER_SECRET": DEMO_CONSUMER_SECRET},
        tick=demo_tick(emu, DEMO_INSTANCE, webhook_share),
        description="X API v2: /2/users/<id>/mentions, /2/tweets/search/recent (Bearer demo-x-bearer-token)",
    )


@hookimpl
def hub_register_emulators() -> list[Emulator]:
    return [make_emulator()]
