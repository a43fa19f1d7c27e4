"""The webcare workspace through Flask's test client, on every backend: the
case-centred inbox and its views, sorting, saved views, bulk actions,
case-less items, collision safety and presence, the activity log with system
events, public replies and canned answers, the readable admin and the styled
error pages.  Time is the app's FakeClock (``TEST_NOW``), never the wall's."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from hub.engine.accounts import create_user
from hub.engine.dispatch import dispatch
from hub.storage import models as m
from tests.conftest import TEST_NOW

PASSWORD = "correct-horse-1"
REPLY = "https://social.example/reply?to={external_id}&text={text}"


def add_user(hub, username: str, role: str = "agent") -> None:
    with hub.db.session() as s:
        create_user(s, username, PASSWORD, role)


def token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "page has no CSRF token"
    return match.group(1)


def signed_in(app, username: str, role: str = "agent"):
    add_user(app.extensions["hub"], username, role)
    client = app.test_client()
    token = token_of(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return client


def post(client, url: str, data: dict | None = None, token_from: str = "/"):
    token = token_of(client.get(token_from).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def feedback(client, auth, **body) -> dict:
    body.setdefault("occurred_at", TEST_NOW.isoformat())
    resp = client.post("/api/v1/feedback", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def case_rows(page: str) -> list[dict]:
    return [{"case": int(c), "risk": int(r), "items": int(n)}
            for c, r, n in re.findall(r'<tr class="case-row[^"]*" data-case="(\d+)" data-risk="(\d+)" data-items="(\d+)"',
                                      page)]


def seed(client, auth) -> dict[str, dict]:
    survey = feedback(client, auth, external_id="s-1", channel="survey", nps=2, language="nl",
                      text="Al drie weken storing, ik ga opzeggen.",
                      customer={"email": "anna@example.nl", "name": "Anna de Vries"})
    social = feedback(client, auth, source="x_account", external_id="1861234567890123456", channel="social",
                      language="nl", reach=25000, url="https://social.example/anna_dv/status/1861234567890123456",
                      text="@acme weer storing! Ik zeg op als dit zo doorgaat.",
                      customer={"email": "anna@example.nl", "x_handle": "anna_dv", "name": "Anna de Vries"})
    happy = feedback(client, auth, external_id="s-2", channel="survey", nps=10, language="en",
                     text="Great service, thanks!", customer={"email": "bob@example.com", "name": "Bob Brown"})
    return {"survey": survey, "social": social, "happy": happy}


@pytest.fixture
def app(make_app):
    return make_app(webcare={"reply_links": {"x_account": REPLY}})


def _set_case(hub, case_id: int, **values) -> None:
    with hub.db.session() as s:
        case = s.get(m.Case, case_id)
        for key, value in values.items():
            setattr(case, key, value)


# -- the to-do inbox ------------------------------------------------------------------
def test_todo_view_has_one_row_per_case_with_its_items_and_channels(app, client, auth):
    items = seed(client, auth)
    alice = signed_in(app, "alice")
    page = alice.get("/").get_data(as_text=True)
    rows = case_rows(page)
    # Two items of one customer are one case, one row; the happy customer's item opened none.
    assert rows == [{"case": items["survey"]["case_id"], "risk": rows[0]["risk"], "items": 2}]
    assert items["survey"]["case_id"] == items["social"]["case_id"]
    row = page[page.index('data-case="'):page.index("</tr>", page.index('data-case="'))]
    assert "channel-survey" in row and "channel-social" in row and "2 items" in row
    assert "weer storing" in row  # the latest item is the one shown
    assert 'aria-current="page"' in page and "To do" in page


def test_case_views_are_told_how_many_items_arrived(app, client, auth):
    seed(client, auth)
    alice = signed_in(app, "alice")
    page = alice.get("/").get_data(as_text=True)
    latest = int(re.search(r'data-after="(\d+)"', page).group(1))
    assert 'data-live="notice"' in page
    feedback(client, auth, external_id="n-1", channel="survey", nps=0, text="Nog steeds kapot",
             customer={"email": "new@example.nl"})
    feedback(client, auth, source="x_account", external_id="n-2", channel="social", text="@acme help",
             customer={"x_handle": "newbie"})
    body = alice.get(f"/inbox/updates.json?after={latest}&channel=social").get_json()
    assert (body["new"], body["rows"], body["latest"]) == (1, [], latest + 2)


def test_todo_orders_by_sla_due_then_risk_and_leaves_contacted_cases_to_waiting(app, client, auth):
    hub = app.extensions["hub"]
    made = [feedback(client, auth, external_id=f"o-{i}", channel="survey", nps=n, text=t,
                     customer={"email": f"o{i}@example.nl"})
            for i, (n, t) in enumerate([(0, "Ik zeg op, schandalig"), (3, "Slecht"), (4, "Matig")])]
    worst, middle, mild = (item["case_id"] for item in made)
    # The mild complaint is due first: it leads, although its risk is lowest.
    _set_case(hub, mild, sla_due_at=TEST_NOW + dt.timedelta(hours=1))
    _set_case(hub, worst, sla_due_at=TEST_NOW + dt.timedelta(hours=5))
    _set_case(hub, middle, sla_due_at=TEST_NOW + dt.timedelta(hours=5), status="contacted")
    alice = signed_in(app, "alice")
    todo = [r["case"] for r in case_rows(alice.get("/").get_data(as_text=True))]
    assert todo == [mild, worst]
    assert [r["case"] for r in case_rows(alice.get("/?view=waiting").get_data(as_text=True))] == [middle]
    by_risk = case_rows(alice.get("/?sort=risk&dir=desc").get_data(as_text=True))
    assert [r["risk"] for r in by_risk] == sorted((r["risk"] for r in by_risk), reverse=True)
    assert [r["case"] for r in case_rows(alice.get("/?sort=risk&dir=asc").get_data(as_text=True))] == [mild, worst]


def test_my_callbacks_today_lists_only_my_cases_due_today(app, client, auth):
    hub = app.extensions["hub"]
    made = [feedback(client, auth, external_id=f"c-{i}", channel="survey", nps=1, text="Bel me terug",
                     customer={"email": f"c{i}@example.nl"}) for i in range(4)]
    mine_today, mine_tomorrow, bobs_today, mine_done = (item["case_id"] for item in made)
    # TEST_NOW is 12:00 UTC = 13:00 in Amsterdam: 16:00 local is today, 09:00 tomorrow is not.
    today = TEST_NOW + dt.timedelta(hours=3)
    tomorrow = TEST_NOW + dt.timedelta(hours=20)
    with hub.db.session() as s:
        for case_id, owner, due, status in ((mine_today, "alice", today, "pending"),
                                            (mine_tomorrow, "alice", tomorrow, "pending"),
                                            (bobs_today, "bob", today, "pending"),
                                            (mine_done, "alice", today, "done")):
            s.get(m.Case, case_id).owner = owner
            for f in s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)):
                f.due_at, f.status = due, status
    alice = signed_in(app, "alice")
    add_user(hub, "bob")
    page = alice.get("/?view=callbacks").get_data(as_text=True)
    assert [r["case"] for r in case_rows(page)] == [mine_today]
    assert "16:00" in page  # the callback time, local


def test_saved_views_are_shared_by_url_and_names_are_unique(app, client, auth):
    alice = signed_in(app, "alice")
    bob = signed_in(app, "bob")
    resp = post(alice, "/inbox/views", {"name": "Social, high risk", "query": "?view=todo&channel=social&risk=high"
                                                                       "&page=3&bogus=1"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("?channel=social&risk=high")
    page = bob.get("/").get_data(as_text=True)
    assert 'href="/?channel=social&amp;risk=high" data-saved-view' in page and "Social, high risk" in page
    again = post(bob, "/inbox/views", {"name": "Social,  high risk", "query": "view=done"})
    assert again.status_code == 302
    with app.extensions["hub"].db.Session() as s:
        views = s.scalars(select(m.SavedView)).all()
    assert [(v.name, v.query, v.created_by) for v in views] == [("Social, high risk", "channel=social&risk=high",
                                                                  "alice")]
    assert post(bob, f"/inbox/views/{views[0].id}/delete").status_code == 303  # not his: refused, kept
    with app.extensions["hub"].db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.SavedView)) == 1
    assert post(alice, f"/inbox/views/{views[0].id}/delete").status_code == 302
    with app.extensions["hub"].db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.SavedView)) == 0


def test_bulk_assign_and_close_go_through_the_lifecycle(app, client, auth):
    hub = app.extensions["hub"]
    made = [feedback(client, auth, external_id=f"b-{i}", channel="survey", nps=1, text="Slecht",
                     customer={"email": f"b{i}@example.nl"}) for i in range(3)]
    ids = [item["case_id"] for item in made]
    alice = signed_in(app, "alice")
    add_user(hub, "bob")
    resp = post(alice, "/inbox/bulk", {"action": "assign", "owner": "bob", "case_id": [str(i) for i in ids[:2]]})
    assert resp.status_code == 302
    assert post(alice, "/inbox/bulk", {"action": "assign", "owner": "nobody", "case_id": [str(ids[2])]}
                ).status_code == 302
    assert post(alice, "/inbox/bulk", {"action": "close", "case_id": [str(ids[1]), str(ids[2])]}).status_code == 302
    with hub.db.Session() as s:
        cases = {c.id: c for c in s.scalars(select(m.Case).where(m.Case.id.in_(ids)))}
        actions = [(e.case_id, e.action) for e in s.scalars(select(m.AuditEvent).where(
            m.AuditEvent.case_id.in_(ids)).order_by(m.AuditEvent.id))]
        cancelled = s.scalars(select(m.Followup.status).where(m.Followup.case_id == ids[2])).all()
    assert (cases[ids[0]].owner, cases[ids[0]].status) == ("bob", "assigned")
    assert (cases[ids[1]].owner, cases[ids[1]].status) == ("bob", "closed")
    assert (cases[ids[2]].owner, cases[ids[2]].status) == (None, "closed")  # the unknown owner changed nothing
    assert actions == [(ids[0], "case.assigned"), (ids[1], "case.assigned"), (ids[1], "case.closed"),
                       (ids[2], "case.closed")]
    assert set(cancelled) == {"dead"}  # a closed case's callbacks are never pushed


def test_an_item_without_a_case_says_why_and_can_open_one_or_be_dismissed(app, client, auth):
    items = seed(client, auth)
    old = feedback(client, auth, external_id="old-1", channel="survey", nps=1, text="Vorig jaar slecht",
                   occurred_at=(TEST_NOW - dt.timedelta(days=90)).isoformat(), customer={"email": "old@example.nl"})
    assert old["case_id"] is None
    alice = signed_in(app, "alice")
    page = alice.get("/?view=feedback").get_data(as_text=True)
    assert "below the threshold" in page and "Older than 30 days when it arrived" in page
    assert f'data-open-case="{items["happy"]["id"]}"' in page and f'data-dismiss="{old["id"]}"' in page

    resp = post(alice, f"/inbox/items/{items['happy']['id']}/open-case")
    hub = app.extensions["hub"]
    with hub.db.Session() as s:
        happy = s.get(m.FeedbackItem, items["happy"]["id"])
        case = s.get(m.Case, happy.case_id)
        opened = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "case.opened")).one()
    assert resp.headers["Location"] == f"/cases/{case.id}"
    assert (case.status, case.customer_id, opened.case_id, opened.actor) == ("new", happy.customer_id, case.id,
                                                                            "user:alice")
    assert case.sla_due_at > TEST_NOW and case.team == "service"  # the default team, as the pipeline does

    post(alice, f"/inbox/items/{old['id']}/dismiss", {"next": "/?view=feedback"})
    with hub.db.Session() as s:
        item = s.get(m.FeedbackItem, old["id"])
    assert (item.dismissed_by, item.dismissed_at) == ("alice", TEST_NOW)
    # Gone from the default list, findable (and re-openable) under "Without case".
    assert f'data-id="{old["id"]}"' not in alice.get("/?view=feedback").get_data(as_text=True)
    assert "Dismissed by alice." in alice.get("/?view=feedback&status=none").get_data(as_text=True)
    # An item that has a case is not dismissed.
    post(alice, f"/inbox/items/{items['survey']['id']}/dismiss")
    with hub.db.Session() as s:
        assert s.get(m.FeedbackItem, items["survey"]["id"]).dismissed_at is None


# -- collision safety and presence ---------------------------------------------------
def _version(page: str) -> str:
    return re.search(r'name="version" value="(\d+)"', page).group(1)


def test_a_write_from_an_outdated_page_is_refused_and_changes_nothing(app, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    hub = app.extensions["hub"]
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    url = f"/cases/{case_id}"
    alice_page = alice.get(url).get_data(as_text=True)
    old = _version(alice_page)
    # Bob assigns the case to himself after Alice opened it.
    assert post(bob, f"{url}/assign", {"owner": "me", "version": _version(bob.get(url).get_data(as_text=True))},
                token_from=url).status_code == 302
    resp = post(alice, f"{url}/resolve", {"outcome": "explained", "root_cause": "outage", "resolved": "yes",
                                          "version": old}, token_from=url)
    assert resp.status_code == 303 and resp.headers["Location"] == url
    shown = alice.get(url).get_data(as_text=True)
    assert "Not saved: bob changed this case since you opened it (Assigned to bob.)" in shown
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        refused = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "case.stale_write_refused")).one()
    assert (case.status, case.owner, case.outcome) == ("assigned", "bob", None)
    assert refused.detail["sent_version"] == int(old) and refused.detail["version"] == case.version
    # A note only adds: it is taken from the old page too.
    post(alice, f"{url}/note", {"text": "belde om 14:00", "version": old}, token_from=url)
    # With the current version (the note counted too) the same change goes through.
    post(alice, f"{url}/resolve", {"outcome": "explained", "root_cause": "outage", "resolved": "yes",
                                   "version": _version(alice.get(url).get_data(as_text=True))}, token_from=url)
    with hub.db.Session() as s:
        assert s.get(m.Case, case_id).status == "resolved"
        assert s.scalar(select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.action == "case.note")) == 1


def test_presence_names_the_others_with_the_case_open_and_reports_changes(app, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    hub = app.extensions["hub"]
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    url = f"/cases/{case_id}"

    def check_in(who):
        page = who.get(url).get_data(as_text=True)
        return who.post(f"{url}/presence.json", headers={"X-CSRFToken": token_of(page)}).get_json()

    first = check_in(alice)
    assert first["others"] == []
    assert check_in(bob)["others"] == ["alice"]
    assert check_in(alice)["others"] == ["bob"]
    _set_case(hub, case_id, owner="bob")  # any change counts
    assert check_in(alice)["version"] == first["version"] + 1
    hub.clock.sleep(60)  # bob's page went quiet longer than the presence window
    assert check_in(alice)["others"] == []
    assert alice.post(f"{url}/presence.json").status_code == 400  # no CSRF token


# -- activity log, replies, canned answers -----------------------------------------------
def test_activity_log_shows_system_events_in_words(app, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    hub = app.extensions["hub"]
    alice = signed_in(app, "alice")
    dispatch(hub, ignore_schedule=True)
    page = alice.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'data-action="case.opened"' in page and "Case opened." in page
    assert 'data-action="followup.created"' in page and "Callback created for" in page
    assert "Callback pushed to the CRM." in page or "Callback pushed to local" in page
    assert "sla.breached" not in page
    with hub.db.Session() as s:
        due = s.get(m.Case, case_id).sla_due_at
    hub.clock.sleep((due - TEST_NOW).total_seconds() + 60)
    page = alice.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'data-action="sla.breached"' in page and "SLA breached: no contact by" in page
    assert "followup_id=" not in page and "{'" not in page  # sentences, not raw details
    post(alice, f"/cases/{case_id}/resolve", {"outcome": "callback_done", "root_cause": "outage",
                                              "resolved": "yes"}, token_from=f"/cases/{case_id}")
    page = alice.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Resolved: called back." in page and ">callback_done<" not in page


def test_reply_panel_prefills_the_platform_link_and_answered_publicly_is_recorded(app, client, auth):
    items = seed(client, auth)
    case_id = items["social"]["case_id"]
    hub = app.extensions["hub"]
    admin = signed_in(app, "root", "admin")
    assert post(admin, "/admin/canned", {"language": "nl", "title": "Sorry storing",
                                         "text": "Vervelend! Stuur ons een DM met je postcode."},
                token_from="/admin/canned").status_code == 302
    assert post(admin, "/admin/canned", {"language": "en", "title": "x" * 101, "text": "t"},
                token_from="/admin/canned").status_code == 400
    alice = signed_in(app, "alice")
    page = alice.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="reply-panel"' in page
    assert 'data-reply-template="https://social.example/reply?to=1861234567890123456&amp;text=__TEXT__"' in page
    assert 'data-canned="Vervelend! Stuur ons een DM met je postcode."' in page
    post(alice, f"/cases/{case_id}/answered-publicly", {"item_id": str(items["social"]["id"])},
         token_from=f"/cases/{case_id}")
    post(alice, f"/cases/{case_id}/answered-publicly", {"item_id": str(items["survey"]["id"])},
         token_from=f"/cases/{case_id}")  # a survey answer is no public post: refused
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        events = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "case.answered_publicly")).all()
    assert case.answered_publicly_at == TEST_NOW
    assert [(e.case_id, e.detail) for e in events] == [(case_id, {"item_id": items["social"]["id"]})]
    assert "answered publicly" in alice.get("/").get_data(as_text=True)


# -- admin and error pages -------------------------------------------------------------
def test_create_user_refuses_an_existing_name_and_reset_and_deactivate_are_separate(app):
    hub = app.extensions["hub"]
    admin = signed_in(app, "root", "admin")
    nina = signed_in(app, "nina", "viewer")
    resp = post(admin, "/admin/users", {"username": "nina", "password": "overwritten-1", "role": "admin"},
                token_from="/admin/users")
    assert resp.status_code == 409 and "exists already" in resp.get_data(as_text=True)
    with hub.db.Session() as s:
        user = s.scalars(select(m.User).where(m.User.username == "nina")).one()
    assert user.role == "viewer"
    assert nina.get("/").status_code == 200  # her session lives on: nothing changed

    post(admin, f"/admin/users/{user.id}/password", {"password": "fresh-password-2"}, token_from="/admin/users")
    assert nina.get("/").status_code == 302  # a new password ends her sessions
    fresh = app.test_client()
    token = token_of(fresh.get("/login").get_data(as_text=True))
    assert fresh.post("/login", data={"username": "nina", "password": "fresh-password-2",
                                      "csrf_token": token}).status_code == 302
    assert post(admin, f"/admin/users/{user.id}/password", {"password": "short"},
                token_from="/admin/users").status_code == 302
    post(admin, f"/admin/users/{user.id}/active", {"active": "no"}, token_from="/admin/users")
    assert fresh.get("/").status_code == 302
    with hub.db.Session() as s:
        root = s.scalars(select(m.User).where(m.User.username == "root")).one()
        assert s.get(m.User, user.id).active is False
    post(admin, f"/admin/users/{root.id}/active", {"active": "no"}, token_from="/admin/users")
    with hub.db.Session() as s:
        assert s.get(m.User, root.id).active is True  # never yourself
        actions = [e.action for e in s.scalars(select(m.AuditEvent).where(m.AuditEvent.action.like("user.%")))]
    assert "user.password_reset" in actions and "user.deactivated" in actions


def test_unknown_pages_get_the_styled_error_page_in_the_users_language(app, client):
    resp = client.get("/no/such/page", headers={"Accept-Language": "nl"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 404 and 'id="error-page"' in body and "Deze pagina bestaat niet" in body
    assert "app.css" in body and "Werkzeug" not in body
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "not_found"
    alice = signed_in(app, "alice")
    page = alice.get("/cases/999999").get_data(as_text=True)
    assert 'id="error-page"' in page and "This page does not exist" in page


def test_an_unexpected_failure_gets_the_styled_500_page_without_details(app):
    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom-for-test", "boom_for_test", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    resp = app.test_client().get("/boom-for-test")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 500 and 'data-code="500"' in body and "Something went wrong on our side" in body
    assert "secret internals" not in body and "Traceback" not in body


def test_dates_follow_the_users_language(app):
    from hub.web.filters import localdate

    when = dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.UTC)  # already the 21st in Amsterdam
    with app.test_request_context(headers={"Accept-Language": "nl"}):
        assert localdate(when) == "21-11-2026"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert localdate(when) == "21 Nov 2026"


def test_a_poll_answered_after_a_click_does_not_put_back_the_older_session(app, client, auth):
    """The race the browser met: a presence poll sent before "Assign to me"
    and answered after it must not re-send the session cookie from before
    the click, or the click's flash message is lost on the next page."""
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    bob = signed_in(app, "bob")
    url = f"/cases/{case_id}"
    page = bob.get(url).get_data(as_text=True)
    poll = bob.post(f"{url}/presence.json", headers={"X-CSRFToken": token_of(page)})
    assert poll.status_code == 200
    assert "Set-Cookie" not in poll.headers  # a background poll never writes the cookie
    updates = bob.get("/inbox/updates.json?after=0")
    assert updates.status_code == 200 and "Set-Cookie" not in updates.headers
    assert "Set-Cookie" in bob.get(url).headers  # an agent's own request still slides the session
