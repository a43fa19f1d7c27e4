"""X post -> common-schema item mapping (both wire formats), no database."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.sdk import Instance, RawIn
from plugins.twitter_webcare.connector import TwitterConnector
from plugins.twitter_webcare.mapping import (
    RAW_V1,
    RAW_V2,
    BrandAccounts,
    expand_urls,
    from_v1,
    from_v2,
    language,
    snowflake_time,
)

BRAND = BrandAccounts.from_settings(["2244994945"], ["111"], ["@AcmeCare"])
AUTHOR = {"id": "42", "username": "sanne_boos", "name": "Sanne Bakker",
          "public_metrics": {"followers_count": 1450, "following_count": 3, "tweet_count": 9, "listed_count": 0}}


def v2(tweet_id="1600000000000000000", author=AUTHOR, **fields):
    tweet = {"id": tweet_id, "text": "@acme storing!", "author_id": author["id"] if author else None,
             "edit_history_tweet_ids": [tweet_id], **fields}
    return {"tweet": tweet, "author": author}


def test_v2_post_maps_identity_reach_url_thread_and_metrics():
    record = v2(created_at="2026-11-20T10:00:00.000Z", lang="nl", conversation_id="1599999999999999999",
                in_reply_to_user_id="2244994945", public_metrics={"like_count": 4, "retweet_count": 1},
                referenced_tweets=[{"type": "replied_to", "id": "1599999999999999999"}])
    [item] = from_v2(record, BRAND)
    assert item.external_id == "1600000000000000000"
    assert item.channel == "social"
    assert item.occurred_at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    assert item.language == "nl"
    assert item.reach == 1450
    assert item.customer.handles == (("x_handle", "sanne_boos"),) and item.customer.name == "Sanne Bakker"
    assert item.url == "https://x.com/sanne_boos/status/1600000000000000000"
    assert item.thread_id == "1599999999999999999"  # a reply keeps its conversation
    assert item.extra["public_metrics"] == {"like_count": 4, "retweet_count": 1}
    assert item.extra["author_username"] == "sanne_boos"
    assert item.extra["referenced_tweets"] == [{"type": "replied_to", "id": "1599999999999999999"}]


def test_v2_text_gets_tco_links_expanded_from_entities():
    record = v2(text="@acme kijk https://t.co/abc en https://t.co/def",
                entities={"urls": [
                    {"start": 11, "end": 23, "url": "https://t.co/abc", "expanded_url": "https://acme.example/x"},
                    {"start": 27, "end": 39, "url": "https://t.co/def", "expanded_url": "https://bit.ly/1",
                     "unwound_url": "https://acme.example/final"}]})
    record["tweet"]["text"] = "@acme kijk https://t.co/abc en https://t.co/def"
    [item] = from_v2(record, BRAND)
    assert item.text == "@acme kijk https://acme.example/x en https://acme.example/final"


@pytest.mark.parametrize("code, expected", [("nl", "nl"), ("en", "en"), ("und", None), ("zxx", None),
                                            ("qme", None), ("qht", None), (None, None)])
def test_pseudo_language_codes_leave_detection_to_the_hub(code, expected):
    assert language(code) == expected


def test_v2_retweet_yields_nothing_with_or_without_referenced_tweets():
    assert from_v2(v2(referenced_tweets=[{"type": "retweeted", "id": "1"}]), BRAND) == []
    bare = v2()
    bare["tweet"]["text"] = "RT @mark: @acme al twee dagen geen internet"
    assert from_v2(bare, BRAND) == []


def test_v2_quote_is_feedback_with_its_own_conversation():
    [item] = from_v2(v2(conversation_id="1600000000000000000",
                        referenced_tweets=[{"type": "quoted", "id": "1500000000000000000"}]), BRAND)
    assert item.thread_id == "1600000000000000000"
    assert item.extra["referenced_tweets"][0]["type"] == "quoted"


@pytest.mark.parametrize("author", [
    {"id": "2244994945", "username": "acme", "name": "Acme"},  # the configured user_id
    {"id": "111", "username": "acme_nl", "name": "Acme NL"},  # brand_user_ids
    {"id": "999", "username": "acmecare", "name": "Acme Care"},  # brand_handles (case, @ ignored)
])
def test_brand_posts_are_not_feedback(author):
    assert from_v2(v2(author=author), BRAND) == []


def test_v2_without_expansion_or_created_at_still_maps():
    """Default-field pages (no author, no created_at): time from the snowflake id."""
    record = {"tweet": {"id": "1578516295611748353", "text": "@Twitter respond to my ticket."}, "author": None}
    [item] = from_v2(record, BRAND)
    assert item.customer.handles == ()
    assert item.url == "https://x.com/i/web/status/1578516295611748353"
    assert item.occurred_at == snowflake_time("1578516295611748353")
    assert item.occurred_at.date() == dt.date(2022, 10, 7)


def test_v2_record_without_id_is_an_error():
    with pytest.raises(ValueError):
        from_v2({"tweet": {"text": "x"}}, BRAND)


def v1(**over):
    tweet = {"id": 1600000000000000001, "id_str": "1600000000000000001", "text": "@acme kapot https://t.co/q",
             "truncated": False, "timestamp_ms": "1700000000123", "lang": "nl",
             "created_at": "Tue Nov 14 22:13:20 +0000 2023",
             "user": {"id_str": "42", "screen_name": "sanne_boos", "name": "Sanne Bakker", "followers_count": 1450},
             "entities": {"urls": [{"url": "https://t.co/q", "expanded_url": "https://acme.example/q"}]},
             "in_reply_to_status_id_str": None, "favorite_count": 3, "retweet_count": 0, "reply_count": 1,
             "quote_count": 0, **over}
    return {"for_user_id": "2244994945", "tweet": tweet}


def test_v1_webhook_post_maps_like_a_polled_one():
    [item] = from_v1(v1(), BRAND)
    assert item.external_id == "1600000000000000001"
    assert item.occurred_at == dt.datetime.fromtimestamp(1700000000.123, dt.UTC)
    assert item.text == "@acme kapot https://acme.example/q"
    assert item.customer.handles == (("x_handle", "sanne_boos"),)
    assert item.reach == 1450
    assert item.url == "https://x.com/sanne_boos/status/1600000000000000001"
    assert item.thread_id == "1600000000000000001"
    assert item.extra["public_metrics"]["like_count"] == 3
    assert item.extra["api"] == "v1.1"


def test_v1_long_post_uses_extended_full_text_and_reply_thread():
    payload = v1(truncated=True, text="@acme eerste stuk… https://t.co/more", in_reply_to_status_id_str="155",
                 extended_tweet={"full_text": "@acme eerste stuk en de rest, zie https://t.co/z",
                                 "entities": {"urls": [{"url": "https://t.co/z", "expanded_url": "https://a.example"}]}})
    [item] = from_v1(payload, BRAND)
    assert item.text == "@acme eerste stuk en de rest, zie https://a.example"
    assert item.thread_id == "155"


def test_v1_own_account_retweet_and_missing_id():
    own = v1(user={"id_str": "2244994945", "screen_name": "acme"})
    assert from_v1(own, BRAND) == []
    assert from_v1(v1(retweeted_status={"id_str": "1"}), BRAND) == []
    other_subscriber = v1(user={"id_str": "777", "screen_name": "someone"})
    other_subscriber["for_user_id"] = "777"  # the subscribed account's own post
    assert from_v1(other_subscriber, BrandAccounts()) == []
    with pytest.raises(ValueError):
        from_v1({"tweet": {"id": 16000000000000000}}, BRAND)  # numeric id only: precision lost, refused


def test_v1_time_falls_back_to_created_at():
    payload = v1()
    del payload["tweet"]["timestamp_ms"]
    [item] = from_v1(payload, BRAND)
    assert item.occurred_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


def test_expand_urls_leaves_unknown_links():
    assert expand_urls("see https://t.co/x", [{"url": "https://t.co/y", "expanded_url": "z"}]) == "see https://t.co/x"


def test_connector_normalize_dispatches_on_raw_kind(tmp_path):
    conn = TwitterConnector(Instance("w", "twitter_webcare", "source", {
        "bearer_token": "t", "user_id": "2244994945", "queries": [], "brand_user_ids": [], "brand_handles": [],
        "state_dir": str(tmp_path)}))
    assert conn.normalize(RawIn(payload=v2(), kind=RAW_V2))[0].external_id == "1600000000000000000"
    assert conn.normalize(RawIn(payload=v1(), kind=RAW_V1))[0].external_id == "1600000000000000001"
    with pytest.raises(ValueError):
        conn.normalize(RawIn(payload={}, kind="something"))


@pytest.mark.parametrize("settings, message", [
    ({}, "user_id"),
    ({"user_id": "acme"}, "numeric"),
    ({"queries": [""]}, "query"),
])  # ranges (max_results, budget_reset_day) are declared settings: tests/test_contracts.py
def test_connector_refuses_unusable_settings(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TwitterConnector(Instance("w", "twitter_webcare", "source", {"bearer_token": "t", **settings}))


def test_bad_instance_settings_stop_the_hub_at_start(make_app):
    import plugins.twitter_webcare as twitter_plugin

    with pytest.raises(ValueError, match=r"sources\.webcare: user id '@acme' must be the numeric account id"):
        make_app(plugins=(twitter_plugin,), load_entry_points=False,
                 sources={"webcare": {"plugin": "twitter_webcare", "bearer_token": "t", "user_id": "@acme"}})


def test_the_plugin_declares_the_x_handle_kind(make_app):
    """Handles match without "@" and case-insensitively, show as @handle, and
    never make a customer reachable for a callback."""
    import plugins.twitter_webcare as twitter_plugin
    from plugins.twitter_webcare.mapping import X_HANDLE

    kinds = make_app(plugins=(twitter_plugin,), load_entry_points=False).extensions["hub"].registry.identity_kinds
    assert kinds["x_handle"] is X_HANDLE
    assert (X_HANDLE.reachable, X_HANDLE.label) == (False, "X")
    assert X_HANDLE.clean(" @Sanne_Boos") == "sanne_boos" and X_HANDLE.show("sanne_boos") == "@sanne_boos"
