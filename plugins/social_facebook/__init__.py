"""social_facebook: a Facebook Page's posts and comments into the webcare inbox.

The plugin object pluggy registers (entry point ``social_facebook``).  Built on
``hub.sdk`` only: the connector and its streams in :mod:`.connector`, the Graph
record mapping in :mod:`.mapping`, webhook signatures and deliveries in
:mod:`.webhook`, the Graph stand-in for sandbox, demo and tests in
:mod:`.emulator`.  ``README.md`` in this folder is the administrator's guide.
"""

from __future__ import annotations

from typing import Any

from hub.sdk import Emulator, IdentityKind, hookimpl

from .connector import FacebookConnector
from .mapping import FACEBOOK_USER

__all__ = ["FACEBOOK_USER", "FacebookConnector", "make_emulator"]

DEMO_INSTANCE = "facebook"


@hookimpl
def hub_configure(config: dict[str, Any]) -> None:
    """Fail at start, naming the key, for a Page id that is not Graph's numeric id (a Page name or URL)."""
    for name, table in (config.get("sources") or {}).items():
        if not isinstance(table, dict) or table.get("plugin") != FacebookConnector.plugin_name:
            continue
        page_id = table.get("page_id")
        if page_id is not None and not str(page_id).isdigit():
            raise ValueError(f"sources.{name}.page_id: must be the Page's numeric id, not {str(page_id)[:60]!r}")


@hookimpl
def hub_register_connectors() -> list[type]:
    return [FacebookConnector]


@hookimpl
def hub_register_identity_kinds() -> list[IdentityKind]:
    # Not reachable: nobody can be called or mailed through a page-scoped id, so a
    # customer known only by it gets a follow-up through routing.unreachable.
    return [FACEBOOK_USER]


def make_emulator(emu: Any = None, *, webhook_share: float = 0.5) -> Emulator:
    """The sandbox/demo emulator around ``emu`` (a freshly seeded one by default)."""
    from .emulator import (
        DEMO_APP_SECRET,
        DEMO_PAGE_ID,
        DEMO_PAGE_TOKEN,
        DEMO_VERIFY_TOKEN,
        GraphEmulator,
        demo_tick,
    )

    if emu is None:
        # A budget a busy demo (a pull every 20 s, ticks every 10 s) uses only a small share of.
        emu = GraphEmulator(hourly_calls=5000)
        emu.seed_demo()

    def demo_config(base_url: str, hub_url: str) -> dict[str, Any]:
        return {"sources": {DEMO_INSTANCE: {
            "plugin": FacebookConnector.plugin_name,
            "base_url": base_url,
            "page_id": DEMO_PAGE_ID,
            "page_token": "env:FACEBOOK_PAGE_TOKEN",
            "app_secret": "env:FACEBOOK_APP_SECRET",
            "verify_token": "env:FACEBOOK_VERIFY_TOKEN",
            # Small pages so the demo shows paging of the feed and of a long comment thread.
            "page_size": 5,
            "comments_per_post": 5,
            "overlap_seconds": 60,  # pulls every 20 s: a minute of overlap is plenty, and re-reads little
            "schedule_seconds": 20,
        }}}

    return Emulator(
        name="facebook",
        blueprint=emu.blueprint,
        demo_config=demo_config,
        demo_env={"FACEBOOK_PAGE_TOKEN": DEMO_PAGE_TOKEN, "FACEBOOK_APP_SECRET": DEMO_APP_SECRET,
                  "FACEBOOK_VERIFY_TOKEN": DEMO_VERIFY_TOKEN},
        tick=demo_tick(emu, DEMO_INSTANCE, webhook_share),
        description="Graph API: /<page>/feed with nested comments, /<post>/comments, signed feed webhooks "
                    "(Bearer demo-facebook-page-token)",
    )


@hookimpl
def hub_register_emulators() -> list[Emulator]:
    return [make_emulator()]
