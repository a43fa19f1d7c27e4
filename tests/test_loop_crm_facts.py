"""Customer facts from the CRM (HubSpot emulator over HTTP): closed deals become
renewed / churned events the outcome report counts, once per deal, from a cursor in
the sink's state store; a won deal invites the customer to a survey through the
invitation outbox, under the contact rules."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from hub.engine.dispatch import dispatch
from hub.engine.loop.crm_facts import CURSOR_KEY, sync_customer_facts
from hub.sdk import FakeClock
from hub.sdk.testing import LiveServer
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from tests.helpers import bearer

TOKEN = "pat-crm-facts"
START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def _start(make_app, clock, portal, crm, **overrides):
    app = make_app(
        clock=clock,
        sources={"nps_survey": {"plugin": "survey_typeform", "form_id": "u6nXL7", "token": "tf"}},
        sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": crm.url, "deal_facts": True}},
        routing={"followups": "hubspot"},
        notifiers={"crm": {"plugin": "crm_hubspot_property", "token": TOKEN, "base_url": crm.url}},
        resurvey={"notifier": "crm", "source": "nps_survey"},
        **overrides)
    return app.extensions["hub"], app.test_client()


def _customer_with_contact(hub, client, email: str, nps: int, external_id: str) -> tuple[int, str]:
    """A detractor's feedback; the callback push creates the HubSpot contact and links its id."""
    r = client.post("/api/v1/feedback", headers=bearer(hub), json={
        "source": "nps_survey", "external_id": external_id, "channel": "survey", "nps": nps, "text": "Niet goed.",
        "customer": {"email": email}})
    assert r.status_code in (200, 201), r.get_json()
    dispatch(hub)
    with hub.db.Session() as s:
        customer_id = s.scalars(select(m.Identity.customer_id).where(
            m.Identity.kind == "email", m.Identity.value == email)).one()
        contact_id = s.scalars(select(m.Identity.value).where(
            m.Identity.customer_id == customer_id, m.Identity.kind == "crm_id")).one()
    return customer_id, contact_id


def _events(hub) -> list[tuple[int, str, str]]:
    with hub.db.Session() as s:
        return [tuple(r) for r in s.execute(select(m.CustomerEvent.customer_id, m.CustomerEvent.type,
                                                   m.CustomerEvent.source).order_by(m.CustomerEvent.id))]


def test_closed_deals_become_outcomes_once_and_a_won_deal_invites(make_app):
    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN)
    crm = LiveServer(make_emulator_app(portal))
    try:
        hub, client = _start(make_app, clock, portal, crm, crm_facts={"invite": ["deal_won"], "source": "nps_survey"})
        lost_customer, lost_contact = _customer_with_contact(hub, client, "sanne@example.nl", 2, "r1")
        won_customer, won_contact = _customer_with_contact(hub, client, "joost@example.nl", 3, "r2")
        clock.now += 3600
        portal.add_deal({"dealstage": "closedlost", "closedate": (START + dt.timedelta(minutes=50)).isoformat(),
                         "dealname": "Verlenging 2027"}, [lost_contact], deal_id="701")
        portal.add_deal({"dealstage": "appointmentscheduled"}, [won_contact], deal_id="702")  # still open
        portal.add_deal({"dealstage": "closedwon"}, ["99999"], deal_id="703")  # a contact the hub does not know

        report = sync_customer_facts(hub)
        assert (report.read, report.events, report.unknown_customers, report.invitations) == (2, 1, 1, 0)
        assert _events(hub) == [(lost_customer, "churned", "hubspot:deal:701:closedlost")]
        with hub.db.Session() as s:
            event = s.scalars(select(m.CustomerEvent)).one()
            assert event.occurred_at.replace(tzinfo=dt.UTC) == START + dt.timedelta(minutes=50)  # the close date
            audited = s.scalar(select(func.count()).select_from(m.AuditEvent).where(
                m.AuditEvent.action == "customer.churned"))
        assert audited == 1
        outcome = client.get("/api/v1/reports/outcomes", headers=bearer(hub)).get_json()
        assert outcome["treated"]["churned"] == 1

        # The open deal is won later: renewed, and an invitation through the outbox (the contact rules decide).
        clock.now += 600
        portal.update_deal("702", {"dealstage": "closedwon"})
        report = sync_customer_facts(hub)
        assert report.events == 1 and report.invitations == 1
        assert (won_customer, "renewed", "hubspot:deal:702:closedwon") in _events(hub)
        cursor = hub.registry.sink("hubspot").state.get(CURSOR_KEY)
        assert cursor == str(int(clock.time() * 1000))

        # Reading again (the boundary deal comes back, GTE) records nothing twice.
        again = sync_customer_facts(hub)
        assert again.read >= 1 and (again.events, again.invitations) == (0, 0)
        assert len(_events(hub)) == 2

        clock.now = (START + dt.timedelta(days=1, hours=1)).timestamp()  # out of quiet hours
        dispatch(hub)
        with hub.db.Session() as s:
            invitation = s.scalars(select(m.Invitation).where(m.Invitation.kind == "survey")).one()
        assert invitation.customer_id == won_customer and invitation.trigger == "deal_won"
        assert invitation.status == "sent", (invitation.status, invitation.reason, invitation.last_error)
        props = portal.contacts[won_contact].obj["properties"]
        assert props["feedback_hub_survey_kind"] == "survey" and props["feedback_hub_survey_link"]
        stats = client.get("/api/v1/reports/outcomes", headers=bearer(hub)).get_json()["invitations"]
        assert any(g["kind"] == "survey" and g["sent"] == 1 for g in stats)
    finally:
        crm.stop()


