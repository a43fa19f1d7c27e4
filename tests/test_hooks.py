"""One test per hook in hub/hookspecs.py (test_hookspecs.py enforces that).

Each test registers a small plugin and checks the core really calls the hook
at the documented moment with the documented arguments.
"""

from __future__ import annotations

import click
import flask
import pytest
from click.testing import CliRunner

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.sdk import Emulator, Escalation, FeedbackIn, Signal, SourceConnector, Stream, hookimpl
from tests.helpers import DETRACTOR, bearer, recording_app

PROMOTER = {"external_id": "p1", "channel": "survey", "nps": 10, "text": "Top!", "customer": {"email": "p@x.nl"}}


def _post(app, body):
    return app.test_client().post("/api/v1/feedback", json=body, headers=bearer(app.extensions["hub"]))


def test_hook_hub_configure(make_app):
    seen = {}

    class Plugin:
        @hookimpl
        def hub_configure(self, config):
            seen["threshold"] = config["scoring"]["risk_threshold"]

    make_app(plugins=(Plugin(),), scoring={"risk_threshold": 55})
    assert seen == {"threshold": 55}


def test_hook_hub_register_connectors(make_app):
    class Demo(SourceConnector):
        plugin_name = "demo_kind"

        def normalize(self, raw):
            return []

    class Plugin:
        @hookimpl
        def hub_register_connectors(self):
            return [Demo]

    app = make_app(plugins=(Plugin(),), sources={"mine": {"plugin": "demo_kind"}})
    assert isinstance(app.extensions["hub"].registry.connector("mine"), Demo)


def test_hook_hub_register_crm_sinks(make_app):
    app, rec = recording_app(make_app)
    assert app.extensions["hub"].registry.sink("rec").plugin_name == "recording"


def test_hook_hub_register_routes(make_app):
    bp = flask.Blueprint("extra", __name__)
    bp.add_url_rule("/extra/ping", "ping", lambda: "pong")

    class Plugin:
        @hookimpl
        def hub_register_routes(self, app):
            return [bp]

    app = make_app(plugins=(Plugin(),))
    assert app.test_client().get("/extra/ping").data == b"pong"


def test_hook_hub_register_commands(monkeypatch):
    from hub import plugin_manager as plugins
    from hub.cli import commands as cli

    class Plugin:
        @hookimpl
        def hub_register_commands(self, cli):
            @cli.command("hello")
            def hello():
                click.echo("hello from a plugin")

    real = plugins.make_plugin_manager
    monkeypatch.setattr(plugins, "make_plugin_manager",
                        lambda **kw: real(load_entry_points=False, extra=(Plugin(),)))
    group = cli.HubGroup(name="feedback-hub")  # a fresh CLI, as at process start
    assert "hello" in group.list_commands(click.Context(group))
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"


def test_hook_hub_register_emulators(tmp_path):
    from hub.demo.sandbox import make_sandbox_app
    from hub.plugin_manager import make_plugin_manager

    bp = flask.Blueprint("emu", __name__)
    bp.add_url_rule("/v1/things", "things", lambda: {"things": [1]})

    class Plugin:
        @hookimpl
        def hub_register_emulators(self):
            return [Emulator(name="acme", blueprint=lambda: bp,
                             demo_config=lambda base_url, hub_url: {"sources": {"x": {"base_url": base_url}}})]

    pm = make_plugin_manager(load_entry_points=False, extra=(Plugin(),))
    app, emus = make_sandbox_app(pm)
    assert [e.name for e in emus] == ["acme"]
    assert app.test_client().get("/acme/v1/things").get_json() == {"things": [1]}
    from hub.demo.mode import demo_overrides

    assert demo_overrides(pm, "http://h:1") == {"sources": {"x": {"base_url": "http://h:1/_sandbox/acme"}}}


