"""The HubSpot emulator speaks HubSpot's shapes (compared with the captured
payloads in tests/fixtures/hubspot), enforces its limits and obeys its
control API.  Requests go through real HTTP (``live_server``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from hub.sdk import FakeClock
from plugins.crm_hubspot.emulator import DEMO_OWNERS, HubSpotState, demo_config, make_emulator_app

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
TOKEN = "pat-emulator-test"


def load(path: str):
    return json.loads((FIXTURES / path).read_bytes())


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def portal(clock):
    return HubSpotState(clock=clock, token=TOKEN, owners=["64492917", "41488296"])


class Api:
    """The emulator through Flask's test client (no socket: fast teardown)."""

    def __init__(self, portal: HubSpotState):
        self.client = make_emulator_app(portal).test_client()
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    def post(self, path, body, headers=None):
        return self.client.post(path, json=body, headers=self.headers if headers is None else headers)

    def get(self, path, **kw):
        return self.client.get(path, headers=self.headers, **kw)

    def control(self, method, path, body=None):
        return self.client.open(f"/_control/{path}", method=method, json=body)


@pytest.fixture
def api(portal):
    return Api(portal)


def test_missing_or_wrong_token_gets_hubspots_401(api):
    real = load("error_401_invalid_authentication.json")
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        resp = api.post("/crm/v3/objects/contacts/search", {}, headers=headers)
        assert resp.status_code == 401
        body = resp.json
        assert set(body) == set(real)
        assert body["category"] == real["category"] and body["message"] == real["message"]


def test_duplicate_contact_gets_hubspots_409_naming_the_existing_id(api, portal):
    real = load("error_409_contact_already_exists.json")
    first = api.post("/crm/v3/objects/contacts", {"properties": {"email": "Laura@Example.com", "firstname": "Laura"},
                                                  "associations": []})
    assert first.status_code == 201
    dup = api.post("/crm/v3/objects/contacts", {"properties": {"email": "laura@example.com"}})
    assert dup.status_code == 409
    assert set(dup.json) == set(real)
    assert dup.json["message"] == real["message"].replace("37765128953", first.json["id"])
    assert len(portal.contacts) == 1


def test_invalid_email_gets_a_validation_error_with_the_message_embedded(api):
    resp = api.post("/crm/v3/objects/contacts", {"properties": {"email": "not-an-email"}})
    assert resp.status_code == 400
    assert resp.json["category"] == "VALIDATION_ERROR"
    assert '"error": "INVALID_EMAIL"' in resp.json["message"]


def test_unknown_object_gets_hubspots_404(api):
    real = load("error_404_object_not_found.json")
    resp = api.get("/crm/v3/objects/contacts/email%40company.org", query_string={"idProperty": "email"})
    assert resp.status_code == 404
    assert set(resp.json) == set(real)
    assert resp.json["message"] == real["message"]


def test_search_by_email_answers_the_documented_request_with_the_documented_shape(api, portal):
    request = load("from_docs/search_contacts_by_email_request.reconstructed.json")
    documented = load("from_docs/search_contacts_response.reconstructed.json")
    portal.add_contact("laura@example.com", properties={"firstname": "Laura", "hubspot_owner_id": "64492917"})
    portal.add_contact("other@example.com")
    resp = api.post("/crm/v3/objects/contacts/search", request)
    assert resp.status_code == 200
    body = resp.json
    assert set(body) == set(documented)
    assert body["total"] == 1
    hit = body["results"][0]
    assert set(hit) == set(documented["results"][0])
    assert set(documented["results"][0]["properties"]) <= set(hit["properties"])
    assert hit["properties"]["email"] == "laura@example.com"
    assert hit["properties"]["hubspot_owner_id"] == "64492917"
    assert "X-HubSpot-RateLimit-Remaining" not in resp.headers  # search answers carry no limit headers


def test_search_supports_in_paging_and_refuses_oversized_requests(api, portal):
    for i in range(5):
        portal.add_contact(f"p{i}@example.nl")
    body = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "IN",
                                           "values": [f"P{i}@example.nl" for i in range(4)]}]}], "limit": 3}
    first = api.post("/crm/v3/objects/contacts/search", body).json
    assert first["total"] == 4 and len(first["results"]) == 3
    rest = api.post("/crm/v3/objects/contacts/search", {**body, "after": first["paging"]["next"]["after"]}).json
    assert len(rest["results"]) == 1 and "paging" not in rest
    too_many = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "x"}]}] * 6}
    assert api.post("/crm/v3/objects/contacts/search", too_many).status_code == 400
    assert api.post("/crm/v3/objects/contacts/search", {"limit": 201}).status_code == 400


