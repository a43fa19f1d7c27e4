"""Typeform mapping: every real payload through ``normalize``, NPS detection,
identity, re-survey markers, unknown answer types, signatures and links."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from hub.sdk import Instance, RawIn
from plugins.survey_typeform import TypeformConnector, build_resurvey_url, sign, verify_signature
from tests.conftest import fixture_path


def load(name: str) -> dict:
    return json.loads(fixture_path(f"typeform/{name}").read_bytes())


def connector(**settings) -> TypeformConnector:
    settings.setdefault("form_id", "lT4Z3j")
    return TypeformConnector(Instance(name="nps", plugin="survey_typeform", kind="source", settings=settings))


def one(conn: TypeformConnector, payload, kind="form_response"):
    items = conn.normalize(RawIn(payload=payload, dedupe_key="k", kind=kind))
    assert len(items) == 1
    return items[0]


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# -- the real payloads ---------------------------------------------------------
def test_docs_example_webhook_maps_text_identity_and_keeps_the_rest():
    event = load("webhook_form_response_docs_example.json")
    item = one(connector(), event)
    assert item.external_id == "a3a12ec67a1365927098a606107fac15"
    assert item.channel == "survey"
    assert item.occurred_at == utc(2018, 1, 18, 18, 17, 2)
    # The 1-5 opinion scale and the rating are not NPS: no score is invented.
    assert item.nps is None
    assert item.customer.email == "laura@example.com"
    # Free text with its question title; the recall placeholder is not left raw.
    assert item.text == (
        "Thanks, …! What's it like where you live? Tell us in a few sentences.\n"
        "It's cold right now! I live in an older medium-sized city with a university. "
        "Geographically, the area is hilly.\n\n"
        "What is your first name?\nLaura")
    assert item.extra["calculated"] == {"score": 9}
    assert item.extra["hidden"] == {"user_id": "abc123456"}
    assert item.extra["variables"][1] == {"key": "name", "type": "text", "text": "typeform"}
    assert item.extra["landed_at"] == "2018-01-18T18:07:02Z"
    assert item.extra["via"] == "webhook" and item.extra["event_id"] == "LtWXD3crgy"
    facts = {f["field"]: f for f in item.extra["answers"]}
    assert facts["M5tXK5kG7IeA"]["value"].startswith("https://calendly.com/")
    assert facts["PNe8ZKBK8C2Q"]["value"] == {"labels": ["London", "Sydney"]}
    assert facts["NRsxU591jIW9"] == {"field": "NRsxU591jIW9", "ref": "readable_ref_opinion_scale",
                                     "question": "opinion_scale", "type": "number",
                                     "title": "How important is the weather to your opinion about a city? 1 is not "
                                              "important, 5 is very important.", "value": 2}
    assert "skipped_answers" not in item.extra
    assert item.resurvey_case_id is None


def test_docs_example_with_configured_nps_ref_uses_that_question():
    item = one(connector(nps_field_ref="readable_ref_opinion_scale"), load("webhook_form_response_docs_example.json"))
    assert item.nps == 2 and item.extra["nps_source"] == "configured"


def test_pipedream_event_maps_name_answer_and_ending():
    item = one(connector(form_id="mXYzPFAJ"), load("webhook_pipedream_raw_event.json"))
    assert item.external_id == "20gh4opy9jh1jh6s0bd2n20gh4fy4rf4"
    assert item.occurred_at == utc(2030, 1, 1, 0, 0, 1)
    assert item.text == "What's your full name?\nNAME NAME"
    assert item.nps is None and item.customer.identities() == []
    assert item.extra["ending"] == {"id": "DefaultScreen", "ref": "default_ref"}
    assert item.extra["event_id"] == "02D88GHHT019W71HGP3DS8FED2"


def test_real_2018_delivery_without_hidden_calculated_or_landed_at():
    item = one(connector(form_id="VwQv3f"), load("webhook_real_2018_rademade.json"))
    assert item.external_id == "4969bac7b56e83a82ad060f0ae57faed"
    assert item.occurred_at == utc(2018, 4, 6, 9, 0, 14)
    # The email was typed into a plain short_text "Email" question.
    assert item.customer.email == "andrey@rademade.com"
    assert "andrey@rademade.com" not in item.text
    assert item.text.startswith("Your Name and Surname\nAbramov Andrey\n\nProject name\nRademade TypeFormINtegration")
    assert item.text.count("Lorem ipsum dolor") == 8
    assert "calculated" not in item.extra and "hidden" not in item.extra and "landed_at" not in item.extra
    facts = {f["field"]: f for f in item.extra["answers"]}
    assert facts["biIeOmFPO6rk"]["type"] == "file_url"
    assert facts["fkKoNx0ly1oL"]["value"] == {"label": "Barcelona"}


def test_responses_api_item_from_typeform_go():
    page = load("responses_list_typeform_go_fixture.json")
    item = one(connector(form_id="formID"), page["items"][0], kind="response")
    assert item.external_id == "yg7uthsr02eqsoyg7uth99ta5wyezlcb"
    assert item.occurred_at == utc(2020, 5, 17, 16, 14, 40)
    assert item.text is None and item.nps is None
    assert item.extra["metadata"]["network_id"] == "e717f50b1f"
    assert item.extra["calculated"] == {"score": 0}
    assert item.extra["answers"] == [{"field": "P2OGHbtqqC7X", "ref": "092bcdc96fe0298a", "question": "yes_no", "type": "boolean",
                                      "value": True}]
    assert item.extra["via"] == "api" and item.extra["form_id"] == "formID"


def test_reconstructed_docs_api_item_without_then_with_form_definition():
    raw = load("from_docs/responses_list_docs_example_first_item_only.json")["items"][0]
    conn = connector(form_id="lR6F4j")
    item = one(conn, raw, kind="response")
    # API items carry no titles: the bare answers, in form order.
    assert item.text == ("Lian\n\nIt's a big, busy city. I moved here for a job, but I like it, so I am planning "
                         "to stay. I have made good friends here.")
    assert item.customer.email == "lian1078@other.com"
    assert item.nps is None  # an opinion scale of unknown range is not guessed to be NPS
    # With the form definition (GET /forms/{id}) the titles and the 0-10 range are known.
    conn._definition = {"id": "lR6F4j", "fields": [
        {"id": "NRsxU591jIW9", "type": "opinion_scale", "title": "Score us 0-10",
         "properties": {"steps": 11, "start_at_one": False}},
        {"id": "JwWggjAKtOkA", "type": "short_text", "title": "Your name?"},
    ]}
    item = one(conn, raw, kind="response")
    assert item.nps == 1 and item.extra["nps_source"] == "opinion_scale_0_10"
    assert item.text.startswith("Your name?\nLian\n\nIt's a big")


def test_reconstructed_nps_fragment_gives_the_score():
    fragment = load("from_docs/webhook_nps_fragment.reconstructed.json")
    event = {"event_id": "E1", "event_type": "form_response", "form_response": {
        "form_id": "lT4Z3j", "token": "tok-nps", "submitted_at": "2026-11-20T10:00:00Z",
        "definition": {"id": "lT4Z3j", "fields": [fragment["definition_field"]]},
        "answers": [fragment["answer"]]}}
    item = one(connector(), event)
    assert item.nps == 9 and item.extra["nps_source"] == "nps"


# -- NPS rules -----------------------------------------------------------------
def _response(answers, definition_fields=(), hidden=None, **extra):
    return {"form_id": "lT4Z3j", "token": "t-1", "submitted_at": "2026-11-20T10:00:00Z",
            "definition": {"id": "lT4Z3j", "fields": list(definition_fields)}, "answers": answers,
            "hidden": hidden or {}, **extra}


def _num(fid, qtype, n, ref=None):
    return {"type": "number", "number": n, "field": {"id": fid, "type": qtype, **({"ref": ref} if ref else {})}}


def test_opinion_scale_is_nps_only_when_it_runs_zero_to_ten():
    ten = {"id": "os1", "type": "opinion_scale", "title": "0-10", "properties": {"steps": 11, "start_at_one": False}}
    one_to_ten = {"id": "os1", "type": "opinion_scale", "title": "1-10", "properties": {"steps": 10, "start_at_one": True}}
    assert one(connector(), _response([_num("os1", "opinion_scale", 3)], [ten])).nps == 3
    assert one(connector(), _response([_num("os1", "opinion_scale", 3)], [one_to_ten])).nps is None


def test_nps_field_wins_over_an_earlier_opinion_scale_and_bad_values_are_ignored():
    ten = {"id": "os1", "type": "opinion_scale", "properties": {"steps": 11, "start_at_one": False}}
    answers = [_num("os1", "opinion_scale", 42), _num("n1", "nps", 8)]
    assert one(connector(), _response(answers, [ten])).nps == 8
    # A configured ref is authoritative: when that question was skipped, no other score is taken.
    assert one(connector(nps_field_ref="promoter_q"), _response([_num("n1", "nps", 8)])).nps is None
    assert one(connector(nps_field_ref="promoter_q"),
               _response([_num("n1", "nps", 8), _num("r1", "rating", 4, ref="promoter_q")])).nps == 4


# -- identity, language, re-survey ------------------------------------------------
def test_identity_from_hidden_fields_with_configurable_names():
    hidden = {"mail": "Jan@Example.NL", "klantnr": "K-991", "hs_id": "51", "naam": "Jan Smit", "taal": "nl"}
    conn = connector(email_field="mail", customer_id_field="klantnr", crm_id_field="hs_id", name_field="naam",
                     language_field="taal")
    item = one(conn, _response([], hidden=hidden))
    assert (item.customer.email, item.customer.crm_id, item.customer.name) == ("Jan@Example.NL", "51", "Jan Smit")
    assert item.language == "nl"
    assert item.extra["customer_id"] == "K-991"
    # A typed email answer is stronger than the hidden one.
    typed = {"type": "email", "email": "other@example.nl", "field": {"id": "e1", "type": "email"}}
    assert one(conn, _response([typed], hidden=hidden)).customer.email == "other@example.nl"


def test_customer_number_becomes_crm_id_only_when_configured_and_test_fillers_are_ignored():
    hidden = {"customer_id": "K-991", "email": "xxxxx"}  # Typeform's test submissions fill hidden fields with xxxxx
    assert one(connector(), _response([], hidden=hidden)).customer.identities() == []
    item = one(connector(customer_id_is_crm_id=True), _response([], hidden=hidden))
    assert item.customer.identities() == [("crm_id", "K-991")]


def test_hidden_case_id_marks_a_resurvey(caplog):
    assert one(connector(), _response([_num("n1", "nps", 9)], hidden={"case_id": "42"})).resurvey_case_id == 42
    with caplog.at_level(logging.INFO, logger="plugins.survey_typeform.mapping"):
        item = one(connector(), _response([], hidden={"case_id": "xxxxx"}))
    assert item.resurvey_case_id is None
    assert "not a case number" in caplog.text


def test_include_titles_can_be_switched_off():
    answers = [{"type": "text", "text": "Te duur.", "field": {"id": "q1", "type": "long_text"}}]
    item = one(connector(include_titles=False), _response(answers, [{"id": "q1", "title": "Waarom?"}]))
    assert item.text == "Te duur."


# -- robustness ----------------------------------------------------------------
def test_unknown_answer_types_are_skipped_with_a_reason_never_a_crash(caplog):
    answers = [
        {"type": "multi_format", "multi_format": {"video_url": "https://x"}, "field": {"id": "v1", "type": "video"}},
        "not an answer",
        {"type": "text", "field": {"id": "t0", "type": "short_text"}},  # value missing
        {"type": "text", "text": "Snel geholpen!", "field": {"id": "t1", "type": "long_text"}},
        _num("n1", "nps", 10),
    ]
    with caplog.at_level(logging.INFO, logger="plugins.survey_typeform.mapping"):
        item = one(connector(), _response(answers))
    assert item.nps == 10 and item.text == "Snel geholpen!"
    assert item.extra["skipped_answers"] == [
        "field v1: unknown answer type 'multi_format'",
        "answer 1: not an answer object",
        "field t0: answer type 'text' without its value",
    ]
    assert "unknown answer type 'multi_format'" in caplog.text


def test_unfinished_response_uses_landed_at():
    item = one(connector(), _response([], submitted_at="0001-01-01T00:00:00Z", landed_at="2026-11-20T09:58:00Z"))
    assert item.occurred_at == utc(2026, 11, 20, 9, 58) and item.extra["completed"] is False


@pytest.mark.parametrize("payload, reason", [
    ({"event_type": "form_created", "form_response": {}}, "not a form_response"),
    (["a", "list"], "not an object"),
    ({"submitted_at": "2026-11-20T10:00:00Z", "answers": []}, "without a token"),
    ({"token": "t", "answers": []}, "neither submitted_at nor landed_at"),
])
def test_payloads_that_cannot_be_understood_raise_value_error(payload, reason):
    with pytest.raises(ValueError, match=reason):
        connector().normalize(RawIn(payload=payload))


def test_normalize_does_not_mutate_the_raw_payload():
    event = load("webhook_form_response_docs_example.json")
    before = copy.deepcopy(event)
    connector().normalize(RawIn(payload=event))
    assert event == before


# -- signatures and links --------------------------------------------------------
def test_signature_matches_the_contract_test_vector():
    body = fixture_path("typeform/webhook_pipedream_raw_event.json").read_bytes()
    expected = "sha256=vRVJ8T+abQfCOiWeu9rPhEwBycH5kGSGyVZnwO2PiUU="
    assert sign("test_secret", body) == expected
    assert verify_signature("test_secret", body, expected)
    assert not verify_signature("test_secret", body + b" ", expected)
    assert not verify_signature("other", body, expected)
    assert not verify_signature("test_secret", body, None)
    assert not verify_signature("test_secret", body, "sha256=ünïcode")


def test_resurvey_link_prefills_hidden_fields_url_encoded():
    url = connector(form_id="u6nXL7").resurvey_url(1234, "jan+test@example.nl", name="Jan de Vries")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://form.typeform.com/to/u6nXL7"
    assert parts.fragment == "case_id=1234&email=jan%2Btest%40example.nl&name=Jan%20de%20Vries"
    assert dict(parse_qsl(parts.fragment)) == {"case_id": "1234", "email": "jan+test@example.nl",
                                                "name": "Jan de Vries"}
    # A configured form link (custom domain) and field names are honoured; an old fragment is replaced.
    conn = connector(resurvey_form_url="https://acme.typeform.com/to/ReSuRv#old=1", case_id_field="zaak",
                     email_field="mail")
    assert conn.resurvey_url(7) == "https://acme.typeform.com/to/ReSuRv#zaak=7"
    assert build_resurvey_url("https://x/to/a", 7, None, source="") == "https://x/to/a#case_id=7"


def test_resurvey_link_round_trip_marks_the_answer():
    conn = connector(form_id="u6nXL7")
    hidden = dict(parse_qsl(urlsplit(conn.resurvey_url(55, "a@b.nl")).fragment))
    item = one(conn, _response([_num("n1", "nps", 9)], hidden=hidden, form_id="u6nXL7"))
    assert item.resurvey_case_id == 55 and item.customer.email == "a@b.nl" and item.nps == 9


def test_fixture_copies_match_their_provenance_hashes():
    table = fixture_path("typeform/PROVENANCE.md").read_text()
    rows = re.findall(r"^\| `([^`]+\.json)` \|.*\| `([0-9a-f]{64})` \|$", table, flags=re.M)
    assert len(rows) == 8
    for name, digest in rows:
        assert hashlib.sha256(fixture_path(f"typeform/{name}").read_bytes()).hexdigest() == digest, name
