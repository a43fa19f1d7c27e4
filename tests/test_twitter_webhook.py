"""Account Activity webhook: CRC challenge, signatures, event handling."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

import plugins.twitter_webcare as twitter_plugin
from hub.sdk import FakeClock, Instance, WebhookRejected, WebhookRequest
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from plugins.twitter_webcare.connector import TwitterConnector
from plugins.twitter_webcare.emulator import BRAND_ID, XEmulator
from plugins.twitter_webcare.webhook import SIGNATURE_HEADER, crc_response_token

VECTOR_SECRET = "consumer_secret_example"
VECTOR_TOKEN = "challenge_string"
VECTOR_ANSWER = "sha256=jbXKbME72EP4whP7Jiwf8KJkZpedcmIvi6wGXiUuI/w="  # CONTRACTS.md §3.6


def test_crc_matches_the_documented_vector():
    assert crc_response_token(VECTOR_SECRET, VECTOR_TOKEN) == VECTOR_ANSWER
    # ...and is the documented algorithm, not just a memorised string
    assert crc_response_token("another secret", "another-token") == sign_hmac("another secret", "another-token")


@pytest.fixture
def app(make_app):
    source = {"plugin": "twitter_webcare", "bearer_token": "tok", "user_id": BRAND_ID, "base_url": "http://127.0.0.1:9"}
    return make_app(plugins=(twitter_plugin,), load_entry_points=False, clock=FakeClock(),
                    sources={"webcare": {**source, "consumer_secret": VECTOR_SECRET}, "nohook": source})


def stored(app) -> list[m.RawEvent]:
    with app.extensions["hub"].db.Session() as s:
        return list(s.scalars(select(m.RawEvent)))


def test_crc_get_through_the_hub(app):
    resp = app.test_client().get(f"/webhooks/webcare?crc_token={VECTOR_TOKEN}")
    assert resp.status_code == 200
    assert resp.get_json() == {"response_token": VECTOR_ANSWER}
    assert app.test_client().get("/webhooks/webcare").status_code == 400


def test_instance_without_consumer_secret_takes_no_webhooks(app):
    assert app.test_client().get(f"/webhooks/nohook?crc_token={VECTOR_TOKEN}").status_code == 404


def delivery(emu: XEmulator, posts) -> bytes:
    return json.dumps(emu.aaa_payload(posts)).encode()


@pytest.fixture
def emu():
    e = XEmulator(clock=FakeClock(), populate=False)
    e.customer = e.add_user("4242", "jan_devries", "Jan de Vries", followers=2500)
    return e


@pytest.mark.parametrize("headers", [{}, {SIGNATURE_HEADER: "sha256=AAAA"},
                                     {SIGNATURE_HEADER: sign_hmac("the wrong secret", b"x")}])
def test_missing_or_bad_signature_is_401_and_stores_nothing(app, emu, headers):
    body = delivery(emu, [emu.post(emu.customer, "@acme storing")])
    resp = post_webhook(app.test_client(), "webcare", body, headers)
    assert resp.status_code == 401
    assert stored(app) == []


def test_signature_is_over_the_exact_bytes(app, emu):
    body = delivery(emu, [emu.post(emu.customer, "@acme storing")])
    signature = sign_hmac(VECTOR_SECRET, body)
    reformatted = json.dumps(json.loads(body), indent=2).encode()  # same JSON, other bytes
    resp = post_webhook(app.test_client(), "webcare", reformatted, {SIGNATURE_HEADER: signature})
    assert resp.status_code == 401


def test_signed_delivery_maps_like_a_polled_post(app, emu):
    post = emu.post(emu.customer, "@acme storing sinds vanochtend, zie", link="https://acme.example/storing")
    body = delivery(emu, [post])
    resp = post_webhook(app.test_client(), "webcare", body, {SIGNATURE_HEADER: sign_hmac(VECTOR_SECRET, body)})
    assert resp.status_code == 200
    assert resp.get_json()["stored"] == 1 and resp.get_json()["tweets"] == 1
    with app.extensions["hub"].db.Session() as s:
        item = s.scalars(select(m.FeedbackItem)).one()
        handle = s.scalars(select(m.Identity.value).where(m.Identity.customer_id == item.customer_id)).one()
    assert item.external_id == post.id
    assert item.text == "@acme storing sinds vanochtend, zie https://acme.example/storing"
    assert item.reach == 2500 and handle == "jan_devries"
    assert item.channel == "social" and item.language == "nl"


def test_own_posts_and_retweets_from_the_webhook_are_skipped(app, emu):
    mine = emu.post(emu.brand, "Excuses voor de storing!")
    rt = emu.post(emu.customer, "", retweet=emu.post(emu.add_user("9", "x", "X", 10), "@acme help"))
    body = delivery(emu, [mine, rt])
    resp = post_webhook(app.test_client(), "webcare", body, {SIGNATURE_HEADER: sign_hmac(VECTOR_SECRET, body)})
    assert resp.status_code == 200
    assert sorted(r.status for r in stored(app)) == ["skipped", "skipped"]
    with app.extensions["hub"].db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.FeedbackItem)) == 0


def test_put_is_refused(tmp_path):
    conn = TwitterConnector(Instance("w", "twitter_webcare", "source", {
        "bearer_token": "t", "user_id": "1", "consumer_secret": "s", "state_dir": str(tmp_path)}))
    with pytest.raises(WebhookRejected) as err:
        conn.handle_webhook(WebhookRequest("PUT", "u", "/webhooks/w", {}, {}, b""))
    assert err.value.status == 405
    # plain-dict headers in any case are accepted
    body = b'{"for_user_id": "1", "tweet_create_events": []}'
    ok = conn.handle_webhook(WebhookRequest("POST", "u", "/webhooks/w", {"X-Twitter-Webhooks-Signature": sign_hmac("s", body)},
                                            {}, body))
    assert ok.status == 200 and ok.raw_events == []
