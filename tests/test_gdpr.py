"""GDPR export and erase, end to end: survey answers through the API, posts through
the X webhook, callbacks pushed to the HubSpot emulator over real HTTP, then
``feedback-hub gdpr erase`` and a look at the database file's bytes.

The hub and the emulator share one FakeClock (no sleeping).  Posts are signed
Account Activity deliveries built by the X emulator; the HubSpot GDPR delete is
``POST /crm/v3/objects/contacts/gdpr-delete`` (204), as documented by HubSpot.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import String, Text, cast, func, or_, select

from hub.cli import main
from hub.engine.dispatch import dispatch
from hub.engine.privacy import deliver_requests, erase, export
from hub.sdk import FakeClock
from hub.sdk.testing import LiveServer, post_webhook, sign_hmac
from hub.storage import models as m
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app
from plugins.twitter_webcare.emulator import XEmulator
from plugins.twitter_webcare.webhook import SIGNATURE_HEADER
from tests.conftest import TEST_NOW
from tests.helpers import bearer

TOKEN = "pat-na1-gdpr"
SECRET = "x-consumer-secret-gdpr"
EMAIL = "liesbeth.verhoeven@example.nl"
HANDLE = "liesbeth_v82"
OTHER_EMAIL = "kees.jansen@example.nl"


@pytest.fixture(scope="module")
def emulator_server():
    current: dict[str, Any] = {}
    server = LiveServer(lambda environ, start: current["app"](environ, start))
    yield current, server.url
    server.stop()


class World:
    """A hub with a HubSpot sink (GDPR delete on) and an X source, and helpers to fill it."""

    def __init__(self, make_app, emulator_server, gdpr_delete=True):
        current, self.url = emulator_server
        self.clock = FakeClock(TEST_NOW.timestamp())
        self.portal = HubSpotState(clock=self.clock, token=TOKEN)
        current["app"] = make_emulator_app(self.portal)
        self.sink_settings = {"plugin": "crm_hubspot", "token": TOKEN, "base_url": self.url,
                              "gdpr_delete": gdpr_delete}
        self.source_settings = {"plugin": "twitter_webcare", "bearer_token": "tok", "user_id": "2244994945",
                                "base_url": "http://127.0.0.1:9", "consumer_secret": SECRET}
        self.app = make_app(clock=self.clock, executor="inline", sinks={"hubspot": self.sink_settings},
                            routing={"followups": "hubspot", "unreachable": "hubspot"},
                            sources={"webcare": self.source_settings})
        self.hub = self.app.extensions["hub"]
        self.client = self.app.test_client()
        self.headers = bearer(self.hub)
        self.x = XEmulator(clock=self.clock, populate=False)

    def survey(self, ext: str, email: str, handle: str | None = None, text: str = "Al weken storing, ik zeg op!",
               name: str = "Liesbeth Verhoeven"):
        customer = {"email": email, "name": name}
        if handle:
            customer["x_handle"] = handle
        resp = self.client.post("/api/v1/feedback", headers=self.headers, json={
            "external_id": ext, "channel": "survey", "nps": 1, "text": text, "customer": customer,
            "occurred_at": TEST_NOW.isoformat()})
        assert resp.status_code == 201, resp.json
        return resp.json

    def post(self, user_id: str, handle: str, text: str):
        user = self.x.users.get(user_id) or self.x.add_user(user_id, handle, "Iemand", followers=300)
        post = self.x.post(user, text)
        body = json.dumps(self.x.aaa_payload([post])).encode()
        self.deliver(body)
        return post

    def deliver(self, body: bytes):
        resp = post_webhook(self.client, "webcare", body, {SIGNATURE_HEADER: sign_hmac(SECRET, body)})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp

    def count(self, model, *where) -> int:
        with self.hub.db.Session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))

    def site_file(self, tmp_path: Path, database_url: str) -> Path:
        """The same hub as a site TOML, for the CLI."""
        def table(d: dict) -> str:
            return "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())
        path = tmp_path / "site.toml"
        path.write_text(f'database_url = "{database_url}"\nexecutor = "inline"\n'
                        f'[routing]\nfollowups = "hubspot"\nunreachable = "hubspot"\n'
                        f'[http]\nallowed_private_hosts = ["127.0.0.1"]\n'
                        f"[sinks.hubspot]\n{table(self.sink_settings)}\n"
                        f"[sources.webcare]\n{table(self.source_settings)}\n")
        return path


@pytest.fixture
def world(make_app, emulator_server):
    return World(make_app, emulator_server)


def _fill(w: World) -> dict[str, Any]:
    """Liesbeth: a survey answer (e-mail + handle), two posts, a pushed callback; Kees: his own answer,
    and a post of his that mentions @liesbeth."""
    item = w.survey("nps-liesbeth", EMAIL, HANDLE)
    w.post("777001", HANDLE, "@acme nog steeds geen internet, belachelijk")
    w.post("777001", HANDLE, "@acme wanneer bellen jullie terug?")
    w.survey("nps-kees", OTHER_EMAIL, text="Matig", name="Kees Jansen")
    w.post("777002", "kees_j", f"@acme @{HANDLE} heeft gelijk, hier ook storing")
    assert dispatch(w.hub).sent >= 1  # Liesbeth's callback: a HubSpot contact and task
    with w.hub.db.Session() as s:
        crm_ids = s.scalars(select(m.Identity.value).where(
            m.Identity.customer_id == item["customer_id"], m.Identity.kind == "crm_id")).all()
    contact = w.portal.find_contact_by_email(EMAIL)
    assert contact is not None and list(crm_ids) == [contact["id"]]
    return {"customer_id": item["customer_id"], "case_id": item["case_id"], "contact_id": contact["id"]}


def _database_bytes(database_url: str) -> bytes:
    path = Path(database_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _rows_mentioning(hub, value: str) -> list[str]:
    """``table.column`` of every text/JSON value in the database that contains ``value``."""
    found = []
    with hub.db.Session() as s:
        for table in m.Base.metadata.sorted_tables:
            for col in table.columns:
                if isinstance(col.type, String | Text) or col.type.__class__.__name__ == "JSON":
                    n = s.scalar(select(func.count()).select_from(table).where(
                        func.lower(cast(col, Text)).contains(value.lower())))
                    if n:
                        found.append(f"{table.name}.{col.name}")
    return found


# -- the acceptance ------------------------------------------------------------------------
def test_erase_leaves_no_byte_of_email_or_handle_and_hubspot_gets_the_gdpr_delete(world, tmp_path, database_url):
    w = world
    ids = _fill(w)
    if database_url.startswith("sqlite"):
        before = _database_bytes(database_url).lower()
        assert before.count(EMAIL.encode()) > 0 and before.count(HANDLE.encode()) > 0  # the check can fail

    result = CliRunner().invoke(main, ["--config", str(w.site_file(tmp_path, database_url)),
                                       "gdpr", "erase", "--email", EMAIL, "--yes"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "erased 1 customer(s)" in result.output and "CRM erasures: 1 done" in result.output

    # HubSpot: the contact by its id (the hub had learned it), contact and task gone
    assert w.portal.gdpr_deleted == [{"objectId": ids["contact_id"], "idProperty": None,
                                      "contact_id": ids["contact_id"]}]
    assert w.portal.find_contact_by_email(EMAIL) is None
    kees = w.portal.find_contact_by_email(OTHER_EMAIL)["id"]
    assert {c for t in w.portal.all_tasks() for c in t["associations"]["contacts"]} == {kees}  # hers are gone
    # the hub: customer, identities, cases, follow-ups gone; items kept only as empty tombstones
    assert w.count(m.Customer, m.Customer.id == ids["customer_id"]) == 0
    assert w.count(m.Case, m.Case.id == ids["case_id"]) == 0
    assert w.count(m.Followup, m.Followup.case_id == ids["case_id"]) == 0
    assert w.count(m.FeedbackItem, m.FeedbackItem.text.is_(None)) == 3
    assert w.count(m.Customer) == 2  # Kees (survey) and Kees (X) are untouched
    assert _rows_mentioning(w.hub, EMAIL) == [] and _rows_mentioning(w.hub, HANDLE) == []
    with w.hub.db.Session() as s:
        kees_post = s.scalars(select(m.FeedbackItem.text).where(m.FeedbackItem.text.contains("gelijk"))).one()
        erase_audit = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "gdpr.erase")).one()
        privacy = s.scalars(select(m.PrivacyRequest)).one()
    assert kees_post == "@acme [erased] heeft gelijk, hier ook storing"
    assert erase_audit.actor == "cli" and erase_audit.detail["customers"] == [ids["customer_id"]]
    assert (privacy.status, privacy.subject) == ("sent", [])
    if database_url.startswith("sqlite"):
        after = _database_bytes(database_url).lower()
        assert after.count(EMAIL.encode()) == 0
        assert after.count(HANDLE.encode()) == 0
        assert after.count(OTHER_EMAIL.encode()) > 0  # the file still holds the other customer


def test_a_redelivered_post_or_answer_does_not_bring_the_person_back(world):
    w = world
    ids = _fill(w)
    post = w.post("777003", HANDLE + "x", "@acme eerste bericht")  # a third person, not erased
    erase(w.hub, actor="test", customer_id=ids["customer_id"])
    resp = w.client.post("/api/v1/feedback", headers=w.headers, json={
        "external_id": "nps-liesbeth", "channel": "survey", "nps": 1, "text": "again",
        "customer": {"email": EMAIL}, "occurred_at": TEST_NOW.isoformat()})
    assert resp.status_code == 200  # the tombstone's key: a duplicate, nothing stored
    assert _rows_mentioning(w.hub, EMAIL) == []
    assert post.id and w.count(m.FeedbackItem, m.FeedbackItem.external_id == post.id) == 1


def test_export_holds_everything_and_names_no_one_else(world):
    w = world
    ids = _fill(w)
    doc = export(w.hub, handle="@" + HANDLE.upper())
    assert [c["id"] for c in doc["customers"]] == [ids["customer_id"]]
    assert {(i["kind"], i["value"]) for i in doc["identities"]} >= {("email", EMAIL), ("x_handle", HANDLE),
                                                                     ("crm_id", ids["contact_id"])}
    assert len(doc["items"]) == 3 and {i["channel"] for i in doc["items"]} == {"survey", "social"}
    assert len(doc["raw_events"]) == 4  # her three items' payloads and Kees' post that mentions her
    assert [c["id"] for c in doc["cases"]] == [ids["case_id"]]
    assert len(doc["followups"]) == 1 and doc["followups"][0]["status"] == "sent"
    assert all(a["case_id"] == ids["case_id"] for a in doc["audit"]) and doc["audit"]
    text = json.dumps(doc)
    assert OTHER_EMAIL not in text
    json.loads(text)  # JSON-ready all the way down


def test_export_cli_writes_json_and_refuses_unknown_or_double_queries(world, tmp_path, database_url):
    w = world
    _fill(w)
    site = str(w.site_file(tmp_path, database_url))
    out = tmp_path / "export.json"
    ok = CliRunner().invoke(main, ["--config", site, "gdpr", "export", "--email", EMAIL.upper(), "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text())["customers"][0]["name"] == "Liesbeth Verhoeven"
    unknown = CliRunner().invoke(main, ["--config", site, "gdpr", "export", "--email", "nobody@example.nl"])
    assert unknown.exit_code == 1 and "nothing in the hub matches" in unknown.output
    both = CliRunner().invoke(main, ["--config", site, "gdpr", "erase", "--email", EMAIL, "--handle", HANDLE])
    assert both.exit_code == 2 and "exactly one" in both.output


def test_erase_asks_for_confirmation(world, tmp_path, database_url):
    w = world
    ids = _fill(w)
    site = str(w.site_file(tmp_path, database_url))
    no = CliRunner().invoke(main, ["--config", site, "gdpr", "erase", "--customer", str(ids["customer_id"])],
                            input="n\n")
    assert no.exit_code == 1 and "Aborted" in no.output
    assert w.count(m.Customer, m.Customer.id == ids["customer_id"]) == 1
    assert w.portal.gdpr_deleted == []


# -- the API ---------------------------------------------------------------------------------
def test_delete_customer_needs_admin_scope_and_erases(world):
    w = world
    ids = _fill(w)
    from hub.engine.accounts import create_token

    with w.hub.db.session() as s:
        writer = create_token(s, "writer", scope="write")
        admin = create_token(s, "admin", scope="admin")
    path = f"/api/v1/customers/{ids['customer_id']}"
    denied = w.client.delete(path, headers={"Authorization": f"Bearer {writer}"})
    assert denied.status_code == 403
    assert w.count(m.Customer, m.Customer.id == ids["customer_id"]) == 1
    resp = w.client.delete(path, headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 200, resp.json
    assert resp.json == {"customer_id": ids["customer_id"], "identities": 3, "items": 3, "raw_events": 4,
                         "cases": 1, "crm_requests": 1, "crm_waiting": 0}
    gone = w.client.delete(path, headers={"Authorization": f"Bearer {admin}"})
    assert gone.status_code == 404
    # the answers are the ones the OpenAPI document declares
    from hub.api.openapi import openapi_document
    from tests.test_api import _response_schema, _validator

    doc = json.loads(json.dumps(openapi_document()))
    for answer in (resp, denied, gone):
        _validator(doc, _response_schema(doc, "/customers/{id}", "delete", answer.status_code)).validate(answer.json)
    assert w.client.get(path, headers={"Authorization": f"Bearer {admin}"}).status_code == 404
    assert len(w.portal.gdpr_deleted) == 1
    with w.hub.db.Session() as s:
        (row,) = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "gdpr.erase")).all()
    assert row.actor == "token:admin"
    assert EMAIL not in json.dumps(row.detail) and HANDLE not in json.dumps(row.detail)


# -- the CRM outbox ----------------------------------------------------------------------------
def test_a_crm_outage_delays_the_gdpr_delete_and_never_loses_it(world):
    w = world
    ids = _fill(w)
    w.portal.inject("error", count=1000, status=503, path="gdpr-delete")
    report = erase(w.hub, actor="test", customer_id=ids["customer_id"])
    assert (report.crm_delivered, report.crm_waiting) == (0, 1)
    with w.hub.db.Session() as s:
        row = s.scalars(select(m.PrivacyRequest)).one()
    assert row.status == "failed" and row.subject == [["crm_id", ids["contact_id"]]]
    assert EMAIL not in (row.last_error or "")
    # a simulated day of outage: the scheduler's job keeps trying, never gives up
    for _ in range(48):
        w.clock.sleep(1800)
        deliver_requests(w.hub)
    with w.hub.db.Session() as s:
        row = s.scalars(select(m.PrivacyRequest)).one()
    assert row.status == "failed" and row.attempts > 5
    w.portal.faults.clear()
    w.clock.sleep(4000)
    assert deliver_requests(w.hub)["sent"] == 1
    assert [d["contact_id"] for d in w.portal.gdpr_deleted] == [ids["contact_id"]]
    with w.hub.db.Session() as s:
        row = s.scalars(select(m.PrivacyRequest)).one()
    assert (row.status, row.subject) == ("sent", [])


def test_without_a_crm_id_hubspot_is_asked_by_email(world):
    w = world
    w.survey("nps-only", EMAIL)  # never pushed: the hub does not know her HubSpot id
    erase(w.hub, actor="test", email=EMAIL)
    assert w.portal.gdpr_deleted == [{"objectId": EMAIL, "idProperty": "email", "contact_id": None}]
    assert EMAIL in w.portal.blocklist


def test_the_setting_keeps_hubspot_out_of_it(make_app, emulator_server):
    w = World(make_app, emulator_server, gdpr_delete=False)
    ids = _fill(w)
    report = erase(w.hub, actor="test", customer_id=ids["customer_id"])
    assert report.crm_requests == [] and w.portal.gdpr_deleted == []
    assert w.portal.find_contact_by_email(EMAIL) is not None


# -- X deletes and revokes ---------------------------------------------------------------------
def test_x_delete_and_revoke_events_erase_those_posts(world):
    w = world
    _fill(w)
    first = w.post("888001", "piet_p", "@acme storing in Utrecht")
    w.post("888001", "piet_p", "@acme nog steeds")
    other = w.post("888002", "anna_a", "@acme bij mij ook")
    delete_body = json.loads(Path("tests/fixtures/twitter/docs_aaa_tweet_delete_events.json").read_text())
    delete_body["tweet_delete_events"][0]["status"]["id"] = first.id
    w.deliver(json.dumps(delete_body).encode())
    with w.hub.db.Session() as s:
        gone = s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.external_id == first.id)).one()
    assert gone.text is None and gone.customer_id is None and gone.extra == {"erased": "deleted on X"}

    revoke = json.loads(Path("tests/fixtures/twitter/docs_aaa_user_event_revoke.json").read_text())
    revoke["user_event"]["revoke"]["source"]["user_id"] = "888001"
    w.deliver(json.dumps(revoke).encode())
    with w.hub.db.Session() as s:
        texts = dict(s.execute(select(m.FeedbackItem.external_id, m.FeedbackItem.text).where(
            m.FeedbackItem.source == "webcare")).all())
    assert [t for t in texts.values() if t and "nog steeds" == t[6:]] == []
    assert texts[other.id] == "@acme bij mij ook"
    assert _rows_mentioning(w.hub, "storing in Utrecht") == []


def test_deleted_post_that_arrives_again_stays_erased(world):
    w = world
    post = w.post("888003", "joop_j", "@acme help")
    body = json.dumps({"for_user_id": "2244994945", "tweet_delete_events": [
        {"status": {"id": post.id, "user_id": "888003"}, "timestamp_ms": "1432228155593"}]}).encode()
    w.deliver(body)
    w.deliver(json.dumps(w.x.aaa_payload([post])).encode())  # X re-sends the create
    assert w.count(m.FeedbackItem, m.FeedbackItem.text.is_not(None), m.FeedbackItem.external_id == post.id) == 0


def test_customer_delete_never_fails_on_foreign_keys(world):
    """Rows of every table that points at a customer or case (notes, invitations, audit) are handled."""
    w = world
    ids = _fill(w)
    with w.hub.db.session() as s:
        s.add(m.AuditEvent(at=TEST_NOW, actor="user:anna", action="case.note", case_id=ids["case_id"],
                           detail={"note_id": 1}))
    report = erase(w.hub, actor="test", customer_id=ids["customer_id"])
    assert report.customers == 1
    with w.hub.db.Session() as s:
        note = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "case.note")).one()
        stray = s.scalars(select(m.FeedbackItem.id).where(or_(
            m.FeedbackItem.customer_id == ids["customer_id"], m.FeedbackItem.case_id == ids["case_id"]))).all()
    assert note.case_id is None and note.detail == {"note_id": 1, "erased_case_id": ids["case_id"]}
    assert stray == []


def test_occurred_at_is_kept_on_tombstones_for_reports(world):
    w = world
    ids = _fill(w)
    erase(w.hub, actor="test", customer_id=ids["customer_id"])
    with w.hub.db.Session() as s:
        kept = s.execute(select(m.FeedbackItem.nps, m.FeedbackItem.occurred_at).where(
            m.FeedbackItem.external_id == "nps-liesbeth")).one()
    assert kept.nps == 1 and kept.occurred_at == TEST_NOW.replace(tzinfo=dt.UTC)


# -- the sweep and stray payloads --------------------------------------------------------------
def test_sweep_replaces_whole_tokens_only():
    from hub.engine.privacy import _pattern, _scrub

    pattern = _pattern(["jan@example.nl", "janb"])
    assert _scrub("mail Jan@Example.nl of @janb.", pattern) == "mail [erased] of [erased]."
    # someone else's address or handle that merely contains the value is left alone
    assert _scrub("marjan@example.nl, jan@example.nl.au, @janbakker, @x_janb", pattern) == \
        "marjan@example.nl, jan@example.nl.au, @janbakker, @x_janb"
    assert _scrub({"author": "janb", "list": ["x janb y"]}, pattern) == {"author": "[erased]", "list": ["x [erased] y"]}


def test_a_failed_delivery_that_names_the_person_is_emptied_too(world):
    w = world
    ids = _fill(w)
    with w.hub.db.session() as s:  # a delivery that never became an item, e.g. a mapping failure
        s.add(m.RawEvent(source="webcare", kind="x.tweet.v1", dedupe_key="broken-1", status="failed",
                         payload={"tweet": {"text": f"contact: {EMAIL.upper()}"}}, received_at=TEST_NOW,
                         error="normalize: ValueError"))
    doc = export(w.hub, customer_id=ids["customer_id"])
    assert any(r["dedupe_key"] == "broken-1" for r in doc["raw_events"])
    erase(w.hub, actor="test", customer_id=ids["customer_id"])
    with w.hub.db.Session() as s:
        broken = s.scalars(select(m.RawEvent).where(m.RawEvent.dedupe_key == "broken-1")).one()
    assert broken.payload == {"erased": "gdpr"} and broken.status == "skipped"  # never replayed


def test_nothing_known_is_a_clear_error(world):
    from hub.engine.privacy import SubjectNotFound

    with pytest.raises(SubjectNotFound):
        erase(world.hub, actor="test", email="nobody@example.nl")
    with pytest.raises(ValueError, match="exactly one"):
        export(world.hub, email=EMAIL, handle=HANDLE)


def test_a_busy_database_does_not_fail_the_committed_erase(world, monkeypatch, tmp_path, database_url):
    from sqlalchemy.exc import OperationalError

    import hub.engine.privacy as privacy

    w = world
    ids = _fill(w)

    def busy(hub):
        raise OperationalError("VACUUM", {}, Exception("database is locked"))

    monkeypatch.setattr(privacy, "compact", busy)
    report = erase(w.hub, actor="test", customer_id=ids["customer_id"])
    assert report.compacted is False and report.customers == 1
    assert w.count(m.Customer, m.Customer.id == ids["customer_id"]) == 0
    monkeypatch.undo()
    done = CliRunner().invoke(main, ["--config", str(w.site_file(tmp_path, database_url)), "gdpr", "compact"])
    assert done.exit_code == 0 and "database compacted" in done.output
    if database_url.startswith("sqlite"):
        assert _database_bytes(database_url).lower().count(EMAIL.encode()) == 0