def test_search_lags_behind_writes_like_hubspots_index(api, portal, clock):
    portal.search_lag_seconds = 5
    api.post("/crm/v3/objects/contacts", {"properties": {"email": "fresh@example.nl"}})
    query = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "fresh@example.nl"}]}]}
    assert api.post("/crm/v3/objects/contacts/search", query).json["total"] == 0
    clock.now += 5
    assert api.post("/crm/v3/objects/contacts/search", query).json["total"] == 1


def test_batch_create_takes_the_documented_request_and_answers_in_the_documented_shape(api, portal):
    request = load("from_docs/batch_create_tasks_request.reconstructed.json")
    documented = load("from_docs/batch_create_response_201.reconstructed.json")
    portal.add_contact("brian@example.com", contact_id="101")
    resp = api.post("/crm/v3/objects/tasks/batch/create", request)
    assert resp.status_code == 201
    body = resp.json
    assert set(documented) <= set(body)
    created = body["results"][0]
    assert set(documented["results"][0]) <= set(created)
    assert set(documented["results"][0]["properties"]) <= set(created["properties"])
    for key, value in request["inputs"][0]["properties"].items():
        assert created["properties"][key] == value
    assert portal.task(created["id"])["associations"]["contacts"] == ["101"]
    assert resp.headers["X-HubSpot-RateLimit-Max"] == "100"
    assert resp.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(resp.headers["X-HubSpot-RateLimit-Remaining"]) == 99


def test_single_create_takes_the_docs_example_with_numeric_ids(api, portal):
    request = load("from_docs/create_task_request.reconstructed_from_docs.json")
    portal.add_contact("a@example.com", contact_id="101")
    portal.add_contact("b@example.com", contact_id="102")
    resp = api.post("/crm/v3/objects/tasks", request)
    assert resp.status_code == 201
    assert resp.json["properties"]["hs_task_status"] == "WAITING"
    assert portal.task(resp.json["id"])["associations"]["contacts"] == ["101", "102"]


def test_partial_failure_answers_207_naming_each_failed_input(api, portal):
    portal.add_contact("a@example.com", contact_id="101")
    good = {"properties": {"hs_timestamp": "2027-01-15T10:00:00.000Z", "hs_task_type": "CALL"},
            "associations": [{"to": {"id": "101"}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                             "associationTypeId": 204}]}],
            "objectWriteTraceId": "good"}
    bad = {"properties": {"hs_timestamp": "2027-01-15T10:00:00.000Z", "hs_task_priority": "URGENT"},
           "associations": [], "objectWriteTraceId": "bad"}
    resp = api.post("/crm/v3/objects/tasks/batch/create", {"inputs": [good, bad]})
    assert resp.status_code == 207
    body = resp.json
    assert [r["objectWriteTraceId"] for r in body["results"]] == ["good"]
    assert body["numErrors"] == 1
    assert body["errors"][0]["context"]["objectWriteTraceId"] == ["bad"]
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert len(portal.tasks) == 1
    over = api.post("/crm/v3/objects/tasks/batch/create", {"inputs": [good] * 101})
    assert over.status_code == 400


def test_captured_objects_are_served_back_by_batch_read(api, portal):
    contact = load("pipedream_contact_object_v3.json")
    task = load("pipedream_task_object_v3.json")
    portal.load("contacts", contact)
    portal.load("tasks", task)
    read = api.post("/crm/v3/objects/contacts/batch/read",
                    {"properties": ["lifecyclestage", "annualrevenue"], "inputs": [{"id": contact["id"]}]}).json
    props = read["results"][0]["properties"]
    assert props["lifecyclestage"] == "lead" and props["annualrevenue"] is None
    tasks = api.post("/crm/v3/objects/tasks/batch/read",
                     {"properties": ["hs_task_status"], "inputs": [{"id": task["id"]}, {"id": "404404"}]})
    assert tasks.status_code == 207
    assert tasks.json["results"][0]["properties"]["hs_task_status"] == "NOT_STARTED"
    assert tasks.json["errors"][0]["context"]["ids"] == ["404404"]
    assert "objectType" not in tasks.json["results"][0]  # Pipedream's addition, not HubSpot's


