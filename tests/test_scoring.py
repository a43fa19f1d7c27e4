"""The default enricher and scorer on real-looking text: language, sentiment with
negation and word forms, complaint cues, themes, the calibrated risk and its
reasons, public escalation, and the evaluation harness."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.cli.score import Scored, auc, calibration, precision_recall
from hub.config import load_config
from hub.defaults import enrich, escalation, scoring
from hub.defaults.text.dutch import base_forms
from hub.defaults.text.language import detect_language
from hub.sdk.schema import FeedbackIn, ScoringContext
from hub.storage import models as m
from tests.helpers import bearer

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
CONFIG = load_config(None, environ={})
THRESHOLD = CONFIG["scoring"]["risk_threshold"]

COMPLAINTS = [
    "Waardeloze klantenservice, niemand neemt op.",
    "Ik wacht nu al drie weken op een monteur, belachelijk.",
    "Nog steeds geen internet. Ik ben het zat!",
    "Dit is echt niet normaal, al twee keer een verkeerde factuur gekregen.",
    "Ik ga overstappen als dit niet snel wordt opgelost.",
    "De app is allesbehalve gebruiksvriendelijk en werkt niet.",
    "Still no reply after two weeks, this is unacceptable.",
    "Your service is not good at all, I want to cancel my subscription.",
    "For the third time my delivery did not arrive. Terrible.",
    "The worst customer service I have ever had, nobody helps.",
]
PRAISE = [
    "Super vriendelijke medewerker, heel goed geholpen!",
    "Prima service, de monteur was snel en netjes.",
    "Ik ben zeer tevreden over de nieuwe router.",
    "Top geregeld, bedankt voor de snelle levering!",
    "Niet slecht, alles werkt weer prima.",
    "Heel blij met de duidelijke uitleg van de helpdesk.",
    "Great service, thanks for the quick help!",
    "The engineer was friendly and fixed everything in an hour.",
    "Really happy with my new phone, excellent value.",
    "Delivery was fast and the product works perfectly.",
]


def run(text: str | None, **fields) -> tuple[FeedbackIn, int, list]:
    """Enrich and score one item the way the pipeline does."""
    item = FeedbackIn("t", fields.pop("channel", "survey"), NOW, text=text, **fields)
    out = enrich.hub_enrich_feedback(item, CONFIG) or {}
    extra = out.pop("extra", {})
    item = dataclasses.replace(item, **{k: v for k, v in out.items() if v is not None},
                               extra={**extra, **item.extra})
    signals = scoring.hub_score_feedback(item, ScoringContext(config=CONFIG["scoring"]))
    return item, max(0, min(100, round(sum(s.weight for s in signals)))), signals


@pytest.mark.parametrize("text", COMPLAINTS)
def test_complaints_score_at_or_above_the_threshold(text):
    item, risk, signals = run(text)
    assert risk >= THRESHOLD, (risk, signals)
    assert item.sentiment is None or item.sentiment < 0.3


@pytest.mark.parametrize("text", PRAISE)
def test_praise_scores_low(text):
    item, risk, signals = run(text)
    assert risk < 15, (risk, signals)
    assert item.sentiment is not None and item.sentiment > 0


def test_every_complaint_outranks_every_praise():
    assert min(run(t)[1] for t in COMPLAINTS) > max(run(t)[1] for t in PRAISE)


@pytest.mark.parametrize(("text", "language"), [
    ("Ik ga overstappen", "nl"),
    ("Waardeloze klantenservice", "nl"),
    ("Still waiting for my refund", "en"),
    ("Die Lieferung ist nicht angekommen", "de"),
    ("Je suis très déçu du service", "fr"),
])
def test_language_of_short_texts(text, language):
    assert enrich.language_of(text, CONFIG["enrich"]) == language


def test_language_is_unknown_when_unsure_and_the_source_wins():
    assert detect_language("Top", ("nl", "en", "de", "fr")) is None
    assert detect_language("ok!", ("nl", "en")) is None
    assert detect_language("Ik ga overstappen", ("nl",)) == "nl"  # one configured language: no guessing
    assert "language" not in enrich.hub_enrich_feedback(FeedbackIn("x", "survey", NOW, text="Ik ga overstappen",
                                                                   language="fy"), CONFIG)


def test_negation_flips_sentiment():
    item, _, signals = run("opzeggen als dit niet snel wordt opgelost")
    assert item.sentiment < 0
    assert "niet snel" in item.extra["sentiment_words"]
    assert {s.signal for s in signals} >= {"churn_language", "negative_sentiment"}
    assert run("Dit is niet goed")[0].sentiment < 0 < run("Dit is goed")[0].sentiment
    assert run("Het werkt niet")[0].sentiment < 0
    assert run("Allesbehalve vriendelijk")[0].sentiment < 0
    assert run("This is not good")[0].sentiment < 0
    assert run("Alles ging zonder problemen")[0].sentiment > 0
    assert run("Niet aan te raden")[0].sentiment < 0 < run("Echt een aanrader")[0].sentiment


def test_word_forms_and_diminutives_find_the_lexicon_entry():
    item, risk, _ = run("Waardeloze klantenservice")
    assert item.sentiment < -0.5 and item.extra["sentiment_words"] == ["waardeloze"]
    assert risk >= THRESHOLD
    assert "waardeloos" in base_forms("waardeloze")
    assert "groot" in base_forms("groter") and "slecht" in base_forms("slechtste") and "fout" in base_forms("foutje")
    assert run("De slechtste service ooit")[0].sentiment < 0
    assert run("Een foutje in de factuur")[0].sentiment < 0


def test_intensifiers_strengthen():
    assert run("heel slecht")[0].sentiment < run("slecht")[0].sentiment < 0
    assert run("erg goed")[0].sentiment > run("goed")[0].sentiment > 0


def test_complaint_cues_help_requests_caps_profanity_and_emoji_are_signals_with_evidence():
    _, _, signals = run("NOG STEEDS GEEN REACTIE, kunnen jullie mij helpen? Klote bedrijf 😡")
    details = {s.signal: s.detail for s in signals}
    assert "nog steeds" in details["complaint_cue"] and "geen reactie" in details["complaint_cue"]
    assert "kunnen jullie" in details["help_request"]
    assert "STEEDS" in details["shouting"]
    assert "klote" in details["profanity"]
    assert "😡" in details["angry_emoji"]
    _, _, signals = run("Waiting since Monday, for the third time: no reply")
    cues = next(s.detail for s in signals if s.signal == "complaint_cue")
    assert "waiting since" in cues and "for the third time" in cues and "no reply" in cues


def test_themes_come_from_the_taxonomy_and_show_in_the_reasons():
    item, _, signals = run("Mijn factuur klopt niet en de monteur kwam weer niet opdagen")
    assert item.extra["themes"] == ["billing", "staff"]
    assert any(s.signal == "themes" and "billing, staff" in s.detail for s in signals)
    assert run("Internetstoring sinds gisteren")[0].extra["themes"] == ["outage"]
    assert run("The parcel never arrived and I was on hold for an hour")[0].extra["themes"] == ["delivery", "waiting"]
    assert "themes" not in run("Goedemorgen")[0].extra


def test_reasons_are_contributions_that_add_up_to_the_calibrated_chance():
    item, risk, signals = run("Nog steeds geen internet, ik ga opzeggen!", nps=3)
    evidence = scoring.context_evidence(item, ScoringContext(config=CONFIG["scoring"])) + \
        scoring.text_evidence(item, CONFIG["scoring"])
    chance = scoring.callback_chance(evidence, CONFIG["scoring"]["intercept"])
    assert abs(sum(s.weight for s in signals) - 100 * chance) < 0.05
    assert risk == round(100 * chance)
    by_name = {s.signal: s.weight for s in signals}
    assert by_name["nps"] > by_name["base_rate"] > 0 and "churn_language" in by_name
    # A promoter's score and praise lower the chance: they count negative.
    _, _, mixed = run("Goede prijs maar nog steeds geen internet", nps=9)
    assert {s.signal: s.weight for s in mixed}["nps"] < 0


def test_a_happy_promoter_gets_no_reasons():
    assert run("Top!", nps=10)[2] == []


def test_public_legal_threat_is_as_urgent_as_the_same_survey_answer():
    text = "Als dit niet wordt opgelost stap ik naar de geschillencommissie"
    decide = escalation.hub_decide_escalation
    survey_item, survey_risk, survey_signals = run(text, nps=6)
    social_item, social_risk, social_signals = run(text, channel="social", reach=150)
    survey = decide(item=survey_item, category="detractor", risk=survey_risk, signals=survey_signals,
                    config=CONFIG, now=NOW)
    social = decide(item=social_item, category=None, risk=social_risk, signals=social_signals, config=CONFIG, now=NOW)
    rank = escalation.PRIORITIES.index
    assert social.open_case and social.priority == "urgent"
    assert rank(social.priority) >= rank(survey.priority)
    big, big_risk, big_signals = run("Wanneer komt de monteur?", channel="social", reach=20000)
    assert rank(decide(item=big, category=None, risk=max(big_risk, THRESHOLD), signals=big_signals,
                       config=CONFIG, now=NOW).priority) >= rank("high")


def test_themes_and_sentiment_words_are_stored_on_the_item(make_app):
    app = make_app()
    hub = app.extensions["hub"]
    body = {"external_id": "th-1", "channel": "survey", "text": "Waardeloze service, factuur klopt niet",
            "customer": {"email": "t@example.nl"}}
    resp = app.test_client().post("/api/v1/feedback", json=body, headers=bearer(hub))
    assert resp.status_code == 201, resp.get_json()
    assert any(r["signal"] == "themes" for r in resp.get_json()["risk_reasons"])
    with hub.db.Session() as s:
        item = s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.external_id == "th-1")).one()
        assert item.extra["themes"] == ["billing"] and "waardeloze" in item.extra["sentiment_words"]
        assert item.language == "nl" and item.sentiment < 0


# -- the evaluation harness --------------------------------------------------------
def test_auc_precision_recall_and_calibration():
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert auc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5  # ties count half
    assert auc([1, 2], [1, 1]) is None
    rows = [Scored(90, 1, "nl"), Scored(50, 0, "nl"), Scored(10, 1, "nl"), Scored(5, 0, "nl")]
    assert precision_recall(rows, 40) == (0.5, 0.5)
    assert calibration(rows) == [("0-9", 1, 0.05, 0.0), ("10-19", 1, 0.10, 1.0), ("50-59", 1, 0.5, 0.0),
                                 ("90-100", 1, 0.9, 1.0)]


def test_score_evaluate_prints_auc_per_language_and_calibration(tmp_path):
    path = tmp_path / "labelled.jsonl"
    lines = [{"external_id": f"c{i}", "channel": "survey", "occurred_at": NOW.isoformat(), "text": t, "label": 1}
             for i, t in enumerate(COMPLAINTS)]
    lines += [{"external_id": f"p{i}", "channel": "survey", "occurred_at": NOW.isoformat(), "text": t, "label": 0}
              for i, t in enumerate(PRAISE)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = CliRunner().invoke(main, ["score", "evaluate", str(path), "--label", "label"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()}
    assert rows["all"][1:4] == ["20", "10", "1.000"]
    assert rows["nl"][3] == "1.000" and rows["en"][3] == "1.000"
    assert "calibration" in result.output


def test_score_evaluate_csv_and_bad_input(tmp_path):
    good = tmp_path / "x.csv"
    good.write_text("external_id,channel,text,complaint\na,survey,Waardeloze service,yes\nb,survey,Heel goed,no\n"
                    "c,fax,Nog steeds niks,1\n")
    result = CliRunner().invoke(main, ["score", "evaluate", str(good), "--label", "complaint"])
    assert result.exit_code == 0, result.output
    assert "2 items scored, 1 skipped" in result.output and "line 4: skipped" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("external_id,channel,text,complaint\na,survey,Slecht,maybe\n")
    result = CliRunner().invoke(main, ["score", "evaluate", str(bad), "--label", "complaint"])
    assert result.exit_code != 0 and "line 2" in result.output and "maybe" in result.output
    result = CliRunner().invoke(main, ["score", "evaluate", str(good), "--label", "nope"])
    assert result.exit_code != 0 and "no usable labelled lines" in result.output


def test_dev_set_fixture_is_labelled_and_scores_english_well():
    from hub.cli.score import score_file
    from tests.fixtures.scoring import DEV_SET

    if not DEV_SET.exists():
        pytest.skip(f"{DEV_SET} not built (tests/fixtures/scoring/build_dev_set.py, docs/scoring.md)")
    rows, bad = score_file(DEV_SET, "complaint", CONFIG)
    assert not bad and len(rows) == 1500
    english = [r for r in rows if r.language == "en"]
    assert auc([r.risk for r in english], [r.label for r in english]) > 0.85


def test_a_verb_after_its_negation_and_verbs_that_look_like_superlatives():
    assert run("Dit bevalt me niet.")[0].sentiment < 0
    assert run("Het werkt gewoon niet.")[0].sentiment < 0
    # "moest" is a past tense, not the superlative of "moe" (tired)
    assert "moe" not in " ".join(run("Ik moest even bellen.")[0].extra.get("sentiment_words", []))


def test_praise_that_uses_a_cue_word_is_no_complaint():
    for text in ("Ik heb nog nooit zo'n goed boek gelezen.", "Prima product, zou het zeker weer kopen.",
                 "Wil nooit meer zonder deze app."):
        _, _, signals = run(text)
        assert "complaint_cue" not in {s.signal for s in signals}, text


def test_remembered_results_are_per_item_and_not_shared():
    first, risk_first, _ = run("Nog steeds geen internet, ben het zat.")
    first.extra["themes"].append("changed by a caller")
    again, risk_again, _ = run("Nog steeds geen internet, ben het zat.")
    assert "changed by a caller" not in again.extra["themes"] and risk_again == risk_first
    item = dataclasses.replace(again)
    alone = scoring.score(item, ScoringContext(config=CONFIG["scoring"]))[0]
    repeated = scoring.score(item, ScoringContext(config=CONFIG["scoring"], prior_contacts=3))[0]
    assert repeated > alone  # the same words with earlier contacts: not the remembered answer


def test_review_split_maps_stars_to_labels_and_leaves_mixed_reviews_out(tmp_path):
    from tests.fixtures.scoring.build_review_split import rows

    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("stars\ttext\n1\tKapot  aangekomen.\n3\tGaat wel.\n5\tPrima!\n2.0\tMatig\n4\t\n", encoding="utf-8")
    split = list(rows(str(tsv), "nlrev"))
    assert [(r["text"], r["complaint"]) for r in split] == [("Kapot aangekomen.", 1), ("Prima!", 0), ("Matig", 1)]
    assert {r["channel"] for r in split} == {"survey"} and "nps" not in split[0]


def test_curly_apostrophes_count_like_straight_ones():
    straight, curly = run("I can't log in and still no reply."), run("I can\u2019t log in and still no reply.")
    assert straight[1] == curly[1]
    assert {s.signal for s in straight[2]} == {s.signal for s in curly[2]}
    assert run("Nog nooit zo\u2019n goed boek gelezen.")[0].sentiment > 0


def test_english_negated_verbs_are_complaint_cues_unless_they_are_praise():
    _, _, signals = run("My order hasn't arrived and the app won't load.")
    assert "complaint_cue" in {s.signal for s in signals}
    for text in ("Can't wait to try the new phone!", "Couldn't be happier with the service."):
        assert "complaint_cue" not in {s.signal for s in run(text)[2]}, text


def test_handles_links_and_hash_signs_are_no_opinion():
    from hub.defaults.text.social import plain

    assert plain("RT @user: so bad http://t.co/x #fail") == "so bad fail"
    assert plain("mail me at a@b.nl") == "mail me at a@b.nl"  # an address is not a handle
    item, _, signals = run("@united my bag still hasn't arrived, 3 days now", channel="social")
    assert "united" not in item.extra.get("sentiment_words", [])  # the brand is not "united" (positive)
    assert "positive_sentiment" not in {s.signal for s in signals}
    assert "complaint_cue" in {s.signal for s in signals}


def test_please_in_a_request_is_not_praise():
    item, _, signals = run("My phone keeps crashing since the update, please fix it.")
    assert "please" not in item.extra.get("sentiment_words", [])
    assert "positive_sentiment" not in {s.signal for s in signals}
