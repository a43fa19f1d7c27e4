"""Themes (drivers): on each item in the API, as an API and inbox filter,
as tags in the UI and as the dashboard's top themes among detractors.
Runs on every backend (JSON containment is spelled per database)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from hub.api.openapi import openapi_document
from hub.engine.accounts import create_user
from hub.storage import models as m
from hub.web.i18n import NL, THEME_LABELS
from tests.helpers import bearer

PASSWORD = "correct-horse-1"
WHEN = "2026-11-19T10:00:00+00:00"  # a day before the test clock's now


def post_item(client, auth, external_id: str, text: str, **body) -> dict:
    body = {"external_id": external_id, "channel": "survey", "occurred_at": WHEN, "text": text, **body}
    resp = client.post("/api/v1/feedback", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


@pytest.fixture
def items(client, hub):
    auth = bearer(hub)
    return auth, {
        "invoice": post_item(client, auth, "b-1", "My invoice is wrong and I was charged twice", nps=1),
        "parcel": post_item(client, auth, "d-1", "Het pakket is nooit bezorgd", nps=3),
        "device": post_item(client, auth, "p-1", "Het apparaat werkt prima", nps=9),
        "plain": post_item(client, auth, "n-1", "Gewoon goed", nps=8),
    }


def listed(client, auth, query: str) -> list[int]:
    resp = client.get(f"/api/v1/feedback?{query}", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return [item["id"] for item in resp.get_json()["items"]]


# -- API ---------------------------------------------------------------------------
def test_each_item_carries_its_themes(client, items):
    auth, by = items
    assert "billing" in by["invoice"]["themes"]
    assert "delivery" in by["parcel"]["themes"]
    assert by["plain"]["themes"] == []
    again = client.get(f"/api/v1/feedback/{by['invoice']['id']}", headers=auth).get_json()
    assert again["themes"] == by["invoice"]["themes"]


def test_feedback_list_filters_by_theme(client, items):
    auth, by = items
    assert listed(client, auth, "theme=billing") == [by["invoice"]["id"]]
    assert listed(client, auth, "theme=delivery") == [by["parcel"]["id"]]
    assert listed(client, auth, "theme=product") == [by["device"]["id"]]
    assert listed(client, auth, "theme=nothing-like-it") == []
    # Whole theme names only: "app" is not a prefix match of anything else.
    assert by["device"]["id"] not in listed(client, auth, "theme=app")
    assert listed(client, auth, "theme=billing&channel=social") == []  # the other filters still apply
    assert len(listed(client, auth, "")) == 4  # no theme: every item


def test_theme_filter_is_bounded(client, items):
    auth, _ = items
    for bad in ("x" * 101, "bill%00ing"):
        resp = client.get(f"/api/v1/feedback?theme={bad}", headers=auth)
        assert resp.status_code == 400
        assert resp.get_json()["error"]["field"] == "theme"
    # LIKE wildcards and quotes are plain text, not patterns.
    assert listed(client, auth, "theme=%25") == []
    assert listed(client, auth, 'theme="billing"') == []


def test_cases_carry_the_union_of_their_items_themes(client, items):
    auth, by = items
    cases = {c["id"]: c for c in client.get("/api/v1/cases", headers=auth).get_json()["items"]}
    assert by["invoice"]["case_id"] in cases
    for item in by.values():
        if item["case_id"]:
            assert cases[item["case_id"]]["themes"] == item["themes"]  # one item per case here


def test_a_case_with_two_items_carries_both_themes(client, hub):
    auth = bearer(hub)
    who = {"email": "kim@example.nl"}
    first = post_item(client, auth, "k-1", "Mijn factuur klopt niet", nps=1, customer=who)
    second = post_item(client, auth, "k-2", "En het pakket is nooit bezorgd", nps=1, customer=who)
    assert first["case_id"] and first["case_id"] == second["case_id"]
    (case,) = client.get("/api/v1/cases", headers=auth).get_json()["items"]
    assert set(case["themes"]) == set(first["themes"]) | set(second["themes"]) >= {"billing", "delivery"}


def test_openapi_lists_theme_and_the_field():
    doc = openapi_document()
    params = {p["name"]: p for p in doc["paths"]["/feedback"]["get"]["parameters"]}
    assert params["theme"]["schema"] == {"type": "string", "maxLength": 100}
    feedback = doc["components"]["schemas"]["Feedback"]
    assert feedback["properties"]["themes"]["type"] == "array"
    assert "themes" in feedback["required"]
    assert "themes" in doc["components"]["schemas"]["CaseListed"]["properties"]


# -- UI ----------------------------------------------------------------------------
def login(hub, client, locale: str | None = None) -> None:
    with hub.db.session() as s:
        create_user(s, "alice", PASSWORD, "agent").locale = locale
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302


def row_ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="item[^"]*" data-id="(\d+)"', page)]


def test_every_theme_label_has_dutch():
    assert all(label in NL for label in THEME_LABELS.values())
    assert NL[THEME_LABELS["billing"]] == "facturatie" and NL[THEME_LABELS["waiting"]] == "wachttijd"


def test_inbox_filters_by_theme_and_keeps_the_other_filters(hub, client, items):
    _, by = items
    login(hub, client)
    page = client.get("/?status=all&theme=billing").get_data(as_text=True)
    assert row_ids(page) == [by["invoice"]["id"]]
    assert '<option value="billing" selected>billing</option>' in page  # the filter shows what is chosen
    assert row_ids(client.get("/?status=all&theme=billing&channel=social").get_data(as_text=True)) == []
    both = client.get("/?status=all&theme=delivery&q=pakket").get_data(as_text=True)
    assert row_ids(both) == [by["parcel"]["id"]]
    assert set(row_ids(client.get("/?status=all").get_data(as_text=True))) == {i["id"] for i in by.values()}
    # The live updates of an open page apply the same filter.
    fresh = client.get("/inbox/updates.json?after=0&status=all&theme=delivery").get_json()
    assert [r["id"] for r in fresh["rows"]] == [by["parcel"]["id"]]
    # A broken link is ignored, not a server error.
    assert client.get("/?status=all&theme=bill%00ing").status_code == 200


def test_inbox_rows_and_case_items_show_theme_tags_in_the_users_language(hub, client, items):
    _, by = items
    login(hub, client, locale="nl")
    page = client.get("/?status=all").get_data(as_text=True)
    assert 'class="tag theme-tag" href="/?theme=billing"' in page
    assert ">facturatie</a>" in page and ">levering</a>" in page
    case_id = by["invoice"]["case_id"]
    assert case_id, "a detractor opens a case"
    case_page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="case-themes"' in case_page
    assert re.search(r'<div class="themes">.*facturatie', case_page)


def test_theme_tags_are_escaped(hub, client, items):
    _, by = items
    evil = '<img src=x onerror="alert(1)">'
    with hub.db.session() as s:
        s.execute(update(m.FeedbackItem).where(m.FeedbackItem.id == by["invoice"]["id"])
                  .values(extra={"themes": [evil]}))
    login(hub, client)
    for url in ("/?status=all", f"/cases/{by['invoice']['case_id']}"):
        page = client.get(url).get_data(as_text=True)
        assert evil not in page
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_dashboard_shows_the_top_themes_among_detractors(hub, client, items):
    auth, _ = items
    post_item(client, auth, "b-2", "Weer een verkeerde factuur", nps=0)
    post_item(client, auth, "old", "Pakket kwijt", nps=2, occurred_at="2026-06-01T10:00:00+00:00")
    login(hub, client)
    page = client.get("/dashboard?days=7").get_data(as_text=True)
    section = page.split('id="chart-themes"', 1)[1].split("</section>", 1)[0]
    labels = re.findall(r'<text class="label"[^>]*>([^<]+)</text>', section)
    values = [int(v) for v in re.findall(r'<text class="value"[^>]*>([^<]+)</text>', section)]
    assert labels[0] == "billing" and values[0] == 2  # two detractors about billing in the week
    assert dict(zip(labels, values, strict=True))["delivery"] == 1  # the June parcel is outside the window
    assert "product" not in labels  # the device item is a promoter
    assert "3 detractors" in section


def test_dashboard_without_themed_detractors_says_so(hub, client):
    login(hub, client)
    page = client.get("/dashboard").get_data(as_text=True)
    assert "No detractor mentioned a theme in this period." in page
