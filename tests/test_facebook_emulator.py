"""The Graph emulator (sandbox, demo, tests) and the Facebook mapping's edges.

The emulator must behave like Graph where the connector depends on it (paging
with cursors on the last page, nested comment paging, coded errors, usage
headers, signed deliveries), and the demo's own configuration must work
through the real connector: pulled comments and webhook deliveries both reach
the inbox, each stored once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import flask
import pytest
import requests

import plugins.social_facebook as facebook_plugin
from hub.engine.pulls import pull
from hub.sdk import FakeClock, FatalError
from plugins.social_facebook.connector import named_parameter, usage_percent
from plugins.social_facebook.emulator import (
    DEMO_APP_SECRET,
    DEMO_PAGE_ID,
    DEMO_PAGE_TOKEN,
    GraphEmulator,
    demo_tick,
    split_fields,
    throttling,
)
from plugins.social_facebook.mapping import Mapper, parse_graph_time
from plugins.social_facebook.webhook import sign
from tests.conftest import TEST_NOW


@pytest.fixture
def clock():
    return FakeClock(TEST_NOW.timestamp())


@pytest.fixture
def graph(clock, live_server):
    emu = GraphEmulator(clock=clock)
    emu.seed_demo()
    app = flask.Flask("graph-emulator")
    app.register_blueprint(emu.blueprint())
    emu.url = live_server(app)
    return emu


def get(emu, path: str, token: str = DEMO_PAGE_TOKEN, **params):
    return requests.get(f"{emu.url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


# -- the emulator speaks Graph ---------------------------------------------------------------
def test_feed_pages_carry_cursors_to_the_end_and_next_only_while_there_is_more(graph):
    seen, after, pages = [], None, 0
    while True:
        body = get(graph, f"/{DEMO_PAGE_ID}/feed", fields="id,message", limit=3, **({"after": after} if after else {})
                   ).json()
        pages += 1
        seen += [p["id"] for p in body["data"]]
        assert set(body["data"][0]) <= {"id", "message"}  # only the fields asked for
        assert body["paging"]["cursors"]["after"]
        if "next" not in body["paging"]:
            break
        after = body["paging"]["cursors"]["after"]
    assert len(seen) == len(set(seen)) == len(graph.posts) and pages == -(-len(graph.posts) // 3)


def test_nested_comments_page_on_to_the_comments_edge(graph):
    fields = "id,comments.filter(stream).limit(5){id,message,from{id,name}}"
    body = get(graph, f"/{DEMO_PAGE_ID}/feed", fields=fields, limit=100).json()
    long_thread = max(body["data"], key=lambda p: len(graph.find(p["id"])["comments"]))
    nested = long_thread["comments"]
    assert len(nested["data"]) == 5 and "next" in nested["paging"]
    rest = get(graph, f"/{long_thread['id']}/comments", fields="id", filter="stream", limit=100,
               after=nested["paging"]["cursors"]["after"]).json()
    total = len(graph.find(long_thread["id"])["comments"])
    assert len(rest["data"]) == total - 5 and "next" not in rest["paging"]


def test_graph_times_and_errors_look_like_graphs(graph):
    body = get(graph, f"/{DEMO_PAGE_ID}/feed", fields="id,created_time", limit=1).json()
    assert body["data"][0]["created_time"].endswith("+0000")
    refused = get(graph, f"/{DEMO_PAGE_ID}/feed", fields="id,address")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
    assert named_parameter(refused.json()["error"]["message"]) == "address"
    assert get(graph, f"/{DEMO_PAGE_ID}/feed", token="nope").json()["error"]["code"] == 190
    graph.expire_token()
    assert get(graph, f"/{DEMO_PAGE_ID}/feed").json()["error"]["error_subcode"] == 463


def test_every_answer_reports_the_apps_usage(graph):
    answer = get(graph, f"/{DEMO_PAGE_ID}/feed", fields="id")
    used, regain = usage_percent(answer.headers)
    assert used is not None and 0 <= used <= 100 and regain is None


def test_split_fields_keeps_nested_braces_together():
    assert list(split_fields("id,from{id,name},comments.filter(stream).limit(2){id,parent{id}}")) == [
        "id", "from", "comments"]


# -- the demo's configuration through the real connector -------------------------------------------
@pytest.fixture
def demo_hub(make_app, graph, clock, live_server, monkeypatch):
    emulator = facebook_plugin.make_emulator(graph, webhook_share=1.0)
    for key, value in emulator.demo_env.items():
        monkeypatch.setenv(key, value)
    config = emulator.demo_config(graph.url, "http://unused")
    app = make_app(plugins=(facebook_plugin,), load_entry_points=False, clock=clock, **config)
    return app, emulator, live_server(app)


def facebook_items(app):
    from sqlalchemy import select

    from hub.storage import models as m

    with app.extensions["hub"].db.Session() as s:
        return list(s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.source == facebook_plugin.DEMO_INSTANCE)))


def test_the_demo_pull_pages_the_feed_and_a_long_comment_thread_into_dutch_and_english_items(demo_hub, graph):
    app, _, _ = demo_hub
    report = pull(app.extensions["hub"], facebook_plugin.DEMO_INSTANCE)
    visitors = [c for p in graph.posts for c in p["comments"] if c["from"]["id"] != DEMO_PAGE_ID]
    visitors += [p for p in graph.posts if p["from"]["id"] != DEMO_PAGE_ID]
    assert report.new_items == len(visitors)
    assert report.streams["feed"].pages >= 2 and report.streams["feed/comments"].pages >= 2
    stored = facebook_items(app)
    assert {i.language for i in stored} == {"nl", "en"}  # detected by the hub: Graph gives no language
    assert any(i.case_id for i in stored)


def test_facebook_comments_show_in_the_inbox_beside_survey_answers(demo_hub):
    import html

    from hub.engine.accounts import create_user
    from tests.helpers import bearer
    from tests.test_web_ui import login

    app, _, _ = demo_hub
    hub = app.extensions["hub"]
    pull(hub, facebook_plugin.DEMO_INSTANCE)
    client = app.test_client()
    survey = client.post("/api/v1/feedback", headers=bearer(hub), json={
        "external_id": "s-1", "channel": "survey", "nps": 2, "occurred_at": TEST_NOW.isoformat(),
        "text": "Factuur klopt weer niet.", "customer": {"email": "anna@example.nl"}})
    assert survey.status_code == 201
    with hub.db.session() as s:
        create_user(s, "agent1", "correct-horse-1", "agent")
    login(client, "agent1", "correct-horse-1")
    page = html.unescape(client.get("/").get_data(as_text=True))
    shown = [i for i in facebook_items(app) if i.text in page]
    assert len(shown) >= 3  # the inbox lists cases with their latest feedback: several are Facebook comments
    assert "Factuur klopt weer niet." in page


def test_demo_ticks_deliver_signed_webhooks_that_the_next_pull_finds_as_duplicates(demo_hub, graph, clock):
    app, emulator, hub_url = demo_hub
    hub = app.extensions["hub"]
    pull(hub, facebook_plugin.DEMO_INSTANCE)
    before = len(facebook_items(app))
    clock.sleep(60)  # a minute later (sleep moves the fake clock)
    emulator.tick(graph.url, hub_url)
    delivered = len(facebook_items(app)) - before
    assert delivered >= 1
    assert pull(hub, facebook_plugin.DEMO_INSTANCE).new_items == 0  # already there by webhook


def test_throttling_in_the_emulator_is_waited_out(demo_hub, graph, clock):
    app, _, _ = demo_hub
    graph.inject(400, throttling(613))
    assert pull(app.extensions["hub"], facebook_plugin.DEMO_INSTANCE).new_items > 0
    assert 300.0 in clock.sleeps  # throttle_wait_seconds, the default


def test_an_expired_token_in_the_emulator_stops_the_pull(demo_hub, graph):
    app, _, _ = demo_hub
    graph.expire_token()
    with pytest.raises(FatalError, match="code 190, subcode 463"):
        pull(app.extensions["hub"], facebook_plugin.DEMO_INSTANCE)


def test_a_delivery_signed_with_the_demo_secret_verifies():
    emu = GraphEmulator(clock=FakeClock(TEST_NOW.timestamp()))
    post = emu.add_post({"id": "1", "name": "A"}, "Hallo")
    body = emu.delivery([emu.change_value(post)])
    assert sign(DEMO_APP_SECRET, body).startswith("sha256=") and len(sign(DEMO_APP_SECRET, body)) == 71
    assert callable(demo_tick(emu, "facebook"))


# -- mapping edges ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("2013-02-22T12:25:14+0000", dt.datetime(2013, 2, 22, 12, 25, 14, tzinfo=dt.UTC)),
    ("2013-02-22T14:25:14+0200", dt.datetime(2013, 2, 22, 12, 25, 14, tzinfo=dt.UTC)),
    ("2013-02-22T12:25:14+00:00", dt.datetime(2013, 2, 22, 12, 25, 14, tzinfo=dt.UTC)),
    ("2013-02-22T12:25:14Z", dt.datetime(2013, 2, 22, 12, 25, 14, tzinfo=dt.UTC)),
    (1543608842, dt.datetime(2018, 11, 30, 20, 14, 2, tzinfo=dt.UTC)),
    ("1543608842", dt.datetime(2018, 11, 30, 20, 14, 2, tzinfo=dt.UTC)),
])
def test_graph_times_parse_to_utc(value, expected):
    assert parse_graph_time(value) == expected


@pytest.mark.parametrize("value", ["22-02-2013", "", None, True, "3013-02-22T12:25:14+0000", [1]])
def test_bad_times_are_value_errors(value):
    with pytest.raises(ValueError):
        parse_graph_time(value)


@pytest.mark.parametrize("comment", [{"id": "1_2", "message": 5, "created_time": "2013-02-22T12:25:14+0000"},
                                     {"id": "x", "message": "a", "created_time": "2013-02-22T12:25:14+0000"},
                                     {"id": "1_2", "message": "a", "created_time": "yesterday"}, "text"])
def test_a_comment_that_cannot_be_understood_is_a_value_error(comment):
    with pytest.raises(ValueError):
        Mapper("1").comment("1_1", comment)


def test_a_comment_without_an_author_is_an_anonymous_item():
    (item,) = Mapper("1").comment("1_1", {"id": "1_2", "message": "Waar blijft mijn monteur?",
                                          "created_time": "2026-11-19T09:00:00+0000"})
    assert item.customer.handles == () and item.thread_id == "1_1"


def test_usage_headers_give_the_highest_share_and_the_wait():
    headers = {"x-app-usage": '{"call_count": 12, "total_cputime": 85, "total_time": 30}',
               "X-Business-Use-Case-Usage": '{"1": [{"type": "pages", "call_count": 40, "total_cputime": 2, '
                                            '"total_time": 3, "estimated_time_to_regain_access": 0}]}'}
    assert usage_percent(headers) == (85.0, None)
    assert usage_percent({}) == (None, None)


# -- make run's demo -----------------------------------------------------------------------------
def test_make_run_demo_shows_facebook_comments_within_a_minute(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    exe = Path(sys.executable).with_name("feedback-hub")
    proc = subprocess.Popen([str(exe), "run", "--demo", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = 0
        for _ in range(120):  # polling a real server's progress: the one place this test waits
            time.sleep(0.5)
            db = tmp_path / "instance" / "hub.db"
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        found = conn.execute("select count(*) from feedback_item where source = 'facebook'"
                                             ).fetchone()[0]
                except sqlite3.OperationalError:
                    found = 0  # tables not made yet
            if found:
                break
        assert found > 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
