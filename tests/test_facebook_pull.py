"""Pulling a Facebook Page through a fake Graph API on loopback: feed paging,
nested comments paged as a child stream, incremental ``since`` with overlap,
the Page's own words, Graph's coded errors and usage headers.

Page shapes follow Meta's published paging object (``paging_cursor_docs.json``:
cursors on every page, ``next`` only while there is more) and the recorded
post with nested comments (``post_with_nested_comments_recorded_2013.json``);
error bodies are the recorded ones under ``tests/fixtures/facebook``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import plugins.social_facebook as facebook_plugin
from hub.engine.pulls import pull, source_status
from hub.sdk import FakeClock, FatalError
from hub.sdk.testing import Reply
from hub.storage import models as m
from tests.conftest import TEST_NOW, fixture_path

PAGE_ID = "500158316696377"  # the recorded test Page "Privatesandbox"
FEED = f"/{PAGE_ID}/feed"
TOKEN = "page-token-1"
PAGE = {"name": "Privatesandbox", "id": PAGE_ID}


def fixture(name: str):
    return json.loads(fixture_path(f"facebook/{name}").read_text())


PAGING = fixture("paging_cursor_docs.json")["paging"]


def paging(after: str, more: bool) -> dict:
    """Meta's documented paging object: the cursors always, ``next`` only while there is more."""
    out = copy.deepcopy(PAGING)
    out["cursors"]["after"] = after
    out.pop("previous")
    if more:
        out["next"] = f"https://graph.facebook.com/v21.0/{PAGE_ID}/feed?limit=2&after={after}"
    else:
        out.pop("next")
    return out


def person(n: int) -> dict:
    return {"name": f"Klant {n}", "id": str(100000000000000 + n)}


def post(n: int, author: dict | None = None, *, hour: int = 8, message: str | None = None, comments=None) -> dict:
    record = {"id": f"{PAGE_ID}_{900 + n}", "from": author or person(n),
              "message": message or f"Bericht {n}: al drie dagen storing, niemand belt terug.",
              "created_time": f"2026-11-19T{hour:02d}:00:00+0000", "updated_time": f"2026-11-19T{hour:02d}:30:00+0000",
              "permalink_url": f"https://www.facebook.com/{PAGE_ID}/posts/{900 + n}"}
    if comments is not None:
        record["comments"] = comments
    return record


def comment(post_n: int, n: int, author: dict | None = None, text: str | None = None) -> dict:
    return {"id": f"{900 + post_n}_{5000 + n}", "from": author or person(50 + n),
            "message": text or f"Comment {n}: same here, no internet since Monday.",
            "created_time": f"2026-11-19T09:{n:02d}:00+0000"}


def feed_page(*posts: dict, after: str, more: bool) -> dict:
    return {"data": list(posts), "paging": paging(after, more)}


@pytest.fixture
def clock():
    return FakeClock(TEST_NOW.timestamp())


@pytest.fixture
def start(make_app, fake_vendor, clock, monkeypatch):
    monkeypatch.setenv("FB_PAGE_TOKEN", TOKEN)

    def start(**settings):
        source = {"plugin": "social_facebook", "page_id": PAGE_ID, "page_token": "env:FB_PAGE_TOKEN",
                  "base_url": fake_vendor.url, "page_size": 2, **settings}
        source = {k: v for k, v in source.items() if v is not None}  # None: leave the setting out
        app = make_app(plugins=(facebook_plugin,), load_entry_points=False, clock=clock,
                       sources={"facebook": source})
        start.app = app  # for the tests that look at the web UI
        return app.extensions["hub"]

    return start


def items(hub) -> list[m.FeedbackItem]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.FeedbackItem).order_by(m.FeedbackItem.occurred_at, m.FeedbackItem.id)))


# -- paging ---------------------------------------------------------------------------
def test_three_pages_of_posts_are_read_with_cursor_paging_until_next_is_gone(start, fake_vendor):
    fake_vendor.route("GET", FEED, pages=[
        feed_page(post(6, hour=14), post(5, hour=13), after="QVFIUjZA", more=True),
        feed_page(post(4, hour=12), post(3, hour=11), after="QVFIUjQZD", more=True),
        # The last page still carries a cursor (Graph does); no "next": the run stops here.
        feed_page(post(2, hour=10), after="QVFIUjIZD", more=False),
    ])
    hub = start()
    report = pull(hub, "facebook")
    assert (report.pages, report.new_items) == (3, 5)
    sent = [r.args for r in fake_vendor.calls("GET", FEED)]
    assert [a.get("after") for a in sent] == [None, "QVFIUjZA", "QVFIUjQZD"]
    assert {a["limit"] for a in sent} == {"2"}
    fields = sent[0]["fields"]
    for wanted in ("message", "from{id,name}", "created_time", "permalink_url", "comments"):
        assert wanted in fields
    assert fake_vendor.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "access_token" not in sent[0]  # the token stays out of URLs

    stored = items(hub)
    assert [i.external_id for i in stored] == [f"{PAGE_ID}_{900 + n}" for n in (2, 3, 4, 5, 6)]
    first = stored[0]
    # Graph's "+0000" is UTC: 10:00 stays 10:00.
    assert first.occurred_at.replace(tzinfo=None).isoformat() == "2026-11-19T10:00:00"
    assert first.thread_id == first.external_id and first.channel == "social"
    assert first.url == f"https://www.facebook.com/{PAGE_ID}/posts/902"


