"""Polling X through the emulator over real HTTP: cursors, pages, duplicates,
rate windows, the monthly budget and how threads become cases."""

from __future__ import annotations

import datetime as dt
import json
import time

import flask
import pytest
from sqlalchemy import func, select

import plugins.twitter_webcare as twitter_plugin
from hub.engine.pulls import pull, source_status
from hub.sdk import FakeClock, FatalError, Instance
from hub.storage import models as m
from plugins.twitter_webcare.budget import ReadBudgetExhausted
from plugins.twitter_webcare.connector import TwitterConnector
from plugins.twitter_webcare.emulator import BRAND_ID, XEmulator
from plugins.twitter_webcare.webhook import SIGNATURE_HEADER, sign

TOKEN = "test-bearer"
SECRET = "test-consumer-secret"


@pytest.fixture
def clock():
    return FakeClock()  # 2027-01-15 08:00 UTC


def serve(emu: XEmulator, live_server) -> str:
    app = flask.Flask("x-emulator")
    app.register_blueprint(emu.blueprint())
    return live_server(app)


@pytest.fixture
def world(make_app, live_server, clock):
    """``world(emulator, **settings)`` -> (hub, flask app) polling that emulator."""

    def build(emu: XEmulator, **settings):
        source = {"plugin": "twitter_webcare", "bearer_token": TOKEN, "base_url": serve(emu, live_server),
                  "user_id": BRAND_ID, "consumer_secret": SECRET, **settings}
        source = {k: v for k, v in source.items() if v is not None}  # None: leave the setting out
        app = make_app(plugins=(twitter_plugin,), load_entry_points=False, clock=clock, sources={"webcare": source})
        return app.extensions["hub"], app

    return build


def rows(hub, model, *where):
    with hub.db.Session() as s:
        return list(s.scalars(select(model).where(*where)))


def count(hub, model, *where) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def cursor(hub, stream: str) -> str | None:
    [st] = rows(hub, m.ConnectorState, m.ConnectorState.stream == stream)
    return st.cursor


def returned(emu: XEmulator, calls) -> list[str]:
    return [i for c in calls for i in c.get("returned", [])]


def is_feedback(post) -> bool:
    return post.retweeted is None and post.author.id != BRAND_ID


def test_two_pulls_second_reads_only_newer_without_duplicates(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN)  # the generated demo morning
    hub, app = world(emu, queries=["acme lang:nl"], max_results=5)

    first = pull(hub, "webcare")

    mention_calls = emu.calls("mentions")
    assert len(mention_calls) > 2  # several pages of 5
    assert all("since_id" not in c["params"] for c in mention_calls)  # a new stream starts from the lookback
    assert [("pagination_token" in c["params"]) for c in mention_calls] == [False] + [True] * (len(mention_calls) - 1)
    seen_mentions = returned(emu, mention_calls)
    assert len(seen_mentions) == len(set(seen_mentions))  # pages do not overlap
    assert cursor(hub, f"mentions:{BRAND_ID}") == max(seen_mentions, key=int)
    read = set(returned(emu, emu.calls()))
    expected_items = {p.id for p in emu.posts if p.id in read and is_feedback(p)}
    stored = {i.external_id for i in rows(hub, m.FeedbackItem)}
    assert stored == expected_items  # retweets and the brand's posts are not items
    assert first.duplicates == first.records - len(read)  # search re-finds mentions: stored once

    clock.sleep(120)
    new_posts = emu.tick(4)
    calls_before = len(emu.requests)
    second = pull(hub, "webcare")

    mention_call = emu.calls("mentions")[-1]
    assert mention_call["params"]["since_id"] == max(seen_mentions, key=int)
    newly_read = returned(emu, emu.requests[calls_before:])
    assert set(newly_read) <= {p.id for p in new_posts}  # nothing old is fetched again
    assert second.new_items == len({p.id for p in new_posts if p.id in newly_read and is_feedback(p)})
    external_ids = [i.external_id for i in rows(hub, m.FeedbackItem)]
    assert len(external_ids) == len(set(external_ids))
    assert count(hub, m.RawEvent) == len(read | set(newly_read))  # one raw event per post, however found


