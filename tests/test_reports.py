"""``/api/v1/reports/*``, ``/events`` and ``/invitations``: the revenue model's fixed example,
the treated-vs-control comparison with its statistics, customer events, bad input refused
with nothing written, and every answer valid against the OpenAPI document."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from hub.api.openapi import openapi_document
from hub.engine.loop.outcomes import two_proportions, wilson
from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FeedbackIn
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.helpers import bearer
from tests.test_api import _response_schema, _validator

FIXED = ("/api/v1/reports/revenue-at-risk?customers=1000&yearly_value=250&unhappy_complaining=120"
         "&unhappy_silent=180&complainer_churn=0.3&silent_churn=0.8")


def check(doc, path, method, status, body):
    """``body`` is what the OpenAPI document promises for that answer."""
    _validator(doc, _response_schema(doc, path, method, status)).validate(body)


def test_the_fixed_revenue_example(client, auth):
    r = client.get(FIXED, headers=auth)
    assert r.status_code == 200
    body = r.get_json()
    expected = {"revenue": 250000, "at_risk": 75000, "kept": 21000, "lost": 45000, "lost_share": 0.18,
                "lost_complaining": 9000, "lost_silent": 36000}
    assert {k: body[k] for k in expected} == expected
    assert body["currency"] == "EUR" and body["kept_silent"] == 9000
    assert set(body["input_basis"].values()) == {"query"}
    check(openapi_document(), "/reports/revenue-at-risk", "get", 200, body)


def _ingest(hub, entries):
    with hub.db.session() as s:
        return Pipeline(hub).ingest(s, "nps", entries)


def test_revenue_inputs_come_from_the_hubs_data_and_config(make_app):
    app = make_app(revenue={"default_yearly_value": 100.0, "silent_per_complaining": 2.0})
    hub = app.extensions["hub"]
    entries = [Entry(FeedbackIn(f"x{i}", "survey", TEST_NOW, nps=nps, text="Slecht." if nps < 7 else "Prima.",
                                customer=CustomerRef(email=f"k{i}@example.nl"))) for i, nps in enumerate([1, 2, 9, 10])]
    _ingest(hub, entries)
    with hub.db.session() as s:  # one customer's CRM value is known
        s.scalars(select(m.Customer).order_by(m.Customer.id)).first().value = 500.0
    body = app.test_client().get("/api/v1/reports/revenue-at-risk", headers=bearer(hub)).get_json()
    # 4 customers: 500 + 3 x 100 = 800; 2 detractors told us, 2 x 2 = 4 silent.
    assert body["revenue"] == 800 and body["inputs"]["customers"] == 4 and body["inputs"]["yearly_value"] == 200
    assert body["inputs"]["unhappy_complaining"] == 2 and body["inputs"]["unhappy_silent"] == 4
    assert body["input_basis"]["customers"] == "data" and body["input_basis"]["silent_churn"] == "config"
    assert body["at_risk"] == 6 * 200 and body["lost"] == round(2 * 0.3 * 200 + 4 * 0.8 * 200, 2)
    over = app.test_client().get("/api/v1/reports/revenue-at-risk?unhappy_complaining=3",
                                 headers=bearer(hub)).get_json()
    assert over["inputs"]["unhappy_silent"] == 6  # the silent estimate follows the complaining count


@pytest.mark.parametrize("query", ["customers=-1", "customers=ten", "complainer_churn=1.5", "silent_churn=nan",
                                   "yearly_value=1e400", "customers=2000000000"])
def test_bad_model_inputs_are_400_naming_the_parameter(client, auth, query):
    r = client.get(f"/api/v1/reports/revenue-at-risk?{query}", headers=auth)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == query.split("=")[0]


def test_reports_need_a_token(client):
    assert client.get(FIXED).status_code == 401
    assert client.get("/api/v1/reports/outcomes").status_code == 401


# -- statistics ------------------------------------------------------------------------
def test_wilson_interval_matches_the_textbook_values():
    assert wilson(0, 0) is None
    assert wilson(81, 263) == [0.2553, 0.3662]  # Wilson 1927 / Newcombe 1998 example: 81 of 263
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73


def test_two_proportion_test():
    result = two_proportions(60, 100, 40, 100)
    assert result["difference"] == 0.2 and result["significant"]
    assert result["z"] == pytest.approx(2.828, abs=0.001) and result["p_value"] == pytest.approx(0.0047, abs=0.0001)
    assert result["ci95"][0] > 0
    assert not two_proportions(5, 10, 4, 10)["significant"]
    assert two_proportions(1, 0, 1, 1)["difference"] is None


def _case(hub, s, *, customer: str, control: bool, before: int, after: int | None, churned: bool = False,
          repeat: bool = False):
    """A closed detractor case with its re-survey answer, as the loop leaves it."""
    [result] = Pipeline(hub).ingest(s, "nps", [Entry(FeedbackIn(f"{customer}-1", "survey", TEST_NOW, nps=before,
                                                                text="Slecht.",
                                                                customer=CustomerRef(email=f"{customer}@x.nl")))])
    case = s.get(m.Case, result.case_id)
    case.control, case.resurvey_nps = control, after
    case.contacted_at = None if control else TEST_NOW + dt.timedelta(hours=5)
    case.status, case.closed_at = "closed", TEST_NOW + dt.timedelta(days=1)
    if churned:
        s.add(m.CustomerEvent(customer_id=result.customer_id, type="churned",
                              occurred_at=TEST_NOW + dt.timedelta(days=20)))
    if repeat:
        s.add(m.FeedbackItem(source="api", external_id=f"{customer}-again", channel="email", text="Weer!",
                             occurred_at=TEST_NOW + dt.timedelta(days=10), customer_id=result.customer_id, risk=0))


def test_outcomes_compare_treated_and_control(make_app):
    app = make_app(loop={"control_share": 0.5})
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        for i in range(10):  # treated: 8 of 10 re-surveyed, 6 of them passive or promoter
            after = [9, 8, 7, 10, 9, 7, 3, 2, None, None][i]
            _case(hub, s, customer=f"t{i}", control=False, before=2, after=after, churned=i == 0, repeat=i < 2)
        for i in range(6):  # control: 5 of 6 re-surveyed, 1 converted
            after = [3, 4, 8, 2, 5, None][i]
            _case(hub, s, customer=f"c{i}", control=True, before=1, after=after, churned=i < 3, repeat=i < 3)
    body = app.test_client().get("/api/v1/reports/outcomes", headers=bearer(hub)).get_json()
    t, c = body["treated"], body["control"]
    assert (t["cases"], t["resurveyed"], t["converted"], t["conversion_rate"]) == (10, 8, 6, 0.75)
    assert (c["cases"], c["resurveyed"], c["converted"], c["conversion_rate"]) == (6, 5, 1, 0.2)
    assert (t["churned"], c["churned"], t["repeat_contacts"], c["repeat_contacts"]) == (1, 3, 2, 3)
    assert t["conversion_ci95"] == wilson(6, 8) and c["churn_ci95"] == wilson(3, 6)
    assert t["median_hours_to_first_contact"] == 5.0 and c["median_hours_to_first_contact"] is None
    assert body["conversion_difference"] == two_proportions(6, 8, 1, 5)
    assert body["conversion_difference"]["difference"] == 0.55 and body["control_share"] == 0.5
    check(openapi_document(), "/reports/outcomes", "get", 200, body)
    # Recovered revenue: treated churn 0.1 against the control's 0.5, 10 customers at EUR 250.
    money = app.test_client().get("/api/v1/reports/revenue-at-risk", headers=bearer(hub)).get_json()
    assert money["recovered_basis"] == "control" and money["recovered"] == pytest.approx((0.5 - 0.1) * 10 * 250)
    # The ledger per case, newest first.
    ledger = app.test_client().get("/api/v1/reports/outcomes?detail=cases&limit=3", headers=bearer(hub)).get_json()
    check(openapi_document(), "/reports/outcomes", "get", 200, ledger)
    assert [c["case_id"] for c in ledger["cases"]] == sorted((c["case_id"] for c in ledger["cases"]), reverse=True)
    newest = ledger["cases"][0]  # control c5: detractor, never re-surveyed, no callback
    assert (newest["control"], newest["category_before"], newest["resurveyed"], newest["loop_closed"]) == (
        True, "detractor", False, False)
    assert len(ledger["cases"]) == 3 and body["cases"] is None
    for bad in ("detail=everything", "detail=cases&limit=0", "detail=cases&limit=999"):
        assert app.test_client().get(f"/api/v1/reports/outcomes?{bad}", headers=bearer(hub)).status_code == 400
    # A period without cases has nothing to compare.
    empty = app.test_client().get("/api/v1/reports/outcomes?since=2030-01-01T00:00:00Z",
                                  headers=bearer(hub)).get_json()
    assert empty["treated"]["cases"] == 0 and empty["conversion_difference"]["difference"] is None
    assert app.test_client().get("/api/v1/reports/outcomes?since=yesterday",
                                 headers=bearer(hub)).status_code == 400


# -- events -------------------------------------------------------------------------------
def test_events_are_recorded_for_known_customers_only(make_app):
    app = make_app()
    hub = app.extensions["hub"]
    client, auth = app.test_client(), bearer(hub)
    _ingest(hub, [Entry(FeedbackIn("e1", "survey", TEST_NOW, nps=2, text="Slecht.",
                                   customer=CustomerRef(email="jan@example.nl")))])
    r = client.post("/api/v1/events", headers=auth, json={"customer": {"email": " Jan@Example.nl "},
                                                          "type": "churned", "occurred_at": "2026-11-25T10:00:00Z"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["type"] == "churned" and r.get_json()["occurred_at"].startswith("2026-11-25T10:00:00")
    check(openapi_document(), "/events", "post", 201, r.get_json())
    unknown = client.post("/api/v1/events", headers=auth, json={"customer": {"email": "nobody@example.nl"},
                                                                "type": "renewed"})
    assert unknown.status_code == 404
    for bad, field in (({"customer": {"email": "jan@example.nl"}, "type": "died"}, "type"),
                       ({"customer": {}, "type": "churned"}, "customer"),
                       ({"customer": {"email": "jan@example.nl"}, "type": "churned", "extra": 1}, "extra"),
                       ({"customer": {"email": "jan@example.nl"}, "type": "churned", "occurred_at": "soon"},
                        "occurred_at")):
        r = client.post("/api/v1/events", headers=auth, json=bad)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, (bad, r.get_json())
    assert client.post("/api/v1/events", headers=auth, data=b"{not json",
                       content_type="application/json").status_code == 400
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.CustomerEvent)) == 1
        assert s.scalar(select(func.count()).select_from(m.AuditEvent).where(
            m.AuditEvent.action == "customer.churned")) == 1


def test_bad_invitation_requests_write_nothing(make_app):
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": "abc", "token": "t"}})
    hub = app.extensions["hub"]
    client, auth = app.test_client(), bearer(hub)
    for bad, field in (({"customers": [{"email": "a@b.nl"}]}, "source"),
                       ({"source": "nope", "customers": [{"email": "a@b.nl"}]}, "source"),
                       ({"source": "nps", "customers": []}, "customers"),
                       ({"source": "nps", "customers": [{"email": "a@b.nl"}, {"name": "no identity"}]},
                        "customers[1]"),
                       ({"source": "nps", "customers": [{"email": "a@b.nl"}], "trigger": "Deal Closed!"}, "trigger")):
        r = client.post("/api/v1/invitations", headers=auth, json=bad)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, (bad, r.get_json())
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.Invitation)) == 0
        assert s.scalar(select(func.count()).select_from(m.Customer)) == 0
    ok = client.post("/api/v1/invitations", headers=auth, json={"source": "nps", "customers": [{"email": "a@b.nl"}]})
    assert ok.status_code == 202
    check(openapi_document(), "/invitations", "post", 202, ok.get_json())
    [row] = ok.get_json()["invitations"]
    with hub.db.Session() as s:  # no notifier configured: recorded as not sendable, with the reason
        from hub.engine.dispatch import dispatch

        dispatch(hub)
        assert s.get(m.Invitation, row["id"]).reason == "no_notifier"
