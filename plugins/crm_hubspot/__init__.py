"""crm_hubspot: follow-ups become CALL tasks on HubSpot contacts.

The module is the plugin object pluggy registers (entry point
``crm_hubspot = plugins.crm_hubspot``); the work lives in :mod:`.sink`, the
local HubSpot stand-in in :mod:`.emulator`.
"""

from __future__ import annotations

from hub.sdk import hookimpl

from .emulator import hubspot_emulator
from .sink import HubSpotSink

__all__ = ["HubSpotSink", "hubspot_emulator"]


@hookimpl
def hub_register_crm_sinks():
    return [HubSpotSink]


@hookimpl
def hub_register_emulators():
    return [hubspot_emulator()]
