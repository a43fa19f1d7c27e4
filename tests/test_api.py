"""API v1: ingest, validation, auth, listing, OpenAPI conformance."""

from __future__ import annotations

import json

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select

from hub.api.openapi import openapi_document
from hub.engine.dispatch import dispatch
from hub.storage import models as m
from tests.helpers import DETRACTOR, bearer, recording_app

TABLES = (m.RawEvent, m.FeedbackItem, m.Customer, m.Identity, m.Case, m.Followup)


def counts(hub) -> dict[str, int]:
    with hub.db.Session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def test_detractor_reaches_outbox_then_routed_sink_after_dispatch(make_app, auth_for):
    app, rec = recording_app(make_app)
    hub = app.extensions["hub"]
    client = app.test_client()
    r = client.post("/api/v1/feedback", json=DETRACTOR, headers=auth_for(hub))
    assert r.status_code == 201
    body = r.get_json()
    assert body["category"] == "detractor"
    assert body["case_id"] and body["customer_id"]
    signals = {reason["signal"] for reason in body["risk_reasons"]}
    assert {"nps", "churn_language"} <= signals
    assert body["risk"] == min(100, round(sum(x["weight"] for x in body["risk_reasons"])))
    with hub.db.Session() as s:
        fu = s.scalars(select(m.Followup)).one()
        assert fu.status == "pending" and fu.sink == "rec" and fu.case_id == body["case_id"]
    assert rec.pushed == []  # never pushed inside the request

    report = dispatch(hub)
    assert report.sent == 1
    assert [f.case_id for f in rec.pushed] == [body["case_id"]]
    pushed = rec.pushed[0]
    assert pushed.customer.email == "jan@example.nl"
    assert pushed.items[0].text == DETRACTOR["text"]
    with hub.db.Session() as s:
        fu = s.scalars(select(m.Followup)).one()
        assert (fu.status, fu.external_id) == ("sent", f"task-{fu.id}")
        assert s.get(m.Case, body["case_id"]).status == "scheduled"
    assert dispatch(hub).sent == 0  # nothing pushed twice


@pytest.fixture
def auth_for():
    return bearer


def test_repeated_post_returns_existing_and_adds_nothing(client, auth, hub):
    first = client.post("/api/v1/feedback", json=DETRACTOR, headers=auth)
    before = counts(hub)
    again = client.post("/api/v1/feedback", json={**DETRACTOR, "text": "changed"}, headers=auth)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["text"] == DETRACTOR["text"]
    assert counts(hub) == before


