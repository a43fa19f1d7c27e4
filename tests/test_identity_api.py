"""The identity API (fixed for outside checks): suggestions, confirm/reject,
customer search, merge and split, each answer checked against the OpenAPI document."""

from __future__ import annotations

import json

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from hub.api.openapi import openapi_document
from hub.storage import models as m


def _check(path: str, method: str, status: int, body) -> None:
    doc = openapi_document()
    content = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    schema = json.loads(json.dumps(content).replace('"#/components', '"urn:openapi#/components'))
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


def _post(client, auth, **item):
    r = client.post("/api/v1/feedback", json=item, headers=auth)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _conflict(client, auth):
    """A (survey e-mail) and B (X handle), then one answer carrying both: a suggestion."""
    a = _post(client, auth, external_id="s1", channel="survey", nps=3, text="Slecht",
              customer={"email": "julia@example.nl", "name": "Julia"})
    b = _post(client, auth, external_id="t1", channel="social", text="@acme hallo?", customer={"x_handle": "julia_j"})
    _post(client, auth, external_id="s2", channel="survey", nps=4, text="Nog steeds slecht",
          customer={"email": "julia@example.nl", "x_handle": "@Julia_J"})
    return a, b


def test_suggestions_list_and_confirm(client, auth):
    a, b = _conflict(client, auth)
    r = client.get("/api/v1/identity/suggestions", headers=auth)
    assert r.status_code == 200
    _check("/identity/suggestions", "get", 200, r.get_json())
    (sug,) = r.get_json()["items"]
    assert {k: sug[k] for k in ("customer_id", "other_customer_id", "kind", "value")} == {
        "customer_id": a["customer_id"], "other_customer_id": b["customer_id"], "kind": "x_handle", "value": "julia_j"}
    assert 0.5 <= sug["confidence"] < 1 and "both customers" in sug["evidence"]
    assert r.get_json()["next_cursor"] is None
    r = client.post(f"/api/v1/identity/suggestions/{sug['id']}/confirm", json={"reason": "same person"}, headers=auth)
    assert r.status_code == 200
    _check("/identity/suggestions/{id}/confirm", "post", 200, r.get_json())
    assert r.get_json()["id"] == a["customer_id"]
    assert {(i["kind"], i["value"]) for i in r.get_json()["identities"]} == {("email", "julia@example.nl"),
                                                                              ("x_handle", "julia_j")}
    assert {t["external_id"] for t in r.get_json()["timeline"]} == {"s1", "t1", "s2"}
    assert client.get("/api/v1/identity/suggestions", headers=auth).get_json()["items"] == []
    again = client.post(f"/api/v1/identity/suggestions/{sug['id']}/confirm", headers=auth)
    assert again.status_code == 409
    _check("/identity/suggestions/{id}/confirm", "post", 409, again.get_json())
    missing = client.post("/api/v1/identity/suggestions/777/reject", headers=auth)
    assert missing.status_code == 404


def test_reject_is_remembered(client, auth, hub):
    a, b = _conflict(client, auth)
    (sug,) = client.get("/api/v1/identity/suggestions", headers=auth).get_json()["items"]
    r = client.post(f"/api/v1/identity/suggestions/{sug['id']}/reject", headers=auth)
    assert r.status_code == 200 and r.get_json()["status"] == "rejected"
    _check("/identity/suggestions/{id}/reject", "post", 200, r.get_json())
    _post(client, auth, external_id="s3", channel="survey", nps=2, text="Weer",
          customer={"email": "julia@example.nl", "x_handle": "julia_j"})
    assert client.get("/api/v1/identity/suggestions", headers=auth).get_json()["items"] == []
    with hub.db.Session() as s:
        actors = set(s.scalars(select(m.AuditEvent.actor).where(m.AuditEvent.action == "identity.suggestion_rejected")))
    assert actors == {"token:tests"}


