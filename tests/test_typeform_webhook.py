"""``/webhooks/<instance>`` for Typeform: signatures, rejections that store
nothing, duplicate deliveries interleaved with a pull, a fast answer, and the
re-survey loop."""

from __future__ import annotations

import datetime as dt
import json
import threading

import flask
import pytest
from sqlalchemy import func, select

from hub.engine.pulls import pull
from hub.sdk import FakeClock, hookimpl
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from plugins.survey_typeform import TypeformEmulator
from tests.conftest import fixture_path

SECRET = "whsec-test"
FIXTURES = {  # real payloads -> their form id and response token
    "webhook_form_response_docs_example.json": ("lT4Z3j", "a3a12ec67a1365927098a606107fac15"),
    "webhook_pipedream_raw_event.json": ("mXYzPFAJ", "20gh4opy9jh1jh6s0bd2n20gh4fy4rf4"),
    "webhook_real_2018_rademade.json": ("VwQv3f", "4969bac7b56e83a82ad060f0ae57faed"),
}


def typeform_app(make_app, *, form_id="lT4Z3j", base_url="http://127.0.0.1:9", plugins=(), config=None, **source):
    """A hub with one Typeform source ``nps``; ``source`` overrides its settings (None drops one)."""
    settings = {"plugin": "survey_typeform", "form_id": form_id, "token": "tok", "webhook_secret": SECRET,
                "base_url": base_url, **source}
    app = make_app(plugins=plugins, sources={"nps": {k: v for k, v in settings.items() if v is not None}},
                   clock=FakeClock(start=dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp()),
                   **(config or {}))
    return app, app.extensions["hub"]


def counts(hub) -> tuple[int, int]:
    with hub.db.Session() as s:
        return (s.scalar(select(func.count()).select_from(m.RawEvent)),
                s.scalar(select(func.count()).select_from(m.FeedbackItem)))


def post(client, body: bytes, signature: str | None = None, secret: str | None = SECRET):
    headers = {"Content-Type": "application/json"}
    if signature is None and secret is not None:
        signature = sign_hmac(secret, body)
    if signature is not None:
        headers["Typeform-Signature"] = signature
    return post_webhook(client, "nps", body, headers)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_real_webhook_payload_is_accepted_stored_and_normalized(make_app, name):
    form_id, token = FIXTURES[name]
    app, hub = typeform_app(make_app, form_id=form_id)
    body = fixture_path(f"typeform/{name}").read_bytes()
    r = post(app.test_client(), body)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"ok": True, "stored": 1, "duplicates": 0}
    with hub.db.Session() as s:
        raw = s.scalars(select(m.RawEvent)).one()
        item = s.scalars(select(m.FeedbackItem)).one()
    assert (raw.source, raw.kind, raw.dedupe_key, raw.status) == ("nps", "form_response", token, "processed")
    assert raw.payload == json.loads(body)  # kept verbatim for replay and audit
    assert (item.source, item.external_id, item.channel, item.raw_event_id) == ("nps", token, "survey", raw.id)


def test_contract_signature_vector_is_accepted_by_the_endpoint(make_app):
    app, hub = typeform_app(make_app, form_id="mXYzPFAJ", webhook_secret="test_secret")
    body = fixture_path("typeform/webhook_pipedream_raw_event.json").read_bytes()
    r = post(app.test_client(), body, signature="sha256=vRVJ8T+abQfCOiWeu9rPhEwBycH5kGSGyVZnwO2PiUU=")
    assert r.status_code == 200 and counts(hub) == (1, 1)


DOCS = fixture_path("typeform/webhook_form_response_docs_example.json").read_bytes()


def _tampered() -> tuple[bytes, str]:
    signature = sign_hmac(SECRET, DOCS)
    return DOCS.replace(b"laura@example.com", b"mallory@example.com"), signature


def _hex_signature() -> tuple[bytes, str]:
    return DOCS, sign_hmac(SECRET, DOCS, encoding="hex")