def test_hook_hub_register_identity_kinds(make_app):
    import datetime as dt

    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk import CustomerRef
    from hub.sdk.schema import IdentityKind

    class Plugin:
        @hookimpl
        def hub_register_identity_kinds(self):
            return [IdentityKind("member_no", reachable=True, label="member", display="#{value}",
                                 normalize=lambda v: v.upper())]

    app = make_app(plugins=(Plugin(),))
    hub = app.extensions["hub"]
    kinds = hub.registry.identity_kinds
    assert {"email", "phone", "crm_id", "member_no"} <= set(kinds)  # the core's kinds and the plugin's
    assert kinds["member_no"].show("A7") == "#A7" and "member_no" in hub.registry.reachable_kinds
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    with hub.db.session() as s:
        a, b = Pipeline(hub).ingest(s, "t", [
            Entry(FeedbackIn(ext, "survey", now, nps=9, customer=CustomerRef(handles=(("member_no", v),))))
            for ext, v in (("1", "a7"), ("2", " A7"))], now)
    assert a.customer_id == b.customer_id  # normalized by the declared kind before matching


def test_hook_hub_enrich_feedback(make_app):
    class Plugin:
        @hookimpl
        def hub_enrich_feedback(self, item, config):
            return {"language": "fy", "reach": 5}

    app = make_app(plugins=(Plugin(),))
    body = _post(app, {**PROMOTER, "reach": 7}).get_json()
    assert body["language"] == "fy"  # filled in
    assert body["reach"] == 7  # never overwrites what the source said


def test_hook_hub_enrich_feedback_combines_answers_in_the_documented_order(make_app):
    """docs/plugin_hooks.md: the plugin registered last is called first, the first non-None value of
    a field wins, trylast goes after the rest, nobody sees another's answer, the source's fields stay."""
    seen = []

    def enricher(name, answer, **marks):
        class Plugin:
            @hookimpl(**marks)
            def hub_enrich_feedback(self, item, config):
                seen.append((name, item.language, item.thread_id))
                return answer

        return Plugin()

    plugins = (enricher("registered first", {"language": "de", "thread_id": "from-first"}),
               enricher("registered last", {"language": "fy", "thread_id": None}),
               enricher("trylast", {"language": "xx", "thread_id": "from-trylast"}, trylast=True))
    app = make_app(plugins=plugins)
    body = _post(app, {**PROMOTER, "text": "Heel tevreden over de hulp van gisteren."}).get_json()
    assert (body["language"], body["thread_id"]) == ("fy", "from-first")
    assert [name for name, *_ in seen] == ["registered last", "registered first", "trylast"]
    assert {(language, thread) for _, language, thread in seen} == {(None, None)}

    seen.clear()
    body = _post(app, {**PROMOTER, "external_id": "p2", "language": "nl"}).get_json()
    assert body["language"] == "nl"  # set by the source: never overwritten
    assert {language for _, language, _ in seen} == {"nl"}


def test_hook_hub_score_feedback(make_app):
    calls = []

    class Plugin:
        @hookimpl
        def hub_score_feedback(self, item: FeedbackIn, context):
            calls.append((item.external_id, context.prior_contacts))
            return [Signal("vip", 50, "VIP account")]

    app = make_app(plugins=(Plugin(),))
    body = _post(app, PROMOTER).get_json()
    assert calls == [("p1", 0)]
    assert {"signal": "vip", "weight": 50.0, "detail": "VIP account"} in body["risk_reasons"]
    assert body["risk"] == 50 and body["case_id"] is not None  # risk >= threshold opens a case


def test_hook_hub_decide_escalation(make_app):
    class Plugin:
        @hookimpl
        def hub_decide_escalation(self, item, category, risk, signals, config):
            return Escalation(open_case=False, reason="a plugin says no")

    app = make_app(plugins=(Plugin(),))
    assert _post(app, DETRACTOR).get_json()["case_id"] is None  # the plugin wins over the default


