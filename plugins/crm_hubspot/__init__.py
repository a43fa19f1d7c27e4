"""crm_hubspot: follow-ups become CALL tasks on HubSpot contacts.

The module is the plugin object pluggy registers (entry point
``crm_hubspot = plugins.crm_hubspot``); the work lives in :mod:`.sink`, the
local HubSpot stand-in in :mod:`.emulator`.
"""

from __future__ import annotations

from hub.sdk import hookimpl

from .sink import HubSpotSink

__all__ = ["HubSpotSink", "hubspot_emulator"]


def __getattr__(name: str):  # the emulator (Flask) loads only for the sandbox and demo mode
    if name == "hubspot_emulator":
        from .emulator import hubspot_emulator

        return hubspot_emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def hub_register_crm_sinks():
    return [HubSpotSink]


@hookimpl
def hub_register_notifiers():
    from .notifier import HubSpotPropertyNotifier

    return [HubSpotPropertyNotifier]


@hookimpl
def hub_register_emulators():
    from .emulator import hubspot_emulator

    return [hubspot_emulator()]