def test_associations_list_a_contacts_tasks(api, portal):
    portal.add_contact("a@example.com", contact_id="101")
    obj, _ = portal.create_task({"hs_timestamp": "1700000000000"}, [
        {"to": {"id": "101"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}])
    body = api.post("/crm/v4/associations/contacts/tasks/batch/read", {"inputs": [{"id": "101"}]}).json
    assert body["results"][0]["from"] == {"id": "101"}
    assert [t["toObjectId"] for t in body["results"][0]["to"]] == [int(obj["id"])]
    single = api.get("/crm/v4/objects/contacts/101/associations/tasks").json
    assert single["results"][0]["toObjectId"] == int(obj["id"])


def test_rolling_window_refuses_the_101st_request_with_the_real_429_shape(api, portal, clock):
    real = load("error_429_secondly_limit.json")
    for _ in range(100):
        assert api.post("/crm/v3/objects/contacts/batch/read", {"inputs": []}).status_code == 200
        clock.now += 0.05
    refused = api.post("/crm/v3/objects/contacts/batch/read", {"inputs": []})
    assert refused.status_code == 429
    assert set(refused.json) == set(real)
    assert refused.json["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused.json["errorType"] == "RATE_LIMIT"
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after in (5, 6)  # the first request leaves the window 5 s from now (rounded up)
    clock.now += retry_after
    assert api.post("/crm/v3/objects/contacts/batch/read", {"inputs": []}).status_code == 200


def test_search_has_its_own_lower_limit(api, portal):
    answers = [api.post("/crm/v3/objects/contacts/search", {}).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]
    assert api.post("/crm/v3/objects/contacts/batch/read", {"inputs": []}).status_code == 200


def test_control_api_completes_tasks_injects_faults_and_reports(api, portal):
    portal.add_contact("a@example.com", contact_id="101")
    obj, _ = portal.create_task({"hs_timestamp": "1700000000000"}, [])
    done = api.control("POST", f"tasks/{obj['id']}/complete").json
    assert done["properties"]["hs_task_status"] == "COMPLETED"
    assert done["properties"]["hs_task_completion_date"]
    assert api.control("POST", "faults", {"kind": "error", "count": 2, "status": 503}).status_code == 201
    assert [api.post("/crm/v3/objects/contacts/search", {}).status_code for _ in range(3)] == [503, 503, 200]
    api.control("POST", "faults", {"kind": "rate_limit", "retry_after": 3})
    limited = api.post("/crm/v3/objects/contacts/batch/read", {"inputs": []})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    state = api.control("GET", "state").json
    assert state["tasks"] == 1 and state["open_tasks"] == 0 and state["rate_limited"] == 1
    log = api.control("GET", "requests").json["results"]
    assert [r["status"] for r in log] == [503, 503, 200, 429]
    assert api.control("POST", "faults", {"kind": "gremlin"}).status_code == 400


def test_timeout_fault_does_the_work_then_answers_too_late(portal, live_server):
    url = live_server(make_emulator_app(portal))
    portal.inject("timeout", path="batch/create", delay=1.0)
    inputs = {"inputs": [{"properties": {"hs_timestamp": "1700000000000"}, "associations": []}]}
    with pytest.raises(requests.Timeout):
        requests.post(f"{url}/crm/v3/objects/tasks/batch/create", json=inputs,
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=0.3)
    assert len(portal.tasks) == 1  # HubSpot created it; the client never heard


def test_demo_portal_seeds_the_demo_crowd_and_tick_completes_old_tasks(clock):
    from hub.sdk.demo_data import generate_people

    portal = HubSpotState.demo(clock=clock)
    people = generate_people(__import__("random").Random(7), 150)
    assert portal.find_contact_by_email(people[0].email) is not None
    assert portal.owners == list(DEMO_OWNERS)
    obj, _ = portal.create_task({"hs_timestamp": "1700000000000"}, [])
    assert portal.tick(fraction=1.0, min_age=20) == []  # too fresh: an agent has not seen it yet
    clock.now += 60
    assert portal.tick(fraction=1.0, min_age=20) == [obj["id"]]
    assert portal.task(obj["id"])["properties"]["hs_task_status"] == "COMPLETED"


def test_emulator_is_registered_for_sandbox_and_demo(make_app):
    from hub.demo.sandbox import make_sandbox_app
    from hub.plugin_manager import make_plugin_manager

    app, emus = make_sandbox_app(make_plugin_manager(only="crm_hubspot"))
    assert "hubspot" in [e.name for e in emus]
    client = app.test_client()
    assert client.get("/hubspot/_control/state").json["contacts"] == 110
    unauth = client.post("/hubspot/crm/v3/objects/contacts/search", json={})
    assert unauth.status_code == 401
    ok = client.post("/hubspot/crm/v3/objects/contacts/search", json={},
                     headers={"Authorization": "Bearer pat-demo"})
    assert ok.status_code == 200 and ok.json["total"] == 110
    # The demo tables configure the real sink against the emulator and route follow-ups to it.
    config = demo_config("http://127.0.0.1:5000/_sandbox/hubspot", "http://127.0.0.1:5000")
    hub = make_app(**{**config, "sinks": {**config["sinks"], "hubspot": {**config["sinks"]["hubspot"],
                                                                          "token": "pat-demo"}}}).extensions["hub"]
    assert hub.registry.followup_sink == "hubspot"
    assert hub.registry.sink("hubspot").owners == list(DEMO_OWNERS)