@pytest.mark.parametrize("case, make_request, status, reason", [
    ("unsigned", lambda: (DOCS, None, None), 401, "missing Typeform-Signature"),
    ("wrong secret", lambda: (DOCS, sign_hmac("not-the-secret", DOCS), None), 401, "does not match"),
    ("tampered body", lambda: (*_tampered(), None), 401, "does not match"),
    ("hex instead of base64", lambda: (*_hex_signature(), None), 401, "does not match"),
    ("signature without prefix", lambda: (DOCS, sign_hmac(SECRET, DOCS)[len("sha256="):], None), 401, "does not match"),
    ("invalid JSON", lambda: (DOCS[:-20], None, SECRET), 400, "not valid JSON"),
    ("not UTF-8", lambda: (b"\xff\xfe{}", None, SECRET), 400, "not valid JSON"),
    ("JSON list", lambda: (b"[1, 2]", None, SECRET), 400, "not a JSON object"),
    ("other event type", lambda: (json.dumps({"event_id": "x", "event_type": "form_updated",
                                               "form_response": {"token": "t"}}).encode(), None, SECRET),
     400, "is not form_response"),
    ("no token", lambda: (json.dumps({"event_type": "form_response", "form_response": {"form_id": "lT4Z3j"}}).encode(),
                          None, SECRET), 400, "no usable token"),
    ("another form", lambda: (fixture_path("typeform/webhook_pipedream_raw_event.json").read_bytes(), None, SECRET),
     400, "not this instance's form"),
])
def test_bad_deliveries_get_4xx_and_store_nothing(make_app, case, make_request, status, reason):
    app, hub = typeform_app(make_app)
    body, signature, secret = make_request()
    r = post(app.test_client(), body, signature=signature, secret=secret)
    assert r.status_code == status, (case, r.get_json())
    assert reason in r.get_json()["error"]["message"]
    assert counts(hub) == (0, 0)


@pytest.mark.parametrize("limit, status, stored", [(len(DOCS) - 1, 413, (0, 0)), (len(DOCS), 200, (1, 1))])
def test_oversized_body_gets_413_and_stores_nothing(make_app, limit, status, stored):
    # The limit is the core's max_body_bytes (Flask's MAX_CONTENT_LENGTH); a signed body one byte over it is refused.
    app, hub = typeform_app(make_app, config={"max_body_bytes": limit})
    r = post(app.test_client(), DOCS)
    assert r.status_code == status
    assert counts(hub) == stored


def test_instance_without_webhook_secret_refuses_every_delivery(make_app):
    app, hub = typeform_app(make_app, webhook_secret=None)
    r = post(app.test_client(), DOCS, signature=sign_hmac("anything", DOCS))
    assert r.status_code == 401 and "no webhook_secret" in r.get_json()["error"]["message"]
    assert app.test_client().get("/webhooks/nps").status_code == 405
    assert counts(hub) == (0, 0)


# -- duplicates across deliveries and pulls ----------------------------------------
@pytest.fixture
def emulator_url(live_server):
    def start(emu: TypeformEmulator) -> str:
        app = flask.Flask(__name__)
        app.register_blueprint(emu.blueprint())
        return live_server(app)

    return start


@pytest.mark.parametrize("pull_after", [0, 2, 5])
def test_five_deliveries_and_a_pull_of_the_same_response_make_one_item(make_app, emulator_url, pull_after):
    emu = TypeformEmulator(responses=3, start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), token="tok",
                           webhook_secret=SECRET)
    token = emu.add_response(nps=2, text="Al drie weken storing. Ik ga overstappen!", email="jan@example.nl")
    app, hub = typeform_app(make_app, form_id=emu.form_id, base_url=emulator_url(emu))
    client = app.test_client()
    body = json.dumps(emu.webhook_event(emu.index_of(token))).encode()
    answers = []
    for delivery in range(5):
        if delivery == pull_after:
            report = pull(hub, "nps")
            assert report.records == 4
        answers.append(post(client, body).get_json())
    if pull_after == 5:
        report = pull(hub, "nps")
    assert all(a["ok"] for a in answers)  # every delivery is acknowledged, so Typeform stops retrying
    assert sum(a["stored"] for a in answers) == (1 if pull_after > 0 else 0)
    with hub.db.Session() as s:
        items = s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.external_id == token)).all()
        raws = s.scalars(select(m.RawEvent).where(m.RawEvent.dedupe_key == token)).all()
        cases = s.scalar(select(func.count()).select_from(m.Case).where(m.Case.id == items[0].case_id))
    assert len(items) == 1 and len(raws) == 1
    assert items[0].nps == 2 and cases == 1
    assert counts(hub) == (4, 4)  # the other three emulated responses came with the pull


