"""Test plugins shared by the core tests."""

from __future__ import annotations

from hub.sdk import Completion, CrmSink, FatalError, PushResult, RetriableError, Setting, hookimpl

DETRACTOR = {"external_id": "nps-1", "channel": "survey", "nps": 2,
             "text": "Al drie weken storing. Ik ga overstappen!", "customer": {"email": "jan@example.nl", "name": "Jan"}}


def bearer(hub) -> dict[str, str]:
    """Headers with a fresh API token of ``hub``."""
    from hub.engine.accounts import create_token

    with hub.db.session() as s:
        return {"Authorization": f"Bearer {create_token(s, 'tests')}"}


class RecordingSinkPlugin:
    """Registers a ``recording`` sink whose behaviour tests script.

    ``mode``: "ok", "retriable" (raises RetriableError), "fatal" (FatalError),
    or "reject" (per-item non-retriable PushResult).
    """

    def __init__(self):
        self.pushed: list = []
        self.mode = "ok"
        self.completed: set[int] = set()
        plugin = self

        class RecordingSink(CrmSink):
            plugin_name = "recording"
            settings = [Setting("label", default="rec")]
            batch_size = 10

            def push(self, followups):
                if plugin.mode == "retriable":
                    raise RetriableError("crm answered 503: maintenance", status=503)
                if plugin.mode == "fatal":
                    raise FatalError("crm answered 403: missing scope", status=403)
                if plugin.mode == "reject":
                    return [PushResult(f.id, ok=False, error="invalid contact", retriable=False) for f in followups]
                plugin.pushed.extend(followups)
                return [PushResult(f.id, ok=True, external_id=f"task-{f.id}") for f in followups]

            def sync_completed(self, followups):
                return [Completion(f.id, outcome="reached") for f in followups if f.id in plugin.completed]

        self.cls = RecordingSink

    @hookimpl
    def hub_register_crm_sinks(self):
        return [self.cls]


def recording_app(make_app, **overrides):
    rec = RecordingSinkPlugin()
    app = make_app(plugins=(rec,), sinks={"rec": {"plugin": "recording"}}, routing={"followups": "rec"}, **overrides)
    return app, rec