def test_nested_comments_beyond_the_first_page_come_from_the_comments_child_stream(start, fake_vendor):
    nested = {"data": [comment(1, 1), comment(1, 2)],
              "paging": {"cursors": {"before": "QjE=", "after": "QzI="},
                         "next": f"https://graph.facebook.com/v21.0/{PAGE_ID}_901/comments?after=QzI="}}
    fake_vendor.route("GET", FEED, pages=[feed_page(
        post(1, PAGE, message="Storing in Utrecht, we werken eraan.", comments=nested), after="UDE=", more=False)])
    fake_vendor.route("GET", f"/{PAGE_ID}_901/comments", pages=[
        {"data": [comment(1, 3), comment(1, 4, author=PAGE, text="Sorry! We sturen u een DM.")],
         "paging": {"cursors": {"before": "QzM=", "after": "QzQ="},
                    "next": f"https://graph.facebook.com/v21.0/{PAGE_ID}_901/comments?after=QzQ="}},
        {"data": [comment(1, 5)], "paging": {"cursors": {"before": "QzU=", "after": "QzU="}}},
    ])
    hub = start()
    report = pull(hub, "facebook")
    # The Page's post and its reply are stored (raw events of the thread) but are not feedback.
    assert report.streams["feed"].records == 3 and report.streams["feed/comments"].records == 3
    assert report.new_items == 4
    child_calls = fake_vendor.calls("GET", f"/{PAGE_ID}_901/comments")
    assert [c.args["after"] for c in child_calls] == ["QzI=", "QzQ="]
    stored = items(hub)
    assert sorted(i.external_id for i in stored) == [f"901_500{n}" for n in (1, 2, 3, 5)]
    assert {i.thread_id for i in stored} == {f"{PAGE_ID}_901"}  # one thread: the post
    with hub.db.Session() as s:
        raws = {r.dedupe_key: r.status for r in s.scalars(select(m.RawEvent))}
    assert raws[f"{PAGE_ID}_901"] == "skipped" and raws["901_5004"] == "skipped"


def test_a_second_pull_asks_since_the_newest_post_minus_the_overlap_and_stores_no_duplicates(start, fake_vendor):
    fake_vendor.route("GET", FEED, pages=[
        feed_page(post(2, hour=10), post(1, hour=9), after="QTI=", more=False),
        # Graph returns the newest post again (inside the overlap), plus a new one.
        feed_page(post(3, hour=11), post(2, hour=10), after="QTM=", more=False),
    ])
    hub = start(overlap_seconds=600)
    assert pull(hub, "facebook").new_items == 2
    second = pull(hub, "facebook")
    assert (second.new_items, second.duplicates) == (1, 1)
    newest = int(dt.datetime(2026, 11, 19, 10, 30, tzinfo=dt.UTC).timestamp())  # post 2's updated_time
    assert fake_vendor.calls("GET", FEED)[1].args["since"] == str(newest - 600)
    assert len(items(hub)) == 3


def test_the_first_pull_looks_back_a_bounded_time(start, fake_vendor, clock):
    fake_vendor.route("GET", FEED, pages=[feed_page(after="QTE=", more=False)])
    pull(start(initial_lookback_days=7), "facebook")
    assert fake_vendor.calls("GET", FEED)[0].args["since"] == str(int(clock.time()) - 7 * 86400)


def test_the_pages_own_posts_are_not_feedback_but_visitor_comments_under_them_are(start, fake_vendor):
    recorded = fixture("post_with_nested_comments_recorded_2013.json")  # the Page's post, its comment, a visitor's
    fake_vendor.route("GET", FEED, pages=[{"data": [recorded], "paging": paging("cG9zdA==", more=False)}])
    hub = start()
    report = pull(hub, "facebook")
    assert (report.records, report.new_items) == (3, 1)
    (item,) = items(hub)
    assert item.external_id == "500158316696377_500219983356877_5421631" and item.text == "comment test"
    assert item.thread_id == "500158316696377_500219983356877"
    with hub.db.Session() as s:
        identity = s.scalars(select(m.Identity).where(m.Identity.customer_id == item.customer_id)).one()
        customer = s.get(m.Customer, item.customer_id)
    assert (identity.kind, identity.value) == ("facebook_user", "100000000000001")
    assert customer.name == "Test User"


