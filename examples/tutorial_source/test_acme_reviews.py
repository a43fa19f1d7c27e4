"""Tests of the acme_reviews source, against a fake Acme Reviews API on loopback.

The fixtures make_hub, fake_vendor and fake_clock come with feedback-hub
(its pytest plugin, hub.sdk.testing): nothing to copy, no conftest needed.
"""

from __future__ import annotations

import json

import acme_reviews
import pytest

from hub.sdk.testing import Reply, sign_hmac

SECRET = "whsec-acme"
REVIEWS = "/v1/products/p-1/reviews"


def review(n: int, stars: int = 1, **extra) -> dict:
    return {"id": f"r{n}", "stars": stars, "body": f"Review {n}: de levering duurde drie weken.", "language": "nl",
            "created_at": f"2026-11-19T0{n}:00:00+00:00", "updated_at": f"2026-11-19T0{n}:30:00+00:00",
            "author": {"id": 700 + n, "name": f"Reviewer {n}", "email": f"reviewer{n}@example.nl"}, **extra}


def page(*reviews: dict, next_cursor: str, has_more: bool) -> dict:
    return {"reviews": list(reviews), "next_cursor": next_cursor, "has_more": has_more}


@pytest.fixture
def start(make_hub, fake_vendor, monkeypatch):
    monkeypatch.setenv("ACME_REVIEWS_TOKEN", "t0ken")

    def start(**settings):
        """A hub with one acme_reviews source named "reviews"; a setting given as None is left out."""
        source = {"plugin": "acme_reviews", "token": "env:ACME_REVIEWS_TOKEN", "product_id": "p-1",
                  "webhook_secret": SECRET, "base_url": fake_vendor.url, **settings}
        source = {key: value for key, value in source.items() if value is not None}
        return make_hub(plugins=[acme_reviews], sources={"reviews": source})

    return start


# -- pulling -----------------------------------------------------------------
def test_a_pull_reads_every_page_and_the_next_pull_starts_at_the_cursor(start, fake_vendor):
    fake_vendor.route("GET", REVIEWS, pages=[
        page(review(1), review(2, stars=5), next_cursor="c2", has_more=True),
        page(review(3), next_cursor="c3", has_more=False),  # a cursor on the last page too: has_more decides
        page(next_cursor="c4", has_more=False),  # the second pull finds nothing new
    ])
    hub = start(page_size=2)
    report = hub.pull("reviews")
    assert (report.pages, report.new_items) == (2, 3)
    items = hub.feedback()
    assert [i["external_id"] for i in items] == ["r1", "r2", "r3"]
    assert [i["sentiment"] for i in items] == [-1.0, 1.0, -1.0]
    assert {i["channel"] for i in items} == {"social"}

    assert hub.pull("reviews").new_items == 0
    sent = [r.args for r in fake_vendor.calls("GET", REVIEWS)]
    assert sent == [
        {"sort": "updated_at", "limit": "2"},
        {"sort": "updated_at", "limit": "2", "cursor": "c2"},
        {"sort": "updated_at", "limit": "2", "updated_after": "2026-11-19T03:30:00+00:00"},
    ]
    assert fake_vendor.requests[0].headers["Authorization"] == "Bearer t0ken"


def test_a_429_is_retried_after_the_wait_acme_asks_for(start, fake_vendor, fake_clock):
    fake_vendor.route("GET", REVIEWS, replies=[
        Reply(429, {"error": "too many requests"}, headers={"Retry-After": "30"}),
        Reply(200, page(review(1), next_cursor="c2", has_more=False)),
    ])
    hub = start()
    assert hub.pull("reviews").new_items == 1
    assert fake_clock.sleeps == [30.0]  # waited on the hub's clock: the test did not sleep


def test_removed_reviews_are_kept_as_raw_events_but_make_no_item(start, fake_vendor):
    fake_vendor.route("GET", REVIEWS, pages=[
        page(review(1), review(2, status="removed"), next_cursor="c2", has_more=False)])
    hub = start()
    report = hub.pull("reviews")
    assert (report.records, report.new_items) == (2, 1)
    assert [i["external_id"] for i in hub.feedback()] == ["r1"]


