"""Webhook trust: no handshake signs a forged delivery, and every webhook parser is total.

* A challenge (CRC) token is a short run of URL-safe characters, checked in the
  SDK (:func:`hub.sdk.webhooks.challenge_token`) so every plugin gets it: X
  signs its CRC answer with the delivery key and format, so a JSON body sent as
  ``crc_token`` used to come back with a valid delivery signature.
* Any signed body gives 2xx or 4xx, never 500: checked for known bad bodies
  and with hypothesis over arbitrary JSON, for Typeform, X and HubSpot.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import plugins.crm_hubspot as hubspot_plugin
import plugins.survey_typeform as typeform_plugin
import plugins.twitter_webcare as twitter_plugin
from hub.sdk import FakeClock, WebhookRejected, WebhookRequest, subscription_challenge, webhooks
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from plugins.crm_hubspot.signatures import v3_signature
from plugins.twitter_webcare.emulator import BRAND_ID
from tests.conftest import TEST_NOW

X_SECRET = "x-consumer-secret"
TYPEFORM_SECRET = "typeform-secret"
HUBSPOT_SECRET = "hubspot-client-secret"
TYPEFORM_FORM = "lT4Z3j"
#: Hypothesis settings for the parser properties: deterministic and bounded, so the suite stays fast.
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def app(make_app):
    """One hub with an X source, a Typeform source and a HubSpot sink, all taking webhooks."""
    return make_app(
        plugins=(twitter_plugin, typeform_plugin, hubspot_plugin), load_entry_points=False,
        clock=FakeClock(TEST_NOW.timestamp()),
        sources={
            "webcare": {"plugin": "twitter_webcare", "bearer_token": "tok", "user_id": BRAND_ID,
                        "base_url": "http://127.0.0.1:9", "consumer_secret": X_SECRET},
            "nps": {"plugin": "survey_typeform", "form_id": TYPEFORM_FORM, "token": "tok",
                    "webhook_secret": TYPEFORM_SECRET, "base_url": "http://127.0.0.1:9"},
        },
        sinks={"hubspot": {"plugin": "crm_hubspot", "token": "tok", "base_url": "http://127.0.0.1:9",
                           "client_secret": HUBSPOT_SECRET}},
    )


@pytest.fixture
def client(app):
    return app.test_client()


def count(app, model) -> int:
    with app.extensions["hub"].db.Session() as s:
        return s.scalar(select(func.count()).select_from(model))


# -- signed posts, one helper per vendor (signatures computed by the kit, not the plugin) --------
def post_x(client, body: bytes):
    return post_webhook(client, "webcare", body, {"x-twitter-webhooks-signature": sign_hmac(X_SECRET, body)})


def post_typeform(client, body: bytes):
    return post_webhook(client, "nps", body, {"Typeform-Signature": sign_hmac(TYPEFORM_SECRET, body)})


def post_hubspot(client, body: bytes):
    ts = str(int(TEST_NOW.timestamp() * 1000))
    signature = v3_signature(HUBSPOT_SECRET, "POST", "http://localhost/webhooks/hubspot", body, ts)
    return post_webhook(client, "hubspot", body, {"X-HubSpot-Signature-v3": signature,
                                                  "X-HubSpot-Request-Timestamp": ts})


def complaint_delivery() -> bytes:
    """An AAA delivery of a public legal threat from a big account: what a forger would send."""
    tweet = {"id_str": "1865000000000000001", "text": "@acme ik stap naar de advocaat, oplichters! #fraude",
             "timestamp_ms": str(int(TEST_NOW.timestamp() * 1000)), "lang": "nl",
             "user": {"id_str": "999", "screen_name": "forger", "name": "Forger", "followers_count": 250000}}
    return json.dumps({"for_user_id": BRAND_ID, "tweet_create_events": [tweet]}).encode()


# -- 1. handshakes never sign or echo a delivery body ---------------------------------------------
@pytest.mark.parametrize("token", ["challenge_string", "NDIzMTI4NjUwNDAzNTc4MjQ2OA", "a-b_c.d~e+f/g==", "7" * 256])
def test_safe_challenge_tokens_are_accepted(token):
    assert webhooks.challenge_token(token) == token


@pytest.mark.parametrize("token", ["", None, "7" * 257, '{"a":1}', "[1]", '"quoted"', "two words", "a\nb", "tok\x00",
                                   "caf\u00e9", "a,b", "a:b"])
def test_unsafe_challenge_tokens_are_refused(token):
    with pytest.raises(WebhookRejected) as exc:
        webhooks.challenge_token(token, "crc_token")
    assert exc.value.status == 400
    assert "crc_token" in exc.value.reason


def test_subscription_challenge_does_not_echo_a_json_body():
    body = complaint_delivery().decode()
    req = WebhookRequest("GET", "", "", {}, {"hub.mode": "subscribe", "hub.challenge": body,
                                             "hub.verify_token": "vt"}, b"")
    with pytest.raises(WebhookRejected) as exc:
        subscription_challenge(req, "vt")
    assert exc.value.status == 400


def test_a_crc_answer_cannot_sign_a_forged_delivery(app, client):
    """The attack end to end: ask the CRC endpoint to sign a delivery body, then post it."""
    forged = complaint_delivery()
    crc = client.get(f"/webhooks/webcare?crc_token={quote(forged.decode(), safe='')}")
    assert crc.status_code == 400
    assert "response_token" not in (crc.get_json() or {})
    # Whatever the answer carried is no signature of the body.
    stolen = (crc.get_json() or {}).get("response_token", "")
    resp = post_webhook(client, "webcare", forged, {"x-twitter-webhooks-signature": stolen})
    assert resp.status_code == 401
    assert count(app, m.RawEvent) == 0
    assert count(app, m.FeedbackItem) == 0
    assert count(app, m.Case) == 0
    # The genuine check still works, and the same body signed with the real key is accepted.
    ok = client.get("/webhooks/webcare?crc_token=NDIzMTI4NjUwNDAzNTc4MjQ2OA")
    assert ok.status_code == 200
    assert ok.get_json()["response_token"] == sign_hmac(X_SECRET, "NDIzMTI4NjUwNDAzNTc4MjQ2OA")
    assert post_x(client, forged).status_code == 200


# -- 2. bodies that made a parser raise (answered 500) ---------------------------------------------
def typeform_event(**response) -> bytes:
    form_response = {"form_id": TYPEFORM_FORM, "token": "tok123", "submitted_at": "2026-11-20T11:00:00Z",
                     "answers": [], **response}
    return json.dumps({"event_id": "ev1", "event_type": "form_response", "form_response": form_response}).encode()


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("definition", [[1, 2], "a form", 7, True])
def test_typeform_definition_that_is_not_an_object_is_refused(app, client, definition):
    resp = post_typeform(client, typeform_event(definition=definition))
    assert resp.status_code == 400
    assert "definition" in resp.get_json()["error"]["message"]
    assert count(app, m.RawEvent) == 0


def test_typeform_form_id_that_is_not_text_is_refused(app, client):
    assert post_typeform(client, typeform_event(form_id=["lT4Z3j"])).status_code == 400
    assert count(app, m.RawEvent) == 0


def test_json_body_takes_nesting_up_to_the_limit():
    assert webhooks.json_body(deep(webhooks.MAX_JSON_DEPTH)) is not None
    with pytest.raises(WebhookRejected) as exc:
        webhooks.json_body(deep(webhooks.MAX_JSON_DEPTH + 1))
    assert exc.value.status == 400 and "deeper than" in exc.value.reason


def test_many_brackets_at_little_depth_are_within_the_limit():
    """More brackets than the limit (side by side, or inside strings) are no nesting."""
    wide = json.dumps({"answers": [{"choice": {"label": "{[" * 40}} for _ in range(100)]}).encode()
    assert len(webhooks.json_body(wide)["answers"]) == 100
    with pytest.raises(WebhookRejected):
        webhooks.json_body(json.dumps({"a": [{}] * 100, "b": json.loads(deep(webhooks.MAX_JSON_DEPTH + 1))}).encode())


@pytest.mark.parametrize("post", [post_x, post_typeform, post_hubspot], ids=["x", "typeform", "hubspot"])
@pytest.mark.parametrize("levels", [65, 900, 100_000])
def test_deeply_nested_bodies_are_refused(app, client, post, levels):
    resp = post(client, deep(levels))
    assert resp.status_code == 400
    assert count(app, m.RawEvent) == 0


@pytest.mark.parametrize("post", [post_x, post_typeform, post_hubspot], ids=["x", "typeform", "hubspot"])
def test_numbers_no_database_stores_are_refused(app, client, post):
    # 1e400 parses as infinity: stored as JSON it is "Infinity", which PostgreSQL refuses.
    resp = post(client, b'{"event_type": "form_response", "tweet_create_events": [], "objectId": 1e400}')
    assert resp.status_code == 400


@pytest.mark.parametrize("id_str", ["x" * 300, "12ab", "", "1" * 25])
def test_x_post_id_that_is_not_a_snowflake_is_refused(app, client, id_str):
    body = json.dumps({"for_user_id": BRAND_ID, "tweet_create_events": [{"id_str": id_str, "text": "hi"}]}).encode()
    assert post_x(client, body).status_code == 400
    assert count(app, m.RawEvent) == 0


def test_x_post_with_odd_field_types_is_kept_and_marked_failed(app, client):
    """A well-formed envelope whose post has odd fields: stored (acknowledged), then failed with a reason."""
    tweet = {"id_str": "1865000000000000002", "text": ["not", "text"], "user": "someone"}
    resp = post_x(client, json.dumps({"for_user_id": BRAND_ID, "tweet_create_events": [tweet]}).encode())
    assert resp.status_code == 200
    with app.extensions["hub"].db.Session() as s:
        (raw,) = s.scalars(select(m.RawEvent)).all()
        assert raw.status == "failed"
        assert raw.error  # the reason is kept (without the customer's text)
    assert count(app, m.FeedbackItem) == 0


def test_hubspot_events_with_odd_object_ids_are_ignored(client):
    events = [{"objectId": {"a": 1}, "propertyName": "hs_task_status", "propertyValue": "COMPLETED"},
              {"objectId": "x" * 500, "propertyName": "hs_task_status", "propertyValue": "COMPLETED"},
              {"objectId": 123, "propertyName": "hs_task_status", "propertyValue": "COMPLETED"}]
    resp = post_hubspot(client, json.dumps(events).encode())
    assert resp.status_code == 200
    assert resp.get_json()["completed_tasks"] == ["123"]


# -- 3. properties: any signed JSON gives 2xx or 4xx ----------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)


def fields(required: dict | None = None, **known) -> st.SearchStrategy:
    """An object with the vendor's field names, so parsers get past their first checks: ``required``
    keys always with a plausible value, the others optional with a plausible value or any JSON."""
    return st.fixed_dictionaries(required or {}, optional={k: v | anything for k, v in known.items()})


x_tweet = fields({"id_str": st.from_regex(r"[0-9]{1,19}", fullmatch=True)}, text=st.text(max_size=40),
                 timestamp_ms=st.integers(), created_at=st.text(max_size=40), lang=st.text(max_size=5),
                 user=fields(id_str=st.text(max_size=5), screen_name=st.text(max_size=20),
                             name=st.text(max_size=20), followers_count=st.integers()),
                 extended_tweet=fields(full_text=st.text(max_size=20), entities=anything),
                 entities=fields(urls=st.lists(fields(url=st.text(max_size=5), expanded_url=st.text(max_size=5)))),
                 in_reply_to_status_id_str=st.text(max_size=30), retweeted_status=anything)
x_bodies = anything | fields({"tweet_create_events": st.lists(x_tweet, max_size=3)}, for_user_id=st.just(BRAND_ID),
                             favorite_events=anything)

typeform_answer = fields(type=st.sampled_from(["text", "number", "choice", "email", "boolean"]),
                         field=fields(id=st.text(max_size=5), type=st.sampled_from(["nps", "long_text", "short_text"]),
                                      ref=st.text(max_size=5)),
                         text=st.text(max_size=20), number=st.integers() | st.floats(allow_nan=False),
                         email=st.text(max_size=20), choice=anything, boolean=st.booleans())
typeform_response = fields({"token": st.text(min_size=1, max_size=40)}, form_id=st.just(TYPEFORM_FORM),
                           submitted_at=st.sampled_from(["2026-11-20T11:00:00Z", "0001-01-01T00:00:00Z", "junk"]),
                           landed_at=st.text(max_size=25), definition=fields(id=st.text(max_size=8), fields=anything),
                           answers=st.lists(typeform_answer, max_size=4),
                           hidden=st.dictionaries(st.sampled_from(["email", "name", "case_id", "crm_id", "language"]),
                                                  anything, max_size=4))
typeform_bodies = anything | fields({"event_type": st.just("form_response"), "form_response": typeform_response},
                                    event_id=st.text(max_size=10))

hubspot_event = fields(objectId=st.integers() | st.text(max_size=25), propertyName=st.just("hs_task_status"),
                       propertyValue=st.just("COMPLETED"), subscriptionType=st.text(max_size=20))
hubspot_bodies = anything | st.lists(hubspot_event, max_size=4) | hubspot_event


def assert_answered(resp) -> None:
    assert resp.status_code < 500, resp.get_data(as_text=True)[:300]


@pytest.mark.fuzz
def test_x_webhook_answers_any_signed_json_without_a_server_error(client):
    @FUZZ
    @given(body=x_bodies)
    def check(body):
        assert_answered(post_x(client, json.dumps(body).encode()))

    check()


@pytest.mark.fuzz
def test_typeform_webhook_answers_any_signed_json_without_a_server_error(client):
    @FUZZ
    @given(body=typeform_bodies)
    def check(body):
        assert_answered(post_typeform(client, json.dumps(body).encode()))

    check()


@pytest.mark.fuzz
def test_hubspot_webhook_answers_any_signed_json_without_a_server_error(client):
    @FUZZ
    @given(body=hubspot_bodies)
    def check(body):
        assert_answered(post_hubspot(client, json.dumps(body).encode()))

    check()


@pytest.mark.fuzz
def test_webhooks_answer_any_signed_bytes_without_a_server_error(client):
    @FUZZ
    @given(body=st.binary(max_size=200), post=st.sampled_from([post_x, post_typeform, post_hubspot]))
    def check(body, post):
        assert_answered(post(client, body))

    check()


# -- the mapping functions: a FeedbackIn the database can store, or ValueError naming the problem -----
def assert_storable(item) -> None:
    assert isinstance(item.external_id, str) and 0 < len(item.external_id) <= 200
    assert item.text is None or isinstance(item.text, str)
    assert item.reach is None or (isinstance(item.reach, int) and 0 <= item.reach < 2**31)
    assert item.language is None or (isinstance(item.language, str) and len(item.language) <= 10)
    assert item.thread_id is None or len(item.thread_id) <= 200
    assert item.customer.name is None or (isinstance(item.customer.name, str) and len(item.customer.name) <= 200)
    for value in (item.customer.email, item.customer.crm_id, item.customer.phone):
        assert value is None or (isinstance(value, str) and len(value) <= 320)
    assert 1970 <= item.occurred_at.year < 2100


@pytest.mark.fuzz
@FUZZ
@given(tweet=x_tweet)
def test_x_v1_mapping_gives_storable_items_or_value_error(tweet):
    from plugins.twitter_webcare.mapping import BrandAccounts, from_v1

    try:
        produced = from_v1({"for_user_id": BRAND_ID, "tweet": tweet}, BrandAccounts(ids=frozenset({BRAND_ID})))
    except ValueError:
        return
    for item in produced:
        assert_storable(item)


@pytest.mark.fuzz
@FUZZ
@given(response=typeform_response)
def test_typeform_mapping_gives_storable_items_or_value_error(response):
    from plugins.survey_typeform.mapping import MappingConfig, ResponseMapper

    try:
        item = ResponseMapper(MappingConfig()).map(response, response.get("definition"))
    except ValueError:
        return
    assert_storable(item)


@pytest.mark.parametrize("fields", [{"timestamp_ms": "99999999999999"}, {"timestamp_ms": 10**30},
                                    {"timestamp_ms": ["1"]}, {"created_at": "Mon Jan 01 00:00:00 +0000 9999"},
                                    {"created_at": "Mon Jan 01 00:00:00 -2359 0001"}, {"created_at": 7},
                                    {"user": ["x"]}, {"text": {"a": 1}}, {"extended_tweet": "long"}])
def test_x_v1_mapping_refuses_times_and_types_out_of_range(fields):
    from plugins.twitter_webcare.mapping import BrandAccounts, from_v1

    with pytest.raises(ValueError):
        from_v1({"tweet": {"id_str": "1865000000000000003", "text": "storing", **fields}}, BrandAccounts())


def test_x_v1_mapping_keeps_only_sane_counts():
    from plugins.twitter_webcare.mapping import BrandAccounts, from_v1

    tweet = {"id_str": "1865000000000000003", "text": "storing", "lang": ["nl"],
             "user": {"screen_name": "jan", "followers_count": 2**40},
             "entities": {"urls": ["not an entity", {"url": 1, "expanded_url": "x"}]}}
    (item,) = from_v1({"tweet": tweet}, BrandAccounts())
    assert item.reach is None and item.language is None and item.text == "storing"


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_typeform_times_outside_what_the_hub_stores_are_no_time(text):
    from plugins.survey_typeform.mapping import parse_time

    assert parse_time(text) is None


x_v2_record = fields({"tweet": fields({"id": st.from_regex(r"[0-9]{1,19}", fullmatch=True)},
                                      text=st.text(max_size=40), created_at=st.sampled_from(
                                          ["2026-11-20T11:00:00.000Z", "0001-01-01T00:00:00+01:00", "junk"]),
                                      referenced_tweets=st.lists(fields(type=st.just("replied_to"))),
                                      entities=fields(urls=st.lists(anything)), conversation_id=st.text(max_size=30),
                                      lang=st.text(max_size=4))},
                     author=fields(username=st.text(max_size=15), name=st.text(max_size=20),
                                   public_metrics=fields(followers_count=st.integers())))


@pytest.mark.fuzz
@FUZZ
@given(record=x_v2_record)
def test_x_v2_mapping_gives_storable_items_or_value_error(record):
    from plugins.twitter_webcare.mapping import BrandAccounts, from_v2

    try:
        produced = from_v2(record, BrandAccounts(ids=frozenset({BRAND_ID})))
    except ValueError:
        return
    for item in produced:
        assert_storable(item)
