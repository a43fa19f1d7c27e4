"""The Typeform emulator: documented pagination semantics, auth and error
shapes, generated data that looks like a real firm's, signed webhooks (demo
tick) and its registration for the sandbox and demo mode."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import flask
import pytest
from sqlalchemy import func, select

from hub.demo.mode import SANDBOX_PREFIX, demo_overrides
from hub.demo.sandbox import make_sandbox_app
from hub.engine.pulls import pull
from hub.plugin_manager import make_plugin_manager
from hub.sdk import Instance, RawIn
from hub.storage import models as m
from plugins.survey_typeform import TypeformConnector, TypeformEmulator, verify_signature
from plugins.survey_typeform.emulator import DEMO_INSTANCE, demo_emulator
from tests.conftest import fixture_path

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
def emu() -> TypeformEmulator:
    return TypeformEmulator(responses=100, start=START, step_seconds=600, token="tok", webhook_secret="sec")


@pytest.fixture
def client(emu):
    app = flask.Flask(__name__)
    app.register_blueprint(emu.blueprint())
    return app.test_client()


def get(client, emu, headers=AUTH, **params):
    return client.get(f"/forms/{emu.form_id}/responses", query_string=params, headers=headers)


def tokens(resp) -> list[str]:
    return [i["token"] for i in resp.get_json()["items"]]


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- Responses API semantics ---------------------------------------------------------
def test_default_page_is_25_newest_first_with_totals(client, emu):
    r = get(client, emu)
    body = r.get_json()
    assert r.status_code == 200 and set(body) == {"total_items", "page_count", "items"}  # no next-page cursor
    assert (body["total_items"], body["page_count"]) == (100, 4)
    assert tokens(r) == [emu.token_of(i) for i in range(99, 74, -1)]
    submitted = [i["submitted_at"] for i in body["items"]]
    assert submitted == sorted(submitted, reverse=True)


@pytest.mark.parametrize("size", ["0", "1001", "ten"])
def test_page_size_outside_1_to_1000_is_a_validation_error(client, emu, size):
    r = get(client, emu, page_size=size)
    assert r.status_code == 400 and r.get_json()["code"] == "VALIDATION_ERROR"
    assert get(client, emu, page_size="1000").status_code == 200


def test_before_and_after_are_exclusive_tokens(client, emu):
    pivot = emu.token_of(50)
    assert tokens(get(client, emu, before=pivot, page_size="3")) == [emu.token_of(i) for i in (49, 48, 47)]
    assert tokens(get(client, emu, after=pivot, page_size="3")) == [emu.token_of(i) for i in (51, 52, 53)]
    assert get(client, emu, before="nonsense-token").status_code == 400


def test_walking_with_before_visits_every_response_once(client, emu):
    seen, before = [], None
    while True:
        page = tokens(get(client, emu, page_size="30", **({"before": before} if before else {})))
        seen += page
        if len(page) < 30:
            break
        before = page[-1]
    assert len(seen) == len(set(seen)) == 100


def test_since_and_until_are_inclusive_to_the_second_and_accept_unix_seconds(client, emu):
    t10, t20 = emu.submitted_ts(10), emu.submitted_ts(20)
    r = get(client, emu, since=iso(t10), until=iso(t20), page_size="100")
    assert sorted(tokens(r)) == sorted(emu.token_of(i) for i in range(10, 21))
    assert r.get_json()["total_items"] == 11
    assert tokens(get(client, emu, since=str(t10), until=str(t20), page_size="100")) == tokens(r)
    assert tokens(get(client, emu, since=iso(t10 + 1), until=iso(t20 - 1), page_size="100")) == \
        [emu.token_of(i) for i in range(19, 10, -1)]
    assert get(client, emu, since="yesterday").status_code == 400


def test_sort_and_its_conflict_with_tokens(client, emu):
    asc = tokens(get(client, emu, sort="submitted_at,asc", page_size="5"))
    assert asc == [emu.token_of(i) for i in range(5)]
    r = get(client, emu, sort="submitted_at,asc", before=emu.token_of(50))
    assert r.status_code == 400 and "sort" in json.dumps(r.get_json()["details"])
    assert get(client, emu, sort="answers,up").status_code == 400


def test_completed_filter(client, emu):
    assert get(client, emu, completed="true").get_json()["total_items"] == 100
    assert get(client, emu, completed="false").get_json()["total_items"] == 0


def test_auth_and_unknown_form_use_typeforms_error_bodies(client, emu):
    expected_401 = json.loads(fixture_path("typeform/error_401_authentication_failed_typeform_go_mock.json").read_bytes())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic tok"}):
        r = get(client, emu, headers=headers)
        assert r.status_code == 401 and r.get_json() == expected_401
    assert get(client, emu, headers={"Authorization": "bearer tok"}).status_code == 200  # scheme is case-insensitive
    r = client.get("/forms/NoSuchForm/responses", headers=AUTH)
    template = json.loads(fixture_path("typeform/error_404_form_not_found_typeform_go_mock.json").read_bytes())
    assert r.status_code == 404
    assert r.get_json() == {"code": template["code"], "description": template["description"] % "NoSuchForm"}


def test_injected_failures_with_retry_after(client, emu):
    emu.fail_next(2, status=429, retry_after=3, after=1)
    assert [get(client, emu).status_code for _ in range(4)] == [200, 429, 429, 200]
    assert [r["status"] for r in emu.requests] == [200, 429, 429, 200]
    client.post("/_control/fail", json={"status": 503, "retry_after": 9})
    r = get(client, emu)
    assert r.status_code == 503 and r.headers["Retry-After"] == "9"


def test_form_definition_is_served(client, emu):
    r = client.get(f"/forms/{emu.form_id}", headers=AUTH)
    definition = r.get_json()
    assert r.status_code == 200 and definition["id"] == emu.form_id
    assert {f["type"] for f in definition["fields"]} >= {"nps", "long_text", "email"}
    assert client.get(f"/forms/{emu.form_id}").status_code == 401


# -- generated data ------------------------------------------------------------------
def test_responses_are_deterministic_and_lazy():
    a = TypeformEmulator(responses=5_000_000, start=START, seed=7)
    b = TypeformEmulator(responses=5_000_000, start=START, seed=7)
    assert a.response(4_321_000) == b.response(4_321_000)
    assert a.index_of(a.token_of(4_321_000)) == 4_321_000 and a.index_of("0" * 32) is None
    status, body = a.query({"page_size": "2", "before": a.token_of(4_000_000)})
    assert status == 200 and [i["token"] for i in body["items"]] == [a.token_of(3_999_999), a.token_of(3_999_998)]
    assert not a._live  # nothing was materialised


def test_generated_answers_look_like_a_real_firms_nps():
    emu = TypeformEmulator(responses=3000, start=START)
    conn = TypeformConnector(Instance("nps", "survey_typeform", "source", {"form_id": emu.form_id}))
    conn._definition = emu.definition()
    items = [conn.normalize(RawIn(payload=emu.response(i)))[0] for i in range(3000)]
    cats = Counter("promoter" if i.nps >= 9 else "passive" if i.nps >= 7 else "detractor" for i in items)
    assert cats["promoter"] > cats["passive"] > cats["detractor"] > 0.1 * len(items)
    assert Counter(i.language for i in items).keys() == {"nl", "en"}
    assert all(i.customer.email and i.customer.email.endswith("@example.nl") for i in items)
    texts = [i.text for i in items if i.text]
    assert 0.5 * len(items) < len(texts) < len(items)  # some people skip the "why" question
    assert any("storing" in t for t in texts) and any("great service" in t for t in texts)
    # Repeat customers exist (the same person answers more than once), as in a real customer base.
    assert len({i.customer.email for i in items}) < len(items)


def test_webhook_event_and_api_item_of_one_response_map_to_the_same_feedback(emu):
    conn = TypeformConnector(Instance("nps", "survey_typeform", "source", {"form_id": emu.form_id}))
    token = emu.add_response(nps=3, text="Slechte service.", email="kees@example.nl", hidden={"case_id": "12"})
    i = emu.index_of(token)
    via_hook = conn.normalize(RawIn(payload=emu.webhook_event(i)))[0]
    via_api = conn.normalize(RawIn(payload=emu.response(i)))[0]
    for attr in ("external_id", "occurred_at", "nps", "customer", "resurvey_case_id", "language"):
        assert getattr(via_hook, attr) == getattr(via_api, attr)
    assert via_hook.text.endswith("\nSlechte service.") and via_api.text == "Slechte service."
    assert emu.submitted_ts(i) > emu.submitted_ts(i - 1)


# -- webhooks, tick, registration ---------------------------------------------------------
def test_tick_posts_signed_webhooks_the_hub_accepts(make_app, live_server, monkeypatch, emu):
    monkeypatch.setenv("TYPEFORM_TOKEN", "tok")
    monkeypatch.setenv("TYPEFORM_WEBHOOK_SECRET", "sec")
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    base_url = live_server(emu_app)
    from plugins.survey_typeform.emulator import demo_config

    app = make_app(**demo_config(base_url, "http://unused"))
    hub = app.extensions["hub"]
    hub_url = live_server(app)
    delivered = emu.tick(base_url, hub_url)
    assert 1 <= len(delivered) <= 2
    with hub.db.Session() as s:
        got = set(s.scalars(select(m.FeedbackItem.external_id).where(m.FeedbackItem.source == DEMO_INSTANCE)))
    assert got == set(delivered)
    # What the tick sent is signed with the instance's secret over the exact bytes.
    seen = []
    probe = flask.Flask("probe")

    @probe.post("/capture/webhooks/<name>")
    def capture(name):
        seen.append((flask.request.get_data(), flask.request.headers.get("Typeform-Signature")))
        return "", 204

    emu.tick(base_url, live_server(probe) + "/capture")
    body, signature = seen[0]
    assert verify_signature("sec", body, signature) and json.loads(body)["event_type"] == "form_response"


def test_emulator_is_registered_for_sandbox_and_demo(make_app, live_server, monkeypatch):
    pm = make_plugin_manager()
    emus = {e.name: e for group in pm.hook.hub_register_emulators() for e in group or []}
    typeform = emus["typeform"]
    assert typeform.tick is not None and set(typeform.demo_env) == {"TYPEFORM_TOKEN", "TYPEFORM_WEBHOOK_SECRET"}

    # demo mode's config, with the secrets demo mode exports, is valid and pulls from the sandbox.
    for key, value in typeform.demo_env.items():
        monkeypatch.setenv(key, value)  # what demo_overrides exports (setdefault), undone after the test
    sandbox, _ = make_sandbox_app(pm)
    sandbox_url = live_server(sandbox)
    overrides = demo_overrides(pm, "http://127.0.0.1:5000")
    table = overrides["sources"][DEMO_INSTANCE]
    assert table["base_url"] == f"http://127.0.0.1:5000{SANDBOX_PREFIX}/typeform"
    table["base_url"] = f"{sandbox_url}/typeform"  # the sandbox serves emulators at /<name>
    app = make_app(sources={DEMO_INSTANCE: table})
    hub = app.extensions["hub"]
    report = pull(hub, DEMO_INSTANCE)
    assert report.new_items == demo_emulator().total >= 400
    with hub.db.Session() as s:
        detractors = s.scalar(select(func.count()).select_from(m.FeedbackItem).where(m.FeedbackItem.category == "detractor"))
        cases = s.scalar(select(func.count()).select_from(m.Case))
    assert detractors > 0 and cases >= 1
