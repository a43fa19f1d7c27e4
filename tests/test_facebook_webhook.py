"""Graph feed webhooks at /webhooks/<instance>: the subscription handshake,
X-Hub-Signature-256, add / edited / remove, and one item per comment however
it arrives.

The handshake replays Meta's documented sample request; deliveries replay the
App Dashboard sample and the recorded 2013 deliveries.  No published example
of a current comment delivery, nor of ``edited`` / ``remove``, exists (see
``tests/fixtures/facebook/PROVENANCE.md``): those are built from the field
list of Meta's Page webhook reference, the same way the emulator sends them.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

import plugins.social_facebook as facebook_plugin
from hub.engine.pipeline import Entry, Pipeline
from hub.engine.pulls import pull
from hub.sdk import FakeClock, FeedbackIn
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from tests.conftest import TEST_NOW, fixture_path

PAGE_ID = "500158316696377"
APP_SECRET = "app-secret-for-tests"
VERIFY_TOKEN = "meatyhamhock"  # the docs' sample verify token


def fixture_bytes(name: str) -> bytes:
    return fixture_path(f"facebook/{name}").read_bytes()


@pytest.fixture
def app(make_app, fake_vendor):
    source = {"plugin": "social_facebook", "page_id": PAGE_ID, "page_token": "tok", "base_url": fake_vendor.url,
              "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN}
    return make_app(plugins=(facebook_plugin,), load_entry_points=False, clock=FakeClock(TEST_NOW.timestamp()),
                    sources={"facebook": source, "dashboard_test": {**source, "page_id": "0"},
                             "unsigned": {k: v for k, v in source.items() if k not in ("app_secret", "verify_token")}})


def items(app, source: str = "facebook") -> list[m.FeedbackItem]:
    with app.extensions["hub"].db.Session() as s:
        return list(s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.source == source)
                              .order_by(m.FeedbackItem.id)))


def api_items(app) -> list[dict]:
    """The items as GET /api/v1/feedback shows them (validated against the OpenAPI document elsewhere)."""
    from tests.helpers import bearer

    answer = app.test_client().get("/api/v1/feedback", headers=bearer(app.extensions["hub"]))
    assert answer.status_code == 200
    return answer.get_json()["items"]


def raw_events(app) -> list[m.RawEvent]:
    with app.extensions["hub"].db.Session() as s:
        return list(s.scalars(select(m.RawEvent)))


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign_hmac(secret, body, encoding="hex", prefix="sha256="),
            "Content-Type": "application/json"}


def change(value: dict, page_id: str = PAGE_ID) -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": page_id, "time": 1795168800,
                                                    "changes": [{"field": "feed", "value": value}]}]}).encode()


def comment_value(verb: str = "add", message: str | None = "Al drie dagen geen internet. Wanneer is dit opgelost?",
                  comment_id: str = "900_5001") -> dict:
    value = {"from": {"id": "100000000000042", "name": "Sanne Bakker"}, "item": "comment", "verb": verb,
             "post_id": f"{PAGE_ID}_900", "comment_id": comment_id, "parent_id": f"{PAGE_ID}_900",
             "created_time": 1795168000}
    if message is not None:
        value["message"] = message
    return value


# -- the subscription handshake ----------------------------------------------------------
def documented_handshake_query() -> str:
    # The docs print the URL over several lines: join them, then keep the query.
    url = "".join(fixture_path("facebook/webhook_verification_request_docs.txt").read_text().split()[1:])
    return urlsplit(url).query


def test_the_documented_handshake_is_answered_with_the_challenge_as_plain_text(app):
    answer = app.test_client().get(f"/webhooks/facebook?{documented_handshake_query()}")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "1158201444"
    assert answer.mimetype == "text/plain"


@pytest.mark.parametrize("query", ["hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess",
                                   "hub.mode=subscribe&hub.challenge=1158201444"])
def test_a_handshake_with_a_wrong_or_missing_verify_token_gets_403(app, query):
    answer = app.test_client().get(f"/webhooks/facebook?{query}")
    assert answer.status_code == 403 and "1158201444" not in answer.get_data(as_text=True)


def test_an_instance_without_verify_token_refuses_handshakes(app):
    assert app.test_client().get(f"/webhooks/unsigned?{documented_handshake_query()}").status_code == 403


# -- signatures ----------------------------------------------------------------------------
def test_a_signed_comment_delivery_becomes_one_item_in_the_posts_thread(app):
    body = change(comment_value())
    answer = post_webhook(app.test_client(), "facebook", body, signed(body))
    assert answer.status_code == 200 and answer.get_json()["stored"] == 1
    (item,) = items(app)
    assert (item.external_id, item.thread_id) == ("900_5001", f"{PAGE_ID}_900")
    assert item.text.startswith("Al drie dagen") and item.channel == "social"


@pytest.mark.parametrize("case, headers", [
    ("unsigned", lambda body: {"Content-Type": "application/json"}),
    ("wrong secret", lambda body: signed(body, "not-the-app-secret")),
    ("tampered", lambda body: signed(body.replace(b"Sanne", b"Sanna"))),
    ("sha1 only", lambda body: {"X-Hub-Signature": sign_hmac(APP_SECRET, body, algo="sha1", encoding="hex",
                                                             prefix="sha1=")}),
])
def test_unsigned_wrongly_signed_or_tampered_deliveries_get_401_and_store_nothing(app, case, headers):
    body = change(comment_value())
    answer = post_webhook(app.test_client(), "facebook", body, headers(body))
    assert answer.status_code == 401, case
    assert "X-Hub-Signature-256" in answer.get_json()["error"]["message"]
    assert raw_events(app) == [] and items(app) == []


def test_without_an_app_secret_every_delivery_is_refused(app):
    body = change(comment_value())
    assert post_webhook(app.test_client(), "unsigned", body, signed(body)).status_code == 401
    assert raw_events(app) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"object": "page", "entry": {"id": 1}}',
                                  b'{"object": "page", "entry": [{"id": "500158316696377", "changes": [7]}]}',
                                  change(comment_value(comment_id="../../etc"))])
def test_a_signed_but_malformed_delivery_gets_400_and_stores_nothing(app, body):
    answer = post_webhook(app.test_client(), "facebook", body, signed(body))
    assert answer.status_code == 400 and raw_events(app) == []


# -- recorded deliveries -----------------------------------------------------------------------
def test_the_dashboard_sample_status_is_a_visitor_post(app):
    body = fixture_bytes("webhook_feed_status_add_dashboard_sample.json")  # entry id "0", from "Test Page"
    answer = post_webhook(app.test_client(), "dashboard_test", body, signed(body))
    assert answer.status_code == 200
    (item,) = items(app, "dashboard_test")
    assert (item.external_id, item.text) == ("44444444_444444444", "Example post content.")
    assert item.occurred_at.replace(tzinfo=None).isoformat() == "2018-11-30T20:14:02"  # created_time 1543608842


def test_entries_of_another_page_are_acknowledged_and_ignored(app):
    body = fixture_bytes("webhook_feed_status_add_dashboard_sample.json")
    answer = post_webhook(app.test_client(), "facebook", body, signed(body))
    assert answer.status_code == 200 and answer.get_json()["ignored"] == ["entry of page 0"]
    assert raw_events(app) == []


@pytest.mark.parametrize("name", ["webhook_feed_comment_add_recorded_2013.json",
                                  "webhook_feed_post_add_recorded_2013.json",
                                  "webhook_feed_status_add_recorded_2013.json"])
def test_recorded_notices_without_text_are_kept_but_do_not_hide_the_pulls_copy(app, name):
    body = fixture_bytes(name)
    answer = post_webhook(app.test_client(), "facebook", body, signed(body))
    assert answer.status_code == 200 and answer.get_json()["stored"] == 1
    (raw,) = raw_events(app)
    assert raw.status == "skipped" and raw.dedupe_key.endswith(":notice")
    if name == "webhook_feed_post_add_recorded_2013.json":  # a bare post id, joined onto the Page id
        assert raw.dedupe_key == f"{PAGE_ID}_502116146500594:notice"


# -- a delivery and a pull of the same comment --------------------------------------------------------
def test_a_delivered_comment_and_the_pull_of_it_are_one_item(app, fake_vendor):
    body = change(comment_value())
    post_webhook(app.test_client(), "facebook", body, signed(body))
    fake_vendor.route("GET", f"/{PAGE_ID}/feed", pages=[{"data": [{
        "id": f"{PAGE_ID}_900", "from": {"id": PAGE_ID, "name": "Privatesandbox"}, "message": "Storing in Utrecht.",
        "created_time": "2026-11-20T09:00:00+0000", "updated_time": "2026-11-20T09:30:00+0000",
        "comments": {"data": [{"id": "900_5001", "from": {"id": "100000000000042", "name": "Sanne Bakker"},
                               "message": "Al drie dagen geen internet. Wanneer is dit opgelost?",
                               "created_time": "2026-11-20T09:06:40+0000"}],
                     "paging": {"cursors": {"before": "QQ==", "after": "QQ=="}}}}],
        "paging": {"cursors": {"before": "UA==", "after": "UA=="}}}])
    report = pull(app.extensions["hub"], "facebook")
    assert report.duplicates == 1 and report.new_items == 0
    assert [i.external_id for i in items(app)] == ["900_5001"]


def test_a_redelivered_delivery_is_stored_once(app):
    body = change(comment_value())
    for _ in range(2):
        assert post_webhook(app.test_client(), "facebook", body, signed(body)).status_code == 200
    assert len(raw_events(app)) == 1 and len(items(app)) == 1


# -- edited and remove ----------------------------------------------------------------------------
def deliver(app, value: dict) -> None:
    body = change(value)
    answer = post_webhook(app.test_client(), "facebook", body, signed(body))
    assert answer.status_code == 200, answer.get_json()


def test_an_edited_comment_takes_the_new_text_and_keeps_the_old_in_its_history(app):
    deliver(app, comment_value(message="Geen internet."))
    deliver(app, comment_value("edited", message="Geen internet, al drie dagen!"))
    deliver(app, comment_value("edited", message="Geen internet, al drie dagen!"))  # redelivered: once
    deliver(app, comment_value("edited", message="Opgelost, dank jullie."))
    (item,) = items(app)
    assert item.text == "Opgelost, dank jullie."
    assert [h["text"] for h in item.extra["history"]] == ["Geen internet.", "Geen internet, al drie dagen!"]
    assert "removed" not in item.extra
    (shown,) = api_items(app)
    assert (shown["edited"], shown["removed"], shown["text"]) == (True, False, "Opgelost, dank jullie.")


def test_a_removed_comment_is_marked_not_deleted_and_its_case_stays(app):
    deliver(app, comment_value(message="Ik ga opzeggen, dit is belachelijk."))
    (before,) = items(app)
    deliver(app, comment_value("remove", message=None))
    (after,) = items(app)
    assert after.id == before.id and after.text == before.text and after.case_id == before.case_id
    assert after.extra["removed"]["at"].startswith("2026-11-20T12:00")
    (shown,) = api_items(app)
    assert shown["removed"] is True and shown["edited"] is False and shown["text"] == before.text


def test_a_removal_of_something_never_stored_changes_nothing(app):
    deliver(app, comment_value("remove", message=None, comment_id="900_7777"))
    assert items(app) == []
    assert [r.status for r in raw_events(app)] == ["processed"]


def test_an_edit_of_a_comment_the_hub_never_saw_is_stored_as_new(app):
    deliver(app, comment_value("edited", message="Nog steeds geen internet."))
    (item,) = items(app)
    assert item.text == "Nog steeds geen internet." and "history" not in item.extra


def test_the_pages_own_replies_by_webhook_are_not_feedback(app):
    value = comment_value(message="Sorry! We sturen u een DM.")
    value["from"] = {"id": PAGE_ID, "name": "Privatesandbox"}
    deliver(app, value)
    assert items(app) == [] and [r.status for r in raw_events(app)] == ["skipped"]


# -- the core's change concept, source-independent ---------------------------------------------------
def test_edits_and_removals_in_one_batch_apply_in_order(app):
    hub = app.extensions["hub"]
    at = TEST_NOW
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "any_source", [
            Entry(FeedbackIn("c1", "social", at, text="one")),
            Entry(FeedbackIn("c1", "social", at, text="two", change="edited")),
            Entry(FeedbackIn("c1", "social", at, change="removed")),
            Entry(FeedbackIn("c2", "social", at, change="removed")),
        ])
    (item,) = items(app, "any_source")
    assert item.text == "two" and item.extra["history"][0]["text"] == "one" and "removed" in item.extra


def test_an_erased_item_never_takes_text_back_from_a_later_edit(app):
    from sqlalchemy import update

    deliver(app, comment_value(message="Mijn adres is Dorpsstraat 1."))
    with app.extensions["hub"].db.session() as s:  # what a privacy erase leaves: a tombstone
        s.execute(update(m.FeedbackItem).values(text=None, extra={"erased": "request"}))
    deliver(app, comment_value("edited", message="Mijn adres is Dorpsstraat 2."))
    (item,) = items(app)
    assert item.text is None and item.extra == {"erased": "request"}


def test_an_unknown_change_is_refused_where_the_item_is_built():
    with pytest.raises(ValueError, match="change must be one of edited, removed"):
        FeedbackIn("c1", "social", TEST_NOW, text="x", change="deleted")
