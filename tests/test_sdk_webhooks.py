"""The SDK's webhook helpers (:mod:`hub.sdk.webhooks`): signatures, headers, timestamps,
handshakes - and a small plugin using them behind the hub's real ``/webhooks/<instance>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import Headers

from hub.sdk import (
    FakeClock,
    FeedbackIn,
    RawIn,
    Setting,
    SourceConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
    check_timestamp,
    hmac_b64,
    hmac_hex,
    hmac_matches,
    hookimpl,
    subscription_challenge,
    verify_hmac,
    webhooks,
)
from hub.storage import models as m
from tests.conftest import fixture_path

FEED_DELIVERY = fixture_path("facebook/webhook_feed_status_add_dashboard_sample.json").read_bytes()
SECRET = "test-app-secret"


def stdlib_hmac(secret: str, body: bytes, algorithm=hashlib.sha256) -> bytes:
    """The expected digest computed independently of the helpers under test."""
    return hmac.new(secret.encode(), body, algorithm).digest()


def request(method="POST", headers=None, args=None, body=b"") -> WebhookRequest:
    return WebhookRequest(method=method, url="http://hub/webhooks/x", path="/webhooks/x", headers=headers or {},
                          args=args or {}, body=body)


# -- headers --------------------------------------------------------------------------
def test_header_lookup_ignores_case_on_plain_dicts_and_werkzeug_headers():
    assert webhooks.header({"x-hub-signature-256": "sha256=ab"}, "X-Hub-Signature-256") == "sha256=ab"
    assert webhooks.header(Headers({"X-Hub-Signature-256": "v"}), "x-hub-signature-256") == "v"
    assert webhooks.header({"Other": "v"}, "X-Hub-Signature-256") is None


# -- signatures -----------------------------------------------------------------------
def test_hex_and_base64_values_match_the_standard_library():
    digest = stdlib_hmac(SECRET, FEED_DELIVERY)
    assert hmac_hex(SECRET, FEED_DELIVERY) == digest.hex()
    assert hmac_b64(SECRET, FEED_DELIVERY) == base64.b64encode(digest).decode()
    assert webhooks.sign(SECRET, FEED_DELIVERY, prefix="sha256=") == "sha256=" + digest.hex()
    sha1 = stdlib_hmac(SECRET, FEED_DELIVERY, hashlib.sha1)
    assert webhooks.sign(SECRET, FEED_DELIVERY, algorithm="sha1", prefix="sha1=") == "sha1=" + sha1.hex()
    with pytest.raises(ValueError, match="unsupported"):
        hmac_hex(SECRET, b"x", algorithm="md5")


def test_a_graph_style_signature_over_the_raw_delivery_verifies():
    header_value = "sha256=" + stdlib_hmac(SECRET, FEED_DELIVERY).hex()
    verify_hmac(SECRET, FEED_DELIVERY, header_value, prefix="sha256=", header_name="X-Hub-Signature-256")
    verify_hmac(SECRET, FEED_DELIVERY, header_value.upper().replace("SHA256=", "sha256="), prefix="sha256=")
    verify_hmac(SECRET, FEED_DELIVERY, f"  {header_value}\n", prefix="sha256=")  # proxies add whitespace


@pytest.mark.parametrize("signature, reason", [
    (None, "missing X-Hub-Signature-256 header"),
    ("", "missing X-Hub-Signature-256 header"),
    ("sha256=" + "0" * 64, "does not match the body"),
    ("sha1=" + stdlib_hmac(SECRET, FEED_DELIVERY).hex(), "expected sha256= + hex HMAC-SHA256"),
    (stdlib_hmac(SECRET, FEED_DELIVERY).hex(), "does not match"),  # prefix left out
    ("sha256=" + base64.b64encode(stdlib_hmac(SECRET, FEED_DELIVERY)).decode(), "does not match"),  # wrong encoding
    ("sha256=not-hex-at-all", "does not match"),
    ("sha256=" + stdlib_hmac("other-secret", FEED_DELIVERY).hex(), "does not match"),
])
def test_bad_signatures_are_refused_with_a_reason(signature, reason):
    with pytest.raises(WebhookRejected) as err:
        verify_hmac(SECRET, FEED_DELIVERY, signature, prefix="sha256=", header_name="X-Hub-Signature-256")
    assert err.value.status == 401 and reason in err.value.reason
    assert SECRET not in err.value.reason


def test_a_tampered_body_does_not_match_and_base64_is_exact():
    good = "sha256=" + hmac_b64(SECRET, FEED_DELIVERY)
    assert hmac_matches(SECRET, FEED_DELIVERY, good, encoding="base64", prefix="sha256=")
    tampered = FEED_DELIVERY.replace(b"Example post content.", b"Example post content!")
    assert not hmac_matches(SECRET, tampered, good, encoding="base64", prefix="sha256=")
    assert not hmac_matches(SECRET, FEED_DELIVERY, good.rstrip("="), encoding="base64", prefix="sha256=")
    assert not hmac_matches(SECRET, FEED_DELIVERY, None)


# -- timestamps -----------------------------------------------------------------------
def test_timestamps_older_than_the_window_or_far_ahead_are_refused():
    clock = FakeClock(1_700_000_000.0)
    assert check_timestamp("1700000000000", clock, unit="ms") == 1_700_000_000.0
    assert check_timestamp(1_699_999_701, clock, max_age=300) == 1_699_999_701
    with pytest.raises(WebhookRejected, match="older than 5 minutes"):
        check_timestamp(1_699_999_699, clock, max_age=300, header_name="X-Request-Timestamp")
    with pytest.raises(WebhookRejected, match="future"):
        check_timestamp(1_700_000_301, clock, max_age=300)
    assert check_timestamp(1_700_000_301, clock, max_age=300, max_future=600)
    with pytest.raises(WebhookRejected, match="not a number"):
        check_timestamp("yesterday", clock)
    with pytest.raises(WebhookRejected, match="missing X-Request-Timestamp"):
        check_timestamp(None, clock, header_name="X-Request-Timestamp")
    clock.sleep(301)  # the same delivery five minutes later is a replay
    with pytest.raises(WebhookRejected) as err:
        check_timestamp("1700000000000", clock, unit="ms")
    assert err.value.status == 401


# -- subscription handshake -------------------------------------------------------------
def docs_verification_args() -> dict[str, str]:
    """The query of Meta's published sample verification request."""
    text = fixture_path("facebook/webhook_verification_request_docs.txt").read_text()
    url = "".join(line.strip() for line in text.splitlines()).removeprefix("GET ")
    return dict(parse_qsl(urlsplit(url).query))