def test_webhook_and_poll_of_the_same_post_make_one_item(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    emu.post(customer, "@acme mijn factuur klopt niet", at=emu.now() - dt.timedelta(minutes=30))
    hub, app = world(emu)
    pull(hub, "webcare")

    clock.sleep(60)
    fresh = emu.post(customer, "@acme en nu ben ik twee keer afgeschreven. Belachelijk!")
    body = json.dumps(emu.aaa_payload([fresh])).encode()
    resp = app.test_client().post("/webhooks/webcare", data=body, content_type="application/json",
                                  headers={SIGNATURE_HEADER: sign(SECRET, body)})
    assert resp.status_code == 200 and resp.get_json()["stored"] == 1
    again = app.test_client().post("/webhooks/webcare", data=body, content_type="application/json",
                                   headers={SIGNATURE_HEADER: sign(SECRET, body)})
    assert again.get_json()["duplicates"] == 1  # X delivers twice sometimes

    report = pull(hub, "webcare")

    assert report.records == 1 and report.duplicates == 1 and report.new_items == 0
    assert count(hub, m.RawEvent, m.RawEvent.dedupe_key == fresh.id) == 1
    [item] = rows(hub, m.FeedbackItem, m.FeedbackItem.external_id == fresh.id)
    assert item.extra["api"] == "v1.1"  # the webhook came first; the poll added nothing
    assert cursor(hub, f"mentions:{BRAND_ID}") == fresh.id  # the cursor still moves past it


def test_spent_window_makes_the_next_pull_wait_for_the_reset(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False, limits={"mentions": 1})
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    emu.post(customer, "@acme storing in Utrecht?", at=emu.now() - dt.timedelta(minutes=5))
    hub, _ = world(emu)
    pull(hub, "webcare")
    first = emu.calls("mentions")[0]
    assert first["status"] == 200
    reset = int(first["at"]) + emu.window_seconds  # what x-rate-limit-reset said, remaining 0
    assert clock.sleeps == []

    clock.sleep(30)
    emu.post(customer, "@acme nog steeds niks")
    sleeps_before = len(clock.sleeps)
    report = pull(hub, "webcare")

    assert report.new_items == 1
    waits = clock.sleeps[sleeps_before:]
    assert waits and clock.now >= reset  # paused until the window reset instead of failing
    assert sum(waits) == pytest.approx(reset + 1 - (first["at"] + 30), abs=0.01)
    assert [c["status"] for c in emu.calls("mentions")] == [200, 200]  # no 429 was provoked


def test_429_in_an_unknown_spent_window_is_retried_after_reset(world, clock):
    """After a restart the hub does not know the window is spent: X's 429 tells it."""
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False, limits={"mentions": 3})
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    emu.post(customer, "@acme storing?", at=emu.now() - dt.timedelta(minutes=5))
    emu.spend_window("mentions")
    hub, _ = world(emu)

    report = pull(hub, "webcare")

    assert report.new_items == 1
    assert [c["status"] for c in emu.calls("mentions")] == [429, 200]
    assert clock.now >= 1_800_000_000 + emu.window_seconds