def test_facts_are_paged_and_a_second_invitation_waits_out_the_cooldown(make_app):
    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN, search_per_second=1000, requests_per_10s=1000)
    crm = LiveServer(make_emulator_app(portal))
    try:
        hub, client = _start(make_app, clock, portal, crm, loop={"invitation_source": "nps_survey"}, crm_facts={"invite": ["deal_won", "deal_lost"]})
        customer, contact = _customer_with_contact(hub, client, "eva@example.nl", 2, "r1")
        for i in range(230):  # three pages of a hundred
            portal.add_deal({"dealstage": "closedwon" if i % 2 else "closedlost"}, [contact], deal_id=str(5000 + i))
        before = sum(1 for r in portal.log if r.path.endswith("/deals/search"))
        report = sync_customer_facts(hub)
        assert sum(1 for r in portal.log if r.path.endswith("/deals/search")) - before == 3
        assert report.read == 230 and report.events == 230 and report.invitations == 230
        with hub.db.Session() as s:
            kinds = dict(s.execute(select(m.CustomerEvent.type, func.count()).group_by(m.CustomerEvent.type)).all())
        assert kinds == {"renewed": 115, "churned": 115}

        clock.now = (START + dt.timedelta(days=1, hours=1)).timestamp()
        dispatch(hub)
        with hub.db.Session() as s:
            statuses = dict(s.execute(select(m.Invitation.status, func.count()).where(m.Invitation.kind == "survey")
                                      .group_by(m.Invitation.status)).all())
            reasons = set(s.scalars(select(m.Invitation.reason).where(m.Invitation.status == "skipped")))
        # One customer, one invitation inside the cooldown; the rest say why they were not sent.
        assert statuses == {"sent": 1, "skipped": 229} and reasons == {"cooldown"}
    finally:
        crm.stop()


def test_an_outage_leaves_the_cursor_and_a_sink_without_facts_is_not_asked(make_app):
    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN)
    crm = LiveServer(make_emulator_app(portal))
    try:
        hub, client = _start(make_app, clock, portal, crm)
        _, contact = _customer_with_contact(hub, client, "pim@example.nl", 1, "r1")
        portal.add_deal({"dealstage": "closedlost"}, [contact], deal_id="801")
        portal.inject("error", status=503, count=50, path="/deals/search")
        report = sync_customer_facts(hub)
        assert report.events == 0 and report.errors and "hubspot" in report.errors[0]
        assert hub.registry.sink("hubspot").state.get(CURSOR_KEY) is None
        portal.faults.clear()
        assert sync_customer_facts(hub).events == 1
    finally:
        crm.stop()

    clock2 = FakeClock(START.timestamp())
    portal2 = HubSpotState(clock=clock2, token=TOKEN)
    crm2 = LiveServer(make_emulator_app(portal2))
    try:
        app = make_app(clock=clock2, sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": crm2.url}},
                       routing={"followups": "hubspot"})
        assert sync_customer_facts(app.extensions["hub"]).read == 0
        assert not any("/deals/" in r.path for r in portal2.log)
    finally:
        crm2.stop()


def test_the_emulator_control_api_seeds_and_changes_deals():
    import requests

    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN)
    crm = LiveServer(make_emulator_app(portal))
    try:
        made = requests.post(f"{crm.url}/_control/deals", json={"properties": {"dealstage": "qualifiedtobuy"},
                                                                "contact_ids": ["51"]}, timeout=5)
        assert made.status_code == 201
        deal_id = made.json()["id"]
        clock.now += 60
        changed = requests.post(f"{crm.url}/_control/deals", json={"id": deal_id,
                                                                   "properties": {"dealstage": "closedwon"}}, timeout=5)
        assert changed.status_code == 200 and changed.json()["properties"]["dealstage"] == "closedwon"
        found = requests.post(f"{crm.url}/crm/v3/objects/deals/search", headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"filterGroups": [{"filters": [
                                  {"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"},
                                  {"propertyName": "hs_lastmodifieddate", "operator": "GT",
                                   "value": str(int(START.timestamp() * 1000))}]}]}, timeout=5).json()
        assert [d["id"] for d in found["results"]] == [deal_id]
        assoc = requests.post(f"{crm.url}/crm/v4/associations/deals/contacts/batch/read",
                              headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"inputs": [{"id": deal_id}, {"id": "404"}]}, timeout=5)
        assert assoc.status_code == 207
        assert [t["toObjectId"] for t in assoc.json()["results"][0]["to"]] == [51]
    finally:
        crm.stop()


def test_the_scheduler_reads_customer_facts_at_the_configured_interval(make_app):
    from hub.engine.scheduler import HubScheduler

    app = make_app(crm_facts={"interval_seconds": 900})
    sched = HubScheduler(app.extensions["hub"])
    sched.start()
    try:
        jobs = {j.id: j for j in sched.scheduler.get_jobs()}
    finally:
        sched.shutdown()
    assert jobs["crm_facts"].trigger.interval == dt.timedelta(seconds=900)


def test_a_badly_named_moment_is_refused_by_the_config(make_app):
    import pytest

    from hub.config import ConfigError

    with pytest.raises(ConfigError, match=r"crm_facts\.invite\[0\]"):
        make_app(crm_facts={"invite": ["Deal Won!"]})
