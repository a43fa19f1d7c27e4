"""Responses API pulls against the emulator and against the real payloads:
paging by ``before`` token, the cursor, retries, 429 ``Retry-After``, the rate
budget, error bodies, the form definition."""

from __future__ import annotations

import datetime as dt
import json

import flask
import pytest
from sqlalchemy import func, select

from hub.engine.pulls import pull
from hub.sdk import FakeClock, FatalError, RetriableError
from hub.storage import models as m
from plugins.survey_typeform import TypeformEmulator
from tests.conftest import fixture_path

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp())


@pytest.fixture
def setup(make_app, live_server, clock):
    """``setup(n, **source_settings) -> (hub, emulator)``: a hub pulling from an emulated form of n responses."""

    def build(n: int, **settings):
        emu = TypeformEmulator(responses=n, start=START, step_seconds=600, token="tok", clock=clock)
        emu_app = flask.Flask(__name__)
        emu_app.register_blueprint(emu.blueprint())
        source = {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "tok",
                  "base_url": live_server(emu_app), **settings}
        app = make_app(sources={"nps": source}, clock=clock)
        return app.extensions["hub"], emu

    return build


def api_calls(emu: TypeformEmulator, path_end="/responses") -> list[dict]:
    return [r for r in emu.requests if r["path"].endswith(path_end)]


def item_count(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.FeedbackItem))


def state(hub) -> m.ConnectorState:
    with hub.db.Session() as s:
        return s.scalars(select(m.ConnectorState).where(m.ConnectorState.instance == "nps")).one()


def test_pull_pages_by_before_token_and_saves_the_cursor(setup):
    hub, emu = setup(237, page_size=50)
    report = pull(hub, "nps")
    assert (report.pages, report.records, report.new_items, report.duplicates) == (5, 237, 237, 0)
    calls = api_calls(emu)
    assert [c["status"] for c in calls] == [200] * 5
    for c in calls:
        assert c["params"]["page_size"] == "50" and c["params"]["completed"] == "true"
        assert "sort" not in c["params"] and "since" not in c["params"]  # first run: the whole history
    # Each page continues before the last token of the page before (newest first).
    assert "before" not in calls[0]["params"]
    assert [c["params"]["before"] for c in calls[1:]] == [emu.token_of(237 - 50 * k) for k in range(1, 5)]
    newest = dt.datetime.fromtimestamp(emu.submitted_ts(236), dt.UTC)
    assert state(hub).cursor == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
    with hub.db.Session() as s:
        assert s.scalar(select(func.count(func.distinct(m.FeedbackItem.external_id)))) == 237


def test_rerun_fetches_nothing_new_and_asks_only_since_the_cursor(setup):
    hub, emu = setup(120, overlap_seconds=0)
    pull(hub, "nps")
    cursor = state(hub).cursor
    again = pull(hub, "nps")
    assert again.new_items == 0
    assert again.records == 1 and again.duplicates == 1  # `since` is inclusive: only the newest comes back
    assert api_calls(emu)[-1]["params"]["since"] == cursor.rstrip("Z")
    assert state(hub).cursor == cursor and item_count(hub) == 120

    # New answers arrive: the next run brings exactly those.
    fresh = [emu.add_response() for _ in range(3)]
    third = pull(hub, "nps")
    assert (third.new_items, third.duplicates) == (3, 1)
    with hub.db.Session() as s:
        assert set(s.scalars(select(m.FeedbackItem.external_id).where(m.FeedbackItem.external_id.in_(fresh)))) == set(fresh)
    assert state(hub).cursor > cursor


def test_overlap_rereads_recent_responses_that_showed_up_late(setup):
    hub, emu = setup(50, overlap_seconds=3600)
    pull(hub, "nps")
    cursor = dt.datetime.fromisoformat(state(hub).cursor.replace("Z", "+00:00"))
    report = pull(hub, "nps")
    since = cursor - dt.timedelta(seconds=3600)
    assert api_calls(emu)[-1]["params"]["since"] == since.strftime("%Y-%m-%dT%H:%M:%S")
    expected = sum(1 for i in range(50) if emu.submitted_ts(i) >= since.timestamp())
    assert report.records == expected > 1 and report.new_items == 0