def test_angry_thread_is_one_case_retweet_and_brand_reply_are_nothing(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    angry = emu.add_user("55501234", "sanne_boos", "Sanne Bakker", followers=1450)
    fan = emu.add_user("66601234", "fan_van_sanne", "Fan", followers=80)
    thread = emu.thread(angry, [
        "@acme Al drie weken storing en niemand belt terug. Belachelijk. Ik ga overstappen!",
        "Vanochtend weer 40 minuten in de wacht gestaan. Waardeloze service.",
        "En nu zegt de monteur dat hij pas volgende week kan komen?! Ik zeg mijn abonnement op.",
        "Als dit vrijdag niet opgelost is gaat het naar de Geschillencommissie.",
    ], start=emu.now() - dt.timedelta(minutes=40))
    retweet = emu.post(fan, "", retweet=thread[0], at=emu.now() - dt.timedelta(minutes=10))
    reply = emu.post(emu.brand, "Wat vervelend, Sanne! We sturen je een DM. ^Lisa van Acme", reply_to=thread[-1],
                     at=emu.now() - dt.timedelta(minutes=5))
    hub, _ = world(emu, queries=["acme"])  # search finds the brand's reply, mentions the retweet

    pull(hub, "webcare")

    assert {reply.id, retweet.id} <= set(returned(emu, emu.calls()))  # both were read...
    items = rows(hub, m.FeedbackItem)
    assert sorted(i.external_id for i in items) == sorted(p.id for p in thread)  # ...neither became an item
    assert len({i.case_id for i in items}) == 1 and items[0].case_id is not None
    assert len({i.customer_id for i in items}) == 1
    assert {i.thread_id for i in items} == {thread[0].id}
    [case] = rows(hub, m.Case)
    assert case.customer_id == items[0].customer_id
    statuses = {r.dedupe_key: r.status for r in rows(hub, m.RawEvent)}
    assert statuses[retweet.id] == "skipped" and statuses[reply.id] == "skipped"


def test_monthly_budget_paces_stops_and_resumes_next_period(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    for i in range(20):
        emu.post(customer, f"@acme vraag {i}", at=emu.now() - dt.timedelta(minutes=60 - i))
    hub, _ = world(emu, monthly_read_budget=30, max_results=5)
    connector = hub.registry.connector("webcare")

    pull(hub, "webcare")  # 20 of 30 read on Jan 15: ahead of the pace (about 15 by now)
    assert connector.health()["read_budget"]["posts_read"] == 20
    calls = len(emu.requests)
    report = pull(hub, "webcare")
    assert report.pages == 0 and len(emu.requests) == calls  # skipped before any request
    budget = connector.health()["read_budget"]
    assert budget["state"] == "pacing"
    resumes = dt.datetime.fromisoformat(budget["resumes_at"])
    assert dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC) < resumes < dt.datetime(2027, 2, 1, tzinfo=dt.UTC)

    clock.now = resumes.timestamp() + 1
    for i in range(15):
        emu.post(customer, f"@acme nog een vraag {i}")
    old_cursor = cursor(hub, f"mentions:{BRAND_ID}")
    with pytest.raises(ReadBudgetExhausted):
        pull(hub, "webcare")  # 2 pages (10 posts) reach 30; the third page is not asked for
    assert len(emu.requests) == calls + 2
    assert cursor(hub, f"mentions:{BRAND_ID}") == old_cursor  # unread older pages are not skipped
    assert connector.health()["read_budget"]["state"] == "spent"
    assert pull(hub, "webcare").pages == 0 and len(emu.requests) == calls + 2

    clock.now = dt.datetime(2027, 2, 1, 0, 1, tzinfo=dt.UTC).timestamp()  # new period
    report = pull(hub, "webcare")
    assert report.records == 15 and report.duplicates == 10 and report.new_items == 5
    assert count(hub, m.FeedbackItem) == 35
    assert connector.health()["read_budget"]["posts_read"] == 15


def test_budget_survives_a_restart(world, clock, make_app):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    for i in range(7):
        emu.post(customer, f"@acme vraag {i}", at=emu.now() - dt.timedelta(minutes=30 - i))
    hub, _ = world(emu, monthly_read_budget=1000)
    pull(hub, "webcare")

    # A new process: a fresh connector object for the same instance reads the ledger back
    # from the hub's database (not from a file: the instance folder plays no part).
    settings = dict(hub.registry.sources["webcare"].settings)
    restarted = TwitterConnector(Instance("webcare", "twitter_webcare", "source", settings), clock=clock)
    restarted.state.bind(hub.registry.state_backend("webcare"))  # what the new process's registry does
    budget = restarted.health()["read_budget"]
    assert budget["posts_read"] == 7 and budget["remaining"] == 993
    assert restarted.health()["rate_limits"]["mentions"].startswith("449/450")


def test_thread_continued_in_a_later_pull_joins_the_open_case(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    angry = emu.add_user("55501234", "sanne_boos", "Sanne Bakker", followers=1450)
    [first] = emu.thread(angry, ["@acme Al drie weken storing. Belachelijk. Ik ga overstappen!"])
    hub, _ = world(emu)
    pull(hub, "webcare")
    [opened] = rows(hub, m.Case)

    clock.sleep(300)
    later = emu.post(angry, "Nog steeds niks gehoord.", reply_to=first)
    pull(hub, "webcare")

    [item] = rows(hub, m.FeedbackItem, m.FeedbackItem.external_id == later.id)
    assert item.case_id == opened.id and item.thread_id == first.id
    assert count(hub, m.Case) == 1


def test_sources_command_shows_budget_and_windows(world, clock, tmp_path, monkeypatch, database_url):
    from click.testing import CliRunner

    from hub.cli import main

    clock.now = time.time()  # the CLI reads the ledger with the real clock: same budget period
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    emu.post(customer, "@acme hallo?", at=emu.now() - dt.timedelta(minutes=3))
    hub, _ = world(emu, monthly_read_budget=5000)
    pull(hub, "webcare")
    settings = hub.registry.sources["webcare"].settings
    [row] = source_status(hub)
    assert row["read_budget"]["posts_read"] == 1 and row["read_budget"]["budget"] == 5000
    assert row["rate_limits"]["mentions"].startswith("449/450")
    assert row["last_error"] is None

    site = tmp_path / "site.toml"
    site.write_text(f'database_url = "{database_url}"\n\n[sources.webcare]\nplugin = "twitter_webcare"\n'
                    f'bearer_token = "{TOKEN}"\nuser_id = "{BRAND_ID}"\nbase_url = "{settings["base_url"]}"\n'
                    "monthly_read_budget = 5000\n")
    monkeypatch.setenv("HUB_LOAD_PLUGINS", "twitter_webcare")
    result = CliRunner().invoke(main, ["--config", str(site), "sources"])
    assert result.exit_code == 0, result.output
    assert "read_budget:" in result.output and "'posts_read': 1" in result.output
    assert "'budget': 5000" in result.output and "rate_limits:" in result.output


def test_wrong_token_and_unknown_account_are_fatal(world, clock):
    emu = XEmulator(clock=clock, bearer_token="the-real-token", populate=False)
    hub, _ = world(emu)
    with pytest.raises(FatalError) as err:
        pull(hub, "webcare")
    assert err.value.status == 401 and len(emu.requests) == 1

    emu.bearer_token = TOKEN
    hub2, _ = world(emu, user_id="123456789")
    with pytest.raises(FatalError, match="Could not find user") as err:
        pull(hub2, "webcare")
    assert err.value.status == 200  # X says so in a 200 body with only ``errors``


def test_backfill_uses_start_time_and_never_moves_the_cursor_back(world, clock):
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    old = emu.post(customer, "@acme oud bericht", at=emu.now() - dt.timedelta(days=3))
    new = emu.post(customer, "@acme nieuw bericht", at=emu.now() - dt.timedelta(minutes=3))
    hub, _ = world(emu, queries=["acme"])
    pull(hub, "webcare")  # default lookback: 24 hours
    assert {i.external_id for i in rows(hub, m.FeedbackItem)} == {new.id}

    pull(hub, "webcare", since=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))

    assert {i.external_id for i in rows(hub, m.FeedbackItem)} == {old.id, new.id}
    search_call = emu.calls("search")[-1]["params"]
    assert search_call["start_time"] == "2027-01-08T08:05:00Z"  # clamped inside search's 7 days
    assert emu.calls("mentions")[-1]["params"]["start_time"] == "2026-12-01T00:00:00Z"
    assert cursor(hub, f"mentions:{BRAND_ID}") == new.id


def test_stale_search_cursor_becomes_a_start_time(world, clock):
    """A hub that was down for over a week: X refuses old since_ids on search."""
    emu = XEmulator(clock=clock, bearer_token=TOKEN, populate=False)
    customer = emu.add_user("4242", "jan_devries", "Jan de Vries", followers=300)
    emu.post(customer, "@acme eerste", at=emu.now() - dt.timedelta(minutes=3))
    hub, _ = world(emu, queries=["acme"], user_id=None)
    pull(hub, "webcare")
    clock.sleep(8 * 86400)
    emu.post(customer, "@acme na een week")

    report = pull(hub, "webcare")

    params = emu.calls("search")[-1]["params"]
    assert "since_id" not in params and params["start_time"].startswith("2027-01-16")
    assert report.new_items == 1 and emu.calls("search")[-1]["status"] == 200