def test_a_reviewer_is_one_customer_known_by_their_acme_id(start, fake_vendor):
    anonymous = {"id": 777, "name": "Anoniem"}  # no e-mail: only Acme's id says it is the same person
    fake_vendor.route("GET", REVIEWS, pages=[
        page(review(1, author=anonymous), review(2, author=anonymous), next_cursor="c2", has_more=False)])
    hub = start()
    hub.pull("reviews")
    first, second = hub.feedback()
    assert first["customer_id"] == second["customer_id"]
    customer = hub.api_get(f"/customers/{first['customer_id']}")
    assert [(i["kind"], i["value"]) for i in customer["identities"]] == [("acme_reviewer", "777")]


# -- webhooks ----------------------------------------------------------------
def delivery(body: bytes, timestamp: float, secret: str = SECRET) -> dict[str, str]:
    """The headers Acme sends with ``body``: the time, and the signature of "<time>.<body>"."""
    stamp = str(int(timestamp))
    return {"X-Acme-Timestamp": stamp,
            "X-Acme-Signature": sign_hmac(secret, f"{stamp}.".encode() + body, encoding="hex")}


def event(n: int) -> bytes:
    return json.dumps({"type": "review.created", "review": review(n)}).encode()


def test_a_signed_webhook_is_stored_once_even_when_the_pull_brings_it_too(start, fake_vendor, fake_clock):
    hub = start()
    answer = hub.post_webhook("reviews", event(1), delivery(event(1), fake_clock.time()))
    assert answer.status_code == 200 and answer.get_json()["stored"] == 1
    assert [i["external_id"] for i in hub.feedback()] == ["r1"]

    fake_vendor.route("GET", REVIEWS, pages=[page(review(1), next_cursor="c2", has_more=False)])
    assert hub.pull("reviews").duplicates == 1
    assert len(hub.feedback()) == 1


@pytest.mark.parametrize("case, body, headers, reason", [
    ("wrong secret", event(1), lambda now: delivery(event(1), now, secret="guess"), "X-Acme-Signature does not match"),
    ("tampered body", event(2), lambda now: delivery(event(1), now), "X-Acme-Signature does not match"),
    ("unsigned", event(1), lambda now: {}, "missing X-Acme-Signature"),
    ("replayed an hour later", event(1), lambda now: delivery(event(1), now - 3600), "older than 5 minutes"),
])
def test_a_bad_delivery_is_refused_and_stores_nothing(start, fake_clock, case, body, headers, reason):
    hub = start()
    answer = hub.post_webhook("reviews", body, headers(fake_clock.time()))
    assert answer.status_code == 401, case
    assert reason in answer.get_json()["error"]["message"]
    assert hub.feedback() == []


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"type": "review.created"}',
                                  b'{"type": "review.created", "review": {"id": [1]}}', b"{not json"])
def test_a_signed_but_malformed_delivery_gets_400_and_stores_nothing(start, fake_clock, body):
    hub = start()
    answer = hub.post_webhook("reviews", body, delivery(body, fake_clock.time()))
    assert answer.status_code == 400 and hub.feedback() == []


def test_other_events_are_acknowledged_and_ignored(start, fake_clock):
    hub = start()
    body = json.dumps({"type": "product.renamed", "product": {"id": "p-1"}}).encode()
    answer = hub.post_webhook("reviews", body, delivery(body, fake_clock.time()))
    assert answer.get_json() == {"ok": True, "ignored": "product.renamed"} and hub.feedback() == []


def test_without_a_webhook_secret_every_delivery_is_refused(start, fake_clock):
    hub = start(webhook_secret=None)
    answer = hub.post_webhook("reviews", event(1), delivery(event(1), fake_clock.time()))
    assert answer.status_code == 401 and hub.feedback() == []


# -- settings ----------------------------------------------------------------
@pytest.mark.parametrize("settings, problem", [
    ({"page_size": 500}, "sources.reviews.page_size"),
    ({"product_id": None}, "sources.reviews.product_id: missing"),
    ({"colour": "red"}, "sources.reviews.colour: unknown setting"),
])
def test_bad_settings_stop_the_start_naming_the_key(start, settings, problem):
    with pytest.raises(Exception, match=problem):
        start(**settings)
