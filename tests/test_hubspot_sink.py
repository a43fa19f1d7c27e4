"""The HubSpot sink end to end: feedback in through the API, follow-ups out
through the core's dispatcher, against the emulator over real HTTP.

The hub and the emulator share one FakeClock, so rate windows, Retry-After
waits and claim timeouts pass without anyone sleeping.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from hub.engine.accounts import create_token
from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.sdk import FakeClock, hookimpl
from hub.sdk.testing import LiveServer, sign_hmac
from hub.storage import models as m
from plugins.crm_hubspot.content import PRIORITY, find_marker
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from plugins.crm_hubspot.signatures import v1_signature

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
TOKEN = "pat-na1-test"
OWNERS = ["111", "222", "333"]
CONTACT_OWNERS = ["9001", "9002"]
ANGRY = "Al drie weken geen internet. Belachelijk, ik zeg mijn abonnement op!"


def load(path: str):
    return json.loads((FIXTURES / path).read_bytes())


class Recorder:
    """A plugin that remembers the completion events the core fires."""

    def __init__(self):
        self.completed: list[Any] = []

    @hookimpl
    def hub_followup_completed(self, followup, outcome):
        self.completed.append(followup)


@dataclass
class Env:
    app: Any
    hub: Any
    portal: HubSpotState
    clock: FakeClock
    headers: dict[str, str]
    recorder: Recorder

    @property
    def sink(self):
        return self.hub.registry.sink("hubspot")

    def feedback(self, i: int, *, email: str | None = None, name: str | None = "Sanne Bakker", nps: int = 2,
                 text: str = ANGRY, crm_id: str | None = None, x_handle: str | None = None) -> dict:
        customer = {k: v for k, v in {"email": email, "name": name, "crm_id": crm_id, "x_handle": x_handle}.items()
                    if v is not None}
        resp = self.app.test_client().post("/api/v1/feedback", headers=self.headers, json={
            "external_id": f"resp-{i}", "channel": "survey", "nps": nps, "text": text, "customer": customer,
            "occurred_at": dt.datetime.fromtimestamp(self.clock.time(), dt.UTC).isoformat()})
        assert resp.status_code == 201, resp.json
        return resp.json

    def followups(self) -> list[dict]:
        with self.hub.db.Session() as s:
            rows = s.scalars(select(m.Followup).order_by(m.Followup.id)).all()
            cases = {c.id: c for c in s.scalars(select(m.Case))}
            idents = {}
            for ident in s.scalars(select(m.Identity)):
                idents.setdefault(ident.customer_id, {})[ident.kind] = ident.value
            return [{"id": r.id, "status": r.status, "external_id": r.external_id, "attempts": r.attempts,
                     "due_at": r.due_at, "last_error": r.last_error, "key": r.idempotency_key, "case_id": r.case_id,
                     "case_status": cases[r.case_id].status, "case_priority": cases[r.case_id].priority,
                     "email": idents.get(cases[r.case_id].customer_id, {}).get("email")} for r in rows]

    def tasks_by_key(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for task in self.portal.all_tasks():
            out.setdefault(find_marker(task["properties"]["hs_task_body"]), []).append(task)
        return out


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def emulator_server():
    """One loopback HTTP server per module; each test plugs in its own portal.

    (A server per test costs half a second at shutdown - its poll interval.)
    """
    current: dict[str, Any] = {}
    server = LiveServer(lambda environ, start: current["app"](environ, start))
    yield current, server.url
    server.stop()


@pytest.fixture
def make_env(make_app, emulator_server, clock):
    current, url = emulator_server

    def factory(portal: HubSpotState | None = None, routing: dict | None = None, **sink_settings) -> Env:
        portal = portal or HubSpotState(clock=clock, token=TOKEN, owners=OWNERS + CONTACT_OWNERS)
        current["app"] = make_emulator_app(portal)
        recorder = Recorder()
        settings = {"plugin": "crm_hubspot", "token": TOKEN, "base_url": url, "owners": OWNERS, **sink_settings}
        app = make_app(plugins=(recorder,), clock=clock, sinks={"hubspot": settings}, routing=routing or {"followups": "hubspot"})
        hub = app.extensions["hub"]
        with hub.db.session() as s:
            api_token = create_token(s, "tests")
        return Env(app, hub, portal, clock, {"Authorization": f"Bearer {api_token}"}, recorder)

    return factory


def one_task_each(env: Env, n: int) -> None:
    """Every follow-up sent, exactly one task per follow-up, ids matching."""
    followups = env.followups()
    assert len(followups) == n
    tasks = env.tasks_by_key()
    assert len(env.portal.tasks) == n
    for f in followups:
        assert f["status"] == "sent", f
        assert [t["id"] for t in tasks[f["key"]]] == [f["external_id"]]


# -- contacts ----------------------------------------------------------------------
def test_existing_contact_is_found_by_upsert_and_its_facts_are_read(make_env):
    env = make_env()
    contact = env.portal.add_contact("sanne@example.nl", properties={
        "hubspot_owner_id": "9001", "annualrevenue": "12500", "lifecyclestage": "customer"})
    env.feedback(1, email="Sanne@Example.nl")
    report = dispatch(env.hub)
    assert report.sent == 1
    (task,) = env.portal.all_tasks()
    assert task["associations"]["contacts"] == [contact["id"]]
    assert task["properties"]["hubspot_owner_id"] == "9001"  # the contact's owner beats round-robin
    (update,) = env.sink.last_customer_updates.values()
    assert (update.crm_id, update.value) == (contact["id"], 12500.0)
    assert update.attributes == {"annualrevenue": "12500", "lifecyclestage": "customer", "hubspot_owner_id": "9001"}
    assert len(env.portal.contacts) == 1
    # The upsert found it (new: false), so its properties are read; no search, no create.
    assert [(r.path, r.status) for r in env.portal.log] == [("/crm/v3/objects/contacts/batch/upsert", 200),
                                                            ("/crm/v3/objects/contacts/batch/read", 200),
                                                            ("/crm/v3/objects/tasks/batch/create", 201)]


def test_upsert_request_matches_the_documented_shape(make_env, monkeypatch):
    env = make_env()
    sent: list[dict] = []
    real_post = env.sink.http.post
    monkeypatch.setattr(env.sink.http, "post", lambda path, **kw: (sent.append(kw["json"]) if path.endswith(
        "/batch/upsert") else None) or real_post(path, **kw))
    env.feedback(1, email="Laura@Example.com", name="Laura")
    dispatch(env.hub)
    documented = load("from_docs/batch_upsert_contacts_request.reconstructed.json")
    (ours,) = sent
    assert set(ours) == set(documented) - {"_source"}
    assert ours["inputs"] == documented["inputs"]  # lower-cased e-mail as id, idProperty email, the name


def test_100_followups_for_new_contacts_cost_2_requests(make_env):
    env = make_env()
    for i in range(100):
        env.feedback(i, email=f"nieuw{i}@example.nl", name=f"Nieuwe Klant{i}")
    assert dispatch(env.hub).sent == 100
    assert [(r.path, r.status, r.inputs) for r in env.portal.log] == [
        ("/crm/v3/objects/contacts/batch/upsert", 200, 100), ("/crm/v3/objects/tasks/batch/create", 201, 100)]
    one_task_each(env, 100)
    assert len(env.portal.contacts) == 100


def test_upsert_errors_per_input_fail_only_their_followup(make_env):
    env = make_env()
    env.portal.blocklist.add("weg@example.nl")  # GDPR-deleted: HubSpot refuses to create it again
    env.feedback(1, email="weg@example.nl")
    env.feedback(2, email="blijft@example.nl")
    report = dispatch(env.hub)
    assert (report.sent, report.dead) == (1, 1)
    by_email = {f["email"]: f for f in env.followups()}
    assert by_email["blijft@example.nl"]["status"] == "sent"
    assert by_email["weg@example.nl"]["status"] == "dead"
    assert "blocklisted" in by_email["weg@example.nl"]["last_error"]
    assert [r.status for r in env.portal.requests_to("/batch/upsert")] == [207]


def test_a_whole_upsert_refused_without_naming_an_input_is_bisected(make_env):
    env = make_env()
    for i in range(4):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("error", count=3, status=400, path="/batch/upsert")  # names nobody
    assert dispatch(env.hub).sent == 3
    assert [(r.status, r.inputs) for r in env.portal.requests_to("/batch/upsert")] == [
        (400, 4), (400, 2), (400, 1), (200, 1), (200, 2)]
    assert sorted(f["status"] for f in env.followups()) == ["dead", "sent", "sent", "sent"]


def test_missing_contact_is_created_with_the_customers_name(make_env):
    env = make_env()
    env.feedback(1, email="daan.visser@example.nl", name="Daan de Visser")
    assert dispatch(env.hub).sent == 1
    contact = env.portal.find_contact_by_email("daan.visser@example.nl")
    assert contact["properties"]["firstname"] == "Daan"
    assert contact["properties"]["lastname"] == "de Visser"
    (task,) = env.portal.all_tasks()
    assert task["associations"]["contacts"] == [contact["id"]]
    assert env.sink.last_customer_updates[1].crm_id == contact["id"]


def test_a_contact_search_has_not_indexed_yet_is_found_by_the_upsert_not_duplicated(make_env, clock):
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS + CONTACT_OWNERS, search_lag_seconds=30)
    env = make_env(portal)
    # Created seconds ago by someone else: search cannot see it (CONTRACTS.md §2.4); the upsert by e-mail can.
    existing = portal.add_contact("fatima@example.nl", properties={"hubspot_owner_id": "9002"}, searchable=False)
    env.feedback(1, email="fatima@example.nl")
    assert dispatch(env.hub).sent == 1
    assert portal.requests_to("/search") == []
    assert len(portal.contacts) == 1
    (task,) = portal.all_tasks()
    assert task["associations"]["contacts"] == [existing["id"]]
    assert task["properties"]["hubspot_owner_id"] == "9002"  # read back: the upsert said new = false


def test_a_known_crm_id_is_used_directly_and_its_properties_read(make_env):
    env = make_env()
    captured = load("pipedream_contact_object_v3.json")  # a real v3 contact, no e-mail on it
    env.portal.load("contacts", captured)
    env.feedback(1, name="Hello World", crm_id=captured["id"])
    assert dispatch(env.hub).sent == 1
    assert env.portal.requests_to("/search") == []
    (task,) = env.portal.all_tasks()
    assert task["associations"]["contacts"] == [captured["id"]]
    update = env.sink.last_customer_updates[1]
    assert update.attributes["lifecyclestage"] == "lead"
    assert update.value is None  # annualrevenue is null on this contact


def test_an_unknown_crm_id_falls_back_to_the_email(make_env):
    env = make_env()
    contact = env.portal.add_contact("bram@example.nl")
    env.feedback(1, email="bram@example.nl", crm_id="999999")
    assert dispatch(env.hub).sent == 1
    assert env.portal.all_tasks()[0]["associations"]["contacts"] == [contact["id"]]


def test_a_social_only_customer_goes_to_the_unreachable_route_not_hubspot(make_env):
    env = make_env()  # default routing.unreachable = "local"
    env.feedback(1, email=None, x_handle="boze_klant")
    assert dispatch(env.hub).sent == 1
    (f,) = env.followups()
    assert f["status"] == "sent" and env.portal.log == []


def test_a_customer_without_email_or_crm_id_ends_dead_with_the_reason(make_env):
    env = make_env(routing={"followups": "hubspot", "unreachable": "hubspot"})
    env.feedback(1, email=None, x_handle="boze_klant")
    report = dispatch(env.hub)
    assert report.dead == 1
    (f,) = env.followups()
    assert f["status"] == "dead" and "no e-mail address or HubSpot id" in f["last_error"]
    assert env.portal.log == []


# -- batches ------------------------------------------------------------------------
def test_250_followups_arrive_in_3_batch_calls_on_the_right_contacts_due_priority_owner(make_env):
    env = make_env()
    texts = [ANGRY, "Traag.", "Ik stap over naar de concurrent, en mijn advocaat hoort ervan.", "Geen opmerkingen."]
    seeded: dict[str, dict] = {}
    for i in range(250):
        email = f"klant{i}@example.nl"
        if i % 5 < 2:  # 100 customers HubSpot already knows, half of them with an owner
            props = {"hubspot_owner_id": CONTACT_OWNERS[i % 2]} if i % 5 == 0 else {}
            seeded[email] = env.portal.add_contact(email, properties=props)
        env.feedback(i, email=email, name=f"Klant {i}", nps=i % 7, text=texts[i % 4])

    report = dispatch(env.hub)

    assert (report.sent, report.retried, report.dead) == (250, 0, 0)
    creates = env.portal.requests_to("/tasks/batch/create")
    assert [(c.status, c.inputs) for c in creates] == [(201, 100), (201, 100), (201, 50)]
    # The 150 unknown were created and the 100 known found: 3 upserts, 1 read of the known ones' properties.
    assert [(r.status, r.inputs) for r in env.portal.requests_to("/batch/upsert")] == [(200, 100), (200, 100),
                                                                                      (200, 50)]
    assert len(env.portal.contacts) == 250
    tasks = env.tasks_by_key()
    priorities = set()
    for f in env.followups():
        (task,) = tasks[f["key"]]
        assert task["id"] == f["external_id"]
        contact = env.portal.find_contact_by_email(f["email"])
        assert task["associations"]["contacts"] == [contact["id"]]
        props = task["properties"]
        assert dt.datetime.fromisoformat(props["hs_timestamp"].replace("Z", "+00:00")) == f["due_at"]
        assert props["hs_task_priority"] == PRIORITY[f["case_priority"]]
        priorities.add(props["hs_task_priority"])
        expected_owner = contact["properties"].get("hubspot_owner_id") or OWNERS[f["case_id"] % len(OWNERS)]
        assert props["hubspot_owner_id"] == expected_owner
        assert props["hs_task_type"] == "CALL"
        assert f["case_status"] == "scheduled"
    assert priorities == {"HIGH", "MEDIUM", "LOW"}
    assert sum(1 for e in seeded if seeded[e]["properties"].get("hubspot_owner_id")) == 50
    # Steady state against 100 requests / rolling 10 s: paced, never refused.
    assert env.portal.requests_to("", status=429) == []
    assert env.portal.max_in_window(10.0) <= 100
    # 3 upserts, 3 reads of the contacts that existed (their owner, value), 3 task creates.
    assert len(env.portal.log) == 9


def test_multi_status_is_handled_per_task(make_env, clock):
    # One configured round-robin owner does not exist in the portal: HubSpot
    # refuses those tasks (207) and creates the others.
    portal = HubSpotState(clock=clock, token=TOKEN, owners=["111", "222"])
    env = make_env(portal)
    for i in range(6):
        env.feedback(i, email=f"k{i}@example.nl")
    report = dispatch(env.hub)
    assert (report.sent, report.dead) == (4, 2)
    assert [r.status for r in portal.requests_to("/tasks/batch/create")] == [207]
    for f in env.followups():
        if OWNERS[f["case_id"] % 3] == "333":
            assert f["status"] == "dead" and "INVALID_OWNER_ID" in f["last_error"]
        else:
            assert f["status"] == "sent" and f["external_id"] in portal.tasks


def test_a_whole_batch_refused_without_naming_inputs_is_bisected(make_env):
    env = make_env()
    for i in range(5):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("error", status=400, path="batch/create")  # no objectWriteTraceId in the answer
    assert dispatch(env.hub).sent == 5
    assert [(r.status, r.inputs) for r in env.portal.requests_to("/tasks/batch/create")] == [(400, 5), (201, 2),
                                                                                          (201, 3)]
    one_task_each(env, 5)


# -- exactly once --------------------------------------------------------------------
def test_timeout_after_hubspot_created_the_tasks_still_gives_one_task_each(make_env):
    env = make_env(timeout=0.5)
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("timeout", path="batch/create", delay=1.2)
    report = dispatch(env.hub)
    assert report.sent == 3
    one_task_each(env, 3)
    paths = [r.path.rsplit("/", 2)[-2:] for r in env.portal.log]
    assert paths[-3:] == [["batch", "create"], ["batch", "read"], ["batch", "read"]]  # create, associations, tasks


def test_timeout_then_failed_lookup_is_retried_by_the_outbox_without_a_duplicate(make_env):
    env = make_env(timeout=0.5)
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("timeout", path="batch/create", delay=1.2)
    env.portal.inject("error", status=503, count=6, path="/associations/")  # the lookup fails through all retries
    first = dispatch(env.hub)
    assert first.retried == 3  # created, but nobody knew: all three handed back to the outbox
    assert len(env.portal.tasks) == 3
    # (The client's retry waits moved the FakeClock, so some rows may already
    # have been due again within the same dispatch run.)
    env.clock.now += 3600  # past the outbox backoff
    second = dispatch(env.hub)
    assert first.sent + second.sent == 3
    one_task_each(env, 3)
    assert all(f["attempts"] == 2 for f in env.followups())
    assert len(env.portal.requests_to("/tasks/batch/create")) == 1  # found, not re-created


def test_server_error_without_work_is_looked_up_then_resent(make_env):
    env = make_env()
    for i in range(2):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("error", status=502, path="batch/create")
    assert dispatch(env.hub).sent == 2
    assert [r.status for r in env.portal.requests_to("/tasks/batch/create")] == [502, 201]
    one_task_each(env, 2)


class Killed(BaseException):
    """The worker process dies: nothing after this line runs (not an Exception)."""


def test_worker_killed_between_sending_and_recording_leaves_no_duplicate(make_env, monkeypatch):
    env = make_env()
    for i in range(4):
        env.feedback(i, email=f"k{i}@example.nl")
    real_push = env.sink.push

    def push_then_die(chunk):
        real_push(chunk)  # HubSpot has the tasks...
        raise Killed()  # ...and the hub never hears of it

    monkeypatch.setattr(env.sink, "push", push_then_die)
    with pytest.raises(Killed):
        dispatch(env.hub)
    monkeypatch.undo()
    assert {f["status"] for f in env.followups()} == {"sending"}
    assert len(env.portal.tasks) == 4
    assert dispatch(env.hub).claimed == 0  # not orphaned yet: another worker might still be on it
    env.clock.now += 301  # dispatch.claim_timeout_seconds (300) passed
    report = dispatch(env.hub)
    assert report.sent == 4
    one_task_each(env, 4)
    assert all(f["attempts"] == 2 for f in env.followups())


# -- rate limits ------------------------------------------------------------------------
def test_injected_429_with_retry_after_is_honoured_before_resending(make_env):
    env = make_env()
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    env.portal.inject("rate_limit", path="batch/create", retry_after=7)
    env.portal.inject("rate_limit", path="/batch/upsert", retry_after=4)
    assert dispatch(env.hub).sent == 3
    one_task_each(env, 3)
    upserts = env.portal.requests_to("/batch/upsert")
    assert [r.status for r in upserts] == [429, 200]
    assert upserts[1].at - upserts[0].at == pytest.approx(4)
    creates = env.portal.requests_to("/tasks/batch/create")
    assert [r.status for r in creates] == [429, 201]
    assert creates[1].at - creates[0].at == pytest.approx(7)
    assert pytest.approx(7) in env.clock.sleeps


def test_a_client_allowed_too_much_is_still_paced_by_the_headers(make_env, clock):
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS, requests_per_10s=20)
    env = make_env(portal, rate_limit=[1000, 10])  # misconfigured tier: more than the portal allows
    env.sink.batch_size = 1  # a push per follow-up: 60 requests against 20 per window
    for i in range(30):
        env.feedback(i, email=f"k{i}@example.nl")
    assert dispatch(env.hub).sent == 30
    one_task_each(env, 30)
    assert portal.requests_to("", status=429) == []
    assert portal.max_in_window(10.0) == 20


def test_429s_provoked_by_other_apps_are_honoured_through_retry_after(make_env, clock):
    # Another private app of the same account takes a request right after each
    # of ours: the last slot we saw in the headers is gone when we use it.
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS, requests_per_10s=20, other_app_load=1)
    env = make_env(portal)
    env.sink.batch_size = 1  # a push per follow-up: 60 requests of ours against 20 per window
    for i in range(30):
        env.feedback(i, email=f"k{i}@example.nl")
    assert dispatch(env.hub).sent == 30
    one_task_each(env, 30)
    refused = portal.requests_to("", status=429)
    assert refused, "the emulator enforces its window"
    for r in refused:  # nothing was sent before the Retry-After the 429 named had passed
        later = [x.at for x in portal.log if x.at > r.at]
        assert later and min(later) - r.at >= r.retry_after
    assert portal.max_in_window(10.0) <= 20


def test_other_apps_traffic_seen_in_headers_pauses_us_before_a_429(make_env, clock):
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS)
    env = make_env(portal)
    for _ in range(97):  # another private app of the account spent most of the window
        assert portal.admit(is_search=False) is None
    env.sink.batch_size = 1  # 6 requests of ours: the window fills after 3
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    assert dispatch(env.hub).sent == 3
    assert portal.requests_to("", status=429) == []
    assert pytest.approx(10.0) in clock.sleeps  # Remaining hit 0: waited out the interval


def test_daily_limit_defers_the_chunk_instead_of_killing_it(make_env, clock):
    portal = HubSpotState(clock=clock, token=TOKEN, owners=OWNERS, daily_limit=1)  # the upsert spends the day
    env = make_env(portal)
    for i in range(2):
        env.feedback(i, email=f"k{i}@example.nl")
    report = dispatch(env.hub)
    assert (report.sent, report.dead, report.retried) == (0, 0, 2)
    assert all("daily" in f["last_error"].lower() for f in env.followups())


def test_a_wrong_token_keeps_followups_for_when_it_is_fixed(make_env):
    env = make_env(token="pat-expired")
    env.feedback(1, email="k@example.nl")
    report = dispatch(env.hub)
    assert (report.retried, report.dead) == (1, 0)
    (f,) = env.followups()
    assert "HTTP 401" in f["last_error"] and "check the private app token" in f["last_error"]
    assert TOKEN not in f["last_error"] and "pat-expired" not in f["last_error"]


# -- completion ---------------------------------------------------------------------------
def test_completing_the_task_in_hubspot_moves_the_case_to_contacted(make_env):
    env = make_env()
    for i in range(3):
        env.feedback(i, email=f"k{i}@example.nl")
    dispatch(env.hub)
    first = env.followups()[0]
    # An agent ticks the task off in HubSpot (the emulator's control API).
    resp = requests.post(f"{env.sink.config['base_url']}/_control/tasks/{first['external_id']}/complete", timeout=10)
    assert resp.status_code == 200
    assert sync_completions(env.hub) == 1
    by_id = {f["id"]: f for f in env.followups()}
    assert by_id[first["id"]]["status"] == "done"
    assert by_id[first["id"]]["case_status"] == "contacted"
    assert {f["status"] for f in by_id.values() if f["id"] != first["id"]} == {"sent"}
    assert [v.id for v in env.recorder.completed] == [first["id"]]
    reads = env.portal.requests_to("/tasks/batch/read")
    assert reads and all(r.inputs == 3 for r in reads)
    assert sync_completions(env.hub) == 0  # nothing new


def test_sync_reads_a_captured_task_object(make_env):
    env = make_env()
    env.feedback(1, email="k@example.nl")
    dispatch(env.hub)
    captured = load("pipedream_task_object_v3.json")  # NOT_STARTED, as captured
    (f,) = env.followups()
    env.portal.load("tasks", {**captured, "id": f["external_id"]})
    assert sync_completions(env.hub) == 0
    env.portal.complete_task(f["external_id"])
    assert sync_completions(env.hub) == 1
    with env.hub.db.Session() as s:
        row = s.get(m.Followup, f["id"])
        assert row.completed_at == dt.datetime.fromtimestamp(env.clock.time(), dt.UTC)


# -- webhooks ------------------------------------------------------------------------------
def _signed(env: Env, body: bytes, *, secret="shh", age_ms=0, url="http://localhost/webhooks/hubspot"):
    ts = str(int(env.clock.time() * 1000) - age_ms)
    # v3: base64 HMAC-SHA256 of method + URI + body + timestamp
    return {"X-HubSpot-Signature-v3": sign_hmac(secret, f"POST{url}".encode() + body + ts.encode(), prefix=""),
            "X-HubSpot-Request-Timestamp": ts, "Content-Type": "application/json"}


def test_webhook_v3_is_verified_and_reports_completed_tasks(make_env):
    env = make_env(client_secret="shh")
    client = env.app.test_client()
    body = json.dumps([{"eventId": 7, "subscriptionType": "object.propertyChange", "objectTypeId": "0-27",
                        "objectId": 88000000001, "propertyName": "hs_task_status", "propertyValue": "COMPLETED",
                        "occurredAt": 1700000000000}]).encode()
    ok = client.post("/webhooks/hubspot", data=body, headers=_signed(env, body))
    assert ok.status_code == 200
    assert ok.json["completed_tasks"] == ["88000000001"]
    assert env.sink.completed_hints == {"88000000001"}
    stale = client.post("/webhooks/hubspot", data=body, headers=_signed(env, body, age_ms=300_001))
    assert stale.status_code == 401 and "5 minutes" in stale.json["error"]["message"]
    forged = client.post("/webhooks/hubspot", data=body, headers=_signed(env, body, secret="guess"))
    assert forged.status_code == 401
    unsigned = client.post("/webhooks/hubspot", data=body)
    assert unsigned.status_code == 401


def test_webhook_docs_example_with_v1_signature_needs_opt_in(make_env):
    raw = (FIXTURES / "webhook_contact_creation_docs_example.json").read_bytes()
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    headers = {"X-HubSpot-Signature": v1_signature(secret, raw), "X-HubSpot-Signature-Version": "v1",
               "Content-Type": "application/json"}
    strict = make_env(client_secret=secret).app.test_client()
    assert strict.post("/webhooks/hubspot", data=raw, headers=headers).status_code == 401
    lenient = make_env(client_secret=secret, legacy_signatures=True).app.test_client()
    resp = lenient.post("/webhooks/hubspot", data=raw, headers=headers)
    assert resp.status_code == 200
    assert resp.json == {"ok": True, "events": 1, "completed_tasks": []}  # a contact.creation: nothing to close


def test_webhooks_are_refused_when_no_client_secret_is_configured(make_env):
    env = make_env()
    body = b"[]"
    assert env.app.test_client().post("/webhooks/hubspot", data=body, headers=_signed(env, body)).status_code == 404


def test_crm_id_value_and_properties_land_on_the_hub_customer(make_env):
    env = make_env()
    contact = env.portal.add_contact("lotte@example.nl", properties={"annualrevenue": "12500",
                                                                     "lifecyclestage": "customer"})
    stored = env.feedback(1, email="lotte@example.nl")
    assert dispatch(env.hub).sent == 1
    with env.hub.db.Session() as s:
        idents = {i.kind: i.value for i in s.scalars(select(m.Identity).where(
            m.Identity.customer_id == stored["customer_id"]))}
        customer = s.get(m.Customer, stored["customer_id"])
        assert idents["crm_id"] == contact["id"]
        assert customer.value == 12500.0
        assert customer.attributes["hubspot"]["lifecyclestage"] == "customer"
