"""Input hardening of ``/api/v1``: every invalid input is a 4xx, never a server error.

First each input that answered 500 before (unicode digits, integers over 64
bits, ``occurred_at`` of 1e20/NaN/year 1, ``reach`` past the column, deep
JSON, NUL and lone surrogates, a name longer than the column), then a bounded,
deterministic schemathesis run over the whole OpenAPI document, in process:
valid and invalid cases, no 5xx, and every answer as documented.
"""

from __future__ import annotations

import base64
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from hub.storage import models as m
from tests.helpers import DETRACTOR, bearer


@pytest.fixture
def api(app, hub):
    """(client, auth headers) of a hub holding one detractor (so pages and ids have content)."""
    client, auth = app.test_client(), bearer(hub)
    assert client.post("/api/v1/feedback", json=DETRACTOR, headers=auth).status_code == 201
    return client, auth


def items(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.FeedbackItem))


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- query parameters: one bounded-integer parser ------------------------------------------------
@pytest.mark.parametrize("path", [
    "/feedback?limit=%C2%B2", "/feedback?limit=%D9%A3", "/feedback?limit=99999999999999999999999",
    "/feedback?limit=0", "/feedback?limit=-1", "/feedback?limit=1.5", "/feedback?limit=",
    "/feedback?min_risk=%C2%B2", "/feedback?min_risk=99999999999999999999999", "/feedback?min_risk=101",
    "/cases?limit=%C2%B3", "/cases?customer_id=%C2%B2", "/cases?customer_id=99999999999999999999999",
    "/cases?customer_id=abc",
])
def test_invalid_integer_parameters_are_400(api, path):
    client, auth = api
    resp = client.get(f"/api/v1{path}", headers=auth)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    field = path.split("?")[1].split("=")[0]
    assert resp.get_json()["error"]["field"] == field


@pytest.mark.parametrize("path", ["/feedback?source=%00", "/feedback?q=storing%00", "/feedback?q=" + "x" * 501,
                                  "/feedback?source=" + "s" * 101])
def test_text_parameters_with_nul_or_too_long_are_400(api, path):
    # PostgreSQL cannot compare text with a NUL in it: this was a server error there.
    client, auth = api
    resp = client.get(f"/api/v1{path}", headers=auth)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["field"] == path.split("?")[1].split("=")[0]


def test_text_parameters_still_filter(api):
    client, auth = api
    found = client.get("/api/v1/feedback?q=overstappen&source=api", headers=auth).get_json()["items"]
    assert [i["external_id"] for i in found] == ["nps-1"]
    assert client.get("/api/v1/feedback?q=nowhere", headers=auth).get_json()["items"] == []


