"""The plugin author's testing kit (``hub.sdk.testing``): signatures, the fake
vendor, ``make_hub`` driving a small source and sink, and the pytest plugin as
a third-party suite gets it (its entry point only, no conftest)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import hub.sdk.testing as kit
from hub.sdk import (
    BodyTokenPaginator,
    Completion,
    CrmSink,
    CustomerRef,
    FakeClock,
    FeedbackIn,
    HttpClient,
    PushResult,
    RawIn,
    Setting,
    SourceConnector,
    Stream,
    WebhookRejected,
    WebhookResult,
    hookimpl,
)
from hub.sdk.testing import FAKE_NOW, Reply, sign_hmac
from tests.conftest import fixture_path

pytest_plugins = ["pytester"]


# -- sign_hmac: published test vectors ------------------------------------------------
def test_sign_hmac_matches_typeforms_published_vector():
    body = fixture_path("typeform/webhook_pipedream_raw_event.json").read_bytes()
    assert sign_hmac("test_secret", body) == "sha256=vRVJ8T+abQfCOiWeu9rPhEwBycH5kGSGyVZnwO2PiUU="


@pytest.mark.parametrize("algo, prefix, expected", [
    # RFC 4231 test case 2 and RFC 2202 test case 2 (key "Jefe").
    ("sha256", "", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("sha256", None, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("sha1", None, "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    ("sha256", "v1,", "v1,5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
])
def test_sign_hmac_hex_with_any_prefix(algo, prefix, expected):
    assert sign_hmac("Jefe", "what do ya want for nothing?", algo=algo, encoding="hex", prefix=prefix) == expected


def test_sign_hmac_refuses_an_unknown_encoding():
    with pytest.raises(ValueError, match="base64"):
        sign_hmac("k", b"x", encoding="base32")


# -- FakeVendor ---------------------------------------------------------------------
def test_pages_are_served_in_order_and_a_request_past_the_script_fails_loudly(fake_vendor):
    fake_vendor.route("GET", "/v1/items", pages=[{"items": [1, 2], "next": "p2"}, {"items": [3]}])
    first = requests.get(f"{fake_vendor.url}/v1/items", params={"limit": "2"})
    second = requests.get(f"{fake_vendor.url}/v1/items", params={"cursor": "p2"})
    third = requests.get(f"{fake_vendor.url}/v1/items")
    assert (first.status_code, first.json()) == (200, {"items": [1, 2], "next": "p2"})
    assert second.json() == {"items": [3]}
    assert third.status_code == 418 and "no more replies scripted for GET /v1/items (2 given)" in third.json()["error"]
    assert [r.args for r in fake_vendor.calls("GET", "/v1/items")] == [{"limit": "2"}, {"cursor": "p2"}, {}]
    assert fake_vendor.unexpected == [fake_vendor.requests[2]]


def test_fixed_reply_repeat_last_handler_placeholders_and_unknown_paths(fake_vendor):
    fake_vendor.route("GET", "/v1/me", json={"id": "me"}, headers={"X-Rate-Remaining": "9"})
    fake_vendor.route("GET", "/v1/status", replies=[Reply(503), Reply(200, {"up": True})], repeat_last=True)
    fake_vendor.route("GET", "/v1/items/<item_id>",
                      handler=lambda req: Reply(200, {"id": req.path_params["item_id"], "q": req.args.get("q")}))
    url = fake_vendor.url
    assert [requests.get(f"{url}/v1/me").json() for _ in range(3)] == [{"id": "me"}] * 3
    assert requests.get(f"{url}/v1/me").headers["x-rate-remaining"] == "9"
    assert [requests.get(f"{url}/v1/status").status_code for _ in range(3)] == [503, 200, 200]
    assert requests.get(f"{url}/v1/items/42", params={"q": "a"}).json() == {"id": "42", "q": "a"}
    missing = requests.post(f"{url}/v1/nothing", json={})
    assert missing.status_code == 404 and "no route for POST /v1/nothing" in missing.json()["error"]
    wrong_method = requests.delete(f"{url}/v1/me")
    assert wrong_method.status_code == 405
    assert [(r.method, r.path) for r in fake_vendor.unexpected] == [("POST", "/v1/nothing"), ("DELETE", "/v1/me")]


def test_requests_are_recorded_with_body_and_case_insensitive_headers(fake_vendor):
    fake_vendor.route("POST", "/v1/tasks", status=201, json={"id": 9})
    r = requests.post(f"{fake_vendor.url}/v1/tasks", json={"title": "Bel Jan"}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201 and r.json() == {"id": 9}
    (seen,) = fake_vendor.calls("POST")
    assert seen.json() == {"title": "Bel Jan"} and json.loads(seen.body) == {"title": "Bel Jan"}
    assert seen.headers["idempotency-key"] == "k-1" and seen.headers["IDEMPOTENCY-KEY"] == "k-1"


def test_routes_may_be_added_while_serving_but_not_twice(fake_vendor):
    assert requests.get(f"{fake_vendor.url}/late").status_code == 404
    fake_vendor.route("GET", "/late", json={"ok": 1})
    assert requests.get(f"{fake_vendor.url}/late").json() == {"ok": 1}
    with pytest.raises(ValueError, match="declared twice"):
        fake_vendor.route("GET", "/late", json={})
    with pytest.raises(ValueError, match="one of"):
        fake_vendor.route("GET", "/other", pages=[], replies=[])


def test_concurrent_requests_take_scripted_replies_in_turn(fake_vendor):
    fake_vendor.route("GET", "/n", pages=[{"n": n} for n in range(24)])
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: requests.get(f"{fake_vendor.url}/n").json()["n"], range(24)))
    assert sorted(got) == list(range(24)) and fake_vendor.unexpected == []


def test_a_429_with_retry_after_is_honoured_by_the_sdk_client_on_the_fake_clock(fake_vendor, fake_clock):
    fake_vendor.route("GET", "/v1/items", replies=[Reply(429, {"error": "slow down"}, {"Retry-After": "7"}),
                                                   Reply(200, {"items": []})])
    client = HttpClient(fake_vendor.url, clock=fake_clock)
    assert client.get("/v1/items").json() == {"items": []}
    assert fake_clock.sleeps == [7.0] and len(fake_vendor.requests) == 2


def test_fake_clock_fixture_starts_at_fake_now(fake_clock):
    assert fake_clock.utcnow() == FAKE_NOW
    fake_clock.sleep(90)
    assert fake_clock.utcnow() == FAKE_NOW + dt.timedelta(seconds=90) and fake_clock.sleeps == [90]


# -- make_hub with a small source and sink --------------------------------------------
SECRET = "whsec-kit"


class NotesStream(Stream):
    name = "notes"
    path = "/v1/notes"
    cursor_field = "id"
    cursor_kind = "int"
    paginator = BodyTokenPaginator("next")

    def request_params(self, cursor, page_token, since):
        return {"after": cursor, "page": page_token}

    def parse_records(self, response):
        return response.json()["notes"]


class NotesSource(SourceConnector):
    plugin_name = "kit_notes"
    default_base_url = "https://notes.invalid"
    settings = [Setting("webhook_secret", secret=True)]

    def streams(self):
        return [NotesStream(self)]

    def normalize(self, raw: RawIn):
        note = raw.payload
        return [FeedbackIn(external_id=str(note["id"]), channel="other", text=note["text"], nps=note.get("nps"),
                           occurred_at=dt.datetime.fromisoformat(note["at"]),
                           customer=CustomerRef(email=note.get("email")))]

    def handle_webhook(self, request):
        if request.headers.get("x-signature") != sign_hmac(self.config["webhook_secret"], request.body):
            raise WebhookRejected(401, "bad signature")
        note = json.loads(request.body)
        return WebhookResult(raw_events=[RawIn(payload=note, dedupe_key=str(note["id"]))])


class TicketSink(CrmSink):
    plugin_name = "kit_tickets"
    done: set[str] = set()
    pushed: list[str] = []

    def push(self, followups):
        TicketSink.pushed.extend(f.idempotency_key for f in followups)
        return [PushResult(f.id, ok=True, external_id=f"T-{f.id}") for f in followups]

    def sync_completed(self, followups):
        return [Completion(f.id, outcome="reached") for f in followups if f.external_id in TicketSink.done]


class KitPlugin:
    @hookimpl
    def hub_register_connectors(self):
        return [NotesSource]

    @hookimpl
    def hub_register_crm_sinks(self):
        return [TicketSink]


def note(i: int, **extra):
    return {"id": i, "text": f"Opmerking {i}: de storing duurt al weken", "at": "2026-11-19T10:00:00+00:00", **extra}


def notes_hub(make_hub, url="http://127.0.0.1:9", **config):
    return make_hub(plugins=[KitPlugin()], sources={"notes": {"plugin": "kit_notes", "base_url": url,
                                                              "webhook_secret": SECRET}}, **config)


def test_make_hub_pulls_through_a_fake_vendor_and_shows_results_through_the_api(make_hub, fake_vendor, fake_clock):
    fake_vendor.route("GET", "/v1/notes", pages=[{"notes": [note(1), note(2)], "next": "2"}, {"notes": [note(3)]}])
    running = notes_hub(make_hub, fake_vendor.url)
    assert running.clock is fake_clock and running.hub.clock is fake_clock
    report = running.pull("notes")
    assert (report.pages, report.records, report.new_items) == (2, 3, 3)
    assert [r.args.get("page") for r in fake_vendor.requests] == [None, "2"]
    items = running.feedback()
    assert [(i["source"], i["external_id"]) for i in items] == [("notes", "1"), ("notes", "2"), ("notes", "3")]
    assert all(i["received_at"] == FAKE_NOW.isoformat() for i in items)  # the fake clock, not the wall clock
    assert running.stream_state("notes", "notes")["cursor"] == "3"


def test_each_hub_has_its_own_fresh_database_and_only_the_plugins_it_was_given(make_hub):
    first, second = notes_hub(make_hub), make_hub()
    r = first.post_webhook("notes", body := json.dumps(note(7)).encode(), {"X-Signature": sign_hmac(SECRET, body)})
    assert r.status_code == 200 and r.get_json()["stored"] == 1
    # inline executor: processed before post_webhook returned
    assert [i["external_id"] for i in first.feedback()] == ["7"]
    assert second.feedback() == [] and second.hub.db.url != first.hub.db.url
    # no installed entry point leaks in: the bundled plugins are not loaded
    assert "survey_typeform" not in first.hub.registry.source_kinds
    assert set(first.hub.registry.source_kinds) == {"kit_notes"}
    assert "survey_typeform" in make_hub(load_entry_points=True).hub.registry.source_kinds


def test_post_webhook_sends_the_exact_bytes_and_a_bad_signature_stores_nothing(make_hub):
    running = notes_hub(make_hub)
    body = json.dumps(note(8)).encode()
    bad = running.post_webhook("notes", body, {"X-Signature": sign_hmac("wrong", body)})
    assert bad.status_code == 401 and running.feedback() == []
    # a dict is JSON-encoded by post_webhook; signing the same encoding makes it pass
    good = kit.post_webhook(running.client, "notes", note(8), {"X-Signature": sign_hmac(SECRET, json.dumps(note(8)))})
    assert good.status_code == 200 and [i["external_id"] for i in running.feedback()] == ["8"]


def test_dispatch_and_sync_completed_drive_a_sink_through_the_outbox(make_hub):
    TicketSink.pushed, TicketSink.done = [], set()
    running = notes_hub(make_hub, sinks={"tickets": {"plugin": "kit_tickets"}}, routing={"followups": "tickets"})
    body = json.dumps(note(9, nps=1, email="jan@example.nl")).encode()
    assert running.post_webhook("notes", body, {"X-Signature": sign_hmac(SECRET, body)}).status_code == 200
    (case,) = running.cases()
    assert case["followup"]["status"] == "pending"
    report = running.dispatch()
    assert report.sent == 1 and len(TicketSink.pushed) == 1
    (case,) = running.cases()
    assert (case["followup"]["status"], case["followup"]["external_id"]) == ("sent", f"T-{case['followup']['id']}")
    assert running.sync_completed() == 0
    TicketSink.done = {case["followup"]["external_id"]}
    assert running.sync_completed() == 1
    (case,) = running.cases()
    assert (case["status"], case["outcome"]) == ("contacted", "reached")


def test_make_hub_takes_another_clock_and_core_config(make_hub):
    clock = FakeClock(dt.datetime(2027, 3, 1, tzinfo=dt.UTC).timestamp())
    running = notes_hub(make_hub, clock=clock, max_body_bytes=10)
    assert running.hub.clock is clock and running.hub.config["max_body_bytes"] == 10
    assert running.post_webhook("notes", b"0123456789A").status_code == 413


# -- the pytest plugin, as another package's suite sees it ------------------------------------
def test_our_suite_loads_the_kit_once_through_its_entry_point(request):
    pm = request.config.pluginmanager
    assert [name for name, plugin in pm.list_name_plugin() if plugin is kit] == ["feedback_hub"]


THIRD_PARTY_TESTS = '''
    import requests

    from hub.sdk import FakeClock

    seen = {}


    def test_fixtures_come_from_the_installed_kit(make_hub, fake_vendor, fake_clock):
        fake_vendor.route("GET", "/ping", json={"pong": True})
        assert requests.get(fake_vendor.url + "/ping").json() == {"pong": True}
        running = make_hub()
        assert running.clock is fake_clock and isinstance(fake_clock, FakeClock)
        assert running.client.get("/api/v1/health").status_code == 200
        seen["url"] = fake_vendor.url


    def test_servers_stop_after_their_test():
        try:
            requests.get(seen["url"] + "/ping", timeout=2)
        except requests.ConnectionError:
            return
        raise AssertionError("the fake vendor still answers after its test")
'''


def test_a_plugin_package_gets_the_fixtures_without_any_conftest(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)  # the entry point is what is tested
    pytester.makepyfile(test_acme=textwrap.dedent(THIRD_PARTY_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-q")
    result.assert_outcomes(passed=2)