def test_a_facebook_only_customers_follow_up_goes_to_routing_unreachable(make_app, fake_vendor, clock, monkeypatch):
    monkeypatch.setenv("FB_PAGE_TOKEN", TOKEN)
    angry = post(1, message="Al drie weken storing en niemand belt terug. Ik ga opzeggen, dit gaat naar mijn advocaat.")
    fake_vendor.route("GET", FEED, pages=[feed_page(angry, after="QTE=", more=False)])
    app = make_app(plugins=(facebook_plugin,), load_entry_points=False, clock=clock, sources={"facebook": {
        "plugin": "social_facebook", "page_id": PAGE_ID, "page_token": "env:FB_PAGE_TOKEN",
        "base_url": fake_vendor.url}}, routing={"followups": "crm", "unreachable": "webcare_team"},
        sinks={"crm": {"plugin": "local"}, "webcare_team": {"plugin": "local"}},
        scoring={"risk_threshold": 0})
    hub = app.extensions["hub"]
    pull(hub, "facebook")
    with hub.db.Session() as s:
        followups = list(s.scalars(select(m.Followup)))
    assert followups and {f.sink for f in followups} == {"webcare_team"}


# -- errors and limits ----------------------------------------------------------------
def graph_envelope(code: int, message: str, transient: bool = False) -> dict:
    """The documented error envelope (as in error_4_app_request_limit_issue.json) with a recorded message."""
    body = fixture("error_4_app_request_limit_issue.json")
    body["error"].update(code=code, message=message)
    if not transient:
        del body["error"]["is_transient"]
    return body


def recorded_message(code: int) -> str:
    for line in fixture_path("facebook/error_other_codes_text_only_issues.txt").read_text().splitlines():
        if f"(#{code})" in line:
            start = line.index(f"(#{code})")
            return line[start:].split(":")[0].split(" [HTTP")[0].split(" (code")[0]
    raise AssertionError(code)


@pytest.mark.parametrize("code", [4, 17, 32, 613])
def test_graph_throttling_is_waited_out_on_the_clock_and_retried(start, fake_vendor, clock, code):
    body = fixture("error_4_app_request_limit_issue.json") if code == 4 else graph_envelope(code, recorded_message(code))
    fake_vendor.route("GET", FEED, replies=[Reply(400, body), Reply(200, feed_page(post(1), after="QTE=", more=False))])
    hub = start(throttle_wait_seconds=120)
    assert pull(hub, "facebook").new_items == 1
    assert 120.0 in clock.sleeps  # waited on the hub's clock: the test did not sleep
    assert len(fake_vendor.calls("GET", FEED)) == 2


def test_the_business_use_case_header_says_how_long_throttling_lasts(start, fake_vendor, clock):
    usage = {PAGE_ID: [{"type": "pages", "call_count": 100, "total_cputime": 40, "total_time": 45,
                        "estimated_time_to_regain_access": 3}]}
    fake_vendor.route("GET", FEED, replies=[
        Reply(400, graph_envelope(80001, "(#80001) There have been too many calls to this Page account."),
              headers={"X-Business-Use-Case-Usage": json.dumps(usage)}),
        Reply(200, feed_page(post(1), after="QTE=", more=False))])
    assert pull(start(), "facebook").new_items == 1
    assert 180.0 in clock.sleeps  # 3 minutes, as Meta said


@pytest.mark.parametrize("name", ["error_190_463_session_expired_issue.json",
                                  "error_190_463_session_expired_no_trace_issue.json",
                                  "error_190_460_generic_docs.json"])
def test_an_expired_or_revoked_token_is_fatal_and_shown_in_sources_and_on_the_admin_page(start, fake_vendor, name):
    fake_vendor.route("GET", FEED, replies=[Reply(400, fixture(name))])
    hub = start()
    with pytest.raises(FatalError, match="Page access token was refused"):
        pull(hub, "facebook")
    assert len(fake_vendor.calls("GET", FEED)) == 1  # fatal: not retried
    (row,) = source_status(hub)
    assert "code 190" in row["last_error"] and "make a new Page access token" in row["last_error"]
    assert "make a new Page access token" in row["token"]
    assert TOKEN not in row["last_error"]