@pytest.mark.parametrize("start_date, since", [
    ("2026-03-01T08:00:00", "2026-03-01T08:00:00"),
    (dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), "2026-03-01T08:30:00"),  # TOML datetime
    (dt.date(2026, 3, 1), "2026-03-01T00:00:00"),  # TOML date
])
def test_start_date_limits_the_first_pull(setup, start_date, since):
    hub, emu = setup(100, start_date=start_date)  # responses come every 10 minutes from midnight
    report = pull(hub, "nps")
    assert api_calls(emu)[0]["params"]["since"] == since
    first = dt.datetime.fromisoformat(since + "+00:00").timestamp()
    assert report.records == sum(1 for i in range(100) if emu.submitted_ts(i) >= first)


def test_crash_mid_run_keeps_the_cursor_and_the_next_run_completes(setup, clock):
    hub, emu = setup(300, page_size=100)
    pull(hub, "nps")
    before = state(hub).cursor
    for _ in range(150):
        emu.add_response()
    # Page 1 of the next run succeeds, then the API fails for longer than the client retries.
    emu.fail_next(6, status=503, after=1)
    with pytest.raises(RetriableError):
        pull(hub, "nps")
    st = state(hub)
    assert st.cursor == before, "the cursor must not jump past pages that were never read"
    assert "503" in st.last_error
    assert item_count(hub) == 400  # the committed first page of the failed run stays

    report = pull(hub, "nps")
    assert report.new_items == 50 and item_count(hub) == 450
    assert state(hub).cursor > before and state(hub).last_error is None


def test_429_retry_after_delays_the_next_request(setup, clock):
    hub, emu = setup(25, page_size=10, fetch_definition=False)
    emu.fail_next(1, status=429, retry_after=7, after=1)
    report = pull(hub, "nps")
    assert report.new_items == 25
    calls = api_calls(emu)
    assert [c["status"] for c in calls] == [200, 429, 200, 200]
    # The retry of the refused page went out no sooner than Retry-After said,
    # measured on the fake clock the client sleeps on (no real waiting).
    assert calls[2]["at"] - calls[1]["at"] >= 7
    assert 7 in clock.sleeps
    assert calls[2]["params"] == calls[1]["params"]


def test_server_errors_are_retried_with_backoff(setup, clock):
    hub, emu = setup(20, fetch_definition=False)
    emu.fail_next(2, status=502)
    report = pull(hub, "nps")
    assert report.new_items == 20
    assert [c["status"] for c in api_calls(emu)] == [502, 502, 200]
    assert len(clock.sleeps) >= 2 and all(s > 0 for s in clock.sleeps)


def test_requests_stay_within_two_per_second(setup):
    hub, emu = setup(115, page_size=10)
    pull(hub, "nps")
    times = [c["at"] for c in emu.requests]  # definition + 12 pages, on the fake clock
    assert len(times) == 13
    # A bucket of two, refilled at 2/s: after the first two, one request per half second at most.
    for a, b in zip(times[1:], times[2:], strict=False):
        assert b - a >= 0.5 - 1e-9
    assert times[-1] - times[0] >= (len(times) - 2) / 2 - 1e-9


def test_bearer_token_and_configurable_base_url(make_app, live_server, clock):
    emu = TypeformEmulator(responses=5, start=START, token="tok", clock=clock)
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint(), url_prefix="/eu-datacentre")  # e.g. https://api.eu.typeform.com
    seen = []
    emu_app.before_request(lambda: seen.append(flask.request.headers.get("Authorization")))
    base = live_server(emu_app) + "/eu-datacentre"
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "tok",
                                    "base_url": base}}, clock=clock)
    assert pull(app.extensions["hub"], "nps").new_items == 5
    assert seen and set(seen) == {"Bearer tok"}


def test_default_base_url_is_typeforms_api(make_app):
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": "abc", "token": "t"}})
    conn = app.extensions["hub"].registry.connector("nps")
    assert conn.http.base_url == "https://api.typeform.com"
    assert conn.http.budget is not None and conn.http.budget.rate == 2.0
    assert conn.health() == {"form_id": "abc", "mode": "pull only", "rate_limit": "2 requests / 1 s"}


