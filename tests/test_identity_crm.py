"""Identity through the CRM: the real HubSpot sink against the emulator looks
customers up by e-mail or phone (their contact id and X handle linked), and a
merge in the hub merges the two HubSpot contacts when the setting says so."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.engine.crm_identity import lookup_customers
from hub.engine.merge import merge
from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FakeClock, FeedbackIn
from hub.sdk.testing import LiveServer
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from tests.conftest import TEST_NOW

TOKEN = "pat-eu1-identity-tests"


@pytest.fixture
def portal_server():
    current: dict = {}
    server = LiveServer(lambda environ, start: current["app"](environ, start))
    yield current, server.url
    server.stop()


@pytest.fixture
def crm_hub(make_app, portal_server):
    current, url = portal_server
    clock = FakeClock(TEST_NOW.timestamp())

    def factory(**settings):
        portal = HubSpotState(clock=clock, token=TOKEN)
        current["app"] = make_emulator_app(portal)
        app = make_app(clock=clock, sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": url,
                                                       **settings}},
                       routing={"followups": "hubspot"})
        return app.extensions["hub"], portal

    return factory


def _ingest(hub, *entries):
    with hub.db.session() as s:
        return Pipeline(hub).ingest(s, "t", list(entries), hub.clock.utcnow())


def _identities(hub, customer_id):
    with hub.db.Session() as s:
        return {(i.kind, i.value): (i.confidence, i.evidence) for i in s.scalars(
            select(m.Identity).where(m.Identity.customer_id == customer_id))}


def test_lookup_by_email_and_phone_links_the_contact_id_and_its_handle(crm_hub):
    hub, portal = crm_hub(contact_lookup=True)
    by_mail = portal.add_contact("sem@example.nl", properties={"firstname": "Sem", "lastname": "Bakker",
                                                              "twitterhandle": "@Sem_B"})
    by_phone = portal.add_contact(None, properties={"phone": "+31612345678", "firstname": "Eva"})
    now = hub.clock.utcnow()
    (a,) = _ingest(hub, Entry(FeedbackIn("s1", "survey", now, nps=9, customer=CustomerRef(email="Sem@example.nl"))))
    (b,) = _ingest(hub, Entry(FeedbackIn("s2", "survey", now, nps=9, customer=CustomerRef(phone="06 1234 5678"))))
    (c,) = _ingest(hub, Entry(FeedbackIn("s3", "survey", now, nps=9, customer=CustomerRef(email="nobody@example.nl"))))
    assert lookup_customers(hub) == 2
    sem = _identities(hub, a.customer_id)
    assert sem[("crm_id", by_mail["id"])][0] == pytest.approx(0.95)
    assert "CRM contact" in sem[("crm_id", by_mail["id"])][1]
    assert sem[("x_handle", "sem_b")][0] == pytest.approx(0.9)  # the handle the contact holds, normalized
    assert ("crm_id", by_phone["id"]) in _identities(hub, b.customer_id)
    assert set(_identities(hub, c.customer_id)) == {("email", "nobody@example.nl")}
    searches = [r for r in portal.log if r.path.endswith("/contacts/search")]
    assert len(searches) == 3
    # Asked once: a second run asks nothing, and a later post by the handle joins Sem.
    assert lookup_customers(hub) == 0
    assert len([r for r in portal.log if r.path.endswith("/contacts/search")]) == 3
    (post,) = _ingest(hub, Entry(FeedbackIn("t1", "social", now, text="@acme hoi",
                                            customer=CustomerRef(handles=(("x_handle", "sem_b"),)))))
    assert post.customer_id == a.customer_id


def test_a_contact_whose_handle_another_customer_holds_is_suggested(crm_hub):
    hub, portal = crm_hub(contact_lookup=True)
    portal.add_contact("kim@example.nl", properties={"twitterhandle": "kim_k"})
    now = hub.clock.utcnow()
    (x,) = _ingest(hub, Entry(FeedbackIn("t1", "social", now, text="@acme hoi",
                                         customer=CustomerRef(handles=(("x_handle", "kim_k"),)))))
    (s,) = _ingest(hub, Entry(FeedbackIn("s1", "survey", now, nps=9, customer=CustomerRef(email="kim@example.nl"))))
    assert lookup_customers(hub) == 1
    with hub.db.Session() as ses:
        (sug,) = ses.scalars(select(m.IdentitySuggestion)).all()
    assert (sug.customer_id, sug.other_customer_id, sug.rule) == (s.customer_id, x.customer_id, "crm_handle")
    assert ("x_handle", "kim_k") in _identities(hub, x.customer_id)  # not moved silently


def test_without_the_setting_the_crm_is_not_asked(crm_hub):
    hub, portal = crm_hub()
    portal.add_contact("sem@example.nl")
    _ingest(hub, Entry(FeedbackIn("s1", "survey", hub.clock.utcnow(), nps=9, customer=CustomerRef(email="sem@example.nl"))))
    assert lookup_customers(hub) == 0
    assert not [r for r in portal.log if r.path.endswith("/contacts/search")]


def test_merging_customers_merges_their_hubspot_contacts_when_configured(crm_hub):
    hub, portal = crm_hub(merge_contacts=True)
    hub.config["identity"]["crm_merge"] = True
    one = portal.add_contact("a@example.nl", properties={"firstname": "Ann"})
    two = portal.add_contact("ann.b@example.nl", properties={"lastname": "Bos"})
    now = hub.clock.utcnow()
    (a,) = _ingest(hub, Entry(FeedbackIn("s1", "survey", now, nps=9, customer=CustomerRef(email="a@example.nl",
                                                                                          crm_id=one["id"]))))
    (b,) = _ingest(hub, Entry(FeedbackIn("s2", "survey", now, nps=9, customer=CustomerRef(email="ann.b@example.nl",
                                                                                          crm_id=two["id"]))))
    with hub.db.session() as s:
        merge(s, a.customer_id, b.customer_id, actor="user:anna", now=now, hub=hub)
    assert portal.merged == [{"primary": one["id"], "merged": two["id"]}]
    assert two["id"] not in portal.contacts
    assert portal.contacts[one["id"]].obj["properties"]["lastname"] == "Bos"
    with hub.db.Session() as s:
        assert s.scalar(select(m.AuditEvent.action).where(m.AuditEvent.action == "crm.contacts_merged"))


def test_emulated_merge_refuses_bad_requests(crm_hub, portal_server):
    import requests

    _current, url = portal_server
    hub, portal = crm_hub()
    one = portal.add_contact("a@example.nl")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(f"{url}/crm/v3/objects/contacts/merge", json={"primaryObjectId": one["id"],
                                                                   "objectIdToMerge": one["id"]}, headers=headers)
    assert r.status_code == 400
    r = requests.post(f"{url}/crm/v3/objects/contacts/merge", json={"primaryObjectId": one["id"],
                                                                   "objectIdToMerge": "123"}, headers=headers)
    assert r.status_code == 404
    assert portal.merged == []
