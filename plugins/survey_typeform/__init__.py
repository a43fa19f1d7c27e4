"""survey_typeform: Typeform surveys (NPS) as a feedback-hub source.

Registers the :class:`~plugins.survey_typeform.connector.TypeformConnector`
(``plugin = "survey_typeform"``) and a Typeform emulator for the sandbox and
demo mode.  See ``README.md`` in this folder for connecting a real form.
"""

from __future__ import annotations

from hub.sdk import Emulator, hookimpl

from .connector import TypeformConnector, build_resurvey_url, sign, verify_signature

__all__ = ["TypeformConnector", "TypeformEmulator", "build_resurvey_url", "sign", "verify_signature"]


def __getattr__(name: str):  # the emulator (Flask) loads only for the sandbox and demo mode
    if name == "TypeformEmulator":
        from .emulator import TypeformEmulator

        return TypeformEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def hub_register_connectors():
    return [TypeformConnector]


@hookimpl
def hub_register_emulators():
    from .emulator import DEMO_TOKEN, DEMO_WEBHOOK_SECRET, demo_config, demo_emulator

    return [Emulator(
        name="typeform",
        blueprint=lambda: demo_emulator().blueprint(),
        demo_config=demo_config,
        demo_env={"TYPEFORM_TOKEN": DEMO_TOKEN, "TYPEFORM_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET},
        tick=lambda base_url, hub_url: demo_emulator().tick(base_url, hub_url),
        description="Typeform Responses API + signed form_response webhooks (generated NPS answers, nl/en)",
    )]