def test_webhook_only_instance_pulls_nothing(make_app, live_server):
    emu = TypeformEmulator(responses=5, start=START, token="tok")
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "webhook_secret": "s",
                                    "base_url": live_server(emu_app)}})
    report = pull(app.extensions["hub"], "nps")
    assert report.records == 0 and len(emu.requests) == 0


# -- the form definition gives pulled answers their titles ----------------------------
def test_pulled_items_get_question_titles_from_the_form_definition(setup):
    hub, emu = setup(40)
    pull(hub, "nps")
    assert [c["path"] for c in emu.requests][0] == f"/forms/{emu.form_id}"
    with hub.db.Session() as s:
        texts = [t for t in s.scalars(select(m.FeedbackItem.text)) if t]
    assert texts and all(t.startswith("Wat is de belangrijkste reden voor uw score?") for t in texts)


def test_without_the_definition_the_pull_still_works(setup):
    hub, emu = setup(40, fetch_definition=False)
    pull(hub, "nps")
    assert all(r["path"].endswith("/responses") for r in emu.requests)
    with hub.db.Session() as s:
        rows = s.execute(select(m.FeedbackItem.text, m.FeedbackItem.nps)).all()
    assert len(rows) == 40 and all(nps is not None for _, nps in rows)  # NPS comes from the field type anyway
    assert not any(t and t.startswith("Wat is") for t, _ in rows)


# -- the real payloads, served as the API's answers ------------------------------------
def stub_api(live_server, status: int, fixture: str) -> tuple[str, list]:
    body = fixture_path(f"typeform/{fixture}").read_bytes()
    seen: list = []
    app = flask.Flask(__name__)

    @app.get("/forms/<form_id>/responses")
    def responses(form_id):
        seen.append(flask.request.args.to_dict())
        return flask.Response(body, status=status, content_type="application/json")

    @app.get("/forms/<form_id>")
    def form(form_id):
        return flask.Response(body if status >= 400 else b'{"id": "x"}', status=status if status >= 400 else 200,
                              content_type="application/json")

    return live_server(app), seen


def test_real_responses_page_is_pulled(make_app, live_server, clock):
    url, seen = stub_api(live_server, 200, "responses_list_typeform_go_fixture.json")
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": "formID", "token": "t", "base_url": url}},
                   clock=clock)
    hub = app.extensions["hub"]
    report = pull(hub, "nps")
    assert (report.pages, report.new_items) == (1, 1)  # a short page is the last: no extra request
    assert len(seen) == 1
    with hub.db.Session() as s:
        item = s.scalars(select(m.FeedbackItem)).one()
        raw = s.scalars(select(m.RawEvent)).one()
    assert item.external_id == "yg7uthsr02eqsoyg7uth99ta5wyezlcb" and raw.kind == "response"
    assert raw.payload == json.loads(fixture_path("typeform/responses_list_typeform_go_fixture.json").read_bytes())["items"][0]
    assert state(hub).cursor == "2020-05-17T16:14:40Z"
    pull(hub, "nps")
    assert seen[-1]["since"] == "2020-05-17T16:09:40"  # cursor minus the default 300 s overlap


@pytest.mark.parametrize("status, fixture, code", [
    (401, "error_401_authentication_failed_typeform_go_mock.json", "AUTHENTICATION_FAILED"),
    (404, "error_404_form_not_found_typeform_go_mock.json", "FORM_NOT_FOUND"),
])
def test_real_error_bodies_fail_the_pull_without_retries_or_data(make_app, live_server, clock, status, fixture, code):
    url, seen = stub_api(live_server, status, fixture)
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": "formID", "token": "t", "base_url": url}},
                   clock=clock)
    hub = app.extensions["hub"]
    with pytest.raises(FatalError) as err:
        pull(hub, "nps")
    assert err.value.status == status and err.value.body["code"] == code
    assert len(seen) == 1  # a 4xx is not retried
    st = state(hub)
    assert code in st.last_error and st.cursor is None
    assert item_count(hub) == 0


def test_emulator_refuses_a_wrong_token_with_typeforms_401_body(setup):
    hub, emu = setup(5, token="wrong")
    with pytest.raises(FatalError) as err:
        pull(hub, "nps")
    assert err.value.status == 401
    assert err.value.body == json.loads(fixture_path("typeform/error_401_authentication_failed_typeform_go_mock.json")
                                        .read_bytes())