def test_the_docs_handshake_echoes_the_challenge_as_plain_text():
    args = docs_verification_args()
    assert args["hub.mode"] == "subscribe"
    result = subscription_challenge(request("GET", args=args), "meatyhamhock")
    assert result.status == 200 and result.body == args["hub.challenge"] == "1158201444"
    assert result.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("args, token, status, reason", [
    ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "guess"}, "meatyhamhock", 403,
     "does not match"),
    ({"hub.mode": "subscribe", "hub.challenge": "1"}, "meatyhamhock", 403, "does not match"),
    ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "x"}, None, 403, "no verify token"),
    ({"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": "meatyhamhock"}, "meatyhamhock", 400,
     "hub.mode=subscribe"),
    ({}, "meatyhamhock", 400, "expected ?hub.mode"),
])
def test_handshakes_with_a_wrong_token_or_shape_are_refused(args, token, status, reason):
    with pytest.raises(WebhookRejected) as err:
        subscription_challenge(request("GET", args=args), token)
    assert err.value.status == status and reason in err.value.reason


# -- a plugin on the helpers, behind the hub's real endpoint ----------------------------------
class PageFeedConnector(SourceConnector):
    """A Graph-style webhook source written only with the helpers."""

    plugin_name = "test_page_feed"
    settings = [Setting("app_secret", secret=True), Setting("verify_token", secret=True)]

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        if request.method == "GET":
            return subscription_challenge(request, self.config.get("verify_token"))
        verify_hmac(self.config["app_secret"], request.body, webhooks.header(request.headers, "X-Hub-Signature-256"),
                    prefix="sha256=", header_name="X-Hub-Signature-256")
        event = webhooks.json_body(request)
        values = [c["value"] for e in event.get("entry", []) for c in e.get("changes", [])]
        return WebhookResult(raw_events=[RawIn(payload=v, dedupe_key=v["post_id"], kind="feed") for v in values])

    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        return []


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [PageFeedConnector]


@pytest.fixture
def client(make_app):
    app = make_app(plugins=(Plugin(),),
                   sources={"fb": {"plugin": "test_page_feed", "app_secret": SECRET, "verify_token": "meatyhamhock"}})
    return app.test_client(), app.extensions["hub"]


def raw_count(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.RawEvent))


def test_the_hub_endpoint_answers_the_handshake_and_takes_only_signed_deliveries(client):
    http, hub = client
    answer = http.get("/webhooks/fb", query_string=docs_verification_args())
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "1158201444"
    assert answer.mimetype == "text/plain"
    refused = http.get("/webhooks/fb", query_string={**docs_verification_args(), "hub.verify_token": "guess"})
    assert refused.status_code == 403

    forged = http.post("/webhooks/fb", data=FEED_DELIVERY, headers={"X-Hub-Signature-256": "sha256=" + "1" * 64})
    assert forged.status_code == 401 and "does not match" in forged.get_json()["error"]["message"]
    assert raw_count(hub) == 0

    signed = {"x-hub-signature-256": "sha256=" + stdlib_hmac(SECRET, FEED_DELIVERY).hex()}
    ok = http.post("/webhooks/fb", data=FEED_DELIVERY, headers=signed)
    assert ok.status_code == 200 and ok.get_json()["stored"] == 1 and raw_count(hub) == 1
    bad_json = b"{not json"
    junk = http.post("/webhooks/fb", data=bad_json,
                     headers={"X-Hub-Signature-256": "sha256=" + stdlib_hmac(SECRET, bad_json).hex()})
    assert junk.status_code == 400 and "not valid JSON" in junk.get_json()["error"]["message"]