def test_same_external_id_in_another_source_is_another_item(client, auth):
    a = client.post("/api/v1/feedback", json=DETRACTOR, headers=auth)
    b = client.post("/api/v1/feedback", json={**DETRACTOR, "source": "legacy"}, headers=auth)
    assert b.status_code == 201 and a.get_json()["id"] != b.get_json()["id"]
    # same customer (email) -> merged into the same open case
    assert a.get_json()["case_id"] == b.get_json()["case_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"external_id": "x", "channel": "survey", "nps": 3', "body"),
        ("[1, 2]", "body"),
        (json.dumps({"channel": "survey", "nps": 3}), "external_id"),
        (json.dumps({"external_id": "x", "nps": 3}), "channel"),
        (json.dumps({"external_id": "x", "channel": "fax", "nps": 3}), "channel"),
        (json.dumps({"external_id": "x", "channel": "survey"}), "text"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": "3"}), "nps"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": 11}), "nps"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": True}), "nps"),
        (json.dumps({"external_id": 5, "channel": "survey", "nps": 3}), "external_id"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": 3, "rating": 3}), "rating"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": 3, "occurred_at": "yesterday"}), "occurred_at"),
        (json.dumps({"external_id": "x", "channel": "social", "text": "hi", "reach": -1}), "reach"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": 3, "customer": {"mail": "a@b"}}), "customer.mail"),
        (json.dumps({"external_id": "x", "channel": "survey", "nps": 3, "customer": {"email": "nope"}}),
         "customer.email"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(client, auth, hub, body, field):
    before = counts(hub)
    r = client.post("/api/v1/feedback", data=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["field"] == field
    assert counts(hub) == before


def test_auth_required(client, hub):
    before = counts(hub)
    assert client.post("/api/v1/feedback", json=DETRACTOR).status_code == 401
    assert client.post("/api/v1/feedback", json=DETRACTOR, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/feedback").status_code == 401
    assert client.get("/api/v1/health").status_code == 200
    assert counts(hub) == before


def test_revoked_token_is_refused(client, hub, auth):
    with hub.db.session() as s:
        for t in s.scalars(select(m.ApiToken)):
            t.revoked_at = t.created_at
    assert client.get("/api/v1/feedback", headers=auth).status_code == 401


def test_oversized_body_is_413_and_writes_nothing(make_app, auth_for):
    app = make_app(max_body_bytes=2048)
    hub = app.extensions["hub"]
    client = app.test_client()
    big = {**DETRACTOR, "text": "x" * 5000}
    before = counts(hub)
    r = client.post("/api/v1/feedback", json=big, headers=auth_for(hub))
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "too_large"
    doc = openapi_document()
    _validator(doc, _response_schema(doc, "/feedback", "post", 413)).validate(r.get_json())
    assert counts(hub) == before


def _post_many(client, auth):
    posts = [
        {"external_id": "s1", "channel": "survey", "nps": 1, "text": "Ik wil opzeggen", "customer": {"email": "a@x.nl"}},
        {"external_id": "s2", "channel": "survey", "nps": 10, "text": "Top service", "customer": {"email": "b@x.nl"}},
        {"external_id": "t1", "channel": "social", "text": "@acme storing al de hele dag, belachelijk",
         "reach": 25000, "customer": {"x_handle": "boze_klant"}},
        {"external_id": "s3", "channel": "survey", "nps": 7, "text": "Prima", "customer": {"email": "c@x.nl"}},
    ]
    return [client.post("/api/v1/feedback", json=p, headers=auth).get_json() for p in posts]


def test_list_filters_and_cursor_pagination(client, auth):
    stored = _post_many(client, auth)
    ids = lambda r: [i["external_id"] for i in r.get_json()["items"]]  # noqa: E731
    assert ids(client.get("/api/v1/feedback?channel=social", headers=auth)) == ["t1"]
    assert ids(client.get("/api/v1/feedback?category=detractor", headers=auth)) == ["s1"]
    assert set(ids(client.get("/api/v1/feedback?min_risk=30", headers=auth))) == {
        s["external_id"] for s in stored if s["risk"] >= 30}
    assert ids(client.get("/api/v1/feedback?q=opzeggen", headers=auth)) == ["s1"]
    assert ids(client.get("/api/v1/feedback?status=new", headers=auth)) == [
        s["external_id"] for s in reversed(stored) if s["case_id"]]
    page1 = client.get("/api/v1/feedback?limit=3", headers=auth).get_json()
    page2 = client.get(f"/api/v1/feedback?limit=3&cursor={page1['next_cursor']}", headers=auth).get_json()
    assert [i["external_id"] for i in page1["items"]] == ["s3", "t1", "s2"]
    assert [i["external_id"] for i in page2["items"]] == ["s1"] and page2["next_cursor"] is None
    assert client.get("/api/v1/feedback?min_risk=abc", headers=auth).get_json()["error"]["field"] == "min_risk"
    assert client.get("/api/v1/feedback?channel=fax", headers=auth).status_code == 400


def test_item_case_and_customer_timeline(client, auth):
    a = client.post("/api/v1/feedback", json={
        "external_id": "s1", "channel": "survey", "nps": 2, "text": "Slechte service",
        "occurred_at": "2026-11-01T10:00:00Z", "customer": {"email": "Jan@Example.nl", "x_handle": "@JanB"}},
        headers=auth).get_json()
    b = client.post("/api/v1/feedback", json={
        "external_id": "t9", "channel": "social", "text": "@acme nog steeds niks gehoord", "reach": 300,
        "occurred_at": "2026-11-02T10:00:00Z", "customer": {"x_handle": "janb"}}, headers=auth).get_json()
    assert b["customer_id"] == a["customer_id"]  # social handle resolved to the survey customer
    assert any(r["signal"] == "repeat_contact" for r in b["risk_reasons"])
    item = client.get(f"/api/v1/feedback/{a['id']}", headers=auth).get_json()
    assert item["risk_reasons"] == a["risk_reasons"]
    cust = client.get(f"/api/v1/customers/{a['customer_id']}", headers=auth).get_json()
    assert [t["channel"] for t in cust["timeline"]] == ["survey", "social"]
    assert {(i["kind"], i["value"]) for i in cust["identities"]} == {("email", "jan@example.nl"), ("x_handle", "janb")}
    cases = client.get("/api/v1/cases", headers=auth).get_json()["items"]
    assert len(cases) == 1 and cases[0]["items"] == 2 and cases[0]["followup"]["status"] == "pending"
    assert client.get("/api/v1/customers/999", headers=auth).status_code == 404
    assert client.get("/api/v1/feedback/999", headers=auth).status_code == 404


def _validator(doc, name):
    """A validator that resolves the document's ``#/components`` references."""
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(doc))
    schema = {"$ref": f"urn:openapi#/components/schemas/{name}"} if isinstance(name, str) else name
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _response_schema(doc, path, method, status):
    content = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return json.loads(json.dumps(content).replace('"#/components', '"urn:openapi#/components'))


def test_openapi_document_matches_real_responses(client, auth):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc == json.loads(json.dumps(openapi_document()))
    for schema in doc["components"]["schemas"].values():  # generated from the models: each a valid JSON Schema
        jsonschema.Draft202012Validator.check_schema(schema)
    stored = _post_many(client, auth)
    check = lambda path, method, status, body: _validator(doc, _response_schema(doc, path, method, status)).validate(body)  # noqa: E731
    r = client.post("/api/v1/feedback", json={**DETRACTOR, "external_id": "oa"}, headers=auth)
    check("/feedback", "post", 201, r.get_json())
    r = client.post("/api/v1/feedback", json={**DETRACTOR, "external_id": "oa"}, headers=auth)
    check("/feedback", "post", 200, r.get_json())
    r = client.post("/api/v1/feedback", json={"channel": "survey"}, headers=auth)
    check("/feedback", "post", 400, r.get_json())
    check("/feedback", "post", 401, client.post("/api/v1/feedback", json={}).get_json())
    check("/feedback", "get", 200, client.get("/api/v1/feedback?limit=2", headers=auth).get_json())
    check("/feedback/{id}", "get", 200, client.get(f"/api/v1/feedback/{stored[0]['id']}", headers=auth).get_json())
    check("/feedback/{id}", "get", 404, client.get("/api/v1/feedback/12345", headers=auth).get_json())
    check("/cases", "get", 200, client.get("/api/v1/cases", headers=auth).get_json())
    check("/customers/{id}", "get", 200,
          client.get(f"/api/v1/customers/{stored[0]['customer_id']}", headers=auth).get_json())
    check("/health", "get", 200, client.get("/api/v1/health").get_json())
    # The input schema agrees with the validator on what is accepted.
    inp = _validator(doc, "FeedbackInput")
    assert inp.is_valid(DETRACTOR)
    assert not inp.is_valid({**DETRACTOR, "score": 1})
    assert not inp.is_valid({"external_id": "x", "channel": "survey"})