def test_customer_search_by_name_email_and_handle(client, auth):
    a, b = _conflict(client, auth)
    find = lambda q: client.get("/api/v1/customers", query_string={"q": q}, headers=auth)  # noqa: E731
    r = find("JULIA@")
    assert r.status_code == 200
    _check("/customers", "get", 200, r.get_json())
    assert [c["id"] for c in r.get_json()["items"]] == [a["customer_id"]]
    assert [c["id"] for c in find("@julia_J").get_json()["items"]] == [b["customer_id"]]
    assert {c["id"] for c in find("julia").get_json()["items"]} == {a["customer_id"], b["customer_id"]}
    assert find("nobody-here").get_json()["items"] == []
    assert find("100%_").get_json()["items"] == []  # LIKE wildcards are text, not patterns
    assert find("").status_code == 400
    assert find("x" * 300).status_code == 400


def test_merge_and_split_through_the_api(client, auth, hub):
    a, b = _conflict(client, auth)
    r = client.post(f"/api/v1/customers/{a['customer_id']}/merge",
                    json={"other_customer_id": b["customer_id"], "reason": "same person"}, headers=auth)
    assert r.status_code == 200
    _check("/customers/{id}/merge", "post", 200, r.get_json())
    merged = r.get_json()
    assert merged["id"] == a["customer_id"]
    assert {t["external_id"] for t in merged["timeline"]} == {"s1", "t1", "s2"}
    gone = client.get(f"/api/v1/customers/{b['customer_id']}", headers=auth).get_json()
    assert gone["merged_into_id"] == a["customer_id"] and gone["identities"] == []
    # Search no longer offers the merged-away customer.
    assert [c["id"] for c in client.get("/api/v1/customers?q=julia", headers=auth).get_json()["items"]] == [
        a["customer_id"]]
    r = client.post(f"/api/v1/customers/{a['customer_id']}/split",
                    json={"identities": [{"kind": "x_handle", "value": "@Julia_J"}]}, headers=auth)
    assert r.status_code == 201
    _check("/customers/{id}/split", "post", 201, r.get_json())
    assert r.get_json()["id"] == b["customer_id"]
    assert [t["external_id"] for t in r.get_json()["timeline"]] == ["t1"]
    back = client.get(f"/api/v1/customers/{a['customer_id']}", headers=auth).get_json()
    assert {t["external_id"] for t in back["timeline"]} == {"s1", "s2"}
    with hub.db.Session() as s:
        actions = [e.action for e in s.scalars(select(m.AuditEvent).where(m.AuditEvent.actor == "token:tests"))]
    assert "customer.merged" in actions and "customer.split" in actions


def test_bad_merge_and_split_requests_are_clear_4xx(client, auth):
    a, b = _conflict(client, auth)
    cid = a["customer_id"]
    cases = [
        (f"/api/v1/customers/{cid}/merge", {"other_customer_id": cid}, 400),
        (f"/api/v1/customers/{cid}/merge", {"other_customer_id": 98765}, 404),
        (f"/api/v1/customers/{cid}/merge", {"other": 1}, 400),
        (f"/api/v1/customers/{cid}/merge", {"other_customer_id": "two"}, 400),
        ("/api/v1/customers/98765/merge", {"other_customer_id": cid}, 404),
        (f"/api/v1/customers/{cid}/split", {"identities": []}, 400),
        (f"/api/v1/customers/{cid}/split", {"identities": [{"kind": "email", "value": "zz@example.nl"}]}, 400),
        (f"/api/v1/customers/{cid}/split", {"identities": [{"kind": "email", "value": "julia@example.nl"}]}, 400),
        (f"/api/v1/customers/{cid}/split", {"identities": [{"kind": "email", "value": "a\x00@b.nl"}]}, 400),
        (f"/api/v1/customers/{cid}/merge", {"other_customer_id": b["customer_id"], "reason": "nul\x00"}, 400),
    ]
    for path, body, status in cases:
        r = client.post(path, json=body, headers=auth)
        assert r.status_code == status, (path, body, r.get_json())
        assert r.get_json()["error"]["message"]
    assert client.post(f"/api/v1/customers/{cid}/merge", data="{", headers={**auth, "Content-Type": "application/json"}
                       ).status_code == 400
    assert client.post(f"/api/v1/customers/{cid}/merge", json={"other_customer_id": b["customer_id"]}).status_code == 401
    # Nothing was changed by the refused calls.
    after = client.get(f"/api/v1/customers/{cid}", headers=auth).get_json()
    assert {t["external_id"] for t in after["timeline"]} == {"s1", "s2"}
