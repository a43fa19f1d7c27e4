"""The randomised control group: a deterministic share of detractors held out of callbacks,
never pushed to the CRM (HubSpot's emulator counts what arrives), re-surveyed like the others."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from hub.engine.dispatch import dispatch
from hub.engine.loop.control_group import in_control
from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FakeClock, FeedbackIn
from hub.sdk.testing import LiveServer
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from tests.conftest import TEST_NOW

TOKEN = "pat-control"


def detractors(n: int, start: int = 0) -> list[Entry]:
    return [Entry(FeedbackIn(f"d{i}", "survey", TEST_NOW, text="Slechte service, nog steeds geen oplossing.",
                             nps=i % 5, customer=CustomerRef(email=f"klant{i}@example.nl", name=f"Klant {i}")))
            for i in range(start, start + n)]


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_the_hash_assigns_about_the_share_and_always_the_same_way(share):
    picked = [in_control(cid, share, "salt") for cid in range(1, 20_001)]
    assert abs(sum(picked) / len(picked) - share) < 0.01
    assert picked == [in_control(cid, share, "salt") for cid in range(1, 20_001)]
    assert picked != [in_control(cid, share, "other salt") for cid in range(1, 20_001)]
    assert not any(in_control(cid, 0, "salt") for cid in range(1, 1000))


def test_over_2000_detractors_the_control_share_holds_and_none_reaches_the_crm(make_app):
    clock = FakeClock(TEST_NOW.timestamp())
    portal = HubSpotState(clock=clock, token=TOKEN, requests_per_10s=100_000)
    crm = LiveServer(make_emulator_app(portal))
    try:
        app = make_app(clock=clock, sinks={"hubspot": {"plugin": "crm_hubspot", "token": TOKEN, "base_url": crm.url}},
                       routing={"followups": "hubspot"}, loop={"control_share": 0.1})
        hub = app.extensions["hub"]
        with hub.db.session() as s:
            Pipeline(hub).ingest(s, "nps_survey", detractors(2000))
        for _ in range(40):
            if not dispatch(hub, ignore_schedule=True).claimed:
                break
        with hub.db.Session() as s:
            cases = s.execute(select(m.Case.id, m.Case.control, m.Customer.id).join(m.Customer)).all()
            followup_cases = set(s.scalars(select(m.Followup.case_id)))
            sent = s.scalar(select(func.count()).select_from(m.Followup).where(m.Followup.status == "sent"))
            control_emails = set(s.scalars(select(m.Identity.value).join(
                m.Case, m.Case.customer_id == m.Identity.customer_id).where(m.Case.control.is_(True))))
            audited = s.scalar(select(func.count()).select_from(m.AuditEvent).where(
                m.AuditEvent.action == "case.control_group"))
    finally:
        crm.stop()
    assert len(cases) == 2000
    control = {case_id for case_id, held, _ in cases if held}
    assert abs(len(control) / 2000 - 0.1) <= 0.03
    assert {case_id for case_id, held, cid in cases if in_control(cid, 0.1, "feedback-hub")} == control
    assert not control & followup_cases and sent == 2000 - len(control)
    # What HubSpot saw: tasks for the treated only, and no control customer as a contact.
    assert len(portal.tasks) == 2000 - len(control)
    crm_emails = {c.obj["properties"].get("email") for c in portal.contacts.values()}
    assert control_emails and not control_emails & crm_emails
    assert audited == len(control)


def test_control_cases_are_resurveyed_after_the_time_a_callback_would_take(make_app):
    clock = FakeClock(TEST_NOW.timestamp())
    app = make_app(clock=clock, loop={"control_share": 1.0}, resurvey={"notifier": "email", "source": "nps"},
                   sources={"nps": {"plugin": "survey_typeform", "form_id": "abc", "token": "t"}},
                   notifiers={"email": {"plugin": "notify_smtp", "host": "127.0.0.1", "port": 9, "sender": "a@b.nl"}})
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "nps", detractors(3))
    dispatch(hub)
    with hub.db.Session() as s:
        rows = s.scalars(select(m.Invitation)).all()
        assert s.scalar(select(func.count()).select_from(m.Followup)) == 0
    assert len(rows) == 3 and {r.trigger for r in rows} == {"control"}
    assert {r.due_at for r in rows} == {TEST_NOW + dt.timedelta(hours=48 + 72)}
    assert {r.status for r in rows} == {"pending"}


def test_a_control_case_shows_its_badge_in_the_inbox(make_app):
    from tests.test_web_ui import add_user, login  # the UI tests' helpers

    app = make_app(loop={"control_share": 0.5})
    hub = app.extensions["hub"]
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "api", detractors(40))
        held = set(s.scalars(select(m.Case.id).where(m.Case.control.is_(True))))
    assert 0 < len(held) < 40
    add_user(hub, "anna", "agent")
    client = app.test_client()
    login(client, "anna")
    page = client.get("/?view=cases").get_data(as_text=True)
    marked = {int(case_id) for case_id in re.findall(r'data-case="(\d+)"(?:(?!</tr>).)*badge-control', page, re.S)}
    assert marked == held
