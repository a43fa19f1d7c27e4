"""The X emulator behaves like the API where connectors can go wrong, and is
wired into the sandbox and demo mode."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import flask
import pytest

import plugins.twitter_webcare as twitter_plugin
from hub.sdk import FakeClock
from plugins.twitter_webcare.emulator import BRAND_ID, DEMO_BEARER_TOKEN, USAGE_CAPPED, XEmulator
from plugins.twitter_webcare.search_query import QueryError, compile_query

FIXTURES = Path(__file__).parent / "fixtures" / "twitter"
AUTH = {"Authorization": f"Bearer {DEMO_BEARER_TOKEN}"}
FIELDS = {"expansions": "author_id", "tweet.fields": "created_at,lang,conversation_id,referenced_tweets,author_id",
          "user.fields": "public_metrics,username,name"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def emu(clock):
    return XEmulator(clock=clock)


@pytest.fixture
def client(emu):
    app = flask.Flask("x")
    app.register_blueprint(emu.blueprint())
    return app.test_client()


def mentions(client, **params):
    return client.get(f"/2/users/{BRAND_ID}/mentions", query_string=params, headers=AUTH)


def test_bearer_auth(client):
    resp = client.get(f"/2/users/{BRAND_ID}/mentions")
    assert resp.status_code == 401 and resp.get_json()["title"] == "Unauthorized"
    assert client.get(f"/2/users/{BRAND_ID}/mentions", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_rate_limit_headers_on_every_answer_and_429_when_spent(clock):
    emu = XEmulator(clock=clock, limits={"mentions": 2}, populate=False)
    app = flask.Flask("x")
    app.register_blueprint(emu.blueprint())
    client = app.test_client()
    first, second, third = (mentions(client) for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [200, 200, 429]
    assert [r.headers["x-rate-limit-remaining"] for r in (first, second, third)] == ["1", "0", "0"]
    assert {r.headers["x-rate-limit-reset"] for r in (first, second, third)} == {str(int(clock.now) + 900)}
    assert third.get_json() == json.loads((FIXTURES / "error_429_too_many_requests.json").read_text())
    clock.sleep(900)
    assert mentions(client).status_code == 200  # a new window


def test_max_results_bounds_answer_like_x(client):
    shape = set(json.loads((FIXTURES / "error_400_invalid_request_ids.json").read_text()))
    low = mentions(client, max_results=4)
    assert low.status_code == 400 and set(low.get_json()) == shape
    assert "not between 5 and 100" in low.get_json()["errors"][0]["message"]
    assert mentions(client, max_results=5).status_code == 200
    search = client.get("/2/tweets/search/recent", query_string={"query": "acme", "max_results": 5}, headers=AUTH)
    assert search.status_code == 400 and "between 10 and 100" in search.get_json()["errors"][0]["message"]
    assert mentions(client, max_results=101).status_code == 400


def test_since_id_is_exclusive_and_pages_walk_down(client, emu):
    everything = mentions(client, max_results=100).get_json()
    ids = [t["id"] for t in everything["data"]]
    assert ids == sorted(ids, key=int, reverse=True)  # newest first
    since = ids[5]
    newer = mentions(client, max_results=100, since_id=since).get_json()
    assert [t["id"] for t in newer["data"]] == ids[:5]
    walked, token = [], None
    while True:
        params = {"max_results": 5, **({"pagination_token": token} if token else {})}
        page = mentions(client, **params).get_json()
        walked += [t["id"] for t in page.get("data", [])]
        token = page["meta"].get("next_token")
        if not token:
            break
    assert walked == ids
    bad = mentions(client, pagination_token="garbage")
    assert bad.status_code == 400


def test_only_requested_fields_and_expansions(client):
    bare = mentions(client).get_json()
    assert set(bare["data"][0]) == {"id", "text", "edit_history_tweet_ids"} and "includes" not in bare
    full = mentions(client, **FIELDS).get_json()
    assert {"created_at", "lang", "conversation_id", "author_id"} <= set(full["data"][0])
    user = full["includes"]["users"][0]
    assert set(user) == {"id", "name", "username", "public_metrics"}


def test_empty_page_shape(client, emu):
    newest = emu.posts[-1].id
    page = mentions(client, since_id=newest).get_json()
    assert page == {"meta": {"result_count": 0}}


def test_search_operators_and_horizon(client, emu, clock):
    def ids(query, **extra):
        resp = client.get("/2/tweets/search/recent", query_string={"query": query, "max_results": 100, **extra},
                          headers=AUTH)
        assert resp.status_code == 200, resp.get_json()
        return {t["id"] for t in resp.get_json().get("data", [])}

    everything = ids("acme")
    no_rt = ids("acme -is:retweet")
    retweets = {p.id for p in emu.posts if p.retweeted}
    assert retweets and retweets <= everything and not (retweets & no_rt)
    nl = ids("acme lang:nl")
    assert nl and all(p.lang == "nl" for p in emu.posts if p.id in nl)
    brand = ids("from:acme")
    assert brand == {p.id for p in emu.posts if p.author is emu.brand}
    viral = ids('"heel Amersfoort" -is:retweet')
    assert len(viral) == 1
    old = emu.post(emu.crowd[0], "@acme oud nieuws", at=emu.now() - dt.timedelta(days=8))
    assert old.id not in ids("acme")  # recent search: 7 days
    problem = client.get("/2/tweets/search/recent", query_string={"query": "acme point_radius:[1 2 3mi]"},
                         headers=AUTH)
    assert problem.status_code == 400 and "invalid operator 'point_radius'" in problem.get_json()["errors"][0]["message"]


def test_query_grammar():
    from plugins.twitter_webcare.search_query import PostView

    def post(text, lang="nl", author="jan"):
        return PostView(text=text, author=author, lang=lang, mentions=frozenset(), reply_to=None, is_retweet=False,
                        is_reply=False, is_quote=False, conversation_id="1", has_links=False)

    q = compile_query("@acme OR acme lang:nl")  # AND binds tighter than OR
    assert q(post("acme rules", lang="nl")) and not q(post("acme rules", lang="en"))
    q = compile_query("(acme OR akme) -(storing OR kapot)")
    assert q(post("akme is top")) and not q(post("acme storing"))
    with pytest.raises(QueryError):
        compile_query("(acme")
    with pytest.raises(QueryError):
        compile_query("")


def test_injected_answers_and_usage_cap(client, emu):
    emu.inject("mentions", 503, {"title": "Service Unavailable"}, times=1)
    assert mentions(client).status_code == 503
    assert mentions(client).status_code == 200
    emu.monthly_cap = emu.posts_served
    capped = mentions(client)
    assert capped.status_code == 429 and capped.get_json() == USAGE_CAPPED
    assert capped.get_json()["type"] == json.loads((FIXTURES / "error_429_usage_capped.json").read_text())["type"]


def test_generated_world_has_the_webcare_stories(emu):
    texts = [p.text for p in emu.posts]
    assert any(p.author.followers > 100_000 for p in emu.posts)  # viral
    assert any(p.retweeted for p in emu.posts) and any(p.quoted for p in emu.posts)
    assert any(p.author is emu.brand and p.in_reply_to for p in emu.posts)  # brand reply
    thread = [p for p in emu.posts if p.author.username == "sanne_boos"]
    assert len(thread) == 4 and len({p.conversation_id for p in thread}) == 1
    assert {p.lang for p in emu.posts} >= {"nl", "en"}
    assert any("https://t.co/" in t for t in texts)
    before = len(emu.posts)
    added = emu.tick(3)
    assert len(emu.posts) == before + 3 and all(int(p.id) > int(emu.posts[before - 1].id) for p in added)


def test_sandbox_mounts_the_emulator():
    from hub.demo.sandbox import make_sandbox_app
    from hub.plugin_manager import make_plugin_manager

    pm = make_plugin_manager(load_entry_points=False, extra=(twitter_plugin,))
    app, emus = make_sandbox_app(pm)
    assert [e.name for e in emus] == ["x"]
    client = app.test_client()
    resp = client.get(f"/x/2/users/{BRAND_ID}/mentions", headers=AUTH)
    assert resp.status_code == 200 and resp.get_json()["meta"]["result_count"] == 10
    assert client.post("/x/_emulator/tick?n=2").get_json()["added"]


def test_demo_mode_polls_and_receives_webhooks(make_app, live_server, monkeypatch):
    """What ``run --demo`` does: emulator mounted in the hub's own server, config
    from ``demo_config``, secrets from ``demo_env``; a tick adds posts and pushes
    one through the signed webhook, and the next poll finds it as a duplicate."""
    from sqlalchemy import func, select

    from hub.demo.mode import SANDBOX_PREFIX, mount_emulators
    from hub.engine.pulls import pull
    from hub.storage import models as m

    clock = FakeClock()
    emu = XEmulator(clock=clock)
    emulator = twitter_plugin.make_emulator(emu, webhook_share=1.0)
    for key, value in emulator.demo_env.items():
        monkeypatch.setenv(key, value)
    holder: dict[str, flask.Flask] = {}
    hub_url = live_server(lambda environ, start: holder["app"](environ, start))  # URL first, app next
    base_url = f"{hub_url}{SANDBOX_PREFIX}/{emulator.name}"
    app = make_app(plugins=(twitter_plugin,), load_entry_points=False, clock=clock,
                   **emulator.demo_config(base_url, hub_url))
    mount_emulators(app, [emulator])
    holder["app"] = app
    hub = app.extensions["hub"]

    first = pull(hub, "webcare")
    assert first.new_items > 10 and first.failed == 0

    pushed: list[m.RawEvent] = []
    for _ in range(20):  # a tick may bring no post, or only a brand reply (not pushed)
        clock.sleep(10)
        emulator.tick(base_url, hub_url)
        with hub.db.Session() as s:
            pushed = list(s.scalars(select(m.RawEvent).where(m.RawEvent.kind == "x.tweet.v1")))
        if pushed:
            break
    assert len(pushed) == 1
    second = pull(hub, "webcare")
    assert second.duplicates >= 1
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.RawEvent).where(
            m.RawEvent.dedupe_key == pushed[0].dedupe_key)) == 1