def test_hook_hub_feedback_ingested(make_app):
    seen = []

    class Plugin:
        @hookimpl
        def hub_feedback_ingested(self, item):
            seen.append((item.external_id, item.category, item.id is not None))

    app = make_app(plugins=(Plugin(),))
    _post(app, DETRACTOR)
    _post(app, DETRACTOR)  # duplicate: no event
    assert seen == [("nps-1", "detractor", True)]


def test_hook_hub_case_opened(make_app):
    seen = []

    class Plugin:
        @hookimpl
        def hub_case_opened(self, case):
            seen.append((case.status, case.priority))

    app = make_app(plugins=(Plugin(),))
    _post(app, DETRACTOR)
    _post(app, PROMOTER)
    assert len(seen) == 1 and seen[0][0] == "new"


def test_hook_hub_followup_pushed(make_app):
    seen = []

    class Plugin:
        @hookimpl
        def hub_followup_pushed(self, followup, external_id):
            seen.append((followup.customer.email, external_id))

    app, rec = recording_app(make_app)
    app.extensions["hub"].pm.register(Plugin())
    _post(app, DETRACTOR)
    dispatch(app.extensions["hub"])
    assert seen == [("jan@example.nl", f"task-{rec.pushed[0].id}")]


def test_hook_hub_followup_completed(make_app):
    seen = []

    class Plugin:
        @hookimpl
        def hub_followup_completed(self, followup, outcome):
            seen.append((followup.case_id, outcome))

    app, rec = recording_app(make_app)
    hub = app.extensions["hub"]
    hub.pm.register(Plugin())
    case_id = _post(app, DETRACTOR).get_json()["case_id"]
    dispatch(hub)
    rec.completed.add(rec.pushed[0].id)
    sync_completions(hub)
    assert seen == [(case_id, "reached")]


def test_event_hook_errors_never_undo_the_ingest(make_app):
    class Broken:
        @hookimpl
        def hub_feedback_ingested(self, item):
            raise RuntimeError("plugin bug")

    app = make_app(plugins=(Broken(),))
    assert _post(app, DETRACTOR).status_code == 201
    assert _post(app, DETRACTOR).status_code == 200  # it was stored


def test_stream_base_defaults():
    assert Stream.is_sorted and Stream.page_size == 100


def test_hook_hub_register_notifiers(make_app):
    from hub.engine.loop.notifiers import notifiers_of
    from hub.sdk import Setting
    from hub.sdk.notifiers import Notifier

    class PigeonNotifier(Notifier):
        plugin_name = "notify_pigeon"
        settings = [Setting("loft", required=True)]

    class Plugin:
        @hookimpl
        def hub_register_notifiers(self):
            return [PigeonNotifier]

    app = make_app(plugins=(Plugin(),), notifiers={"birds": {"plugin": "notify_pigeon", "loft": "roof"}})
    built = notifiers_of(app.extensions["hub"]).get("birds")
    assert isinstance(built, PigeonNotifier) and built.config["loft"] == "roof"


def test_hook_hub_sla_breached(make_app):
    from hub.engine.sla import sweep

    seen = []

    class Plugin:
        @hookimpl
        def hub_sla_breached(self, case, team, lead, late_by_hours):
            seen.append((case.id, case.priority, case.owner, team, lead, late_by_hours))

    app, rec = recording_app(make_app, teams={"service": {"default": True, "lead": "bea"}})
    hub = app.extensions["hub"]
    hub.pm.register(Plugin())
    body = _post(app, DETRACTOR).get_json()
    assert sweep(hub) == 0 and seen == []  # not due yet
    with hub.db.Session() as s:
        from hub.storage import models as m

        case = s.get(m.Case, body["case_id"])
        due, priority = case.sla_due_at, case.priority
    hub.clock.now = due.timestamp() + 3600  # an hour after the deadline (a business hour, or the night)
    assert sweep(hub) == 1 and sweep(hub) == 0  # once per case
    ((case_id, new_priority, owner, team, lead, late),) = seen
    assert (case_id, owner, team, lead) == (body["case_id"], "bea", "service", "bea")
    assert new_priority == {"low": "normal", "normal": "high"}.get(priority, "urgent") and late >= 0