@pytest.mark.parametrize("cursor", [
    cursor_of("99999999999999999999999"), cursor_of("²"), cursor_of("-5"), cursor_of("0"), cursor_of("1e3"),
    "%C2%B2", "not base64!", base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
@pytest.mark.parametrize("path", ["/feedback", "/cases"])
def test_invalid_cursors_are_400(api, path, cursor):
    client, auth = api
    resp = client.get(f"/api/v1{path}?cursor={cursor}", headers=auth)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["field"] == "cursor"


def test_a_real_cursor_still_pages(api, hub):
    client, auth = api
    second = dict(DETRACTOR, external_id="nps-2")
    assert client.post("/api/v1/feedback", json=second, headers=auth).status_code == 201
    first = client.get("/api/v1/feedback?limit=1", headers=auth).get_json()
    rest = client.get(f"/api/v1/feedback?limit=1&cursor={first['next_cursor']}", headers=auth).get_json()
    assert [i["external_id"] for i in first["items"] + rest["items"]] == ["nps-2", "nps-1"]
    assert client.get("/api/v1/cases?customer_id=1", headers=auth).status_code == 200


@pytest.mark.parametrize("path", ["/feedback/99999999999999999999999", "/customers/99999999999999999999999",
                                  "/feedback/9223372036854775808", "/customers/18446744073709551616"])
def test_ids_over_64_bits_are_404(api, path):
    client, auth = api
    resp = client.get(f"/api/v1{path}", headers=auth)
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"


# -- the body: the pydantic input contract ---------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"reach": 2**64}, "reach"), ({"reach": 1e30}, "reach"), ({"reach": 2**31}, "reach"),
    ({"occurred_at": 1e20}, "occurred_at"), ({"occurred_at": -1e20}, "occurred_at"),
    ({"occurred_at": 1e12}, "occurred_at"),  # milliseconds sent as seconds
    ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"), ({"occurred_at": "0001-01-01T00:30:00+01:00"},
                                                               "occurred_at"),
    ({"occurred_at": "9999-12-31T23:59:59Z"}, "occurred_at"), ({"occurred_at": "2100-01-01T00:00:00Z"},
                                                               "occurred_at"),
    ({"external_id": "a\x00b"}, "external_id"), ({"text": "storing\x00"}, "text"),
    ({"text": "storing \ud800"}, "text"), ({"customer": {"name": "\udfff"}}, "customer.name"),
    ({"customer": {"name": "J" * 201}}, "customer.name"),
    ({"customer": {"identities": [{"kind": "x_handle", "value": "a\x00"}]}}, "customer.identities[0].value"),
])
def test_out_of_range_or_unstorable_fields_are_400(api, hub, change, field):
    client, auth = api
    body = json.dumps({**DETRACTOR, "external_id": "nps-new", **change})  # json.dumps escapes the surrogates
    resp = client.post("/api/v1/feedback", data=body, headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["field"] == field
    assert items(hub) == 1


@pytest.mark.parametrize("body", [b'{"external_id": "n", "channel": "survey", "nps": 3, "occurred_at": NaN}',
                                  b'{"external_id": "n", "channel": "survey", "nps": 3, "reach": Infinity}',
                                  b'{"external_id": "n", "channel": "survey", "nps": 3, "reach": 1e400}',
                                  b"[" * 100_000 + b"]" * 100_000,
                                  b'{"external_id": "n", "channel": "survey", "nps": 3, "x": ' + b"[" * 500
                                  + b"]" * 500 + b"}"],
                         ids=["nan", "infinity", "overflow", "deep-100000", "deep-500"])
def test_json_that_is_not_json_or_too_deep_is_400(api, hub, body):
    client, auth = api
    resp = client.post("/api/v1/feedback", data=body, headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["field"] == "body"
    assert items(hub) == 1


def test_bounds_keep_real_values(api, hub):
    client, auth = api
    ok = {**DETRACTOR, "external_id": "nps-3", "reach": 2**31 - 1, "occurred_at": "1970-01-01T00:00:00Z",
          "customer": {"name": "J" * 200, "email": "j@example.nl"}}
    assert client.post("/api/v1/feedback", json=ok, headers=auth).status_code == 201
    late = {**DETRACTOR, "external_id": "nps-4", "occurred_at": 4102444799}  # 2099-12-31T23:59:59Z
    assert client.post("/api/v1/feedback", json=late, headers=auth).status_code == 201
    assert items(hub) == 3


# -- the whole document, fuzzed --------------------------------------------------------------------
#: Cases per operation and generation mode: 6 operations x 2 modes x 40, under 480 cases (a few seconds).
EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.fuzz
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_schemathesis_finds_no_server_error_and_answers_conform(api, app, mode):
    """Schemathesis over ``/api/v1/openapi.json`` in process: offline, derandomized, a few hundred cases.

    Valid cases must answer as documented (status, content type, schema);
    invalid ones (wrong types, out-of-range values, missing fields) a 4xx.
    """
    _, auth = api
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    checks = CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error]
    seen: list[int] = []
    operated = 0
    for operation in operations:
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call_and_validate(headers=auth, checks=checks)
            seen.append(response.status_code)
            if mode is GenerationMode.NEGATIVE:
                assert response.status_code < 500

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (GET /health has no input)
            assert mode is GenerationMode.NEGATIVE and operation.path == "/health"
            continue
        operated += 1
    assert operated >= (6 if mode is GenerationMode.POSITIVE else 5)
    assert seen and max(seen) < 500
    assert any(400 <= s < 500 for s in seen) if mode is GenerationMode.NEGATIVE else any(s < 300 for s in seen)
