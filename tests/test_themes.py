"""Themes (drivers): on each item in the API, as an API and inbox filter,
as tags in the UI and as the dashboard's top themes among detractors.
Runs on every backend (JSON containment is spelled per database)."""

from __future__ import annotations

import re

import pytest

from hub.api.openapi import openapi_document
from hub.engine.accounts import create_user
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


def test_openapi_lists_theme_and_the_field():
    doc = openapi_document()
    params = {p["name"]: p for p in doc["paths"]["/feedback"]["get"]["parameters"]}
    assert params["theme"]["schema"] == {"type": "string", "maxLength": 100}
    feedback = doc["components"]["schemas"]["Feedback"]
    assert feedback["properties"]["themes"]["type"] == "array"
    assert "themes" in feedback["required"]