def _ingest_demo_rows(hub, n=300):
    """Ingest ``n`` demo items in one rolled-back transaction: what each stored item says."""
    import datetime as dt
    import random

    from sqlalchemy import select

    from hub.engine.pipeline import Entry, Pipeline
    from hub.sdk.contracts import parse_feedback
    from hub.sdk.demo_data import generate_feedback
    from hub.storage import models as m

    now = hub.clock.utcnow()
    objs = generate_feedback(random.Random(7), n, start=now - dt.timedelta(days=20), end=now, people=n // 4)
    entries = [Entry(parse_feedback({**o, "source": "demo"}, now=now)[1]) for o in objs]
    F = m.FeedbackItem
    with hub.db.Session() as s:
        Pipeline(hub).ingest(s, "demo", entries, now)
        rows = s.execute(select(F.external_id, F.language, F.sentiment, F.category, F.risk, F.risk_reasons, F.extra)
                         .where(F.source == "demo").order_by(F.external_id)).all()
        s.rollback()
    return [tuple(r) for r in rows]


def _per_item_only(monkeypatch):
    """The pipeline as before the batch hooks: pluggy's per-item call for every item."""
    from hub.engine import pipeline

    def per_item(hub, name, batch_kwargs, item_kwargs):
        caller = getattr(hub.hook, name)
        return [list(caller(**kw)) for kw in item_kwargs]

    monkeypatch.setattr(pipeline, "hook_answers", per_item)


def test_hook_hub_enrich_feedback_batch(make_app, monkeypatch):
    calls = []

    class Plugin:
        @hookimpl
        def hub_enrich_feedback_batch(self, items, config):
            calls.append([it.external_id for it in items])
            return [{"language": "fy"} if it.external_id == "p1" else None for it in items]

    app = make_app(plugins=(Plugin(),))
    body = _post(app, PROMOTER).get_json()
    assert calls == [["p1"]] and body["language"] == "fy"  # one call per batch, its answer wins like a per-item one
    # The default enricher's batch form gives exactly what its per-item form gives.
    hub = make_app().extensions["hub"]
    batched = _ingest_demo_rows(hub)
    _per_item_only(monkeypatch)
    assert batched == _ingest_demo_rows(hub) and len(batched) == 300


def test_hook_hub_score_feedback_batch(make_app, monkeypatch):
    calls = []

    class Plugin:
        @hookimpl
        def hub_score_feedback_batch(self, items, contexts):
            calls.append([(it.external_id, c.prior_contacts) for it, c in zip(items, contexts, strict=True)])
            return [[Signal("vip", 50, "VIP account")] for _ in items]

    app = make_app(plugins=(Plugin(),))
    body = _post(app, PROMOTER).get_json()
    assert calls == [[("p1", 0)]]
    assert {"signal": "vip", "weight": 50.0, "detail": "VIP account"} in body["risk_reasons"]
    assert body["risk"] >= 50 and body["case_id"] is not None

    class Wrong:
        @hookimpl
        def hub_score_feedback_batch(self, items, contexts):
            return []  # not one answer per item: refused, never silently misaligned

    bad = make_app(plugins=(Wrong(),))
    with pytest.raises(ValueError, match="0 answers for 1 items"):
        _post(bad, {**PROMOTER, "external_id": "p2"})
    # The default scorer's batch path gives the very scores and reasons of the per-item path.
    hub = make_app().extensions["hub"]
    batched = _ingest_demo_rows(hub)
    _per_item_only(monkeypatch)
    per_item = _ingest_demo_rows(hub)
    assert batched == per_item and len({r[4] for r in batched}) > 5  # many different risks compared