def test_a_new_token_that_works_clears_the_token_warning(start, fake_vendor):
    fake_vendor.route("GET", FEED, replies=[Reply(400, fixture("error_190_463_session_expired_issue.json")),
                                            Reply(200, feed_page(post(1), after="QTE=", more=False))])
    hub = start()
    with pytest.raises(FatalError):
        pull(hub, "facebook")
    assert "token" in source_status(hub)[0]
    assert pull(hub, "facebook").new_items == 1
    (row,) = source_status(hub)
    assert "token" not in row and row["last_error"] is None


def test_the_sources_command_and_admin_page_show_the_dead_token(start, fake_vendor, monkeypatch):
    from hub.cli import commands as cli
    from hub.cli import main
    from hub.engine.accounts import create_user
    from tests.test_web_ui import login

    fake_vendor.route("GET", FEED, replies=[Reply(400, fixture("error_190_463_session_expired_issue.json"))])
    hub = start()
    with pytest.raises(FatalError):
        pull(hub, "facebook")
    monkeypatch.setattr(cli.Ctx, "hub", lambda self: hub)
    out = CliRunner().invoke(main, ["sources"]).output
    assert "facebook" in out and "last error:" in out and "Page access token was refused" in out

    with hub.db.session() as s:
        create_user(s, "admin1", "correct-horse-1", "admin")
    client = start.app.test_client()
    login(client, "admin1", "correct-horse-1")
    page = client.get("/admin/").get_data(as_text=True)
    assert "Page access token was refused" in page


def test_a_bad_parameter_is_fatal_and_names_the_field(start, fake_vendor):
    fake_vendor.route("GET", FEED, replies=[Reply(400, fixture("error_100_nonexisting_field_issue.json"))])
    with pytest.raises(FatalError, match=r"Graph refused a parameter \(address\) \(code 100\)"):
        pull(start(), "facebook")
    assert len(fake_vendor.calls("GET", FEED)) == 1


def test_a_transient_error_is_retried_with_backoff_and_a_missing_permission_is_fatal(start, fake_vendor, clock):
    transient = graph_envelope(2, "An unexpected error has occurred. Please retry your request later.", True)
    permission = graph_envelope(10, "(#10) This endpoint requires the 'pages_read_engagement' permission")
    fake_vendor.route("GET", FEED, replies=[Reply(500, transient), Reply(200, feed_page(post(1), after="QTE=",
                                                                                        more=False)),
                                            Reply(403, permission)])
    hub = start()
    assert pull(hub, "facebook").new_items == 1
    assert len(clock.sleeps) == 1 and clock.sleeps[0] < 5  # backoff, not the throttling wait
    with pytest.raises(FatalError, match="lacks a permission"):
        pull(hub, "facebook")


def usage_header(percent: int) -> dict[str, str]:
    # The numbers of the recorded X-Page-Usage comment, as JSON (the real header's form).
    recorded = fixture_path("facebook/header_x_page_usage_issue.txt").read_text().split(":", 1)[1].replace("'", '"')
    value = json.loads(recorded)
    value["call_count"] = percent
    return {"X-App-Usage": json.dumps(value)}


def test_usage_above_the_threshold_spaces_out_requests_and_below_it_does_not(start, fake_vendor, clock):
    fake_vendor.route("GET", FEED, replies=[
        Reply(200, feed_page(post(3, hour=12), after="QTM=", more=True), headers=usage_header(60)),
        Reply(200, feed_page(post(2, hour=11), after="QTI=", more=True), headers=usage_header(90)),
        Reply(200, feed_page(post(1, hour=10), after="QTE=", more=False), headers=usage_header(95))])
    hub = start()
    assert pull(hub, "facebook").new_items == 3
    # 60 %: no pause; 90 % (half way from 80 to 100): about 30 s before the next request.
    assert len(clock.sleeps) == 1 and 29.0 <= clock.sleeps[0] <= 31.0
    assert "95% of Meta's budget used" in source_status(hub)[0]["meta_usage"]


def test_a_usage_header_that_is_not_json_is_ignored(start, fake_vendor, clock):
    fake_vendor.route("GET", FEED, replies=[Reply(200, feed_page(post(1), after="QTE=", more=False),
                                                  headers={"X-App-Usage": "{'call_count' : 85}"})])
    assert pull(start(), "facebook").new_items == 1 and clock.sleeps == []


@pytest.mark.parametrize("settings, problem", [
    ({"page_id": "acme.energie"}, "page_id"),
    ({"page_size": 500}, "sources.facebook.page_size"),
    ({"page_token": None}, "sources.facebook.page_token"),
])
def test_bad_settings_stop_the_start_naming_the_key(start, settings, problem):
    with pytest.raises(Exception, match=problem):
        start(**settings)  # the start itself fails, not the first pull
