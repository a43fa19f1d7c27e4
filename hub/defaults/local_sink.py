"""The built-in ``local`` sink: follow-ups stay in the hub itself.

For teams without a CRM (and the default route): the callback task lives in
the hub's inbox, where an agent marks it contacted; nothing leaves the hub.
"""

from __future__ import annotations

from hub.sdk.connectors import CrmSink
from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import FollowupView, PushResult


class LocalSink(CrmSink):
    plugin_name = "local"
    description = "keeps callback tasks in the hub's own inbox"

    def push(self, followups: list[FollowupView]) -> list[PushResult]:
        return [PushResult(f.id, ok=True, external_id=f"local-{f.id}") for f in followups]


@hookimpl
def hub_register_crm_sinks():
    return [LocalSink]