class BlockingEnrichment:
    """Holds processing of a webhook's raw event until the test lets it go."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    @hookimpl
    def hub_enrich_feedback(self, item, config):
        self.entered.set()
        self.release.wait(timeout=30)
        return None

    @hookimpl
    def hub_feedback_ingested(self, item):
        self.done.set()


def test_webhook_is_answered_before_the_response_is_processed(make_app):
    blocker = BlockingEnrichment()
    app, hub = typeform_app(make_app, plugins=(blocker,), config={"executor": "threads"})
    try:
        r = post(app.test_client(), DOCS)
        # The answer came back while processing is still held: Typeform's 30 s
        # deadline does not depend on how long scoring or the database take.
        assert r.status_code == 200 and not blocker.release.is_set()
        assert blocker.entered.wait(timeout=10)
        # (No database read here: on SQLite the held job owns the write lock.)
        assert not blocker.done.is_set()
    finally:
        blocker.release.set()
    assert blocker.done.wait(timeout=10)
    assert counts(hub) == (1, 1)


def test_resurvey_answer_is_linked_to_its_case_as_outcome(make_app, emulator_url):
    emu = TypeformEmulator(responses=0, start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), token="tok",
                           webhook_secret=SECRET)
    app, hub = typeform_app(make_app, form_id=emu.form_id)
    client = app.test_client()
    first = emu.add_response(nps=1, text="Twee keer een verkeerde factuur.", email="sanne@example.nl")
    assert post(client, json.dumps(emu.webhook_event(emu.index_of(first))).encode()).status_code == 200
    with hub.db.Session() as s:
        case_id = s.scalars(select(m.FeedbackItem.case_id).where(m.FeedbackItem.external_id == first)).one()
    assert case_id is not None

    link = hub.registry.connector("nps").resurvey_url(case_id, "sanne@example.nl")
    assert link.endswith(f"#case_id={case_id}&email=sanne%40example.nl")
    again = emu.add_response(nps=9, text="Netjes opgelost, dank!", email="sanne@example.nl",
                             hidden={"case_id": str(case_id)})
    assert post(client, json.dumps(emu.webhook_event(emu.index_of(again))).encode()).status_code == 200
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        item = s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.external_id == again)).one()
        n_cases = s.scalar(select(func.count()).select_from(m.Case))
    assert case.resurvey_nps == 9
    assert item.case_id == case_id and n_cases == 1


def test_a_delivery_is_answered_in_front_of_flask_with_the_apps_headers(make_app):
    """A source's POST skips Flask's hooks (session, limiter, CSRF) but keeps the app's
    security headers and sets no cookie; a GET and an unknown name still go through Flask."""
    app, hub = typeform_app(make_app)
    seen: list[str] = []
    app.before_request(lambda: seen.append(flask.request.path) and None)
    client = app.test_client()
    r = post(client, DOCS)
    assert r.status_code == 200 and r.get_json() == {"ok": True, "stored": 1, "duplicates": 0}
    assert seen == [] and "Set-Cookie" not in r.headers
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Type"] == "application/json" and int(r.headers["Content-Length"]) == len(r.data)
    assert post(client, DOCS, signature="sha256=AAAA").status_code == 401  # the plugin's verdict still holds
    assert client.get("/webhooks/nps").status_code == 405 and seen == ["/webhooks/nps"]
    missing = post_webhook(client, "nope", DOCS, {"Typeform-Signature": sign_hmac(SECRET, DOCS)})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "rejected"
    assert seen == ["/webhooks/nps", "/webhooks/nope"] and counts(hub)[0] == 1


def test_an_unexpected_error_is_a_logged_json_500_and_nothing_is_acknowledged(make_app, monkeypatch, caplog):
    import hub.api.webhooks as webhooks

    app, hub = typeform_app(make_app)

    def broken(*_a, **_k):
        raise RuntimeError("database gone")

    monkeypatch.setattr(webhooks, "store_pending", broken)
    with pytest.raises(RuntimeError):  # tests propagate exceptions, as Flask does
        post(app.test_client(), DOCS)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    r = post(app.test_client(), DOCS)
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "error"
    assert "Exception on /webhooks/nps [POST]" in caplog.text and counts(hub) == (0, 0)


def test_a_delivery_after_the_database_dropped_the_connection_is_stored_on_a_new_one(make_app):
    """No ping per delivery: a connection found broken by its error is replaced, and the keyed
    insert is run again (a row that had landed would be a duplicate, never a second row)."""
    from hub.engine.raw_events import pending_inserts

    app, hub = typeform_app(make_app, config={"executor": "inline"})
    client = app.test_client()
    assert post(client, DOCS).get_json()["stored"] == 1
    writer = pending_inserts(hub.db)
    assert len(writer._idle) == 1
    writer._idle[0].close()  # what a server restart leaves behind
    other = DOCS.replace(b"a3a12ec67a1365927098a606107fac15", b"b3a12ec67a1365927098a606107fac15")
    assert post(client, other).get_json() == {"ok": True, "stored": 1, "duplicates": 0}
    assert post(client, other).get_json() == {"ok": True, "stored": 0, "duplicates": 1}
    assert counts(hub) == (2, 2) and len(writer._idle) == 1


def test_a_body_with_escaped_nul_and_surrogates_is_stored_clean_and_a_plain_one_verbatim(make_app):
    app, hub = typeform_app(make_app, config={"executor": "inline"})
    event = json.loads(DOCS)
    event["form_response"]["hidden"] = {"note": "a\u0000b \ud800"}
    dirty = json.dumps(event).encode()  # ASCII, with \u escapes
    assert post(app.test_client(), dirty).get_json()["stored"] == 1
    plain = DOCS.replace(b"a3a12ec67a1365927098a606107fac15", b"c3a12ec67a1365927098a606107fac15")
    assert post(app.test_client(), plain).get_json()["stored"] == 1
    with hub.db.Session() as s:
        rows = {r.dedupe_key: r.payload for r in s.scalars(select(m.RawEvent))}
    assert rows["a3a12ec67a1365927098a606107fac15"]["form_response"]["hidden"] == {"note": "ab \ufffd"}
    assert rows["c3a12ec67a1365927098a606107fac15"] == json.loads(plain)


def test_a_plain_delivery_is_stored_as_its_own_body_text_and_reads_back_as_its_parse(make_app):
    """The body's text is what the INSERT binds (no second JSON encoding of the parse);
    SQLite keeps that text byte for byte, PostgreSQL's JSON value equals the parse."""
    from sqlalchemy import text

    app, hub = typeform_app(make_app)
    body = json.dumps(json.loads(DOCS), indent=1).encode()  # spacing no encoder of the parse would make
    assert post(app.test_client(), body).get_json()["stored"] == 1
    with hub.db.Session() as s:
        stored = s.execute(text("SELECT CAST(payload AS TEXT) FROM raw_event")).scalar_one()
        payload = s.scalars(select(m.RawEvent.payload)).one()
    assert payload == json.loads(body)
    if hub.db.dialect == "sqlite":
        assert stored == body.decode()
    else:
        assert json.loads(stored) == json.loads(body)
