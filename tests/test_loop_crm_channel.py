"""The re-survey through the CRM instead of e-mail: the link lands on the HubSpot contact (emulator),
where a HubSpot workflow sends it; a contact HubSpot does not know ends the invitation with the reason."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.sdk import FakeClock
from hub.sdk.testing import LiveServer
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from tests.helpers import bearer

TOKEN = "pat-crm-channel"
START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


def test_the_resurvey_link_is_written_to_the_contact_for_a_crm_workflow(make_app):
    clock = FakeClock(START.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN)
    crm = LiveServer(make_emulator_app(portal))
    try:
        app = make_app(
            clock=clock,
            sources={"nps_survey": {"plugin": "survey_typeform", "form_id": "u6nXL7", "token": "tf"}},
            sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": crm.url}},
            routing={"followups": "hubspot"},
            notifiers={"crm": {"plugin": "crm_hubspot_property", "token": TOKEN, "base_url": crm.url}},
            resurvey={"notifier": "crm", "source": "nps_survey"})
        hub, client = app.extensions["hub"], app.test_client()
        auth = bearer(hub)
        r = client.post("/api/v1/feedback", headers=auth, json={
            "source": "nps_survey", "external_id": "r1", "channel": "survey", "nps": 2, "text": "Slecht geholpen.",
            "customer": {"email": "sanne@example.nl", "name": "Sanne"}})
        case_id = r.get_json()["case_id"]
        dispatch(hub)  # the callback task; the sink learns the contact id
        with hub.db.Session() as s:
            task_id = s.scalars(select(m.Followup.external_id).where(m.Followup.case_id == case_id)).one()
            contact_id = s.scalars(select(m.Identity.value).where(m.Identity.kind == "crm_id")).one()
        portal.complete_task(task_id)
        sync_completions(hub)
        clock.now += 73 * 3600
        report = dispatch(hub)
        assert report.invitations.sent == 1
        props = portal.contacts[contact_id].obj["properties"]
        hidden = dict(parse_qsl(urlsplit(props["feedback_hub_survey_link"]).fragment))
        assert hidden["case_id"] == str(case_id)
        assert props["feedback_hub_survey_kind"] == "resurvey"
        assert "/unsubscribe/" in props["feedback_hub_unsubscribe_link"]

        # A contact HubSpot does not know: the invitation ends dead, with HubSpot's answer kept.
        client.post("/api/v1/invitations", headers=auth, json={"source": "nps_survey",
                                                               "customers": [{"crm_id": "999999"}]})
        clock.now += 31 * 86400
        dispatch(hub)
        with hub.db.Session() as s:
            last = s.scalars(select(m.Invitation).order_by(m.Invitation.id.desc())).first()
        assert last.status == "dead" and "404" in last.last_error
    finally:
        crm.stop()
