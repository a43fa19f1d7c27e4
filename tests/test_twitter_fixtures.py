"""Every real X payload in tests/fixtures/twitter is parsed, or its error
handled, as CONTRACTS.md §3 says.

API responses are served byte-for-byte by a stub server on 127.0.0.1 and read
through the real connector and the core's page loop; webhook payloads go
through ``/webhooks/<instance>`` signed like X signs them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import flask
import pytest
from sqlalchemy import func, select

import plugins.twitter_webcare as twitter_plugin
from hub.engine.pulls import pull
from hub.sdk import FakeClock, FatalError
from hub.storage import models as m
from plugins.twitter_webcare.budget import UsageCapExceeded
from plugins.twitter_webcare.webhook import SIGNATURE_HEADER, sign

FIXTURES = Path(__file__).parent / "fixtures" / "twitter"
SECRET = "consumer_secret_example"
#: Every fixture file and the test that covers it (checked below, so a new file needs a test).
COVERED: dict[str, str] = {}


def covers(*names: str):
    def mark(fn):
        for name in names:
            COVERED[name] = fn.__name__
        return fn
    return mark


def raw_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class StubX:
    """Serves queued (status, body bytes, headers) answers; records requests."""

    def __init__(self):
        self.queue: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[dict[str, str]] = []
        self.app = flask.Flask("stub-x")

        @self.app.get("/2/users/<uid>/mentions")
        @self.app.get("/2/tweets/search/recent")
        def serve(uid: str | None = None):
            self.requests.append({"path": flask.request.path, **flask.request.args.to_dict()})
            status, body, headers = self.queue.pop(0)
            return flask.Response(body, status=status, headers=headers, mimetype="application/json")

    def answer(self, name: str | bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = name if isinstance(name, bytes) else raw_bytes(name)
        self.queue.append((status, body, headers or {}))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def stub(live_server):
    s = StubX()
    s.url = live_server(s.app)
    return s


@pytest.fixture
def make_hub(make_app, clock, request):
    def build(**settings):
        # Only API tests start the stub server (each costs a server shutdown).
        url = request.getfixturevalue("stub").url if "stub" in request.fixturenames else "http://127.0.0.1:9"
        source = {"plugin": "twitter_webcare", "bearer_token": "tok", "base_url": url,
                  "consumer_secret": SECRET, **settings}
        app = make_app(plugins=(twitter_plugin,), load_entry_points=False, clock=clock, sources={"webcare": source})
        return app
    return build


def items(hub) -> list[m.FeedbackItem]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.FeedbackItem).order_by(m.FeedbackItem.external_id)))


def state(hub, stream: str) -> m.ConnectorState:
    with hub.db.Session() as s:
        return s.scalars(select(m.ConnectorState).where(m.ConnectorState.stream == stream)).one()


# -- API v2 pages --------------------------------------------------------------------------
@covers("tweepy_users_mentions_200.json", "tweepy_users_mentions_200_b.json", "tweepy_users_mentions_200.headers.json")
def test_real_mentions_pages_are_paged_and_stored(make_hub, stub):
    """Two real pages: next_token followed, 12 posts stored, rate-limit headers read."""
    cassette = json.loads(raw_bytes("tweepy_users_mentions_200.headers.json"))
    headers = {k: v[0] for k, v in cassette["headers"].items() if k.startswith("x-rate-limit")}
    assert headers["x-rate-limit-remaining"] == "448"
    stub.answer("tweepy_users_mentions_200.json", headers=headers)
    last_page = json.loads(raw_bytes("tweepy_users_mentions_200_b.json"))
    assert "next_token" in last_page["meta"]  # a real page 2 still has one; serve a final page without it
    del last_page["meta"]["next_token"]
    stub.answer(json.dumps(last_page).encode(), headers=headers)
    hub = make_hub(user_id="783214").extensions["hub"]

    report = pull(hub, "webcare")

    assert (report.pages, report.records, report.new_items) == (2, 12, 12)
    first, second = stub.requests
    assert first["path"] == "/2/users/783214/mentions" and "pagination_token" not in first
    assert second["pagination_token"] == "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j"
    assert first["expansions"] == "author_id" and "public_metrics" in first["user.fields"]
    assert {"created_at", "lang", "conversation_id", "referenced_tweets", "public_metrics"} <= set(
        first["tweet.fields"].split(","))
    stored = {i.external_id: i for i in items(hub)}
    post = stored["1578516295611748353"]
    assert post.text.startswith("@Twitter @TwitterSupport this is my ENTIRE feed")
    assert post.occurred_at.date() == dt.date(2022, 10, 7)  # from the snowflake: no created_at requested back
    assert post.customer_id is not None and post.reach is None  # no author expansion in this capture
    assert state(hub, "mentions:783214").cursor == "1578522401263919106"  # newest id over both pages
    health = hub.registry.connector("webcare").health()
    assert health["read_budget"]["posts_read"] == 12
    assert health["rate_limits"]["mentions"].startswith("448/450")


@covers("tweepy_search_recent_200.json")
def test_real_search_page(make_hub, stub):
    page = json.loads(raw_bytes("tweepy_search_recent_200.json"))
    stub.answer("tweepy_search_recent_200.json")
    stub.answer(json.dumps({"meta": {"result_count": 0}}).encode())  # what follows the real next_token
    hub = make_hub(queries=["Tweepy"]).extensions["hub"]

    report = pull(hub, "webcare")

    assert report.new_items == 10
    assert stub.requests[0]["query"] == "Tweepy" and "next_token" not in stub.requests[0]
    assert stub.requests[1]["next_token"] == page["meta"]["next_token"]  # search's own param name
    assert [i.external_id for i in items(hub)] == sorted(t["id"] for t in page["data"])


@covers("docs_mentions_expanded_example.json")
def test_docs_expanded_example_joins_the_author(make_hub, stub):
    doc = json.loads(raw_bytes("docs_mentions_expanded_example.json"))
    del doc["meta"]["next_token"]  # illustrative token; serve it as the only page
    stub.answer(json.dumps(doc).encode())
    hub = make_hub(user_id="2244994945").extensions["hub"]
    pull(hub, "webcare")
    [item] = items(hub)
    assert item.text == "Hey @XDevelopers, love the new API!"
    assert item.occurred_at == dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.UTC)
    assert item.url == "https://x.com/developer/status/1301573587187331074"
    assert item.extra["public_metrics"]["like_count"] == 42
    with hub.db.Session() as s:
        ident = s.scalars(select(m.Identity).where(m.Identity.customer_id == item.customer_id)).one()
    assert (ident.kind, ident.value) == ("x_handle", "developer")


@covers("tweepy_create_tweet_201.json", "tweepy_users_me_200.json")
def test_single_object_bodies(tmp_path):
    """``data`` as one object (post lookups/creation) parses as one record;
    a user object maps to identity the same way ``includes.users`` does."""
    from hub.sdk import Instance
    from plugins.twitter_webcare.connector import MentionsStream, TwitterConnector
    from plugins.twitter_webcare.mapping import author_ref

    conn = TwitterConnector(Instance("w", "twitter_webcare", "source", {
        "bearer_token": "t", "user_id": "1", "state_dir": str(tmp_path)}))

    class Resp:
        status_code = 201
        text = ""

        def json(self):
            return json.loads(raw_bytes("tweepy_create_tweet_201.json"))

    [record] = MentionsStream(conn, "1").parse_records(Resp())
    assert record["tweet"]["id"] == "1456012973835788293"
    assert conn.normalize(MentionsStream(conn, "1").to_raw(record, Resp()))[0].text == "Test Tweet"
    customer, reach = author_ref(json.loads(raw_bytes("tweepy_users_me_200.json"))["data"])
    assert (customer.handles, customer.name, reach) == ((("x_handle", "TweepyDev"),), "Tweepy Testing", None)


# -- API errors ------------------------------------------------------------------------------
@covers("error_400_invalid_request_search_operator.json", "error_400_invalid_request_ids.json")
@pytest.mark.parametrize("name, needle", [
    ("error_400_invalid_request_search_operator.json", "Reference to invalid operator 'point_radius'"),
    ("error_400_invalid_request_ids.json", "The ids query parameter can not be empty"),
])
def test_invalid_request_is_fatal_and_recorded(make_hub, stub, name, needle):
    stub.answer(name, status=400)
    hub = make_hub(queries=["judell point_radius:[-105.292778 40.019444 25mi]"]).extensions["hub"]
    with pytest.raises(FatalError) as err:
        pull(hub, "webcare")
    assert err.value.status == 400 and len(stub.requests) == 1  # not retried
    [stream] = [s.name for s in hub.registry.connector("webcare").streams()]
    assert needle in state(hub, stream).last_error


@covers("error_429_too_many_requests.json")
def test_rate_limit_429_waits_for_the_reset_then_succeeds(make_hub, stub, clock):
    reset = int(clock.now) + 600
    stub.answer("error_429_too_many_requests.json", status=429,
                headers={"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)})
    page = json.loads(raw_bytes("tweepy_users_mentions_200_b.json"))
    del page["meta"]["next_token"]  # serve it as the last page
    stub.answer(json.dumps(page).encode())
    hub = make_hub(user_id="783214").extensions["hub"]

    report = pull(hub, "webcare")

    assert report.new_items == 2 and len(stub.requests) == 2
    assert clock.now >= reset  # waited for the window, not a blind backoff
    assert sum(clock.sleeps) == pytest.approx(reset + 1 - 1_800_000_000, abs=1)


@covers("error_429_usage_capped.json")
def test_usage_cap_is_fatal_not_retried_and_shown(make_hub, stub, clock):
    reset = int(clock.now) + 600
    stub.answer("error_429_usage_capped.json", status=429,
                headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)})
    hub = make_hub(user_id="783214").extensions["hub"]

    with pytest.raises(UsageCapExceeded):
        pull(hub, "webcare")
    assert len(stub.requests) == 1 and clock.sleeps == []  # no retry, no wait for the window
    assert "usage cap" in state(hub, "mentions:783214").last_error.lower()
    assert "standard-basic" in state(hub, "mentions:783214").last_error

    with pytest.raises(UsageCapExceeded):  # later pulls keep failing without calling X
        pull(hub, "webcare")
    assert len(stub.requests) == 1
    budget = hub.registry.connector("webcare").health()["read_budget"]
    assert budget["state"] == "usage-capped" and budget["resumes_at"].startswith("2027-02-01")


# -- Account Activity webhook payloads ----------------------------------------------------------
def post_signed(client, body: bytes, secret: str = SECRET):
    return client.post("/webhooks/webcare", data=body, content_type="application/json",
                       headers={SIGNATURE_HEADER: sign(secret, body)})


@covers("aaa_tweet_create_events_mention_real_capture.json")
def test_real_aaa_delivery_becomes_an_item(make_hub):
    app = make_hub(user_id="2244994945")
    hub = app.extensions["hub"]
    resp = post_signed(app.test_client(), raw_bytes("aaa_tweet_create_events_mention_real_capture.json"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["stored"] == 1
    [item] = items(hub)
    assert item.external_id == "1179790868309368834"  # id_str, not the rounded number
    assert item.text.startswith("여유로워서") and item.text.endswith("@cmsn_d @cmsn_M @cmsn_RT @cmsn_w")
    assert "https://t.co/" not in item.text  # extended full text, not the truncated one
    assert item.language == "ko" and item.reach == 20
    assert item.occurred_at == dt.datetime.fromtimestamp(1570119037.116, dt.UTC)
    assert item.url == "https://x.com/kim_jakup/status/1179790868309368834"
    assert item.extra["referenced_tweets"] == [{"type": "quoted", "id": "1177845435857133568"}]
    assert item.extra["for_user_id"] == "1014719446525476864"


@covers("from_docs/aaa_tweet_create_events_longform.json")
def test_docs_longform_delivery_uses_full_text(make_hub):
    app = make_hub(user_id="2244994945")
    resp = post_signed(app.test_client(), raw_bytes("from_docs/aaa_tweet_create_events_longform.json"))
    assert resp.status_code == 200
    [item] = items(app.extensions["hub"])
    assert item.external_id == "1924465506158878979"
    assert item.text.endswith("off the Greek island of Antikythera...")
    assert item.url == "https://x.com/i/web/status/1924465506158878979"  # the docs left the user out


@covers("from_docs/aaa_tweet_create_events_longform.as_published.txt",
        "from_docs/aaa_tweet_create_events_mention_envelope.as_published.txt")
@pytest.mark.parametrize("name", ["from_docs/aaa_tweet_create_events_longform.as_published.txt",
                                  "from_docs/aaa_tweet_create_events_mention_envelope.as_published.txt"])
def test_not_json_deliveries_are_refused(make_hub, name):
    app = make_hub(user_id="2244994945")
    resp = post_signed(app.test_client(), raw_bytes(name))
    assert resp.status_code == 400
    with app.extensions["hub"].db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.RawEvent)) == 0


@covers("docs_aaa_direct_message_events.json")
@pytest.mark.parametrize("name, kind", [("docs_aaa_direct_message_events.json", "direct_message_events")])
def test_other_aaa_events_are_acknowledged_and_ignored(make_hub, name, kind):
    app = make_hub(user_id="2244994945")
    resp = post_signed(app.test_client(), raw_bytes(name))
    assert resp.status_code == 200
    assert resp.get_json()["ignored"] == [kind]
    with app.extensions["hub"].db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.RawEvent)) == 0


@covers("docs_aaa_tweet_delete_events.json", "docs_aaa_user_event_revoke.json")
@pytest.mark.parametrize("name, key", [("docs_aaa_tweet_delete_events.json", "delete:1045405559317569537"),
                                       ("docs_aaa_user_event_revoke.json", "revoke:63046977")])
def test_deletes_and_revokes_become_erase_requests(make_hub, name, key):
    """X's policy: a deleted post, or a user's revoked access, erases their posts here too (tests/test_gdpr.py)."""
    app = make_hub(user_id="2244994945")
    resp = post_signed(app.test_client(), raw_bytes(name))
    assert resp.status_code == 200 and resp.get_json()["ignored"] == []
    with app.extensions["hub"].db.Session() as s:
        (raw,) = s.scalars(select(m.RawEvent)).all()
    assert (raw.kind, raw.dedupe_key, raw.status) == ("erase_request", key, "processed")


def test_every_fixture_file_is_covered():
    files = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"}
    assert files == set(COVERED), f"fixtures without a test: {sorted(files - set(COVERED))}"
