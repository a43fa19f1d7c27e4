"""CSAT (1-5) and CES (1-7) beside NPS: a score with its scale in the common schema, Typeform
rating / opinion-scale questions mapped by config, and each scale's categories feeding the
same escalation (a CSAT 1-2 opens a case like an NPS detractor)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.sdk import Instance, RawIn
from hub.sdk.schema import score_category
from hub.storage import models as m
from plugins.survey_typeform import TypeformConnector


@pytest.mark.parametrize(("scale", "scores", "expected"), [
    ("nps", range(0, 11), ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2),
    ("csat", range(1, 6), ["detractor", "detractor", "passive", "promoter", "promoter"]),
    ("ces", range(1, 8), ["detractor"] * 3 + ["passive"] * 2 + ["promoter"] * 2),
])
def test_each_scale_has_its_categories(scale, scores, expected):
    assert [score_category(s, scale) for s in scores] == expected
    assert score_category(None, scale) is None and score_category(3, "stars") is None


def test_a_csat_detractor_opens_a_case_and_nps_keeps_working(client, auth, hub):
    unhappy = client.post("/api/v1/feedback", headers=auth, json={
        "external_id": "c1", "channel": "survey", "score": 2, "scale": "csat", "customer": {"email": "a@b.nl"}})
    assert unhappy.status_code == 201, unhappy.get_json()
    assert unhappy.get_json()["category"] == "detractor" and unhappy.get_json()["case_id"] is not None
    easy = client.post("/api/v1/feedback", headers=auth, json={
        "external_id": "c2", "channel": "survey", "score": 7, "scale": "ces", "customer": {"email": "c@d.nl"}})
    assert easy.get_json()["category"] == "promoter" and easy.get_json()["case_id"] is None
    classic = client.post("/api/v1/feedback", headers=auth, json={"external_id": "n1", "channel": "survey", "nps": 9})
    assert classic.get_json()["category"] == "promoter"
    as_score = client.post("/api/v1/feedback", headers=auth, json={
        "external_id": "n2", "channel": "survey", "score": 3, "scale": "nps"})
    assert as_score.get_json()["category"] == "detractor"
    with hub.db.Session() as s:
        rows = {r.external_id: (r.nps, r.score, r.scale) for r in s.scalars(select(m.FeedbackItem))}
    assert rows == {"c1": (None, 2, "csat"), "c2": (None, 7, "ces"), "n1": (9, 9, "nps"), "n2": (3, 3, "nps")}


@pytest.mark.parametrize(("body", "field"), [
    ({"score": 9, "scale": "csat"}, "score"),
    ({"score": 0, "scale": "ces"}, "score"),
    ({"score": 3}, "scale"),
    ({"score": 3, "scale": "stars"}, "scale"),
    ({"score": 3, "scale": "nps", "nps": 4}, "score"),
])
def test_scores_outside_their_scale_are_refused(client, auth, body, field):
    r = client.post("/api/v1/feedback", headers=auth, json={"external_id": "x", "channel": "survey", **body})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == field, r.get_json()


def _typeform(**settings) -> TypeformConnector:
    return TypeformConnector(Instance(name="csat", plugin="survey_typeform", kind="source",
                                      settings={"form_id": "lT4Z3j", **settings}))


def _response(*answers):
    return {"form_id": "lT4Z3j", "token": "t-1", "submitted_at": "2026-11-20T10:00:00Z",
            "definition": {"id": "lT4Z3j", "fields": []}, "answers": list(answers), "hidden": {}}


def _number(fid, qtype, n, ref=None):
    return {"type": "number", "number": n, "field": {"id": fid, "type": qtype, **({"ref": ref} if ref else {})}}


def test_typeform_rating_and_opinion_scale_map_by_config():
    [item] = _typeform(csat_field_ref="tevredenheid").normalize(RawIn(
        payload=_response(_number("r1", "rating", 2, ref="tevredenheid")), dedupe_key="k", kind="form_response"))
    assert (item.score, item.scale, item.nps) == (2, "csat", None)
    [item] = _typeform(ces_field_ref="os7").normalize(RawIn(
        payload=_response(_number("os7", "opinion_scale", 6)), dedupe_key="k", kind="form_response"))
    assert (item.score, item.scale) == (6, "ces")
    [unmapped] = _typeform().normalize(RawIn(payload=_response(_number("r1", "rating", 2, ref="tevredenheid")),
                                             dedupe_key="k", kind="form_response"))
    assert unmapped.score is None and unmapped.scale is None
    [out_of_range] = _typeform(csat_field_ref="r1").normalize(RawIn(
        payload=_response(_number("r1", "rating", 9)), dedupe_key="k", kind="form_response"))
    assert out_of_range.score is None
